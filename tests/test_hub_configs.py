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


def test_every_file_of_the_zoo_is_a_registered_config():
    """How many configs there are is what hub_configs/ holds (and mmpretrain's table says, below)."""
    files = sorted(p.stem for p in config_dir().glob("*.yaml"))
    assert files and files == sorted(NAMES)
    label_sets = {p.stem for p in (REPO / "resnet_hub" / "zoo" / "labels").glob("*.txt")}
    assert {load_config(n).labels for n in NAMES} == label_sets  # every label set used, and only those


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
    from resnet_hub.reference import LABEL_SETS, expected_files, zoo_names

    expected = expected_files(config_dir(), REPO / "resnet_hub" / "zoo" / "labels")
    assert sorted(zoo_names()) == sorted(NAMES) and len(expected) == len(NAMES) + len(LABEL_SETS)
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


def test_bad_yaml_and_a_zoo_file_named_otherwise_or_without_the_release(tmp_path):
    from resnet_hub.zoo.configs import _zoo_config

    path = _write(tmp_path, "broken", "name: [unclosed\n")
    with pytest.raises(HubConfigError, match="not valid YAML"):
        load_config_file(path)
    path = _write(tmp_path, "other_name", _base())
    assert load_config_file(path).name == "resnet50_8xb32_in1k"  # a config of one's own: any name
    with pytest.raises(HubConfigError, match="field 'name'"):  # a file of the zoo: its file's name
        _zoo_config(path)
    data = _base()
    del data["results"]
    with pytest.raises(HubConfigError, match="missing field 'results'"):
        _zoo_config(_write(tmp_path, "resnet50_8xb32_in1k", data))


def _own_config(tmp_path) -> Path:
    """A config of one's own: the CIFAR ResNet-18 recipe for 4 classes, without mmpretrain's release, named
    otherwise than its file."""
    data = yaml.safe_load((config_dir() / "resnet18_8xb16_cifar10.yaml").read_text())
    for key in ("source", "checkpoint", "results", "labels"):
        del data[key]
    data.update(name="shapes_r18", num_classes=4)
    return _write(tmp_path, "my-experiment", data)


def test_a_config_of_ones_own_needs_no_release_and_names_itself(tmp_path):
    import timm

    from resnet_hub.hub.bundle import validate_bundle, write_bundle
    from resnet_hub.train.trainer import create_model

    cfg = load_config(_own_config(tmp_path))
    assert (cfg.name, cfg.source, cfg.checkpoint, cfg.results, cfg.labels) == ("shapes_r18", None, None, None, None)
    model = create_model(cfg)
    assert model.num_classes == 4 and list(model.pretrained_cfg["label_names"]) == ["0", "1", "2", "3"]
    assert "converted" not in model.pretrained_cfg["description"]
    provenance = {"trained_with": "resnet_hub.train", "dataset_name": "shapes", "plan": {"epochs": 2}}
    bundle = write_bundle(model, cfg, tmp_path / "bundle", provenance=provenance)
    assert validate_bundle(bundle).num_classes == 4
    text = (bundle / "README.md").read_text()
    assert text.split("---\n")[2].lstrip().startswith("# shapes_r18\n") and "the config `shapes_r18`" in text
    assert "mmpretrain 1.2.0 config" not in text and "hub:shapes_r18" not in text and "- `epochs`: 2" in text
    assert "license" not in text.split("---\n")[1]  # no release, no license claimed for it
    loaded = timm.create_model(f"local-dir:{bundle}", pretrained=True)
    assert loaded.num_classes == 4


def test_the_zoo_and_the_card_template_are_package_data():
    """Read through importlib.resources: here, from the top of the checkout, where the developers keep them (the
    wheel's copy, resnet_hub/hub_configs and resnet_hub/MODEL_CARD.md, is tests/test_install.py's)."""
    from resnet_hub.hub.card import template_path
    from resnet_hub.package_data import package_path

    assert config_dir() == REPO / "hub_configs" and template_path() == REPO / "MODEL_CARD.md"
    with pytest.raises(FileNotFoundError, match="neither package data"):
        package_path("no_such_file.md")


def test_load_by_path(tmp_path):
    path = _write(tmp_path, "resnet50_8xb32_in1k", _base())
    assert load_config(path).architecture_name == "resnet50"
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_unknown_name_names_closest():
    with pytest.raises(ValueError, match="resnet50_8xb32_in1k"):
        load_config("resnet50_8xb32_imagenet")
