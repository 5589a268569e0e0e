"""The recipe's augmentation vocabulary, which backend implements which op, and the choice between them.

``cfg.training.augmentation`` is a list of mmpretrain-style ops (:class:`~resnet_hub.zoo.configs.Augmentation`).
Three backends run them:

- ``"pil"``: PIL images through timm's and torchvision's transforms (:func:`resnet_hub.train.recipe.train_transform`);
- ``"uint8"``: torchvision decode and uint8 tensor ops in DataLoader workers
  (:class:`resnet_hub.train.pipeline.TrainTransform`);
- ``"device"``: the whole split held on the accelerator, augmented there in batch
  (:class:`resnet_hub.train.device_data.DeviceAugmentation`).

What an op's parameters mean (defaults, sizes, interpolation names, padding) is said once here,
and :data:`SUPPORT` says which backend implements which op and which parameter values; each
backend refuses what the table says it lacks, and :func:`choose_backend` picks one for a run::

    choice = choose_backend(cfg.training.augmentation, "cuda", image_size=cfg.eval.input_size)
    print(choice)   # "device_data: all ops supported; 32 px images held on the cuda device"

mmpretrain's ``backend`` field (cv2 or pillow resampling) is not a choice here: every backend
resamples with its own library (PIL, or torch's antialiased tensor resize).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

__all__ = ["BACKENDS", "SUPPORT", "DEFAULTS", "TENSOR_INTERPOLATIONS", "PIL_INTERPOLATIONS", "PAD_MODES",
           "BackendChoice", "choose_backend", "unsupported", "refuse_unsupported", "supported_ops", "param",
           "pair", "interpolation_mode", "pad", "DEVICE_MAX_IMAGE_SIZE"]

BACKENDS = {"pil": "PIL + timm", "uint8": "uint8 pipeline", "device": "device_data"}
# torch's tensor resize has these modes; PIL adds its own filters
TENSOR_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
PIL_INTERPOLATIONS = TENSOR_INTERPOLATIONS + ("box", "hamming", "lanczos")
# mmpretrain's RandomCrop padding_mode (mmcv.impad): edge repeats the border pixel, reflect mirrors
# without repeating it (numpy's "reflect", cv2's BORDER_REFLECT_101), symmetric mirrors with it
PAD_MODES = ("constant", "edge", "reflect", "symmetric")
# an op's parameter when the recipe leaves it out (mmpretrain's and torchvision's defaults)
DEFAULTS = {"interpolation": "bilinear", "pad_mode": "constant", "padding": 0, "fill": 0, "prob": 0.5,
            "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3)}

_RESAMPLING = {"pil": {"interpolation": PIL_INTERPOLATIONS}, "uint8": {"interpolation": TENSOR_INTERPOLATIONS},
               "device": {"interpolation": TENSOR_INTERPOLATIONS}}
# op -> backend -> {parameter: the values that backend implements}; an absent backend lacks the op
SUPPORT: dict[str, dict[str, dict[str, tuple]]] = {
    "random_resized_crop": _RESAMPLING,
    "resize": _RESAMPLING,
    "random_crop": {"pil": {"pad_mode": PAD_MODES}, "uint8": {"pad_mode": PAD_MODES},
                    "device": {"pad_mode": PAD_MODES}},
    "horizontal_flip": {"pil": {}, "uint8": {}, "device": {}},
    # timm's increasing RandAugment is mmpretrain's timm_increasing policy at total level 10; PIL only, and
    # its rotate/shear (PIL's affine transform) take only the three filters tensors have too
    "rand_augment": {"pil": {"policies": ("timm_increasing",), "total_level": (10,),
                             "interpolation": TENSOR_INTERPOLATIONS}},
}
# auto puts a split on the device only for images this small (CIFAR's 32 px): ImageNet would not fit
DEVICE_MAX_IMAGE_SIZE = 64


# ----------------------------------------------------------------------------- parameters


def param(op, name: str) -> Any:
    """``op``'s parameter ``name``, or its default (:data:`DEFAULTS`) when the recipe leaves it out."""
    value = getattr(op, name)
    return DEFAULTS.get(name) if value is None else value


def pair(size: Any) -> tuple[int, int]:
    """An op's ``size`` as (height, width): an int is a square, as mmcv's ``Resize(scale=int)``."""
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def interpolation_mode(op):
    """torchvision's ``InterpolationMode`` for ``op``'s interpolation (default bilinear)."""
    from torchvision.transforms import InterpolationMode

    name = param(op, "interpolation")
    if name not in PIL_INTERPOLATIONS:
        raise ValueError(f"{op.type} interpolation {name!r}: choose one of {', '.join(PIL_INTERPOLATIONS)}")
    return InterpolationMode(name)


def _pad_index(n: int, p: int, mode: str, device) -> torch.Tensor:
    """Source index of each of ``n + 2p`` padded positions (numpy.pad's edge/reflect/symmetric)."""
    i = torch.arange(-p, n + p, device=device)
    if mode == "edge" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect":
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i > n - 1, period - i, i)
    if mode == "symmetric":
        i = i.remainder(2 * n)
        return torch.where(i > n - 1, 2 * n - 1 - i, i)
    raise ValueError(f"random_crop pad_mode {mode!r}: choose one of {', '.join(PAD_MODES)}")


def pad(images: torch.Tensor, padding: int, mode: str = "constant", fill: Any = 0) -> torch.Tensor:
    """``images`` (..., H, W) padded by ``padding`` on each side: ``fill`` (a value or one per channel)
    for constant, else the border pixels repeated or mirrored (see :data:`PAD_MODES`).

    Border modes copy source pixels by index, so any dtype (uint8 included) and device give exactly
    the pixels of torchvision's ``pad`` on a PIL image and of mmcv's ``impad``.
    """
    if not padding:
        return images
    h, w = images.shape[-2:]
    if mode != "constant":
        rows = _pad_index(h, padding, mode, images.device)
        cols = _pad_index(w, padding, mode, images.device)
        return images.index_select(-2, rows).index_select(-1, cols)
    channels_last = images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last)
    out = torch.empty((*images.shape[:-2], h + 2 * padding, w + 2 * padding), dtype=images.dtype,
                      device=images.device,
                      memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    value = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    out[:] = value.reshape(-1, 1, 1) if value.ndim else value
    out[..., padding:padding + h, padding:padding + w] = images
    return out


# ----------------------------------------------------------------------------- the support table


def supported_ops(backend: str) -> tuple[str, ...]:
    """The op types ``backend`` implements, in :data:`SUPPORT` order."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown augmentation backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return tuple(op for op, backends in SUPPORT.items() if backend in backends)


def unsupported(ops: Sequence, backend: str) -> list[str]:
    """What of ``ops`` ``backend`` lacks, in words (``["rand_augment", "random_crop pad_mode 'wrap'"]``)."""
    supported_ops(backend)  # a known backend
    lacks = []
    for op in ops:
        if op.type not in SUPPORT:
            lacks.append(f"unknown op {op.type!r}")
            continue
        values = SUPPORT[op.type].get(backend)
        if values is None:
            lacks.append(op.type)
            continue
        lacks += [f"{op.type} {name} {param(op, name)!r}" for name, allowed in values.items()
                  if param(op, name) not in allowed]
    return list(dict.fromkeys(lacks))


def refuse_unsupported(ops: Sequence, backend: str, error: type = ValueError) -> None:
    """Raise ``error`` naming what of ``ops`` ``backend`` lacks, and what it does implement."""
    lacks = unsupported(ops, backend)
    if lacks:
        raise error(f"{BACKENDS[backend]} does not implement {', '.join(lacks)} "
                    f"(it does: {', '.join(supported_ops(backend))})")


# ----------------------------------------------------------------------------- the choice


@dataclass(frozen=True)
class BackendChoice:
    """The backend that runs a recipe's augmentation, and why, in one line."""
    backend: str  # a key of BACKENDS
    reason: str

    def __str__(self) -> str:
        return f"{BACKENDS[self.backend]}: {self.reason}"


def choose_backend(ops: Sequence, device_type: str, *, decode: str = "auto", on_device: str = "auto",
                   streaming: bool = False, image_size: Optional[int] = None) -> BackendChoice:
    """The backend for ``ops`` (a recipe's ``training.augmentation``) on a ``device_type`` device.

    ``on_device`` (the trainer's ``--data-on-device``): ``auto`` holds the split on a CUDA device for
    images of at most :data:`DEVICE_MAX_IMAGE_SIZE` px when device_data implements every op; ``on``
    insists; ``off`` never. Otherwise ``decode`` (``--decode``): ``auto`` takes the uint8 pipeline
    where it implements every op, else PIL + timm; ``torchvision`` insists on the uint8 pipeline;
    ``pil`` takes PIL + timm. What cannot be done as asked raises ValueError saying why.
    """
    if on_device != "off":
        device_lacks = unsupported(ops, "device")
        why_not = ("a streaming dataset is never all in memory" if streaming
                   else f"device_data lacks {', '.join(device_lacks)}" if device_lacks else None)
        if on_device == "on":
            if why_not:
                raise ValueError(f"--data-on-device on: {why_not}")
            return BackendChoice("device", "all ops supported; --data-on-device on")
        if why_not is None and device_type == "cuda" and image_size is not None and image_size <= DEVICE_MAX_IMAGE_SIZE:
            return BackendChoice("device", f"all ops supported; {image_size} px images held on the cuda device")
    if decode == "pil":
        return BackendChoice("pil", "--decode pil")
    lacks = unsupported(ops, "uint8")
    if not lacks:
        return BackendChoice("uint8", "all ops supported")
    if decode == "torchvision":
        raise ValueError(f"--decode torchvision: the uint8 pipeline lacks {', '.join(lacks)}")
    if unsupported(ops, "pil"):
        raise ValueError(f"no augmentation backend implements this recipe: the uint8 pipeline lacks "
                         f"{', '.join(lacks)}; PIL + timm lacks {', '.join(unsupported(ops, 'pil'))}")
    return BackendChoice("pil", f"uint8 pipeline lacks {', '.join(lacks)}")
