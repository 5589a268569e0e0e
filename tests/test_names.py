"""One parser of model names: what each kind means, what each caller takes, and one unknown-name error."""
from __future__ import annotations

import builtins
import json
import pathlib
from pathlib import Path

import pytest
import timm
import yaml

import resnet_hub
from resnet_hub.zoo.configs import HubConfigError, config_dir, load_config, load_config_file
from resnet_hub.zoo.names import CONFIG_KINDS, ModelName, parse_model_name

IN1K = "resnet50_8xb32_in1k"
SECRET = "s3cr3t-t0ken-xyz"  # file content no error message may show


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18_cifar"}))
    return tmp_path


@pytest.mark.parametrize("name, want", [
    (IN1K, ModelName(IN1K, "config", config=IN1K)),
    (f"  {IN1K} ", ModelName(IN1K, "config", config=IN1K)),
    (f"hub:{IN1K}@main", ModelName(f"hub:{IN1K}@main", "hub", config=IN1K, repo=f"resnet-hub/{IN1K}", revision="main")),
    (f"HUB:{IN1K}", ModelName(f"HUB:{IN1K}", "hub", config=IN1K, repo=f"resnet-hub/{IN1K}")),
    ("hf-hub:timm/resnet18.a1_in1k@v2", ModelName("hf-hub:timm/resnet18.a1_in1k@v2", "hf-hub",
                                                  repo="timm/resnet18.a1_in1k", revision="v2")),
    ("hf_hub:timm/resnet18.a1_in1k", ModelName("hf_hub:timm/resnet18.a1_in1k", "hf-hub", repo="timm/resnet18.a1_in1k")),
    ("resnet50.a1_in1k", ModelName("resnet50.a1_in1k", "timm")),
    ("resnet18_cifar", ModelName("resnet18_cifar", "timm")),
])
def test_what_a_name_means(name, want, monkeypatch):
    monkeypatch.delenv("RESNET_HUB_NAMESPACE", raising=False)
    assert parse_model_name(name) == want


def test_local_dir_and_yaml(bundle):
    assert parse_model_name(f"local-dir:{bundle}") == ModelName(f"local-dir:{bundle}", "local-dir", path=bundle)
    path = config_dir() / f"{IN1K}.yaml"
    assert parse_model_name(path, allow=CONFIG_KINDS) == ModelName(str(path), "yaml", path=path)
    assert load_config(path) == load_config(IN1K)


@pytest.mark.parametrize("name, error, match", [
    ("", ValueError, "non-empty string"),
    (None, ValueError, "non-empty string"),
    ("resnet50_8xb32_inlk", ValueError, r"unknown model 'resnet50_8xb32_inlk'; closest: resnet50_8xb32_in1k"),
    ("hub:resnet50_8xb32_inlk", ValueError, r"unknown config 'resnet50_8xb32_inlk'; closest: resnet50_8xb32_in1k"),
    ("hub:", ValueError, "names no config"),
    ("hf-hub:", ValueError, "names no repo"),
    ("local-dir:", ValueError, "names no folder"),
    ("local-dir:/no/such/bundle", FileNotFoundError, "no such folder"),
    (f"{IN1K}.yaml", ValueError, "unknown model"),  # a YAML file is no model name
    ("resnet50_8xb32_in1k/x", ValueError, "closest: resnet50_8xb32_in1k"),
])
def test_one_unknown_name_error(name, error, match):
    with pytest.raises(error, match=match):
        parse_model_name(name)


def test_local_dir_without_config_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        parse_model_name(f"local-dir:{tmp_path}")


@pytest.mark.parametrize("name", [f"hub:{IN1K}", "hf-hub:timm/resnet18.a1_in1k", "local-dir:/x", "resnet50"])
def test_config_callers_refuse_model_names(name):
    """load_config (the trainer's --config) takes a config name or a YAML file, nothing else."""
    with pytest.raises(ValueError, match="config name or a YAML config file"
                       if ":" in name else "unknown config 'resnet50'; closest: "):
        load_config(name)


@pytest.fixture
def secret_yaml(tmp_path):
    path = tmp_path / "notes.yaml"
    path.write_text(f"{SECRET}\n")
    return path


def _refuse_reads(m: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"read a file: {args[:1]}")

    for name in ("read_text", "read_bytes", "open"):
        m.setattr(pathlib.Path, name, refuse)
    m.setattr(builtins, "open", refuse)


@pytest.mark.parametrize("path", ["/etc/hostname", "SECRET_YAML", "/some/file.yaml", "relative/x.yml", "x.yaml"])
def test_hub_takes_config_names_only_and_reads_no_file(path, secret_yaml, monkeypatch):
    """issue 11, 5b: hub:PATH once read PATH as YAML and quoted it back; a path is now refused unread."""
    import huggingface_hub

    name = f"hub:{secret_yaml if path == 'SECRET_YAML' else path}"
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("downloaded"))
    with monkeypatch.context() as m:
        _refuse_reads(m)
        with pytest.raises(ValueError, match="hub: takes a registered config name, not a file path") as e:
            timm.create_model(name, pretrained=True)
    assert SECRET not in str(e.value)


def test_hub_name_with_revision_still_parses_and_resolves():
    from resnet_hub.zoo.hub_prefix import resolve_hub_name

    name, cfg = resolve_hub_name(f"hub:{IN1K}@main")
    assert name == IN1K and cfg.hf_hub_id == f"{resnet_hub.hub_namespace()}/{IN1K}@main"


@pytest.mark.parametrize("content, field", [
    (f"{SECRET}\n", "field '<root>': expected a mapping, got a str"),
    (f"name: [{SECRET}\n", "not valid YAML at line 2"),
    (f"{SECRET}: 1\n", "unknown field (not shown) in '<root>'"),
    ("- a\n- b\n", "expected a mapping, got a list"),
])
def test_yaml_errors_say_the_file_and_what_is_wrong_not_the_content(tmp_path, content, field):
    path = tmp_path / "x.yaml"
    path.write_text(content)
    with pytest.raises(HubConfigError) as e:
        load_config_file(path)
    assert str(path) in str(e.value) and field in str(e.value) and SECRET not in str(e.value)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.update(num_classes=SECRET), "field 'num_classes': expected int, got a str"),
    (lambda d: d["architecture"].update(stem=SECRET), "field 'architecture.stem': a str that is not one of"),
    (lambda d: d["eval"].update(mean=SECRET), "field 'eval.mean': expected a list, got a str"),
    (lambda d: d["training"]["optimizer"].update(lr=SECRET), "field 'training.optimizer.lr': expected a number"),
    (lambda d: d.update(name=f"{SECRET}/../{SECRET}"), "field 'name' is not a model name"),
])
def test_field_errors_do_not_quote_values(tmp_path, edit, field):
    data = yaml.safe_load((config_dir() / f"{IN1K}.yaml").read_text())
    edit(data)
    path = tmp_path / f"{IN1K}.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HubConfigError) as e:
        load_config_file(path)
    assert field in str(e.value) and SECRET not in str(e.value)


def test_binary_file_is_not_yaml(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(HubConfigError, match="not UTF-8 text"):
        load_config_file(path)


def test_evaluate_reads_the_config_from_the_parsed_name(tmp_path):
    from resnet_hub.train.evaluate import config_of_model

    assert config_of_model(IN1K).name == IN1K
    assert config_of_model(f"hub:{IN1K}@v1").name == IN1K
    assert config_of_model("resnet50") is None and config_of_model("hf-hub:timm/resnet18.a1_in1k") is None
    timm.models.save_for_hf(timm.create_model("resnet18_8xb16_cifar10"), tmp_path)
    assert config_of_model(f"local-dir:{Path(tmp_path)}") is None  # timm's own bundle names no config
