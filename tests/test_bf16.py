"""precision="bf16" against fp32: the same top-1 on nearly all images and close probabilities, whether this
CPU runs bf16 natively or emulates it (slowly: the images are small); "auto" and bad values."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from inference_helpers import CIFAR, photos, save

from resnet_hub import inference_model
from resnet_hub.bench.benchmark import _randomize_batchnorm
from resnet_hub.inference import ImageClassificationInferencer, resolve_precision

STOCK = "resnet18_8xb32_in1k"
N = 24  # JPEGs per config; emulated bf16 (AVX2) runs ResNet-18 at ~1.5 images/s on 32x32 images


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    return [save(p, folder / f"{i:02d}.jpg", fmt="JPEG") for i, p in enumerate(photos(N, size=(96, 72), seed=2))]


def _discriminating_model(name: str, images, **kwargs) -> torch.nn.Module:
    """Random weights and randomized BatchNorm (statistics and affine, so residual branches are live, not
    timm's zero-init), and a classifier centred and scaled on ``images``' features: distinct, confident
    predictions (logit std 3; class k is nearest to image k's features), where a precision's error would move
    top-1 and probabilities."""
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    _randomize_batchnorm(model, 0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.25)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
        batch = ImageClassificationInferencer(model, fold_batchnorm=False).preprocess(images)
        features = model.forward_head(model.forward_features(batch), pre_logits=True)
        centred = features - features.mean(0)
        classes = min(len(images), model.fc.weight.shape[0])
        prototypes = centred[:classes]  # class k looks like image k; classes past the images are never likely
        model.fc.weight.zero_()
        model.fc.weight[:classes] = prototypes * (3.0 / (centred @ prototypes.T).std())
        model.fc.bias.copy_(-model.fc.weight @ features.mean(0))
        model.fc.bias[classes:] = -30.0
    return model


@pytest.mark.parametrize("name, kwargs, min_agree, max_prob_diff", [
    # measured (AMD EPYC without AVX512-BF16, bf16 emulated; 1 and 2 threads): top-1 agrees on 24/24,
    # max |p_bf16 - p_fp32| 0.010; bounds leave room for native bf16 kernels, which round differently
    (CIFAR, {}, 23, 0.03),
    # the stock stem (7x7 conv, max pool) at a 64x64 crop, to keep emulated bf16 short; measured 22/24, 0.025
    (STOCK, dict(pretrained_cfg_overlay=dict(input_size=(3, 64, 64), crop_pct=0.875)), 21, 0.05),
])
def test_bf16_keeps_top1_and_probabilities_close_to_fp32(jpegs, name, kwargs, min_agree, max_prob_diff):
    model = _discriminating_model(name, jpegs, **kwargs)
    fp32 = inference_model(model, jpegs, batch_size=16)
    bf16 = inference_model(model, jpegs, batch_size=16, precision="bf16")
    assert {r["precision"] for r in fp32} == {"fp32"} and {r["precision"] for r in bf16} == {"bf16"}
    p32 = np.stack([r["pred_scores"] for r in fp32])
    p16 = np.stack([r["pred_scores"] for r in bf16])
    assert len(set(p32.argmax(1))) >= 4 and np.median(p32.max(1)) > 0.2  # a model whose errors would show
    assert p16.dtype == np.float32 and np.allclose(p16.sum(1), 1.0, atol=1e-5)
    agree = sum(a["pred_label"] == b["pred_label"] for a, b in zip(fp32, bf16, strict=True))
    assert agree >= min_agree, f"top-1 agrees on {agree}/{N}"
    assert np.abs(p16 - p32).max() <= max_prob_diff
    assert not np.array_equal(p16, p32)  # bf16 did run: its rounding shows


def test_bf16_copy_has_bf16_weights_and_an_fp32_classifier():
    model = timm.create_model(CIFAR).eval()
    inferencer = ImageClassificationInferencer(model, precision="bf16")
    weights = {n: p.dtype for n, p in inferencer.model.named_parameters()}
    assert weights.pop("fc.weight") == weights.pop("fc.bias") == torch.float32
    assert set(weights.values()) == {torch.bfloat16} and inferencer.dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # the model given is left as it was


def test_auto_is_fp32_without_native_bf16_and_bf16_with_it(monkeypatch):
    import resnet_hub.inference as inference

    model = timm.create_model(CIFAR).eval()
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "avx512_bf16": False})
    assert resolve_precision("auto", "cpu") == "fp32"
    assert inference_model(model, photos(1)[0], precision="auto")["precision"] == "fp32"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    assert resolve_precision("auto", "cpu") == "bf16"
    assert inference_model(model, photos(1)[0], precision="auto")["precision"] == "bf16"  # not the cached fp32 copy
    monkeypatch.setattr(inference, "native_bf16", lambda device: None)
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"


def test_bad_precision_lists_the_choices():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, auto; got 'fp16'"):
        inference_model(timm.create_model(CIFAR).eval(), photos(1), precision="fp16")
    with pytest.raises(ValueError, match="one of fp32, bf16, auto"):
        ImageClassificationInferencer("no-such-model-is-loaded", precision="half")
