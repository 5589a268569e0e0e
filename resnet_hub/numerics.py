"""Two facts that training and inference share: how a uint8 batch becomes the model's input, and
whether a device runs bf16 natively.

They live here, not in ``resnet_hub.train``, so that ``import resnet_hub`` (inference) never loads
the trainer's modules; ``resnet_hub.train.plan`` re-exports ``native_bf16``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["normalize", "native_bf16"]

# CPU features that run bf16 matrix math in hardware, as torch.cpu.get_capabilities() names them. Without
# them oneDNN and ATen emulate bf16 (converting to fp32 around each op): correct, but slower than fp32
# (measured 5x slower for ResNet-18 on an AVX2-only AMD EPYC).
_NATIVE_BF16_CPU = ("amx_bf16", "avx512_bf16", "sve_bf16", "bf16")


def normalize(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32,
              channels_last: bool = True) -> torch.Tensor:
    """uint8 (B, C, H, W) -> ``(x / 255 - mean) / std`` in ``dtype``, on the batch's device.

    Op for op torchvision's ``ToTensor`` + ``Normalize`` (bit-equal in float32); ``mean``/``std``
    on a 0-1 scale (as in hub_configs and timm's pretrained cfgs). The one normalization of the
    package: the trainer, the device-resident loader, inference and the benchmarks all call it.
    """
    if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] != len(mean):
        raise ValueError(f"expected a uint8 batch (B, {len(mean)}, H, W), got {batch.dtype} {tuple(batch.shape)}")
    m = torch.as_tensor(mean, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
    out = batch.to(torch.float32).div_(255).sub_(m).div_(s)
    return out.to(dtype=dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def native_bf16(device) -> Optional[str]:
    """What makes ``device`` (a torch device or its type) run bf16 natively, in words, or None if it
    would emulate it: a CPU feature (``avx512_bf16``, ``amx_bf16``; ``bf16`` on ARM) or a CUDA GPU's
    bf16 support (compute capability 8.0 and up, not counting emulation)."""
    device_type = getattr(device, "type", None) or torch.device(device).type
    if device_type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            major, minor = torch.cuda.get_device_capability(device if getattr(device, "type", None) else None)
            return f"CUDA compute capability {major}.{minor}"
        return None
    if device_type != "cpu":
        return None
    capabilities = torch.cpu.get_capabilities()
    return next((f for f in _NATIVE_BF16_CPU if capabilities.get(f) is True), None)
