"""Bundles to publish: random weights with random BatchNorm statistics, and their file hashes.

Pushes go to ``hub_server.LocalHub``, the Hub's HTTP API on 127.0.0.1, through the real ``HfApi``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import timm
import torch

from resnet_hub import load_config
from resnet_hub.hub.bundle import write_bundle

PARITY = {"max_abs_logit_diff": 2.5e-06, "relative": 3.1e-07, "inputs": "2x3xHxW N(0,1), seed 0"}


def release_provenance(name: str) -> dict:
    """What the converter records for config ``name``'s released checkpoint: its URL, a sha256 that
    is the release's (the full one where hub_configs has it, else the file name's prefix padded), a parity."""
    ck = load_config(name).checkpoint
    return {"source_url": ck.url, "source_sha256": ck.sha256 or ck.sha256_prefix + "5" * 56, "parity": PARITY}


def make_bundle(name: str, out_dir: Path, seed: int = 0, provenance: dict | None = None,
                label_names: list[str] | None = None) -> Path:
    """A bundle of config ``name`` with random weights and random BatchNorm statistics (and ``label_names``
    in place of the config's class names, when given)."""
    torch.manual_seed(seed)
    overlay = {"label_names": label_names} if label_names else {}
    model = timm.create_model(name, pretrained_cfg_overlay=overlay)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    provenance = release_provenance(name) if provenance is None else provenance
    return write_bundle(model, load_config(name), out_dir, provenance=provenance)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}
