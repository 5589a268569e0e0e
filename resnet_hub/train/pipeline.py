"""The one uint8 -> float normalization: the trainer, the device-resident loader, inference and the benchmarks
all call :func:`normalize` where the model runs (batches travel as uint8, a quarter of the bytes).

The training input pipeline itself is :class:`resnet_hub.train.augment.TrainTransform` (decoded in
DataLoader workers by ``resnet_hub.train.data``) and :mod:`resnet_hub.train.device_data`.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["normalize"]


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
