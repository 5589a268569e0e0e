"""What the recipe does to a dataset's images, in one line, when they are much larger than its crop.

A CIFAR recipe's ``random_crop`` of 32 on 128x128 photographs trains on random 32x32 patches while
evaluation resizes whole images to 32: that is said before the run starts, with the way out
(``--img-size``).
"""
from __future__ import annotations

import io
from typing import Any, Optional

__all__ = ["sample_image_sizes", "describe_image_fit", "MUCH_LARGER"]

MUCH_LARGER = 2.0  # images whose shorter side is at least this many times the crop get the line


def _size(value: Any) -> Optional[tuple[int, int]]:
    """(width, height) of an undecoded image cell from its header alone, None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(value, Image.Image):
            return value.size
        if isinstance(value, dict) and value.get("bytes") is not None:
            with Image.open(io.BytesIO(value["bytes"])) as im:
                return im.size
        if isinstance(value, dict) and value.get("path"):
            with Image.open(value["path"]) as im:
                return im.size
    except (OSError, UnidentifiedImageError):
        pass
    return None


def sample_image_sizes(ds, image_column: str, n: int = 8) -> list[tuple[int, int]]:
    """Sizes of up to ``n`` images spread over a map-style dataset (headers only)."""
    total = len(ds)
    if not total:
        return []
    picks = sorted({i * total // n for i in range(min(n, total))})
    cells = ds.select(picks)[image_column]
    return [s for s in map(_size, cells) if s]


def describe_image_fit(cfg, sizes: list[tuple[int, int]]) -> Optional[str]:
    """One line when the recipe crops patches out of images much larger than the crop, else None."""
    if not sizes:
        return None
    ops = cfg.training.augmentation
    crop = next((a for a in ops if a.type in ("random_crop", "random_resized_crop", "resize")), None)
    if crop is None or crop.type != "random_crop":  # a resize or random-resized crop sees the whole image
        return None
    c = crop.size if isinstance(crop.size, int) else crop.size[0]
    w, h = sorted(sizes, key=lambda s: min(s))[len(sizes) // 2]  # the median by shorter side
    if min(w, h) < MUCH_LARGER * c:
        return None
    e = cfg.eval
    evals = (f"eval resizes the shorter side to {e.resize.size} and crops {e.center_crop or e.input_size}"
             if e.resize else f"eval resizes whole images to {e.input_size}x{e.input_size}")
    return (f"note: training takes random {c}x{c} patches of {w}x{h} images (the recipe's random_crop, no resize "
            f"before it); {evals}; --img-size {min(w, h)} trains and evaluates at the images' size")
