"""Reading mmpretrain/mmcls ``.pth`` checkpoints without running their pickle code.

The only module that calls ``torch.load``, always with ``weights_only=True`` and no fallback:
a checkpoint is a pickle, and unpickling an untrusted pickle is code execution. Before a file is
read its sha256 is checked against everything known about it: the ``-<8 hex>.pth`` prefix of a
released file name, the full sha256 recorded in ``hub_configs`` for that file, and the user's
``--sha256``. A file with none of these is refused unless the caller passes ``verify=False``.

URLs are downloaded into :func:`cache_dir` by ``torch.hub.download_url_to_file`` (a ``.partial``
file, hashed while it arrives, renamed only when the hash matches); a cached file is re-hashed
before each use and fetched again when it no longer matches.
"""
from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, Optional
from urllib.error import URLError
from urllib.parse import unquote, urlparse

import torch

from resnet_hub.hashing import sha256_file
from resnet_hub.zoo.configs import HubConfig

__all__ = [
    "CACHE_ENV", "ALLOW_NUMPY_FLAG", "LoadedCheckpoint", "cache_dir", "name_hash_prefix",
    "expected_hashes", "fetch", "load_checkpoint", "numpy_safe_globals", "torch_load_reason",
]

CACHE_ENV = "RESNET_HUB_CACHE"
ALLOW_NUMPY_FLAG = "--allow-numpy"
_NAME_HASH = re.compile(r"-([0-9a-f]{8})\.pth$")
_FULL_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint's content and where it came from."""
    content: Any
    path: Path
    sha256: str
    url: Optional[str] = None

    @property
    def provenance(self) -> dict[str, str]:
        source = {"source_url": self.url} if self.url else {"source_file": self.path.name}
        return {**source, "source_sha256": self.sha256}


def cache_dir() -> Path:
    """Where downloaded checkpoints are kept: ``$RESNET_HUB_CACHE`` or ``~/.cache/resnet_hub/checkpoints``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resnet_hub" / "checkpoints"


def name_hash_prefix(name: str) -> Optional[str]:
    """The sha256 prefix of a released file name (``..._20210831-ea4938fc.pth`` -> ``ea4938fc``)."""
    match = _NAME_HASH.search(name)
    return match.group(1) if match else None


def _is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https", "file")


def _file_name(source: str) -> str:
    return unquote(urlparse(source).path.rsplit("/", 1)[-1]) if _is_url(source) else Path(source).name


def expected_hashes(source: str, *, sha256: Optional[str] = None, cfg: Optional[HubConfig] = None) -> dict[str, str]:
    """What ``source``'s sha256 must start with, by where each expectation comes from.

    The full sha256 in ``cfg`` applies only when ``source`` is that config's released file.
    Expectations that contradict each other are an error before anything is downloaded.
    """
    name = _file_name(source)
    found: dict[str, str] = {}
    prefix = name_hash_prefix(name)
    if prefix:
        found[f"the file name {name}"] = prefix
    if cfg is not None and cfg.checkpoint is not None and cfg.checkpoint.sha256 and name == cfg.checkpoint.file_name:
        found[f"hub_configs/{cfg.name}.yaml"] = cfg.checkpoint.sha256
    if sha256 is not None:
        value = sha256.strip().lower()
        if not _FULL_SHA256.fullmatch(value):
            raise ValueError(f"--sha256 {sha256!r} is not a sha256 (64 hexadecimal digits)")
        found["--sha256"] = value
    longest = max(found.values(), key=len, default="")
    if any(not longest.startswith(value) for value in found.values()):
        raise ValueError(f"expected hashes of {name} disagree: {'; '.join(f'{w} says {v}' for w, v in found.items())}")
    return found


def _check(path: Path, actual: str, expected: dict[str, str], what: str) -> None:
    wrong = [f"{where} says {value}" for where, value in expected.items() if not actual.startswith(value)]
    if wrong:
        raise ValueError(f"{what} {path} has sha256 {actual}, but {'; '.join(wrong)}: refusing to load it")


def _require_expectation(source: str, expected: dict[str, str]) -> None:
    if not expected:
        raise ValueError(
            f"{_file_name(source)} has no sha256 in its name (a released file ends in -<8 hex>.pth) and none "
            "was given: pass the expected --sha256, or --no-verify if you trust this file"
        )


def _download(url: str, target: Path, hash_prefix: Optional[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=hash_prefix,
                                       progress=sys.stderr.isatty())
    except RuntimeError as e:  # download_url_to_file's hash mismatch; the .partial file is already gone
        raise ValueError(f"download of {url} does not match its expected sha256: {e}") from None
    except (URLError, OSError) as e:
        if isinstance(e, FileNotFoundError) and urlparse(url).scheme == "file":
            raise FileNotFoundError(f"no checkpoint at {url}") from None
        raise ConnectionError(f"could not download {url}: {getattr(e, 'reason', None) or e}") from None


def fetch(source: str | os.PathLike, *, sha256: Optional[str] = None, verify: bool = True,
          cfg: Optional[HubConfig] = None) -> tuple[Path, str, Optional[str]]:
    """The local path of a verified checkpoint file or URL, its sha256, and its URL if it has one."""
    source = str(source)
    expected = expected_hashes(source, sha256=sha256, cfg=cfg) if verify else {}
    if verify:
        _require_expectation(source, expected)
    if not _is_url(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint file {source}")
        actual = sha256_file(path)
        _check(path, actual, expected, "checkpoint")
        return path, actual, None

    url = source
    target = cache_dir() / _file_name(url)
    hash_prefix = max(expected.values(), key=len) if expected else None
    if target.is_file():
        actual = sha256_file(target)
        # without an expected hash nothing vouches for a cached copy: fetch it again
        if hash_prefix is not None and actual.startswith(hash_prefix):
            return target, actual, url
        if hash_prefix is not None:
            warnings.warn(f"cached {target} has sha256 {actual}, expected {hash_prefix}: downloading it again",
                          stacklevel=2)
    _download(url, target, hash_prefix)
    actual = sha256_file(target)  # re-read from disk: what is used is what is checked
    _check(target, actual, expected, "downloaded checkpoint")
    return target, actual, url


def numpy_safe_globals() -> list:
    """numpy's scalar and dtype types, as both numpy 1.x and 2.x name them in pickles, and nothing broader.

    Old mmcls checkpoints keep numpy scalars (e.g. a best accuracy) in ``meta``; these types rebuild
    plain values and run no other code.
    """
    import numpy as np

    scalar = np.core.multiarray.scalar if not hasattr(np, "_core") else np._core.multiarray.scalar
    dtype_classes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype,
            *dtype_classes]


def _refuse(path: Path, offending: list[str]) -> ValueError:
    numpy_only = all(g.startswith("numpy.") and not g.endswith(("_reconstruct", "ndarray")) for g in offending)
    hint = (f"If you trust this file, {ALLOW_NUMPY_FLAG} allow-lists numpy scalar and dtype types"
            if numpy_only else
            f"{ALLOW_NUMPY_FLAG} only allow-lists numpy scalar and dtype types; re-save just the weights "
            "(torch.save({'state_dict': checkpoint['state_dict']}, ...)) where you trust the file")
    return ValueError(f"{path} holds pickled objects other than tensors, and loading them would run code "
                      f"({', '.join(offending)}); refused. {hint}")


def _load(path: Path, allow_numpy: bool) -> Any:
    import zipfile

    allowed = numpy_safe_globals() if allow_numpy else []
    with torch.serialization.safe_globals(allowed):
        if zipfile.is_zipfile(path):
            try:
                offending = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            except (RuntimeError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise ValueError(f"{path} is not a readable torch checkpoint (truncated or corrupt?): {e}") from None
            if offending:
                raise _refuse(path, sorted(offending))
        try:
            with warnings.catch_warnings():  # torch's note on pickle protocols says nothing a user can act on
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                return torch.load(path, map_location="cpu", weights_only=True)
        except UnpicklingError as e:
            # the legacy (non-zip) format: torch names the first offending global only
            found = re.findall(r"GLOBAL ([\w.]+)", str(e))
            if found:
                raise _refuse(path, found) from None
            raise ValueError(f"{path} is not a torch checkpoint of tensors ({torch_load_reason(e)}); resnet_hub reads "
                             "checkpoints with weights_only=True only, as anything more could run code") from None
        except (RuntimeError, EOFError, ValueError, OSError) as e:
            raise ValueError(f"{path} is not a readable torch checkpoint (truncated or corrupt?): "
                             f"{torch_load_reason(e)}") from None


def torch_load_reason(error: BaseException) -> str:
    """torch.load's reason in one short line, without its advice to retry with weights_only=False (which
    would run whatever code the file holds: this project never does)."""
    text = str(error)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|Check the documentation|$)", text, re.S)
    if found:
        text = found.group(1)
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if "weights_only" not in x]
    return " ".join(sentences)[:300] or type(error).__name__


def load_checkpoint(source: str | os.PathLike, *, sha256: Optional[str] = None, verify: bool = True,
                    allow_numpy: bool = False, cfg: Optional[HubConfig] = None) -> LoadedCheckpoint:
    """Verify and safely load a checkpoint file or URL (``torch.load(weights_only=True)``, on CPU)."""
    path, actual, url = fetch(source, sha256=sha256, verify=verify, cfg=cfg)
    return LoadedCheckpoint(content=_load(path, allow_numpy), path=path, sha256=actual, url=url)
