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

PROVENANCE = {
    "source_url": "https://download.openmmlab.com/mmclassification/v0/resnet/example-0123abcd.pth",
    "source_sha256": "0123abcd" + "5" * 56,
    "parity": {"max_abs_logit_diff": 2.5e-06, "relative": 3.1e-07, "inputs": "2x3xHxW N(0,1), seed 0"},
}


def make_bundle(name: str, out_dir: Path, seed: int = 0, provenance: dict | None = None) -> Path:
    """A bundle of config ``name`` with random weights and random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = timm.create_model(name)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return write_bundle(model, load_config(name), out_dir, provenance=PROVENANCE if provenance is None else provenance)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).iterdir())}
