"""resnet_hub.train.augment: one implementation of the recipe ops, proven against torchvision, timm and mmpretrain."""
from __future__ import annotations

import argparse
import random
import re
import typing
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import requires_mmpretrain
from PIL import Image
from torchvision.transforms.v2 import functional as F

from resnet_hub import list_configs, load_config
from resnet_hub.train import trainer
from resnet_hub.train.augment import (
    VOCABULARY,
    TrainAugmentation,
    TrainTransform,
    UnsupportedOnDevice,
    choose_backend,
    seeded_generator,
    unsupported,
)
from resnet_hub.train.hyperparams import resize_recipe
from resnet_hub.train.plan import resolve_plan
from resnet_hub.zoo.configs import Augmentation

CIFAR = load_config("resnet18_8xb16_cifar10")
IN1K = load_config("resnet50_8xb32_in1k")
RSB = load_config("resnet50_8xb256-rsb-a1-600e_in1k")
CUB = load_config("resnet50_8xb8_cub")
# one op of each type, with the parameters its type needs
EXAMPLE = {
    "random_resized_crop": dict(size=8, scale=(0.3, 1.0), ratio=(0.75, 4 / 3)),
    "resize": dict(size=(10, 12)),
    "random_crop": dict(size=8, padding=2, fill=(124, 116, 104)),
    "horizontal_flip": dict(prob=0.5),
    "rand_augment": dict(policies="timm_increasing", num_policies=2, total_level=10, magnitude_level=7,
                         magnitude_std=0.5, fill=(124, 116, 104), interpolation="bicubic"),
}
SIZE = {"random_resized_crop": (8, 8), "resize": (10, 12), "random_crop": (8, 8)}


def _images(n: int, h: int = 11, w: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _photo(h: int, w: int, seed: int) -> torch.Tensor:
    """Photo-like content (smooth gradients + noise), so resampling differences are those of photos."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    return ((img + 0.03 * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1) * 255).round().to(torch.uint8)[0]


# ----------------------------------------------------------------------------- the vocabulary


def test_the_vocabulary_names_every_op_of_the_schema():
    ops = typing.get_args(typing.get_type_hints(Augmentation)["type"])
    assert set(VOCABULARY) == set(ops) == set(EXAMPLE)
    assert [t for t, entry in VOCABULARY.items() if not entry.on_device] == ["rand_augment"]


def _op_cases():
    for op_type, entry in VOCABULARY.items():
        for as_list in (True, False):
            for on_device in (False, True) if entry.on_device else (False,):
                yield pytest.param(op_type, as_list, on_device,
                                   id=f"{op_type}-{'list' if as_list else 'batch'}{'-device' if on_device else ''}")


@pytest.mark.parametrize("op_type, as_list, on_device", list(_op_cases()))
def test_every_op_runs_on_a_list_and_on_a_batch(op_type, as_list, on_device):
    op = Augmentation(type=op_type, **EXAMPLE[op_type])
    images = _images(3)
    augment = TrainAugmentation.from_recipe([op], on_device=on_device)
    out = augment(list(images) if as_list else images, seeded_generator("cpu", 1))
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, 3, *SIZE.get(op_type, (11, 13)))


@pytest.mark.parametrize("op, on_device, lacks", [
    (Augmentation(type="random_crop", size=8, padding=2, pad_mode="edge"), False, "random_crop pad_mode 'edge'"),
    (Augmentation(type="resize", size=8, interpolation="lanczos"), False, "resize interpolation 'lanczos'"),
    (Augmentation(**dict(EXAMPLE["rand_augment"], type="rand_augment", total_level=30)), False,
     "rand_augment total_level 30"),
    (Augmentation(type="rand_augment", **EXAMPLE["rand_augment"]), True, "rand_augment"),
])
def test_what_the_vocabulary_lacks_is_refused_by_name(op, on_device, lacks):
    assert unsupported([op], on_device) == [lacks]
    error = UnsupportedOnDevice if lacks == "rand_augment" else ValueError
    with pytest.raises(error, match=re.escape(f"does not implement {lacks} (it does: ")):
        TrainAugmentation.from_recipe([op], on_device=on_device)


def test_an_int_resize_is_a_square_and_crop_sizes_follow_the_plan():
    op = Augmentation(type="resize", size=9)  # mmcv's Resize(scale=9): 9 x 9, not torchvision's shorter edge
    assert TrainAugmentation((op,))(_images(2, 12, 20)).shape == (2, 3, 9, 9)
    ops = resize_recipe(IN1K, 160).training.augmentation  # --img-size 160
    assert TrainAugmentation.from_recipe(ops)([_photo(90, 120, 0)]).shape == (1, 3, 160, 160)


def test_random_crop_of_images_of_different_sizes_draws_each_its_own_window():
    op = Augmentation(type="random_crop", size=8, padding=1)
    images = [_images(1, 9 + i, 10, seed=i)[0] for i in range(4)]
    out, (crop,) = TrainAugmentation((op,))(images, seeded_generator("cpu", 2), return_params=True)
    for i, image in enumerate(images):
        padded = torch.nn.functional.pad(image, (1,) * 4)
        t, left = int(crop["top"][i]), int(crop["left"][i])
        assert torch.equal(out[i], padded[:, t:t + 8, left:left + 8])


# ----------------------------------------------------------------------------- against mmpretrain


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("name", [n for n in list_configs()
                                  if any(a.type == "random_crop" and a.padding for a in
                                         load_config(n).training.augmentation)])
def test_recipe_random_crop_and_flip_pixels_equal_mmpretrains(name):
    """A recipe's padded random_crop + flip equals mmpretrain's RandomCrop + RandomFlip at the same draws, bit
    for bit. (mmpretrain 1.2 pads ``padding`` with a constant whatever its padding_mode, which it applies to
    pad_if_needed only; every recipe pads constant.)"""
    from mmpretrain.datasets.transforms import RandomCrop, RandomFlip

    ops = load_config(name).training.augmentation
    crop_op = next(a for a in ops if a.type == "random_crop")
    images = _images(6, crop_op.size, crop_op.size, seed=2)
    out, params = TrainAugmentation.from_recipe(ops)(images, seeded_generator("cpu", 3), return_params=True)
    crop, flip = params[[a.type for a in ops].index("random_crop")], params[-1]
    theirs = RandomCrop(crop_size=crop_op.size, padding=crop_op.padding, pad_val=crop_op.fill,
                        padding_mode=crop_op.pad_mode)
    for i in range(6):
        at = (int(crop["top"][i]), int(crop["left"][i]), crop_op.size, crop_op.size)
        with mock.patch.object(RandomCrop, "rand_crop_params", return_value=at):
            ref = theirs.transform({"img": images[i].permute(1, 2, 0).numpy()})
        ref = RandomFlip(prob=float(flip["flip"][i]), direction="horizontal").transform(ref)["img"]
        assert np.array_equal(out[i].permute(1, 2, 0).numpy(), ref), i
    assert flip["flip"].any() and not flip["flip"].all()


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_random_resized_crop_pixels_are_mmpretrains_within_resampling_rounding(interpolation):
    """RandomResizedCrop at the same crop as mmpretrain's with ``backend='pillow'`` (the ImageNet recipes):
    PIL's resampling filter and torch's antialiased one differ by rounding. Measured on an AMD EPYC
    (AVX2): mean |difference| 0.041 (bilinear) and 0.0045 (bicubic) grey levels, at most 1 level."""
    from mmpretrain.datasets.transforms import RandomResizedCrop

    op = Augmentation(type="random_resized_crop", size=48, scale=(0.08, 1.0), ratio=(0.75, 4 / 3),
                      interpolation=interpolation)
    images = [_photo(60 + 9 * i, 90 - 7 * i, seed=i) for i in range(6)]
    out, (rrc,) = TrainAugmentation((op,))(images, seeded_generator("cpu", 4), return_params=True)
    theirs = RandomResizedCrop(48, interpolation=interpolation, backend="pillow")
    worst_mean, worst_max = 0.0, 0
    for i, image in enumerate(images):
        at = tuple(int(rrc[k][i]) for k in ("top", "left", "height", "width"))
        with mock.patch.object(RandomResizedCrop, "rand_crop_params", return_value=at):
            ref = theirs.transform({"img": image.permute(1, 2, 0).numpy()})["img"]
        diff = np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - ref)
        worst_mean, worst_max = max(worst_mean, diff.mean()), max(worst_max, int(diff.max()))
    assert worst_mean < 0.2 and worst_max <= 2, (worst_mean, worst_max)


@requires_mmpretrain
@pytest.mark.mmpretrain
def test_cub_resize_is_mmpretrains_within_resampling_rounding():
    """CUB's resize to 600x600 (cv2 bilinear in mmpretrain; upsampling, where antialiasing does nothing):
    measured mean |difference| 0.22-0.29 grey levels, at most 1 level, on an AMD EPYC (AVX2)."""
    from mmpretrain.datasets.transforms import Resize

    op = CUB.training.augmentation[0]
    assert op.type == "resize"
    images = [_photo(400 + 13 * i, 500 - 11 * i, seed=i) for i in range(3)]
    out = TrainAugmentation((op,))(images)
    for i, image in enumerate(images):
        ref = Resize(scale=tuple(op.size[::-1]), interpolation=op.interpolation, backend=op.backend).transform(
            {"img": image.permute(1, 2, 0).numpy()})["img"]
        diff = np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - ref)
        assert diff.mean() < 0.4 and diff.max() <= 2, (diff.mean(), diff.max())


def test_rand_augment_is_timms_on_the_same_draws():
    """The rand_augment op is timm's increasing RandAugment (mmpretrain's timm_increasing) on the PIL image,
    exactly, drawn from Python's and NumPy's RNGs as timm's own transform is."""
    from timm.data import rand_augment_transform

    op = RSB.training.augmentation[-1]
    assert op.type == "rand_augment"
    images = [_photo(40, 50, seed=i) for i in range(4)]
    theirs = rand_augment_transform("rand-m7-n2-mstd0.5-inc1", dict(img_mean=(124, 116, 104),
                                                                  interpolation=Image.BICUBIC))
    for seed in range(3):
        random.seed(seed), np.random.seed(seed)
        ours = TrainAugmentation.from_recipe([op])(images)
        random.seed(seed), np.random.seed(seed)
        ref = [F.pil_to_tensor(theirs(F.to_pil_image(im))) for im in images]
        assert all(torch.equal(a, b) for a, b in zip(ours, ref, strict=True))


# ----------------------------------------------------------------------------- the trainer's transform


@pytest.mark.parametrize("name", list_configs())
def test_every_recipe_runs_in_the_workers_and_where_it_can_on_the_device(name):
    cfg = load_config(name)
    size = cfg.eval.input_size
    photo = _photo(size + 10, size + 30, seed=1)
    if name == CUB.name:
        photo = _photo(300, 400, seed=1)
    transform = TrainTransform(cfg.training.augmentation)
    seeded = transform.batch([photo.permute(1, 2, 0).numpy()] * 2, seed=5)
    assert seeded.dtype == torch.uint8 and seeded.shape == (2, 3, size, size)
    assert torch.equal(seeded, transform.batch([photo.permute(1, 2, 0).numpy()] * 2, seed=5))
    if any(a.type == "rand_augment" for a in cfg.training.augmentation):
        with pytest.raises(UnsupportedOnDevice, match="rand_augment"):
            TrainAugmentation.from_recipe(cfg.training.augmentation, on_device=True)
    else:
        out = TrainAugmentation.from_recipe(cfg.training.augmentation, on_device=True)([photo] * 2)
        assert out.shape == (2, 3, size, size)


def test_the_seeded_transform_leaves_the_global_generators_alone():
    """With workers=0 the transform runs in the training process, whose global RNGs timm's Mixup draws from."""
    for cfg in (CIFAR, RSB):
        transform = TrainTransform(cfg.training.augmentation)
        states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
        transform.batch([_photo(240, 250, seed=0).permute(1, 2, 0).numpy()], seed=3)
        assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
        assert np.array_equal(np.random.get_state()[1], states[2])


# ----------------------------------------------------------------------------- where it runs


def test_choose_backend_says_why_in_one_line():
    cifar, rsb = CIFAR.training.augmentation, RSB.training.augmentation
    assert str(choose_backend(cifar, "cpu")) == ("DataLoader workers: decoded (simplejpeg, PIL) and augmented as uint8 "
                                                 "tensors, a batch at a time")
    assert str(choose_backend(cifar, "cuda", image_size=32)).startswith("on the device: every op runs there; 32 px")
    assert choose_backend(cifar, "cuda", image_size=32, on_device="off").backend == "workers"
    assert choose_backend(IN1K.training.augmentation, "cuda", image_size=224).backend == "workers"
    assert choose_backend(cifar, "cuda", image_size=32, streaming=True).backend == "workers"
    assert choose_backend(cifar, "cpu", on_device="on").backend == "device"
    assert choose_backend(rsb, "cuda", image_size=32).backend == "workers"
    with pytest.raises(ValueError, match="^--data-on-device on: rand_augment runs on the CPU only$"):
        choose_backend(rsb, "cuda", on_device="on")
    with pytest.raises(ValueError, match="^--data-on-device on: a streaming dataset"):
        choose_backend(cifar, "cuda", on_device="on", streaming=True)
    with pytest.raises(ValueError, match="does not implement random_crop pad_mode 'edge'"):
        choose_backend([Augmentation(type="random_crop", size=8, padding=2, pad_mode="edge")], "cpu")


def test_the_plan_and_the_trainer_follow_the_choice():
    parser = argparse.ArgumentParser()
    trainer.add_arguments(parser)

    def plan(config, *argv, device_type="cpu"):
        return resolve_plan(parser.parse_args(["--config", config, *argv]), load_config(config), world_size=1,
                            device_type=device_type)

    on_cuda = plan(CIFAR.name, device_type="cuda")
    assert on_cuda.data_on_device and on_cuda.augmentation == "device"
    assert on_cuda.augmentation_reason.startswith("on the device: ")
    assert plan(RSB.name).augmentation == "workers"
    assert plan(IN1K.name, "--img-size", "160").recipe.training.augmentation[0].size == 160  # what train_batches runs
