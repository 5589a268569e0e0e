"""Our eval transform (timm's, from each model's pretrained cfg) against mmpretrain's own test pipeline.

Real photographs shipped by scikit-image, saved losslessly so that both sides decode the same
pixels; mmpretrain reads them with OpenCV (BGR) and converts in its data preprocessor, we read
them with PIL. Identical shapes; the mean absolute difference of the normalized tensors is
below MAD_BOUND. Measured over all configs and photos (mmpretrain 1.2.0, timm 1.0.31):
ImageNet configs up to 0.034 (OpenCV's bilinear resize does not antialias, PIL's does: the
difference is largest when the shorter edge shrinks 2x, e.g. 512 -> 256), CUB up to 0.005,
CIFAR exactly 0 (32x32 inputs, nothing resized).
"""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from conftest import requires_mmpretrain
from eval_transform_helpers import PHOTOS, mmpretrain_eval_input, photo
from PIL import Image
from timm.data import create_transform, resolve_data_config

import resnet_hub
from resnet_hub.inference import preprocess
from resnet_hub.zoo.configs import load_config

MAD_BOUND = 0.05  # in normalized units (1 / std): about 3 levels of 255 on average
NAMES = resnet_hub.list_configs()


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in PHOTOS:
        paths[name] = folder / f"{name}.png"
        Image.fromarray(photo(name)).save(paths[name])
    return paths


def _meta_model(name):
    with torch.device("meta"):  # only the pretrained cfg is read
        return timm.create_model(name)


def _pairs(name, paths):
    """(mmpretrain's normalized input, ours) for each photo."""
    model, reference = _meta_model(name), mmpretrain_eval_input(name)
    for path in paths:
        if load_config(name).eval.resize is None:  # CIFAR: 32x32 RGB arrays, as its dataset yields
            rgb = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.BILINEAR))
            yield path.stem, reference(rgb), preprocess([rgb], model)
        else:
            yield path.stem, reference(path), preprocess([path], model)


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("name", NAMES)
def test_eval_transform_reproduces_mmpretrain_test_pipeline(name, photo_files):
    for photo_name, reference, ours in _pairs(name, photo_files.values()):
        assert ours.shape == reference.shape, photo_name
        mad = (ours - reference).abs().mean().item()
        assert mad < MAD_BOUND, f"{name} on {photo_name}: mean |ours - mmpretrain| = {mad:.4f}"
        if load_config(name).eval.resize is None:  # measured 4.2e-6: (x/255 - m)/s vs (x - 255m)/(255s), per pixel
            torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


@requires_mmpretrain
@pytest.mark.mmpretrain
def test_the_bound_catches_a_wrong_transform(photo_files):
    """The bound is tight enough to fail on a plausible mistake: BGR order, or a crop off by 8 pixels."""
    [(_, reference, ours)] = _pairs("resnet50_8xb32_in1k", [photo_files["chelsea"]])
    assert (ours.flip(1) - reference).abs().mean() > 2 * MAD_BOUND
    shifted = torch.roll(ours, shifts=8, dims=-1)
    assert (shifted - reference).abs().mean() > MAD_BOUND


@pytest.mark.parametrize("name", ["resnet50_8xb32_in1k", "resnet50_8xb8_cub", "resnet18_8xb16_cifar10"])
def test_batched_uint8_preprocessing_equals_timm_create_transform(name, photo_files):
    """Our fast path (uint8 per image, normalize the batch) equals timm's plain float transform."""
    model = _meta_model(name)
    plain = create_transform(**resolve_data_config({}, model=model))
    paths = list(photo_files.values())
    expected = torch.stack([plain(Image.open(p).convert("RGB")) for p in paths])
    torch.testing.assert_close(preprocess(paths, model), expected, rtol=0, atol=1e-5)
