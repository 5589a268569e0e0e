"""resnet_hub.train.augment: one vocabulary, a support table the backends keep, and the backend choice."""
from __future__ import annotations

import argparse
import re
import typing
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from conftest import requires_mmpretrain
from torchvision.io import encode_png

from resnet_hub import list_configs, load_config
from resnet_hub.train import trainer
from resnet_hub.train.augment import (
    BACKENDS,
    PAD_MODES,
    SUPPORT,
    choose_backend,
    pad,
    supported_ops,
    unsupported,
)
from resnet_hub.train.device_data import DeviceAugmentation, UnsupportedOnDevice, seeded_generator
from resnet_hub.train.pipeline import TrainTransform
from resnet_hub.train.plan import resolve_plan
from resnet_hub.train.recipe import train_transform
from resnet_hub.zoo.configs import Augmentation

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

CIFAR = load_config("resnet18_8xb16_cifar10")
IN1K = load_config("resnet50_8xb32_in1k")
RSB = load_config("resnet50_8xb256-rsb-a1-600e_in1k")
# one op of each type, with the parameters its type needs
EXAMPLE = {
    "random_resized_crop": dict(size=8, scale=(0.3, 1.0), ratio=(0.75, 4 / 3)),
    "resize": dict(size=(10, 12)),
    "random_crop": dict(size=8, padding=2, fill=(124, 116, 104)),
    "horizontal_flip": dict(prob=0.5),
    "rand_augment": dict(policies="timm_increasing", num_policies=2, total_level=10, magnitude_level=7,
                         magnitude_std=0.5, fill=(124, 116, 104), interpolation="bicubic"),
}


def _images(n: int, h: int = 11, w: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _png(image: torch.Tensor) -> dict:
    return {"bytes": encode_png(image).numpy().tobytes(), "path": None}


def _run(backend: str, ops: list, images: torch.Tensor) -> torch.Tensor:
    """``ops`` applied by ``backend`` to uint8 ``images`` (B, 3, H, W): a uint8 batch."""
    if backend == "uint8":
        return TrainTransform(ops, label_column=None)({"image": [_png(im) for im in images]})["image"]
    if backend == "device":
        return DeviceAugmentation.from_recipe(ops)(images, seeded_generator("cpu", 0))
    transform = train_transform(SimpleNamespace(augmentation=ops))
    return torch.stack([transform(TF.to_pil_image(im)) for im in images])


# ----------------------------------------------------------------------------- the table against the backends


def test_the_table_names_every_op_of_the_schema():
    ops = typing.get_args(typing.get_type_hints(Augmentation)["type"])
    assert set(SUPPORT) == set(ops) and set(EXAMPLE) == set(ops)
    assert all(set(backends) <= set(BACKENDS) for backends in SUPPORT.values())
    assert supported_ops("pil") == tuple(SUPPORT)  # PIL + timm runs every op
    with pytest.raises(ValueError, match="unknown augmentation backend 'gpu'; choose one of pil, uint8, device"):
        supported_ops("gpu")


def _supported_cases():
    for op_type, backends in SUPPORT.items():
        for backend, values in backends.items():
            yield pytest.param(backend, op_type, {}, id=f"{backend}-{op_type}")
            for name, allowed in values.items():
                for value in allowed:
                    yield pytest.param(backend, op_type, {name: value}, id=f"{backend}-{op_type}-{name}={value}")


@pytest.mark.parametrize("backend, op_type, value", list(_supported_cases()))
def test_what_the_table_says_a_backend_runs_it_runs(backend, op_type, value):
    op = Augmentation(type=op_type, **dict(EXAMPLE[op_type], **value))
    assert unsupported([op], backend) == []
    out = _run(backend, [op], _images(3))
    size = {"random_resized_crop": (8, 8), "resize": (10, 12), "random_crop": (8, 8)}.get(op_type, (11, 13))
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, 3, *size)


def _unsupported_cases():
    for op_type, backends in SUPPORT.items():
        for backend in BACKENDS:
            if backend not in backends:
                yield pytest.param(backend, Augmentation(type=op_type, **EXAMPLE[op_type]), op_type,
                                   id=f"{backend}-{op_type}")
    for backend in BACKENDS:
        yield pytest.param(backend, Augmentation(type="random_crop", size=8, padding=2, pad_mode="wrap"),
                           "random_crop pad_mode 'wrap'", id=f"{backend}-pad_mode=wrap")
    for backend in ("uint8", "device"):
        yield pytest.param(backend, Augmentation(type="resize", size=8, interpolation="lanczos"),
                           "resize interpolation 'lanczos'", id=f"{backend}-resize-lanczos")
    yield pytest.param("pil", Augmentation(**dict(EXAMPLE["rand_augment"], type="rand_augment", total_level=30)),
                       "rand_augment total_level 30", id="pil-rand_augment-total_level=30")


@pytest.mark.parametrize("backend, op, lacks", list(_unsupported_cases()))
def test_what_the_table_says_a_backend_lacks_it_refuses_by_name(backend, op, lacks):
    assert unsupported([op], backend) == [lacks]
    error = UnsupportedOnDevice if backend == "device" else ValueError
    with pytest.raises(error, match=re.escape(f"{BACKENDS[backend]} does not implement {lacks} (it does: ")):
        _run(backend, [op], _images(2))


# ----------------------------------------------------------------------------- padding, bit-exact


@pytest.mark.parametrize("mode", PAD_MODES)
@pytest.mark.parametrize("padding", [1, 4, 12])  # 12: wider than the image, numpy mirrors again
def test_pad_equals_torchvision_and_numpy(mode, padding):
    images = _images(2, 5, 7)
    fill = (124, 116, 104)
    out = pad(images, padding, mode, fill)
    for i in range(2):
        if mode != "constant" or padding < 5:  # PIL's constant pad is fine at any width; keep it quick
            ref = TF.pil_to_tensor(TF.pad(TF.to_pil_image(images[i]), padding, fill=fill, padding_mode=mode))
            assert torch.equal(out[i], ref), (mode, padding, i)
        np_mode = {"edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}.get(mode)
        if np_mode:
            ref = np.pad(images[i].numpy(), ((0, 0), (padding, padding), (padding, padding)), mode=np_mode)
            assert np.array_equal(out[i].numpy(), ref)
    assert pad(images, 0, mode) is images


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("mode", PAD_MODES)
def test_pad_equals_mmcv_impad(mode):
    import mmcv

    images = _images(2, 9, 6, seed=3)
    out = pad(images, 4, mode, (124, 116, 104))
    for i in range(2):
        hwc = images[i].permute(1, 2, 0).numpy()
        ref = mmcv.impad(hwc, padding=4, pad_val=(124, 116, 104), padding_mode=mode)
        assert np.array_equal(out[i].permute(1, 2, 0).numpy(), ref)


def _windows(padded: torch.Tensor, size: int) -> list:
    h, w = padded.shape[-2:]
    return [padded[:, t:t + size, s:s + size] for t in range(h - size + 1) for s in range(w - size + 1)]


@pytest.mark.parametrize("backend", ["uint8", "device"])
@pytest.mark.parametrize("mode", PAD_MODES)
def test_random_crop_is_a_window_of_torchvisions_padded_image(backend, mode):
    """Each crop is exactly one window of torchvision's RandomCrop padding (random pixels: windows are unique),
    and the windows drawn vary."""
    op = Augmentation(type="random_crop", size=12, padding=3, pad_mode=mode, fill=(124, 116, 104))
    images = _images(16, 12, 12, seed=5)
    torch.manual_seed(0)
    out = _run(backend, [op], images)
    assert out.shape == (16, 3, 12, 12)
    offsets = set()
    for i in range(16):
        padded = TF.pil_to_tensor(TF.pad(TF.to_pil_image(images[i]), 3, fill=(124, 116, 104), padding_mode=mode))
        found = [k for k, window in enumerate(_windows(padded, 12)) if torch.equal(out[i], window)]
        assert len(found) == 1, (i, found)
        offsets.add(found[0])
    assert len(offsets) > 4


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("name", [n for n in list_configs()
                                  if any(a.type == "random_crop" and a.padding for a in
                                         load_config(n).training.augmentation)])
def test_recipe_random_crop_pixels_equal_mmpretrains(name):
    """A recipe's padded random_crop on the uint8 pipeline equals mmpretrain's RandomCrop at the same offset.
    (mmpretrain 1.2 pads ``padding`` with a constant whatever its padding_mode, which it applies to
    pad_if_needed only; every recipe here pads constant, so the recipe's pad_mode means the same in both.)"""
    from mmpretrain.datasets.transforms import RandomCrop

    op = next(a for a in load_config(name).training.augmentation if a.type == "random_crop")
    assert op.pad_mode in (None, "constant")
    images = _images(6, op.size, op.size, seed=2)
    torch.manual_seed(1)
    out = _run("uint8", [op], images)
    theirs = RandomCrop(crop_size=op.size, padding=op.padding, pad_val=op.fill, padding_mode=op.pad_mode)
    for i in range(6):
        ref_padded = pad(images[i:i + 1], op.padding, "constant", op.fill)[0]
        k = next(k for k, w in enumerate(_windows(ref_padded, op.size)) if torch.equal(out[i], w))
        top, left = divmod(k, 2 * op.padding + 1)
        with mock.patch.object(RandomCrop, "rand_crop_params", return_value=(top, left, op.size, op.size)):
            ref = theirs.transform({"img": images[i].permute(1, 2, 0).numpy()})["img"]
        assert np.array_equal(out[i].permute(1, 2, 0).numpy(), ref)


def test_uint8_random_resized_crop_after_random_crop_runs_per_image():
    ops = [Augmentation(type="random_crop", size=10, padding=1),
           Augmentation(type="random_resized_crop", size=6, scale=(0.5, 1.0), ratio=(0.75, 4 / 3))]
    out = _run("uint8", ops, _images(4))
    assert out.shape == (4, 3, 6, 6) and out.dtype == torch.uint8


def test_an_int_resize_is_a_square_in_every_backend():
    op = Augmentation(type="resize", size=9)  # mmcv's Resize(scale=9): 9 x 9, not torchvision's shorter edge
    for backend in BACKENDS:
        assert _run(backend, [op], _images(2, 12, 20)).shape == (2, 3, 9, 9), backend


# ----------------------------------------------------------------------------- the choice


def test_choose_backend_says_why_in_one_line():
    cifar, rsb = CIFAR.training.augmentation, RSB.training.augmentation
    assert str(choose_backend(cifar, "cpu")) == "uint8 pipeline: all ops supported"
    assert str(choose_backend(cifar, "cuda", image_size=32)).startswith("device_data: all ops supported; 32 px")
    assert choose_backend(cifar, "cuda", image_size=32, on_device="off").backend == "uint8"
    assert choose_backend(IN1K.training.augmentation, "cuda", image_size=224).backend == "uint8"
    assert choose_backend(cifar, "cuda", image_size=32, streaming=True).backend == "uint8"
    assert choose_backend(cifar, "cpu", on_device="on").backend == "device"
    assert str(choose_backend(rsb, "cuda", image_size=224)) == "PIL + timm: uint8 pipeline lacks rand_augment"
    assert str(choose_backend(cifar, "cpu", decode="pil")) == "PIL + timm: --decode pil"
    with pytest.raises(ValueError, match="^--decode torchvision: the uint8 pipeline lacks rand_augment$"):
        choose_backend(rsb, "cpu", decode="torchvision")
    with pytest.raises(ValueError, match="^--data-on-device on: device_data lacks rand_augment$"):
        choose_backend(rsb, "cuda", on_device="on")
    with pytest.raises(ValueError, match="^--data-on-device on: a streaming dataset"):
        choose_backend(cifar, "cuda", on_device="on", streaming=True)
    wrap = [Augmentation(type="random_crop", size=8, padding=2, pad_mode="wrap")]
    with pytest.raises(ValueError, match="no augmentation backend implements this recipe: .*pad_mode 'wrap'"):
        choose_backend(wrap, "cpu")


@pytest.mark.parametrize("name", list_configs())
def test_every_recipe_has_a_backend_that_runs_it(name):
    """The backend chosen for each config on each kind of device is one whose table entry covers the recipe."""
    cfg = load_config(name)
    for device_type in ("cpu", "cuda"):
        choice = choose_backend(cfg.training.augmentation, device_type, image_size=cfg.eval.input_size)
        assert unsupported(cfg.training.augmentation, choice.backend) == []
        assert choice.backend in ("device", "uint8") or "rand_augment" in choice.reason


def test_the_plan_and_the_trainer_follow_the_choice():
    parser = argparse.ArgumentParser()
    trainer.add_arguments(parser)

    def plan(config, *argv, device_type="cpu"):
        return resolve_plan(parser.parse_args(["--config", config, *argv]), load_config(config), world_size=1,
                            device_type=device_type)

    on_cuda = plan(CIFAR.name, device_type="cuda")
    assert on_cuda.data_on_device and on_cuda.augmentation == "device"
    assert on_cuda.augmentation_reason.startswith("device_data: ")
    on_cpu = plan(RSB.name)
    assert on_cpu.augmentation == "pil"
    assert on_cpu.augmentation_reason == "PIL + timm: uint8 pipeline lacks rand_augment"
    with pytest.raises(ValueError, match="--decode torchvision: "):
        plan(RSB.name, "--decode", "torchvision")
    assert type(trainer._train_transform(plan(CIFAR.name).augmentation, CIFAR.training)).__name__ == \
        "EncodedImageTransform"
    assert type(trainer._train_transform(on_cpu.augmentation, RSB.training)).__name__ == "Compose"


def test_the_pil_backend_is_torchvisions_random_crop():
    """The PIL backend's crop is torchvision's RandomCrop with the recipe's padding, pixel for pixel."""
    op = Augmentation(type="random_crop", size=8, padding=2, pad_mode="reflect")
    image = TF.to_pil_image(_images(1, 8, 8)[0])
    with mock.patch.object(T.RandomCrop, "get_params", return_value=(1, 3, 8, 8)):
        ours = train_transform(SimpleNamespace(augmentation=[op]))(image)
    padded = pad(TF.pil_to_tensor(image)[None], 2, "reflect")[0]
    assert torch.equal(ours, padded[:, 1:9, 3:11])
