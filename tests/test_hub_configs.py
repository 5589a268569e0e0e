"""hub_configs/: valid, complete, and equal to what mmpretrain itself says."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO, requires_mmpretrain

import resnet_hub
from resnet_hub.zoo.configs import HubConfigError, config_dir, load_config, load_config_file

SEED = REPO.parent / "shared" / "seed" / "mmpretrain_resnet_README.md"
NAMES = resnet_hub.list_configs()


def test_twenty_two_configs_by_dataset():
    assert len(NAMES) == 22
    by_labels = {}
    for n in NAMES:
        by_labels.setdefault(load_config(n).labels, []).append(n)
    assert {k: len(v) for k, v in by_labels.items()} == {
        "imagenet-1k": 15, "cifar10": 5, "cifar100": 1, "cub-200-2011": 1}


@pytest.mark.skipif(not SEED.is_file(), reason="shared/seed is not beside this checkout")
def test_names_are_the_seed_table():
    seed_names = set(re.findall(r"^\| `([^`]+)`", SEED.read_text(), flags=re.M))
    assert seed_names == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_file_is_valid_and_self_consistent(name):
    cfg = load_config(name)
    assert cfg.path == config_dir() / f"{name}.yaml"
    assert cfg.checkpoint.file_name.endswith(f"-{cfg.checkpoint.sha256_prefix}.pth")
    assert len(resnet_hub.zoo.models.label_names(cfg.labels)) == cfg.num_classes
    assert cfg.training.total_batch_size == cfg.training.lr_base_batch_size
    assert f"{cfg.training.devices}xb{cfg.training.batch_size_per_device}" in name


@requires_mmpretrain
@pytest.mark.mmpretrain
def test_files_equal_mmpretrain_derivation():
    """Every byte of hub_configs/ and resnet_hub/labels/ re-derived from mmpretrain 1.2.0."""
    from resnet_hub.reference import expected_files

    expected = expected_files(config_dir(), REPO / "resnet_hub" / "zoo" / "labels")
    assert len(expected) == 22 + 4
    stale = [str(p) for p, text in expected.items() if p.read_text() != text]
    assert not stale, f"differ from mmpretrain (run scripts/sync_hub_configs.py): {stale}"


def _write(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _base() -> dict:
    return yaml.safe_load((config_dir() / "resnet50_8xb32_in1k.yaml").read_text())


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.pop("num_classes"), "missing field 'num_classes'"),
    (lambda d: d["training"]["optimizer"].update(lr="fast"), "field 'training.optimizer.lr'"),
    (lambda d: d["architecture"].update(stem="v2"), "field 'architecture.stem'"),
    (lambda d: d["eval"].update(mean=[0.5, 0.5]), "field 'eval.mean'"),
    (lambda d: d["training"].update(optimiser={}), "unknown field 'training.optimiser'"),
    (lambda d: d["training"]["lr_schedule"][0].update(milestones=["30"]),
     "field 'training.lr_schedule[0].milestones[0]'"),
    (lambda d: d.update(num_classes=True), "field 'num_classes'"),
])
def test_bad_file_error_names_file_and_field(tmp_path, edit, field):
    data = _base()
    edit(data)
    path = _write(tmp_path, "resnet50_8xb32_in1k", data)
    with pytest.raises(HubConfigError) as e:
        load_config_file(path)
    assert str(path) in str(e.value) and field in str(e.value)


def test_bad_yaml_and_wrong_name(tmp_path):
    path = _write(tmp_path, "broken", "name: [unclosed\n")
    with pytest.raises(HubConfigError, match="not valid YAML"):
        load_config_file(path)
    path = _write(tmp_path, "other_name", _base())
    with pytest.raises(HubConfigError, match="field 'name'"):
        load_config_file(path)


def test_load_by_path(tmp_path):
    path = _write(tmp_path, "resnet50_8xb32_in1k", _base())
    assert load_config(path).architecture_name == "resnet50"
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_unknown_name_names_closest():
    with pytest.raises(ValueError, match="resnet50_8xb32_in1k"):
        load_config("resnet50_8xb32_imagenet")
