"""Small models and images for the inference, CLI and benchmark tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

CIFAR = "resnet18_8xb16_cifar10"


def random_model(name: str = CIFAR, seed: int = 0) -> torch.nn.Module:
    """A config's model with random weights and non-trivial BatchNorm statistics, in eval mode."""
    from resnet_hub.bench.benchmark import _randomize_batchnorm

    torch.manual_seed(seed)
    model = timm.create_model(name).eval()
    _randomize_batchnorm(model, seed)
    return model


def photos(n: int = 3, size: tuple[int, int] = (40, 36), seed: int = 0) -> list[np.ndarray]:
    from resnet_hub.bench.benchmark import make_photos

    return make_photos(n, size=size, jitter=0.0, seed=seed)


def save(array: np.ndarray, path: Path, mode: str | None = None, fmt: str | None = None) -> Path:
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path
