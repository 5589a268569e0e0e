"""Hub bundles: timm's format, plain-timm loadable for stock architectures, deterministic bytes."""
from __future__ import annotations

import hashlib
import json

import pytest
import timm
import torch
from conftest import run_python
from safetensors import safe_open

from resnet_hub import load_config
from resnet_hub.hub.bundle import write_bundle


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writing_twice_gives_identical_bytes(tmp_path):
    name = "resnet18_8xb16_cifar10"
    model = timm.create_model(name)
    provenance = {"source_url": "https://example/x-0123abcd.pth", "source_sha256": "ab" * 32, "parity": {"max": 1e-7}}
    write_bundle(model, load_config(name), tmp_path / "a", provenance=provenance)
    write_bundle(model, load_config(name), tmp_path / "b", provenance=provenance)
    for f in ("model.safetensors", "config.json", "README.md"):
        assert _sha(tmp_path / "a" / f) == _sha(tmp_path / "b" / f)
    meta = safe_open(str(tmp_path / "a" / "model.safetensors"), "pt").metadata()
    assert meta["config"] == name and meta["source_sha256"] == "ab" * 32 and json.loads(meta["parity"]) == {"max": 1e-7}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["README.md", "config.json", "model.safetensors"]


@pytest.mark.parametrize("name, arch, plugin", [
    ("resnetv1c101_8xb32_in1k", "resnet101c", False),
    ("resnet50_8xb8_cub", "resnet50", False),
    ("resnet50_8xb16_cifar100", "resnet50_cifar", True),
])
def test_local_dir_round_trip(tmp_path, name, arch, plugin):
    torch.manual_seed(0)
    model = timm.create_model(name)
    write_bundle(model, load_config(name), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == arch and len(config["label_names"]) == config["num_classes"]
    code = (
        ("import resnet_hub\n" if plugin else "import sys; assert 'resnet_hub' not in sys.modules\n")
        + "import timm, torch\nfrom safetensors.torch import load_file\n"
        f"m = timm.create_model('local-dir:{tmp_path}', pretrained=True)\n"
        f"sd = load_file('{tmp_path}/model.safetensors')\n"
        "assert all(torch.equal(v, sd[k]) for k, v in m.state_dict().items())\n"
        "print(m.pretrained_cfg['crop_pct'], m.pretrained_cfg['crop_mode'])\n"
    )
    # plain timm: resnet_hub is not on the path at all for stock architectures
    proc = run_python(code, env=None if plugin else {"PYTHONPATH": ""}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = load_config(name)
    assert proc.stdout.split() == [str(cfg.crop_pct), cfg.crop_mode]
