"""A Hub bundle: the folder that becomes one Hub model repo.

``model.safetensors`` (weights, with provenance in its metadata), ``config.json`` in timm's Hub
format, and ``README.md`` (the model card). Stock-architecture configs name timm's own
architecture (``resnet50``, ``resnet101d``, ...), so plain timm loads them with ``hf-hub:`` or
``local-dir:`` without this package; CIFAR configs name ``resnetN_cifar`` from this package.

Files appear whole or not at all: the bundle is written into a temporary folder beside the
target, then moved into place file by file with ``os.replace``.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import save
from timm.models._hub import save_config_for_hf

from . import __version__
from .configs import HubConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
BUNDLE_FILES = (WEIGHTS, CONFIG, CARD)


def hub_config(model: torch.nn.Module, cfg: HubConfig) -> dict:
    """config.json's content for ``model`` built from ``cfg``, in timm's own Hub format."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CONFIG
        save_config_for_hf(
            model, str(path),
            model_config={
                "pretrained_cfg": {"architecture": cfg.architecture_name},
                "label_names": list(model.pretrained_cfg.get("label_names") or ()),
            },
        )
        data = json.loads(path.read_text())
    data["pretrained_cfg"].pop("hf_hub_id", None)  # the repo it lands in says where it is
    data["pretrained_cfg"].pop("label_names", None)  # kept once, at the root
    return data


def weights_metadata(cfg: HubConfig, provenance: Mapping[str, object]) -> dict[str, str]:
    """safetensors metadata (strings only): what these weights are and where they came from."""
    meta = {"format": "pt", "config": cfg.name, "resnet_hub_version": __version__}
    meta.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in provenance.items()})
    return meta


def safetensors_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """safetensors serialisation with a canonical header, so equal inputs give equal bytes.

    safetensors keeps metadata in a hash map, whose order changes from run to run; the header is
    rewritten with sorted metadata keys, to the same length, padding included.
    """
    data = save(dict(state), metadata=dict(metadata))
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode().ljust(n)
    if len(text) != n:
        raise RuntimeError("safetensors header changed length when made canonical")
    return data[:8] + text + data[8 + n:]


def write_bundle(model: torch.nn.Module, cfg: HubConfig, output_dir: str | os.PathLike, *,
                 provenance: Mapping[str, object] | None = None, card: str | None = None) -> Path:
    """Write ``model`` as a Hub bundle into ``output_dir`` and return it.

    ``provenance`` goes into the weights' metadata (e.g. ``source_url``, ``source_sha256``,
    ``parity``); ``card`` is the README.md text, written when given.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=output_dir))
    try:
        (tmp / WEIGHTS).write_bytes(safetensors_bytes(state, weights_metadata(cfg, provenance or {})))
        (tmp / CONFIG).write_text(json.dumps(hub_config(model, cfg), indent=2) + "\n")
        if card is not None:
            (tmp / CARD).write_text(card)
        for name in BUNDLE_FILES:
            if (tmp / name).exists():
                os.replace(tmp / name, output_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output_dir
