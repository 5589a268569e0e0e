"""Files and folders that appear whole or not at all: write beside the target, then swap it in.

A reader never sees half a file, and a writer that fails (an exception, a full disk) leaves the
old file as it was and no temporary behind::

    with replacing("runs/x/curves.png") as tmp:   # .curves.<random>.tmp.png, in runs/x/
        fig.savefig(tmp)
    write_json("runs/x/metrics.json", {"top1": 91.2})
    with replacing_dir("bundles/r18") as tmp:      # .r18.<random>.tmp/, in bundles/
        write_bytes(tmp / "config.json", data)     # ... every file of the folder

A folder is swapped in one step where the filesystem can exchange two names (Linux's
``renameat2(RENAME_EXCHANGE)``: ext4, xfs, btrfs, tmpfs): at every moment ``bundles/r18`` is the
old folder or the new one, never a mix, and a kill -9 at any point leaves one of them whole.
Elsewhere it takes two renames, ``r18`` -> ``.r18.old`` then the new one -> ``r18``; a kill
between them leaves the old folder whole as ``.r18.old``, which :func:`recover_dir` (called by the
next :func:`replacing_dir` on that folder) moves back. A writer killed before the swap leaves a
``.r18.<random>.tmp`` folder beside it, and the old folder as it was.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["replacing", "replacing_dir", "recover_dir", "write_bytes", "write_text", "write_json"]


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


# ----------------------------------------------------------------------------- folders


def _aside(path: Path) -> Path:
    """Where the two-rename swap keeps the old folder for a moment."""
    return path.with_name(f".{path.name}.old")


def recover_dir(path: str | os.PathLike) -> Path:
    """Finish or undo a two-rename swap of ``path`` that a kill interrupted: the old folder, left aside,
    goes back when nothing took its place, and is deleted when the new one did."""
    path = Path(path)
    old = _aside(path)
    if old.is_dir():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (``renameat2(RENAME_EXCHANGE)``); False where not supported."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or a libc before glibc 2.28
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a filesystem (NFS, ...) or kernel without it
        return False
    raise OSError(code, os.strerror(code), str(b))


def _move_aside(path: Path) -> Path:
    old = _aside(path)
    os.replace(path, old)
    return old


def swap_dir(new: Path, path: Path) -> None:
    """Put folder ``new`` at ``path``, replacing the folder there (see the module docstring); ``new`` is gone after."""
    if not path.exists():
        os.replace(new, path)  # refused (not replaced) if another writer's folder appeared there meanwhile
    elif _exchange(new, path):
        shutil.rmtree(new)  # now the old folder
    else:
        old = _move_aside(path)
        os.replace(new, path)
        shutil.rmtree(old)


@contextlib.contextmanager
def replacing_dir(path: str | os.PathLike) -> Iterator[Path]:
    """An empty temporary folder beside ``path`` for the caller to fill; on success it takes ``path``'s place
    whole (the old folder is deleted), on error it is removed and ``path`` untouched."""
    path = Path(path)
    recover_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the folder private
    try:
        yield tmp
        swap_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
