"""Class names of each label set, as mmpretrain's ``datasets.categories`` lists them.

One ``<label set>.txt`` per set, one name per line, written by ``scripts/sync_hub_configs.py``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def label_names(label_set: str) -> tuple[str, ...]:
    path = _DIR / f"{label_set}.txt"
    if not path.is_file():
        known = sorted(p.stem for p in _DIR.glob("*.txt"))
        raise ValueError(f"unknown label set {label_set!r}; known: {', '.join(known)}")
    return tuple(path.read_text(encoding="utf-8").splitlines())
