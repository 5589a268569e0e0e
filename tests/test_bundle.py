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


# ----------------------------------------------------------------------------- transformers can load it


@pytest.fixture(scope="module")
def cifar_bundle(tmp_path_factory):
    from publish_helpers import make_bundle

    return make_bundle("resnet18_8xb16_cifar10", tmp_path_factory.mktemp("bundle"))


def _edited(bundle, tmp_path, **changes):
    import shutil

    out = shutil.copytree(bundle, tmp_path / "edited")
    config = json.loads((out / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("changes, reason", [
    ({"model_args": {"in_chans": 3, "num_classes": 10}}, "model_args holds num_classes, which TimmWrapper passes"),
    ({"label_names": list(range(10))}, "label_names holds 10 names for 10 classes; .* one string a class"),
    ({"label_names": ["a", "b"]}, "label_names holds 2 names for 10 classes"),
    ({"label_names": []}, "label_names holds 0 names for 10 classes"),
    ({"model_type": "resnet"}, "model_type 'resnet' is not transformers' 'timm_wrapper'"),
])
def test_validate_refuses_what_transformers_could_not_load(cifar_bundle, tmp_path, changes, reason):
    from resnet_hub.hub.bundle import validate_bundle

    with pytest.raises(ValueError, match="config.json: transformers could not load this bundle: .*" + reason):
        validate_bundle(_edited(cifar_bundle, tmp_path, **changes))


def test_validate_refuses_a_config_without_architecture(cifar_bundle, tmp_path):
    from resnet_hub.hub.bundle import validate_bundle

    with pytest.raises(ValueError, match="field 'architecture' is missing"):
        validate_bundle(_edited(cifar_bundle, tmp_path, architecture=None))


def test_extra_model_args_reach_config_json_through_timms_writer(tmp_path):
    name = "resnet18_8xb16_cifar10"
    model = timm.create_model(name, zero_init_last=False)
    write_bundle(model, load_config(name), tmp_path, model_args={"drop_rate": 0.25})
    args = json.loads((tmp_path / "config.json").read_text())["model_args"]
    assert args == {"in_chans": 3, "global_pool": "avg", "zero_init_last": False, "drop_rate": 0.25}


# ----------------------------------------------------------------------------- measured results on the card


def _measured(top1=61.25, split="validation", dataset="digits", config=None):
    from resnet_hub.hub.card import MeasuredResult

    return MeasuredResult(dataset=dataset, split=split, images=360, top1=top1, top5=97.5, dataset_config=config)


def _metadata(path):
    from huggingface_hub import ModelCardData, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    meta = metadata_load(path)
    ModelCardData(**meta)  # parses with huggingface_hub's own card data class
    return meta, model_index_to_eval_results(meta["model-index"])[1] if "model-index" in meta else []


def test_trained_card_has_standard_keys_and_its_measured_results(tmp_path):
    import resnet_hub

    name = "resnet18_8xb16_cifar10"
    with torch.device("meta"):
        model = timm.create_model(name)
    from resnet_hub.hub.card import render_card

    (tmp_path / "README.md").write_text(render_card(load_config(name), model, {"trained_with": "resnet_hub.train"},
                                                    measured=[_measured()]))
    meta, results = _metadata(tmp_path / "README.md")
    standard = {"library_name", "license", "tags", "pipeline_tag", "metrics", "model-index"}
    assert set(meta) == standard and "transformers" in meta["tags"]
    source = f"resnet_hub {resnet_hub.__version__}"
    assert {(r.dataset_type, r.dataset_split, r.dataset_args["images"], r.metric_type, r.metric_value, r.source_name)
            for r in results} == {("digits", "validation", 360, "accuracy", 61.25, source),
                                  ("digits", "validation", 360, "top_5_accuracy", 97.5, source)}
    assert "| digits | validation | 360 | 61.25 | 97.50 |" in (tmp_path / "README.md").read_text()


def test_update_card_keeps_published_results_and_replaces_its_own(cifar_bundle, tmp_path):
    import shutil

    from resnet_hub.hub.bundle import validate_bundle
    from resnet_hub.hub.card import update_card

    bundle = shutil.copytree(cifar_bundle, tmp_path / "b")
    _, published = _metadata(bundle / "README.md")
    assert [r.source_name for r in published] == ["mmpretrain model zoo"]
    update_card(bundle, _measured(top1=50.0))
    update_card(bundle, _measured(top1=62.5))  # the same dataset split again: replaces, never duplicates
    update_card(bundle, _measured(top1=93.0, dataset="uoft-cs/cifar10", split="test", config="plain_text"))
    _, results = _metadata(bundle / "README.md")
    assert results[:len(published)] == published
    ours = {(r.dataset_type, r.dataset_split, r.metric_type): r.metric_value for r in results[len(published):]}
    assert ours == {("digits", "validation", "accuracy"): 62.5, ("digits", "validation", "top_5_accuracy"): 97.5,
                    ("uoft-cs/cifar10", "test", "accuracy"): 93.0, ("uoft-cs/cifar10", "test", "top_5_accuracy"): 97.5}
    text = (bundle / "README.md").read_text()
    from resnet_hub.hub.card import RESULTS_BEGIN

    assert text.count(RESULTS_BEGIN) == 1 and "| digits | validation | 360 | 62.50 | 97.50 | measured by" in text
    table = text.split(RESULTS_BEGIN)[1]
    assert table.index("published by [mmpretrain model zoo]") < table.index("| digits |")  # one table, both sources
    assert "50.00" not in text and "| uoft-cs/cifar10 (plain_text) | test | 360 | 93.00 |" in text
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    validate_bundle(bundle)


def test_update_card_refuses_a_result_huggingface_hub_would_merge_into_the_published_one(cifar_bundle, tmp_path):
    import shutil

    from resnet_hub.hub.card import update_card

    bundle = shutil.copytree(cifar_bundle, tmp_path / "b")
    before = (bundle / "README.md").read_bytes()
    with pytest.raises(ValueError, match="already has results from 'mmpretrain model zoo'"):
        update_card(bundle, _measured(dataset="uoft-cs/cifar10", split="test"))
    assert (bundle / "README.md").read_bytes() == before


def test_update_card_replaces_the_measured_block_of_an_older_card(cifar_bundle, tmp_path):
    import shutil

    from huggingface_hub import ModelCard

    from resnet_hub.hub.card import OLD_MARKERS, RESULTS_BEGIN, RESULTS_END, update_card

    bundle = shutil.copytree(cifar_bundle, tmp_path / "b")
    card = ModelCard((bundle / "README.md").read_text())
    head, rest = card.text.split(RESULTS_BEGIN)
    old = f"{OLD_MARKERS[0]}\n\n### Measured by resnet_hub\n\nNot measured yet.\n\n{OLD_MARKERS[1]}"
    card.text = head + old + rest.split(RESULTS_END)[1]
    (bundle / "README.md").write_text(str(card))
    update_card(bundle, _measured())
    text = (bundle / "README.md").read_text()
    assert OLD_MARKERS[0] not in text and "Not measured yet" not in text and text.count(RESULTS_BEGIN) == 1
    assert "| digits | validation | 360 | 61.25 |" in text
