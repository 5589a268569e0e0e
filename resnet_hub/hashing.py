"""The sha256 of a file, read in chunks (huggingface_hub's ``sha_fileobj``, the hash the Hub's LFS uses)."""
from __future__ import annotations

import os

__all__ = ["sha256_file"]


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of the file at ``path``, streamed (a checkpoint never sits in memory whole)."""
    from huggingface_hub.utils.sha import sha_fileobj

    with open(path, "rb") as f:
        return sha_fileobj(f).hex()
