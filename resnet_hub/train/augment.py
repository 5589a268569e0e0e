"""The recipe's training augmentation: one implementation for every path the trainer runs.

``cfg.training.augmentation`` is a list of mmpretrain-style ops (:class:`~resnet_hub.zoo.configs.Augmentation`).
Each op type is one function of :data:`VOCABULARY`, ``fn(op, images, generator) -> (images, params)``,
built on ``torchvision.transforms.v2.functional`` over uint8 tensors. :class:`TrainAugmentation` runs a
recipe's ops in order, on whatever device the images are, so the same code augments one decoded image in a
DataLoader worker (the trainer's CPU path, :class:`TrainTransform`) and a whole batch held on the
accelerator (:mod:`resnet_hub.train.device_data`)::

    augment = TrainAugmentation.from_recipe(cfg.training.augmentation)
    batch = augment([decoded_image_1, decoded_image_2], generator)   # uint8 (2, 3, 224, 224)

``images`` is a uint8 ``(B, C, H, W)`` batch or a list of ``(C, H_i, W_i)`` images (files of different
sizes). Random parameters are drawn in batch from an explicit ``torch.Generator`` (``None``: torch's
default generator, which the trainer's CPU path seeds per sample) and follow torchvision's
``RandomResizedCrop``/``RandomCrop``/``RandomHorizontalFlip`` in distribution; for given parameters the
pixels are torchvision's (tests/test_augment.py). Where mmpretrain differs, the op says so:

- ``resize`` to an int is a square, as mmcv's ``Resize(scale=int)`` (torchvision's resizes the shorter edge);
- ``random_crop`` pads with a constant: mmpretrain 1.2 ignores ``padding_mode`` for ``padding`` (it applies
  it to ``pad_if_needed`` only), and every recipe pads constant, so no other mode is accepted;
- ``rand_augment`` is timm's increasing RandAugment, mmpretrain's ``timm_increasing`` policy at total level
  10, on a PIL image: CPU only, its randomness from Python's ``random`` (seeded per sample by the trainer);
- resampling is torch's antialiased resize whatever mmpretrain's ``backend`` (cv2 or pillow) says.

A new op is one function here and one line of :data:`VOCABULARY`.
"""
from __future__ import annotations

import functools
import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

__all__ = ["VOCABULARY", "DEFAULTS", "INTERPOLATIONS", "TrainAugmentation", "TrainTransform", "UnsupportedOnDevice",
           "BACKENDS", "BackendChoice", "choose_backend", "unsupported", "refuse_unsupported", "param", "pair",
           "seeded_generator", "sample_seed", "random_crop_params", "random_resized_crop_params",
           "flip_params", "DEVICE_MAX_IMAGE_SIZE"]

Images = Union[torch.Tensor, list]  # uint8 (B, C, H, W), or a list of uint8 (C, H_i, W_i)

# torch's tensor resize has these modes (the recipes use bilinear and bicubic)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
# an op's parameter when the recipe leaves it out (mmpretrain's and torchvision's defaults)
DEFAULTS = {"interpolation": "bilinear", "pad_mode": "constant", "padding": 0, "fill": 0, "prob": 0.5,
            "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3)}
# auto puts a split on the device only for images this small (CIFAR's 32 px): ImageNet would not fit
DEVICE_MAX_IMAGE_SIZE = 64


class UnsupportedOnDevice(ValueError):
    """A recipe op that runs on the CPU only (RandAugment): the trainer keeps such recipes in its workers."""


# ----------------------------------------------------------------------------- parameters


def param(op, name: str) -> Any:
    """``op``'s parameter ``name``, or its default (:data:`DEFAULTS`) when the recipe leaves it out."""
    value = getattr(op, name)
    return DEFAULTS.get(name) if value is None else value


def pair(size: Any) -> tuple[int, int]:
    """An op's ``size`` as (height, width): an int is a square, as mmcv's ``Resize(scale=int)``."""
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _interpolation(op) -> InterpolationMode:
    return InterpolationMode(param(op, "interpolation"))


# ----------------------------------------------------------------------------- randomness


def seeded_generator(device: Union[str, torch.device], *key: int) -> torch.Generator:
    """A generator on ``device`` seeded from integers, e.g. ``(seed, epoch, rank, batch)``.

    Each batch gets its own stream, so resuming at batch ``b`` needs no replay of earlier draws.
    """
    return torch.Generator(device=device).manual_seed(sample_seed(*key))


def _rand(n: int, generator: Optional[torch.Generator], device, *shape: int, dtype=torch.float64) -> torch.Tensor:
    device = generator.device if generator is not None else device
    return torch.rand((n, *shape), generator=generator, device=device, dtype=dtype)


def random_crop_params(n: int, height: int, width: int, size: tuple[int, int], generator: Optional[torch.Generator],
                       device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Top and left offsets of ``n`` crops, each uniform as in ``torchvision RandomCrop.get_params``."""
    th, tw = size
    if height < th or width < tw:
        raise ValueError(f"random_crop of {th}x{tw} from a (padded) {height}x{width} image; "
                         "add padding or a resize before it")
    device = generator.device if generator is not None else device
    top = torch.randint(0, height - th + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, width - tw + 1, (n,), generator=generator, device=device)
    return top, left


def flip_params(n: int, prob: float, generator: Optional[torch.Generator], device="cpu") -> torch.Tensor:
    """Which of ``n`` images to flip: ``rand < prob``, as ``RandomHorizontalFlip`` decides."""
    return _rand(n, generator, device, dtype=torch.float32) < prob


def random_resized_crop_params(heights: torch.Tensor, widths: torch.Tensor, scale: Sequence[float],
                               ratio: Sequence[float], generator: Optional[torch.Generator],
                               attempts: int = 10) -> tuple[torch.Tensor, ...]:
    """``(top, left, height, width)`` per image, ``torchvision RandomResizedCrop.get_params`` in batch.

    torchvision tries up to 10 (area, log-aspect) draws in turn and takes the first that fits,
    else a central crop; taking the first fitting one of 10 independent draws per image is the
    same distribution, computed without a Python loop.
    """
    dev = generator.device if generator is not None else torch.device("cpu")
    heights = heights.to(dev, torch.float64)
    widths = widths.to(dev, torch.float64)
    n = heights.numel()
    area = (heights * widths)[:, None]
    target_area = area * (scale[0] + (scale[1] - scale[0]) * _rand(n, generator, dev, attempts))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(n, generator, dev, attempts))
    w = torch.round(torch.sqrt(target_area * aspect))  # round half to even, as Python's round()
    h = torch.round(torch.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= widths[:, None]) & (h > 0) & (h <= heights[:, None])
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)

    in_ratio = widths / heights
    lo, hi = min(ratio), max(ratio)
    fallback_w = torch.where(in_ratio > hi, torch.round(heights * hi), widths)
    fallback_h = torch.where(in_ratio < lo, torch.round(widths / lo), heights)
    h = torch.where(found, h.gather(1, first)[:, 0], fallback_h)
    w = torch.where(found, w.gather(1, first)[:, 0], fallback_w)
    u_top, u_left = _rand(n, generator, dev), _rand(n, generator, dev)
    top = torch.where(found, torch.floor(u_top * (heights - h + 1)), torch.div(heights - h, 2, rounding_mode="floor"))
    left = torch.where(found, torch.floor(u_left * (widths - w + 1)), torch.div(widths - w, 2, rounding_mode="floor"))
    return top.long(), left.long(), h.long(), w.long()


# ----------------------------------------------------------------------------- the ops


def _device(images: Images) -> torch.device:
    return images.device if isinstance(images, torch.Tensor) else images[0].device


def _resize_one(image: torch.Tensor, size: list, mode: InterpolationMode) -> torch.Tensor:
    # torch's antialiased uint8 resize is vectorized for channels_last memory
    return F.resize(image[None].contiguous(memory_format=torch.channels_last), size, mode, antialias=True)[0]


def random_resized_crop(op, images: Images, generator) -> tuple[Images, dict]:
    """torchvision's RandomResizedCrop: each image its own crop, resized (antialiased) to ``op.size``."""
    if isinstance(images, torch.Tensor):
        images = list(images)
    heights = torch.tensor([im.shape[-2] for im in images])
    widths = torch.tensor([im.shape[-1] for im in images])
    top, left, h, w = random_resized_crop_params(heights, widths, param(op, "scale"), param(op, "ratio"), generator)
    size, mode = list(pair(op.size)), _interpolation(op)
    out = [_resize_one(im[:, t:t + hh, le:le + ww], size, mode)
           for im, t, le, hh, ww in zip(images, top.tolist(), left.tolist(), h.tolist(), w.tolist(), strict=True)]
    return out, {"top": top, "left": left, "height": h, "width": w}


def resize(op, images: Images, generator) -> tuple[Images, dict]:
    """Resize to ``op.size`` (antialiased); an int is a square, as mmcv's ``Resize(scale=int)``."""
    size, mode = list(pair(op.size)), _interpolation(op)
    if isinstance(images, torch.Tensor):
        return F.resize(images, size, mode, antialias=True), {}
    return [_resize_one(im, size, mode) for im in images], {}


def _pad(images: torch.Tensor, padding: int, fill) -> torch.Tensor:
    if not padding:
        return images
    return F.pad(images, [padding], fill=list(fill) if isinstance(fill, (list, tuple)) else fill)


def random_crop(op, images: Images, generator) -> tuple[Images, dict]:
    """torchvision's RandomCrop with constant padding (``fill``: a value or one per channel)."""
    padding, fill = param(op, "padding"), param(op, "fill")
    (th, tw) = size = pair(op.size)
    if isinstance(images, list) and len({tuple(im.shape) for im in images}) == 1:
        images = torch.stack(images)
    if isinstance(images, list):  # sizes differ: each image its own uniform offsets
        padded = [_pad(im, padding, fill) for im in images]
        hs = torch.tensor([im.shape[-2] for im in padded], device=_device(images))
        ws = torch.tensor([im.shape[-1] for im in padded], device=_device(images))
        if (hs < th).any() or (ws < tw).any():
            raise ValueError(f"random_crop of {th}x{tw} from a smaller (padded) image; add a resize before it")
        top = torch.floor(_rand(len(images), generator, hs.device) * (hs - th + 1)).long()
        left = torch.floor(_rand(len(images), generator, hs.device) * (ws - tw + 1)).long()
        return [im[:, t:t + th, le:le + tw] for im, t, le in zip(padded, top.tolist(), left.tolist(), strict=True)], \
            {"top": top, "left": left}
    images = _pad(images, padding, fill)
    n, _, height, width = images.shape
    top, left = random_crop_params(n, height, width, size, generator, images.device)
    rows = top.to(images.device)[:, None] + torch.arange(th, device=images.device)
    cols = left.to(images.device)[:, None] + torch.arange(tw, device=images.device)
    batch = torch.arange(n, device=images.device)[:, None, None]
    crops = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return crops, {"top": top, "left": left}  # one gather for the batch, channels_last


def horizontal_flip(op, images: Images, generator) -> tuple[Images, dict]:
    """torchvision's RandomHorizontalFlip: each image flipped with probability ``op.prob``."""
    n = len(images)
    flip = flip_params(n, param(op, "prob"), generator, _device(images))
    if isinstance(images, list):
        return [F.horizontal_flip(im) if f else im for im, f in zip(images, flip.tolist(), strict=True)], {"flip": flip}
    flip = flip.to(images.device)
    return torch.where(flip[:, None, None, None], F.horizontal_flip(images), images), {"flip": flip}


@functools.lru_cache(maxsize=8)
def _timm_rand_augment(op):
    from timm.data import rand_augment_transform
    from timm.data.transforms import str_to_pil_interp

    fill = tuple(op.fill) if isinstance(op.fill, (list, tuple)) else (param(op, "fill"),) * 3
    config = f"rand-m{op.magnitude_level:g}-n{op.num_policies}-mstd{op.magnitude_std:g}-inc1"
    interpolation = str_to_pil_interp(param(op, "interpolation"))
    return rand_augment_transform(config, dict(img_mean=fill, interpolation=interpolation))


def rand_augment(op, images: Images, generator) -> tuple[Images, dict]:
    """timm's increasing RandAugment (mmpretrain's ``timm_increasing``) on each image, through PIL."""
    transform = _timm_rand_augment(op)
    return [F.pil_to_tensor(transform(F.to_pil_image(im.cpu()))) for im in images], {}


class Op(NamedTuple):
    """A vocabulary entry: the function, whether it runs on any device, and the parameter values it implements."""
    fn: Callable
    on_device: bool
    values: dict


_RESAMPLING = {"interpolation": INTERPOLATIONS}
# op type -> its implementation; the one table the trainer, the device path and the tests read
VOCABULARY: dict[str, Op] = {
    "random_resized_crop": Op(random_resized_crop, True, _RESAMPLING),
    "resize": Op(resize, True, _RESAMPLING),
    "random_crop": Op(random_crop, True, {"pad_mode": ("constant",)}),
    "horizontal_flip": Op(horizontal_flip, True, {}),
    "rand_augment": Op(rand_augment, False, {"policies": ("timm_increasing",), "total_level": (10,),
                                             "interpolation": INTERPOLATIONS}),
}


# ----------------------------------------------------------------------------- what runs where


def unsupported(ops: Sequence, on_device: bool = False) -> list[str]:
    """What of ``ops`` the vocabulary lacks (on the device, with ``on_device``), in words:
    ``["rand_augment", "random_crop pad_mode 'edge'"]``."""
    lacks = []
    for op in ops:
        entry = VOCABULARY.get(op.type)
        if entry is None:
            lacks.append(f"unknown op {op.type!r}")
            continue
        if on_device and not entry.on_device:
            lacks.append(op.type)
        lacks += [f"{op.type} {name} {param(op, name)!r}" for name, allowed in entry.values.items()
                  if param(op, name) not in allowed]
    return list(dict.fromkeys(lacks))


def refuse_unsupported(ops: Sequence, on_device: bool = False) -> None:
    """Raise ValueError (:class:`UnsupportedOnDevice` for a CPU-only op) naming what of ``ops`` cannot run."""
    lacks = unsupported(ops, on_device)
    if lacks:
        cpu_only = not unsupported(ops)
        where = "on the device" if on_device else "in resnet_hub"
        error = UnsupportedOnDevice if cpu_only else ValueError
        ops_here = [t for t, e in VOCABULARY.items() if e.on_device or not on_device]
        raise error(f"augmentation {where} does not implement {', '.join(lacks)} (it does: {', '.join(ops_here)})")


@dataclass(frozen=True)
class TrainAugmentation:
    """A recipe's augmentation ops, run in order on a uint8 batch or list of images on any device.

    ``aug(images, generator)`` returns the augmented uint8 ``(B, C, S, S)`` batch (channels_last);
    ``return_params=True`` also returns each op's drawn parameters; ``stack=False`` leaves a list of images
    unstacked, for a collate function that stacks anyway.
    """

    ops: tuple

    @classmethod
    def from_recipe(cls, ops: Sequence, on_device: bool = False) -> TrainAugmentation:
        """From ``cfg.training.augmentation``; ValueError (:class:`UnsupportedOnDevice`) names what cannot run."""
        refuse_unsupported(ops, on_device)
        return cls(tuple(ops))

    def split_leading_resize(self) -> tuple[TrainAugmentation, TrainAugmentation]:
        """``(resize ops at the start, the rest)``: deterministic resizes can be done once at load."""
        k = 0
        while k < len(self.ops) and self.ops[k].type == "resize":
            k += 1
        return TrainAugmentation(self.ops[:k]), TrainAugmentation(self.ops[k:])

    def __call__(self, images: Images, generator: Optional[torch.Generator] = None, return_params: bool = False,
                 stack: bool = True):
        params = []
        for op in self.ops:
            images, p = VOCABULARY[op.type].fn(op, images, generator)
            params.append(p)
        if isinstance(images, list):
            if len({tuple(im.shape) for im in images}) > 1:
                raise ValueError("images of different sizes and no crop or resize to one size in the augmentation")
            if stack:
                images = torch.stack(images).contiguous(memory_format=torch.channels_last)
        return (images, params) if return_params else images


def sample_seed(*key: int) -> int:
    """A 63-bit seed from integers, e.g. ``(seed, epoch, slot)``: one sample's augmentation stream."""
    digest = hashlib.blake2b(",".join(str(int(k)) for k in key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class _GlobalRngs:
    """Python's and NumPy's global RNGs seeded for one sample, restored afterwards: timm's RandAugment draws
    from them, and a DataLoader without workers shares them with the training step (timm's Mixup)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.state = random.getstate(), np.random.get_state()
        random.seed(self.seed)
        np.random.seed(self.seed & 0xFFFFFFFF)

    def __exit__(self, *exc):
        random.setstate(self.state[0])
        np.random.set_state(self.state[1])


class TrainTransform:
    """The trainer's transform in DataLoader workers: decoded RGB images (uint8 ``(H, W, 3)`` arrays or PIL
    images) -> an augmented uint8 batch.

    ``batch(images, seed)`` augments a batch's images together (:class:`TrainAugmentation` on the list), its
    draws a function of ``seed`` (the batch's place in the epoch) whatever the worker; ``transform(image)``
    is one image, drawn from torch's default generator.
    """

    def __init__(self, ops: Sequence):
        self.augmentation = TrainAugmentation.from_recipe(ops)
        # RandAugment draws from Python's and NumPy's global RNGs; the other ops from the generator given
        self._global_rngs = any(not VOCABULARY[op.type].on_device for op in self.augmentation.ops)
        self._generator = torch.Generator()

    def batch(self, images: Sequence, seed: Optional[int] = None, stack: bool = True) -> Images:
        """The images augmented together; ``stack=False``: a list (or batch) for a collate function to stack."""
        # HWC memory is channels_last as it comes, which torch's uint8 resize is fastest on
        tensors = [torch.from_numpy(np.asarray(image) if isinstance(image, np.ndarray) else np.array(image))
                   .permute(2, 0, 1) for image in images]
        generator = None if seed is None else self._generator.manual_seed(seed)
        if seed is None or not self._global_rngs:
            return self.augmentation(tensors, generator, stack=stack)
        with _GlobalRngs(seed):
            return self.augmentation(tensors, generator, stack=stack)

    def __call__(self, image) -> torch.Tensor:
        return self.batch([image])[0]


# ----------------------------------------------------------------------------- where it runs


BACKENDS = {"workers": "DataLoader workers", "device": "on the device"}


@dataclass(frozen=True)
class BackendChoice:
    """Where a recipe's augmentation runs, and why, in one line."""
    backend: str  # a key of BACKENDS
    reason: str

    def __str__(self) -> str:
        return f"{BACKENDS[self.backend]}: {self.reason}"


def choose_backend(ops: Sequence, device_type: str, *, on_device: str = "auto", streaming: bool = False,
                   image_size: Optional[int] = None) -> BackendChoice:
    """Where ``ops`` (a recipe's ``training.augmentation``) run on a ``device_type`` device.

    ``on_device`` (the trainer's ``--data-on-device``): ``auto`` holds the split on a CUDA device for
    images of at most :data:`DEVICE_MAX_IMAGE_SIZE` px when every op runs there; ``on`` insists; ``off``
    never. Otherwise DataLoader workers decode (PIL) and augment each image. What cannot be done as asked
    raises ValueError saying why.
    """
    refuse_unsupported(ops)
    if on_device != "off":
        device_lacks = unsupported(ops, on_device=True)
        why_not = ("a streaming dataset is never all in memory" if streaming
                   else f"{', '.join(device_lacks)} runs on the CPU only" if device_lacks else None)
        if on_device == "on":
            if why_not:
                raise ValueError(f"--data-on-device on: {why_not}")
            return BackendChoice("device", "every op runs there; --data-on-device on")
        if why_not is None and device_type == "cuda" and image_size is not None and image_size <= DEVICE_MAX_IMAGE_SIZE:
            return BackendChoice("device", f"every op runs there; {image_size} px images held on the cuda device")
    return BackendChoice("workers", "decoded (simplejpeg, PIL) and augmented as uint8 tensors, a batch at a time")
