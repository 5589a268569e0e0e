"""Files that appear whole or not at all: write beside the target, then ``os.replace`` it.

A reader never sees half a file, and a writer that fails (an exception, a full disk) leaves the
old file as it was and no temporary behind::

    with replacing("runs/x/curves.png") as tmp:   # .curves.<random>.tmp.png, in runs/x/
        fig.savefig(tmp)
    write_json("runs/x/metrics.json", {"top1": 91.2})
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["replacing", "write_bytes", "write_text", "write_json"]


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path in ``path``'s folder (same suffix, so writers that go by it still do) for the
    caller to write; on success it replaces ``path``, on error it is removed and ``path`` untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``data`` as the whole of ``path``, atomically."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``text`` as the whole of ``path``, atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2, **dumps_kwargs: Any) -> Path:
    """``data`` as JSON (``indent`` 2, a final newline) as the whole of ``path``, atomically.
    The JSON is made before anything is written, so data that cannot be serialized leaves no trace."""
    return write_text(path, json.dumps(data, indent=indent, **dumps_kwargs) + "\n")
