"""Publishing: model cards, bundle checks, the push command, and loading what was pushed.

Pushes go through the real ``HfApi`` to ``LocalHub`` (tests/hub_server.py), the Hub's upload and
download API on 127.0.0.1 with per-route fault injection; what was pushed is loaded back from it
by timm in a new process, as a user would.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import shutil
from types import SimpleNamespace

import pytest
import timm
import torch
from conftest import REPO, run_command, run_python
from hub_server import LocalHub
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from publish_helpers import file_hashes, make_bundle, release_provenance

import resnet_hub
from resnet_hub import commands, list_configs, load_config
from resnet_hub.hub import push
from resnet_hub.hub.bundle import BUNDLE_FILES, validate_bundle
from resnet_hub.hub.card import measure_complexity, render_card
from resnet_hub.zoo.configs import InitFrom

CIFAR = "resnet18_8xb16_cifar10"  # plugin architecture resnet18_cifar
STOCK = "resnet18_8xb32_in1k"  # plain timm resnet18
TOKEN = "hf_FAKEtokenNEVERprinted0123456789"


def _meta_model(name):
    with torch.device("meta"):
        return timm.create_model(name)


def _card(text):
    card = ModelCard(text)
    return card, card.data.to_dict()


# ----------------------------------------------------------------------------- model cards


@pytest.mark.parametrize("name", list_configs())
def test_every_config_renders_a_card_whose_metadata_parses(name):
    cfg = load_config(name)
    model = _meta_model(name)
    provenance = release_provenance(name)
    card, data = _card(render_card(cfg, model, provenance))
    assert data["library_name"] == "timm" and data["pipeline_tag"] == "image-classification"
    assert data["license"] == cfg.source.license and data["datasets"] == [cfg.training.dataset.hf_id]
    assert "base_model" not in data  # no config starts from a Hub repo (CUB starts from an openmmlab URL)
    model_name, results = model_index_to_eval_results(data["model-index"])
    assert model_name == name
    published = {r.metric_type: r.metric_value for r in results}
    assert published == {"accuracy": cfg.results.top1, **({"top_5_accuracy": cfg.results.top5} if cfg.results.top5
                                                            else {})}
    assert {r.dataset_type for r in results} == {cfg.training.dataset.hf_id}
    # measured figures, from this model at this config's input size
    params = sum(p.numel() for p in model.parameters())
    assert f"{params:,}" in card.text
    assert f"{measure_complexity(model, cfg.eval.input_size).macs / 1e9:.3f} GMACs" in card.text
    for text in (f"hub:{name}", f"hf-hub:{resnet_hub.hub_repo_id(name)}", "local-dir:", "inference_model(",
                 cfg.checkpoint.url, provenance["source_sha256"], "2.5e-06", "He, Kaiming", "MMPreTrain Contributors"):
        assert text in card.text
    if cfg.is_stock_timm:
        assert "no resnet_hub needed" in card.text and "pip install" not in card.text
    else:
        assert f"registers {cfg.architecture_name}" in card.text and "pip install resnet_hub" in card.text


def _macs_by_hooks(model, size):
    """Multiply-accumulates of every conv and linear layer, from their output shapes (no FlopCounterMode)."""
    total = []

    def hook(m, inputs, out):
        if isinstance(m, torch.nn.Conv2d):
            total.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        else:
            total.append(out.numel() * m.in_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d,
                                                                                         torch.nn.Linear))]
    with torch.no_grad():
        model(torch.empty(1, 3, size, size, device="meta"))
    for h in handles:
        h.remove()
    return sum(total)


@pytest.mark.parametrize("name", [CIFAR, "resnet50_8xb32_in1k", "resnetv1d152_8xb32_in1k", "resnet50_8xb8_cub"])
def test_flops_are_measured_from_the_model(name):
    model = _meta_model(name)
    size = load_config(name).eval.input_size
    c = measure_complexity(model, size)
    assert c.macs == _macs_by_hooks(model, size) and c.flops == 2 * c.macs
    assert c.params == sum(p.numel() for p in model.parameters())
    if name == "resnet50_8xb32_in1k":  # the unit of mmpretrain's table, which lists 4.12G "Flops" (MACs)
        assert 4.0e9 < c.macs < 4.2e9


def test_measuring_leaves_a_real_model_untouched():
    model = timm.create_model(CIFAR)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure_complexity(model, 32)
    assert all(torch.equal(v, before[k]) and v.device.type == "cpu" for k, v in model.state_dict().items())


@pytest.mark.parametrize("parity, expected", [
    ({"measured": False, "reason": "mmpretrain is not installed"}, "not measured: mmpretrain is not installed."),
    (None, "not measured: the conversion recorded no parity figure."),
    (json.dumps({"max_abs_logit_diff": 1.5e-05}), "`max_abs_logit_diff`: 1.5e-05"),
])
def test_parity_is_stated_or_said_to_be_missing(parity, expected):
    provenance = {"source_url": load_config(CIFAR).checkpoint.url} | ({"parity": parity} if parity is not None else {})
    text = render_card(load_config(CIFAR), _meta_model(CIFAR), provenance)
    assert expected in text
    assert "not recorded (the released file name carries its first 8 hex digits, `bd6371c8`)" in text


def test_weights_not_converted_from_the_release_claim_no_results():
    text = render_card(load_config(CIFAR), _meta_model(CIFAR), {"trained_by": "scripts/train.py", "epochs": 3})
    card, data = _card(text)
    assert "model-index" not in data and "datasets" not in data and data["library_name"] == "timm"
    assert "trained from scratch" in card.text and "- `trained_by`: scripts/train.py" in card.text
    assert "nothing was retrained" not in card.text and str(load_config(CIFAR).results.top1) not in card.text


def test_base_model_only_for_a_hub_repo():
    cub = load_config("resnet50_8xb8_cub")
    text = render_card(cub, _meta_model(cub.name), release_provenance(cub.name))
    assert "base_model" not in _card(text)[1]
    assert f"fine-tuned from <{cub.training.init_from.url}>, a checkpoint that is not a Hub repo" in text
    hub_init = dataclasses.replace(cub, training=dataclasses.replace(
        cub.training, init_from=InitFrom(url="hf-hub:someone/resnet50-in21k", prefix=None)))
    card = render_card(hub_init, _meta_model(cub.name), release_provenance(cub.name))
    assert _card(card)[1]["base_model"] == "someone/resnet50-in21k"


def _fine_tune_provenance(data_dir):
    """What the trainer records for a fine-tune (the card facts agreed with it), with a local data folder."""
    return {"trained_with": "resnet_hub.train", "dataset": str(data_dir), "train_split": "train", "epoch": 1,
            "top1": 75.0, "top5": 100.0,
            "model_name": "shapes_r18_ft", "repo_id": "alice/shapes_r18_ft",
            "base_model": resnet_hub.hub_repo_id(STOCK),
            "pretrained": f"hub:{STOCK}", "dataset_name": "shapes", "ema": True,
            "plan": {"opt": "adamw", "lr": 0.0005, "sched": "cosine", "epochs": 2, "warmup_epochs": 0,
                     "smoothing": 0.1, "img_size": 224, "init": str(data_dir / "start.safetensors"),
                     "momentum": None}}


def _usage_names(text):
    """Every model a usage snippet of a card loads: timm names, transformers repos, hf download, get_model."""
    import re

    return set(re.findall(r'create_model\("([^"]+)"', text) + re.findall(r'model="([^"]+)"', text)
               + re.findall(r'from_pretrained\("([^"]+)"', text) + re.findall(r"hf download (\S+)", text)
               + re.findall(r'get_model\("([^"]+)"', text))


def test_fine_tuned_card_describes_these_weights(tmp_path):
    from resnet_hub.hub.card import MeasuredResult

    data_dir = tmp_path / "private" / "shapes"
    model = timm.create_model(STOCK, num_classes=4, pretrained_cfg_overlay={"label_names": list("abcd")})
    text = render_card(load_config(STOCK), model, _fine_tune_provenance(data_dir),
                       measured=[MeasuredResult("shapes", "validation", 40, 75.0, 100.0)])
    card, data = _card(text)
    assert card.text.lstrip().startswith("# shapes_r18_ft\n")
    assert _usage_names(card.text) == {"hf-hub:alice/shapes_r18_ft", "alice/shapes_r18_ft",
                                       "local-dir:shapes_r18_ft"}
    assert f"hub:{STOCK}\"" not in card.text and "alice/shapes_r18_ft" in card.text
    assert data["base_model"] == resnet_hub.hub_repo_id(STOCK) and data["base_model_relation"] == "finetune"
    assert data["datasets"] == ["shapes"]
    model_name, results = model_index_to_eval_results(data["model-index"])
    assert model_name == "shapes_r18_ft"
    assert {(r.dataset_name, r.dataset_type, r.metric_type, r.metric_value) for r in results} == {
        ("shapes", "shapes", "accuracy", 75.0)}  # no top-5 for 4 classes, no mmpretrain figure
    assert "top-5" not in card.text.lower() and "top_k=4" in card.text and "topk=4" in card.text
    assert "`top5`" not in card.text and "- `top1`: 75" in card.text  # the run's record, less what 4 classes void
    assert "momentum" not in card.text and "- `init`: start.safetensors" in card.text  # unset: not shown
    assert str(tmp_path) not in text and "private" not in text  # no local path, on any line
    recipe = card.text.split("## Training recipe", 1)[1].split("## Citation")[0]
    assert "- `opt`: adamw" in recipe and "- `sched`: cosine" in recipe and "- `epochs`: 2" in recipe
    assert "ILSVRC" not in recipe and "100 epochs" not in recipe and "moving average" in recipe
    assert "69.9" not in card.text and "nothing was retrained" not in card.text


@pytest.mark.parametrize("which", ["release", "trained", "checkpoint"])
def test_config_json_description_is_true_of_the_weights(tmp_path, which):
    cfg = load_config(CIFAR)
    provenance = {"release": release_provenance(CIFAR), "trained": _fine_tune_provenance(tmp_path),
                  "checkpoint": {"source_file": "mine.pth", "source_sha256": "ab" * 32}}[which]
    out = make_bundle(CIFAR, tmp_path / which, provenance=provenance)
    pretrained_cfg = json.loads((out / "config.json").read_text())["pretrained_cfg"]
    description = pretrained_cfg["description"]
    if which == "release":
        assert description == f"mmpretrain {CIFAR}, converted from {cfg.checkpoint.url}"
        assert "origin_url" in pretrained_cfg
    else:
        assert cfg.checkpoint.url not in description and "origin_url" not in pretrained_cfg
        assert ("not mmpretrain's release" in description) == (which == "checkpoint")
    if which == "trained":
        assert description.startswith("shapes_r18_ft: ") and "fine-tuned from hub:" in description
        assert str(tmp_path) not in (out / "model.safetensors").read_bytes()[:20000].decode("utf-8", "replace")
    validate_bundle(out)


def test_top5_only_where_there_are_more_than_five_classes(tmp_path):
    from resnet_hub.hub.bundle import write_bundle
    from resnet_hub.hub.card import MeasuredResult, update_card

    five = timm.create_model(STOCK, num_classes=5, pretrained_cfg_overlay={"label_names": list("abcde")})
    bundles = {1000: make_bundle(STOCK, tmp_path / "1000", provenance=_fine_tune_provenance(tmp_path)),
               5: write_bundle(five, load_config(STOCK), tmp_path / "5", provenance=_fine_tune_provenance(tmp_path))}
    for n, folder in bundles.items():
        update_card(folder, MeasuredResult("shapes", "validation", 40, 80.0, 100.0))
        card, data = _card((folder / "README.md").read_text())
        _, results = model_index_to_eval_results(data["model-index"])
        assert ({r.metric_type for r in results} == {"accuracy", "top_5_accuracy"}) == (n > 5)
        assert ("| top-5 (%) |" in card.text) == (n > 5) and "| shapes | validation | 40 | 80.00 |" in card.text


# ----------------------------------------------------------------------------- bundles


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(CIFAR, tmp_path_factory.mktemp("bundles") / CIFAR)


@pytest.fixture
def bundle_copy(bundle, tmp_path):
    return shutil.copytree(bundle, tmp_path / CIFAR)


def test_bundle_has_a_card_and_validates(bundle):
    assert sorted(p.name for p in bundle.iterdir()) == sorted(BUNDLE_FILES)
    card = ModelCard.load(bundle / "README.md")
    assert card.data.library_name == "timm" and model_index_to_eval_results(card.data.to_dict()["model-index"])
    checked = validate_bundle(bundle)
    assert (checked.architecture, checked.num_classes, checked.config_name) == ("resnet18_cifar", 10, CIFAR)
    assert {f.name: f.sha256 for f in checked.files} == file_hashes(bundle)
    assert {f.name: f.size for f in checked.files} == {p.name: p.stat().st_size for p in bundle.iterdir()}


def _other_weights(tmp_path):
    return make_bundle("resnet34_8xb16_cifar10", tmp_path / "other") / "model.safetensors"


def _edit_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def _nan_weights(folder):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = str(folder / "model.safetensors")
    with safe_open(path, "pt") as f:
        state, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, path, metadata=metadata)


BAD_BUNDLES = {
    "missing file": (lambda d, t: (d / "config.json").unlink(), "missing config.json"),
    "pickle beside": (lambda d, t: torch.save({"x": torch.ones(1)}, d / "pytorch_model.bin"),
                      "pytorch_model.bin: pickle-format files never go to the Hub"),
    "stray file": (lambda d, t: (d / "notes.txt").write_text("hi"), "notes.txt is not part of a bundle"),
    "pickle as safetensors": (lambda d, t: torch.save({"x": torch.ones(1)}, d / "model.safetensors"),
                              "not a readable safetensors file"),
    "truncated weights": (lambda d, t: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()
                                                                             [:100_000]),
                          "not a readable safetensors file"),
    "weights of another depth": (lambda d, t: shutil.copy(_other_weights(t), d / "model.safetensors"),
                                 "model.safetensors does not match config.json (resnet18_cifar, 10 classes): "
                                 "unexpected layer1.2.bn1.bias"),
    "num_classes disagrees": (lambda d, t: _edit_config(d, num_classes=100, model_args={"num_classes": 100},
                                                        label_names=[str(i) for i in range(100)]),
                              "shape mismatch fc.bias (10,) vs (100,)"),
    "unknown architecture": (lambda d, t: _edit_config(d, architecture="resnet18_cifarx"),
                             "timm cannot build architecture 'resnet18_cifarx'"),
    "nan in weights": (lambda d, t: _nan_weights(d), "model.safetensors: non-finite values in layer2.0.conv1.weight"),
    "not json": (lambda d, t: (d / "config.json").write_text("{"), "config.json: not valid JSON"),
    "card without metadata": (lambda d, t: (d / "README.md").write_text("# hello\n"), "no YAML metadata block"),
    "card with broken metadata": (lambda d, t: (d / "README.md").write_text("---\nmodel-index: [{name: x}]\n---\n"),
                                  "metadata does not parse"),
}


# ----------------------------------------------------------------------------- pushing to LocalHub


@pytest.fixture(scope="module")
def server():
    """The Hub's HTTP API on 127.0.0.1, for every push test in this module; it takes TOKEN only."""
    with LocalHub(token=TOKEN) as hub:
        yield hub


_namespaces = itertools.count()


@pytest.fixture
def ns():
    """A namespace of this test's own on the shared server."""
    return f"user{next(_namespaces)}"


@pytest.fixture
def hub(server, monkeypatch, caplog):
    """``server`` as the real client's endpoint in this process, as HF_ENDPOINT and HF_HUB_DISABLE_XET make it."""
    from huggingface_hub import constants

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    yield server
    server.heal()


@pytest.fixture
def waits(monkeypatch):
    """The client's backoff waits (Retry-After, or 1, 2, 4, 8, 8 s), recorded instead of slept."""
    import huggingface_hub.utils._http as hf_http

    recorded = []
    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=recorded.append))
    return recorded


@pytest.fixture(scope="module")
def stock_bundle(tmp_path_factory):
    return make_bundle(STOCK, tmp_path_factory.mktemp("bundles") / STOCK)


def _bundles_dir(tmp_path, *bundles):
    for b in bundles:
        shutil.copytree(b, tmp_path / "all" / b.name)
    return tmp_path / "all"


def _push(capsys, *argv):
    rc = commands.main(push.add_arguments, push.run, "push", [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _no_token_anywhere(out, err, caplog, token=TOKEN):
    assert token not in out and token not in err and token not in caplog.text


def _bundle_on_hub(hub, repo_id, revision="main"):
    """The files of ``repo_id`` at ``revision`` but the Hub's own .gitattributes; {} for no repo."""
    if repo_id not in hub.repos:
        return {}
    return {k: v for k, v in hub.files(repo_id, revision).items() if k != ".gitattributes"}


def _assert_holds(hub, repo_id, bundle, revision="main"):
    assert _bundle_on_hub(hub, repo_id, revision) == {p.name: p.read_bytes() for p in bundle.iterdir()}


def test_push_makes_one_commit_of_exactly_the_bundle(hub, ns, bundle, capsys, caplog, monkeypatch):
    clients = []
    monkeypatch.setattr(push, "HfApi", lambda **kw: clients.append(kw) or HfApi(**kw))
    repo, start = f"{ns}/{CIFAR}", len(hub.calls)
    rc, out, err = _push(capsys, bundle, "--repo-id", repo)
    assert rc == 0, err
    assert clients == [{"token": TOKEN, "library_name": "resnet_hub", "library_version": resnet_hub.__version__}]
    _assert_holds(hub, repo, bundle)
    ours, created = hub.log(repo)
    assert created.message == "initial commit" and ours.parent == created.sha
    assert ours.message.startswith(f"Upload {CIFAR}: model.safetensors, config.json, README.md\n\nPushed by resnet_hub")
    assert ours.tree["model.safetensors"].lfs and not ours.tree["config.json"].lfs  # the LFS path, not Xet
    calls = hub.calls[start:]
    assert [c.route for c in calls] == ["create", "paths-info", "validate-yaml", "preupload", "lfs-batch",
                                        "lfs-upload", "lfs-verify", "commit"]
    assert all(f"resnet_hub/{resnet_hub.__version__}" in c.user_agent for c in calls if c.route != "lfs-upload")
    assert f"{repo}: committed model.safetensors, config.json, README.md: {hub.url}/{repo}/commit/{ours.sha}" in out
    _no_token_anywhere(out, err, caplog)


def test_unchanged_repush_makes_no_commit(hub, ns, bundle, capsys, caplog):
    repo = f"{ns}/{CIFAR}"
    assert _push(capsys, bundle, "--repo-id", repo)[0] == 0
    log, start = hub.log(repo), len(hub.calls)
    rc, out, err = _push(capsys, bundle, "--repo-id", repo)
    assert rc == 0 and hub.log(repo) == log and "up to date, no commit" in out
    assert [c.route for c in hub.calls[start:]] == ["create", "paths-info"]  # nothing uploaded
    _no_token_anywhere(out, err, caplog)


def test_card_edited_on_the_hub_is_kept_unless_overwrite(hub, ns, bundle, tmp_path, capsys, caplog):
    repo = f"{ns}/{CIFAR}"
    assert _push(capsys, bundle, "--repo-id", repo)[0] == 0
    edited = b"---\nlibrary_name: timm\n---\n# edited on the Hub\n"
    hub.add(repo, {"README.md": edited})  # someone edits the card on the website
    log = hub.log(repo)
    rc, out, _ = _push(capsys, bundle, "--repo-id", repo)
    assert rc == 0 and hub.log(repo) == log and "README.md on the Hub differs from ours and was kept" in out
    retrained = make_bundle(CIFAR, tmp_path / "new", seed=1)  # new weights, same card
    rc, out, _ = _push(capsys, retrained, "--repo-id", repo)
    assert rc == 0 and "was kept" in out and hub.log(repo)[0].message.startswith(f"Upload {CIFAR}: model.safetensors\n")
    assert hub.files(repo)["README.md"] == edited
    assert hub.files(repo)["model.safetensors"] == (retrained / "model.safetensors").read_bytes()
    rc, out, err = _push(capsys, retrained, "--repo-id", repo, "--overwrite-card")
    assert rc == 0 and hub.log(repo)[0].message.startswith(f"Upload {CIFAR}: README.md\n")
    _assert_holds(hub, repo, retrained)
    _no_token_anywhere(out, err, caplog)


def test_revision_private_and_pull_request(hub, ns, bundle, capsys):
    repo = f"{ns}/{CIFAR}"
    rc, out, err = _push(capsys, bundle, "--repo-id", repo, "--private", "--revision", "dev", "--create-pr")
    assert rc == 0, err
    state = hub.repos[repo]
    assert state.private and set(state.refs) == {"main", "dev", "refs/pr/1"}
    assert "README.md" not in hub.files(repo, "dev")  # a pull request, not a commit to the branch
    _assert_holds(hub, repo, bundle, "refs/pr/1")
    assert hub.log(repo, "refs/pr/1")[1].sha == state.refs["dev"] and f"{hub.url}/{repo}/discussions/1" in out
    rc, out, err = _push(capsys, bundle, "--repo-id", repo, "--revision", "dev")  # the branch exists now: fine
    assert rc == 0, err
    _assert_holds(hub, repo, bundle, "dev")
    assert _bundle_on_hub(hub, repo, "main") == {}


def test_all_pushes_every_config_to_the_namespace_and_a_collection(hub, ns, bundle, stock_bundle, tmp_path, capsys,
                                                                     monkeypatch):
    clients = []
    monkeypatch.setattr(push, "HfApi", lambda **kw: clients.append(kw) or HfApi(**kw))
    monkeypatch.setenv("RESNET_HUB_NAMESPACE", ns)
    folder = _bundles_dir(tmp_path, bundle, stock_bundle)
    for _ in range(2):  # the second time: nothing to commit, and the same collection
        rc, out, err = _push(capsys, "--all", folder, "--collection", "mmpretrain ResNets")
        assert rc == 0, err
        for b in (bundle, stock_bundle):
            _assert_holds(hub, f"{ns}/{b.name}", b)
            assert len(hub.log(f"{ns}/{b.name}")) == 2
        [collection] = [c for c in hub.collections.values() if c["owner"]["name"] == ns]
        assert [i["id"] for i in collection["items"]] == [f"{ns}/{CIFAR}", f"{ns}/{STOCK}"]
        assert f"collection {hub.url}/collections/{ns}/mmpretrain-resnets-" in out
    assert "up to date, no commit" in out and len(clients) == 2  # one client per run


BACKOFF = {"preupload", "lfs-batch", "lfs-upload", "lfs-verify"}  # the routes huggingface_hub retries
FAILURES = {  # route, status (None: the connection drops), Retry-After, what the error line says
    "create 401": ("create", 401, None, "the Hub refused the token (401; set HF_TOKEN or run `hf auth login`"),
    "create 403": ("create", 403, None, "the token may not write there (403 Forbidden)"),
    "paths-info 429": ("paths-info", 429, 7, "rate limited by the Hub (429, retry after 7 s)"),
    "validate-yaml 500": ("validate-yaml", 500, None, "the Hub had a server error (500; try again later)"),
    "preupload 429": ("preupload", 429, 3, "rate limited by the Hub (429, retry after 3 s)"),
    "lfs-batch 500": ("lfs-batch", 500, None, "the Hub had a server error (500"),
    "lfs-upload dropped": ("lfs-upload", None, None,
                           "Error while uploading 'model.safetensors' to the Hub: connection failed ("),
    "lfs-verify 403": ("lfs-verify", 403, None,
                       "Error while uploading 'model.safetensors' to the Hub: the token may not write there (403"),
    "commit 500": ("commit", 500, None, "the Hub had a server error (500"),
    "commit dropped": ("commit", None, None, "connection failed (RemoteProtocolError)"),
    "commit 401": ("commit", 401, None, "the Hub refused the token (401"),
    "branch 403": ("branch", 403, None, "the token may not write there (403 Forbidden)"),
}
STEPS = {"create": "create_repo", "paths-info": "get_paths_info", "branch": "create_branch dev"}  # else create_commit


@pytest.mark.slow
@pytest.mark.parametrize("case", FAILURES)
def test_failure_at_each_step_is_one_line_and_the_same_command_then_completes(case, hub, ns, bundle, waits, capsys,
                                                                               caplog):
    route, status, retry_after, says = FAILURES[case]
    repo, before = f"{ns}/{CIFAR}", file_hashes(bundle)
    argv = [bundle, "--repo-id", repo] + (["--revision", "dev"] if route == "branch" else [])
    # a server (or a proxy) that repeats the request, token and all, in its error body: the token must not reach
    # the user (httpcore's own DEBUG log shows response headers, so the echo is in the body only)
    fault = hub.fail(route, status, retry_after=retry_after, message=f"request had Authorization: Bearer {TOKEN}")
    rc, out, err = _push(capsys, *argv)
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: pushing {bundle} to {repo} failed at {STEPS.get(route, 'create_commit')}: {says}")
    assert err.endswith("(local files untouched)\n") and (status is None or "Bearer ***" in err)
    _no_token_anywhere(out, err, caplog)
    retried = route in BACKOFF and status != 403
    expected = ([retry_after + 1] * 5 if retry_after else [1, 2, 4, 8, 8]) if retried else []
    assert waits == expected and fault.hits == 1 + len(expected)  # Retry-After honoured, then given up
    assert file_hashes(bundle) == before
    assert _bundle_on_hub(hub, repo) == {} and (repo not in hub.repos or list(hub.repos[repo].refs) == ["main"])
    hub.heal()
    rc, out, err = _push(capsys, *argv)
    assert rc == 0, err
    _assert_holds(hub, repo, bundle, "dev" if route == "branch" else "main")
    assert len(hub.log(repo, "dev" if route == "branch" else "main")) == 2


def test_a_wrong_token_is_refused_and_not_printed(hub, ns, bundle, capsys, caplog, monkeypatch):
    wrong = "hf_FAKEwrongTOKEN0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", wrong)
    rc, out, err = _push(capsys, bundle, "--repo-id", f"{ns}/{CIFAR}")
    assert rc == 1 and err.count("\n") == 1 and "failed at create_repo: the Hub refused the token (401" in err
    _no_token_anywhere(out, err, caplog, token=wrong)
    assert f"{ns}/{CIFAR}" not in hub.repos


def test_all_with_one_failing_repo_says_what_was_pushed_and_a_rerun_pushes_the_rest(
        hub, ns, bundle, stock_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RESNET_HUB_NAMESPACE", ns)
    folder = _bundles_dir(tmp_path, bundle, stock_bundle)
    hub.fail("commit", 500, repo_id=f"{ns}/{STOCK}")
    rc, out, err = _push(capsys, "--all", folder)
    assert rc == 1 and err.count("\n") == 1 and "failed at create_commit: the Hub had a server error (500" in err
    assert err.endswith(f"; pushed: {ns}/{CIFAR}; not pushed: {ns}/{STOCK} (run the same command again to push them)\n")
    _assert_holds(hub, f"{ns}/{CIFAR}", bundle)
    assert _bundle_on_hub(hub, f"{ns}/{STOCK}") == {}
    cifar_log = hub.log(f"{ns}/{CIFAR}")
    hub.heal()
    rc, out, err = _push(capsys, "--all", folder)
    assert rc == 0, err
    assert hub.log(f"{ns}/{CIFAR}") == cifar_log and f"{ns}/{CIFAR}: up to date, no commit" in out
    _assert_holds(hub, f"{ns}/{STOCK}", stock_bundle)


@pytest.mark.parametrize("case", BAD_BUNDLES)
def test_bad_bundle_is_refused_with_one_line_and_nothing_changes(case, hub, bundle_copy, tmp_path, capsys):
    spoil, message = BAD_BUNDLES[case]
    spoil(bundle_copy, tmp_path)
    before, start = file_hashes(bundle_copy), len(hub.requests)
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_bundle(bundle_copy)
    rc = commands.main(push.add_arguments, push.run, "push", [str(bundle_copy), "--repo-id", "someone/x"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1 and message.split(" (")[0] in err
    assert hub.requests[start:] == [] and file_hashes(bundle_copy) == before


def test_all_refuses_a_folder_that_is_not_a_config(hub, bundle, tmp_path, capsys):
    shutil.copytree(bundle, tmp_path / "all" / "resnet18_8xb16_cifar1O")
    start = len(hub.requests)
    rc, _, err = _push(capsys, "--all", tmp_path / "all")
    assert rc == 1 and "closest: resnet18_8xb16_cifar10" in err and hub.requests[start:] == []


def test_dry_run_prints_the_plan_and_opens_no_connection(bundle, capsys, monkeypatch):
    monkeypatch.setattr(push, "HfApi", lambda **kw: pytest.fail("HfApi constructed in a dry run"))
    monkeypatch.setattr(push, "get_token", lambda: pytest.fail("token read in a dry run"))
    rc, out, err = _push(capsys, bundle, "--repo-id", f"someone/{CIFAR}", "--dry-run", "--collection", "zoo")
    assert rc == 0, err
    assert f"someone/{CIFAR} <- {bundle}" in out and "collection 'zoo' in someone: 1 repos" in out
    for f in validate_bundle(bundle).files:
        assert f"{f.size:,} bytes  sha256 {f.sha256}" in out


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "someone/has space", "someone/-dash", "x" * 100 + "/y"])
def test_invalid_repo_id(hub, bundle, capsys, repo_id):
    start = len(hub.requests)
    rc, out, err = _push(capsys, bundle, "--repo-id", repo_id)
    assert rc == 1 and err.startswith(f"error: invalid repo id {repo_id!r}") and err.count("\n") == 1
    assert hub.requests[start:] == []


def test_dir_and_all_together_is_refused(hub, bundle, capsys):
    start = len(hub.requests)
    rc, _, err = _push(capsys, bundle, "--all", bundle.parent)
    assert rc == 1 and "not both" in err and hub.requests[start:] == []


@pytest.fixture
def logged_out(monkeypatch, tmp_path):
    """No HF_TOKEN and no saved login, as on a fresh machine."""
    from huggingface_hub import constants

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "home" / "token"))
    return tmp_path / "home" / "token"


def test_no_token_is_a_clear_error(logged_out, bundle, capsys, monkeypatch):
    monkeypatch.setattr(push, "HfApi", lambda **kw: pytest.fail("HfApi constructed without a token"))
    rc, out, err = _push(capsys, bundle, "--repo-id", "someone/x")
    assert rc == 1 and err == ("error: no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login` "
                               "(nothing was pushed)\n")


def test_saved_login_is_used(hub, logged_out, ns, bundle, capsys, caplog):
    logged_out.parent.mkdir()
    logged_out.write_text(TOKEN)  # the server takes no other token
    rc, out, err = _push(capsys, bundle, "--repo-id", f"{ns}/x")
    assert rc == 0, err
    _assert_holds(hub, f"{ns}/x", bundle)
    _no_token_anywhere(out, err, caplog)


def test_token_flag_is_used_as_hf_upload_takes_it(hub, logged_out, ns, bundle, capsys, caplog):
    """Issue 22 case 8: --token is accepted (it was "unrecognized arguments: --token hf_..." before) and never shown."""
    rc, out, err = _push(capsys, bundle, "--repo-id", f"{ns}/x", "--token", TOKEN)
    assert rc == 0, err
    _assert_holds(hub, f"{ns}/x", bundle)
    _no_token_anywhere(out, err, caplog)
    rc, out, err = _push(capsys, bundle, "--repo-id", f"{ns}/y", "--token", TOKEN[:-1] + "x")
    assert rc == 1 and "the Hub refused the token (401" in err
    _no_token_anywhere(out, err, caplog, token=TOKEN[:-1] + "x")


def test_unreachable_hub_with_the_real_client(bundle, capsys, caplog, monkeypatch):
    from huggingface_hub import constants

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    before = file_hashes(bundle)
    rc, out, err = _push(capsys, bundle, "--repo-id", "someone/x")
    assert rc == 1 and err.startswith(f"error: pushing {bundle} to someone/x failed at create_repo: connection failed")
    assert err.count("\n") == 1 and file_hashes(bundle) == before
    _no_token_anywhere(out, err, caplog)


# ----------------------------------------------------------------------------- as a user runs it: new processes

LOGITS = """
import resnet_hub, timm, torch
torch.manual_seed(0)
x = torch.randn(2, 3, 32, 32)
local, *pushed = (timm.create_model(n, pretrained=True).eval() for n in ({local!r}, *{pushed!r}))
with torch.no_grad():
    want = local(x)
    assert want.shape == (2, 10) and want.std() > 0
    for model in pushed:
        assert torch.equal(model(x), want), (model(x) - want).abs().max()
print(*(type(m).__name__ for m in pushed))
"""


def _user_env(server, ns, tmp_path):
    return {"HF_ENDPOINT": server.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1", "RESNET_HUB_NAMESPACE": ns,
            "HF_HUB_CACHE": str(tmp_path / "cache")}


@pytest.mark.slow
def test_script_push_then_hub_name_loads_it_back_with_equal_logits(server, ns, bundle, tmp_path):
    env = _user_env(server, ns, tmp_path)
    proc = run_command([REPO / "scripts" / "push_to_hub.py", "--all", _bundles_dir(tmp_path, bundle)], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert TOKEN not in proc.stdout + proc.stderr
    _assert_holds(server, f"{ns}/{CIFAR}", bundle)
    proc = run_python(LOGITS.format(local=f"local-dir:{bundle}", pushed=[f"hub:{CIFAR}", f"hf-hub:{ns}/{CIFAR}"]),
                      env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["CifarResNet", "CifarResNet"]
    assert ("GET", f"/{ns}/{CIFAR}/resolve/main/model.safetensors") in server.requests


@pytest.mark.slow
def test_cli_failure_is_one_line_in_a_real_process_and_a_rerun_completes(server, ns, bundle, tmp_path):
    env, repo = _user_env(server, ns, tmp_path), f"{ns}/{CIFAR}"
    argv = ["-m", "resnet_hub.cli", "push", bundle, "--repo-id", repo]  # what `resnet-hub push` runs
    server.fail("preupload", 429, retry_after=0, repo_id=repo)  # the client retries 5 times, 1 s apart, then fails
    try:
        proc = run_command(argv, env=env)
    finally:
        server.heal()
    assert proc.returncode == 1 and "Traceback" not in proc.stdout, proc.stdout
    assert proc.stderr.startswith(f"error: pushing {bundle} to {repo} failed at create_commit: rate limited by the Hub")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and TOKEN not in proc.stderr, proc.stderr
    assert _bundle_on_hub(server, repo) == {}
    proc = run_command(argv, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    _assert_holds(server, repo, bundle)


# ----------------------------------------------------------------------------- loading what was published

EQUAL = """
import json, sys, timm, torch
from safetensors.torch import load_file

def check(name, expected):
    model = timm.create_model(name, pretrained=True)
    want, got = load_file(expected), model.state_dict()
    assert set(want) == set(got), name
    assert all(torch.equal(got[k], want[k]) for k in want), name
    return type(model).__name__
"""


def test_plain_timm_loads_stock_bundles_without_resnet_hub(tmp_path, local_hub):
    folder = make_bundle(STOCK, tmp_path / STOCK)
    local_hub.add(f"someone/{STOCK}", {p.name: p.read_bytes() for p in folder.iterdir()})
    code = "import sys; sys.modules['resnet_hub'] = None  # importing it now fails\n" + EQUAL + (
        f"print(check('local-dir:{folder}', '{folder}/model.safetensors'),\n"
        f"      check('hf-hub:someone/{STOCK}', '{folder}/model.safetensors'))\n"
        "assert sys.modules['resnet_hub'] is None and not [m for m in sys.modules if m.startswith('resnet_hub.')]\n"
    )
    proc = run_python(code, env={"PYTHONPATH": "", "HF_ENDPOINT": local_hub.url, "HF_HUB_CACHE": str(tmp_path / "c")},
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ResNet", "ResNet"]
    assert any(p.endswith(f"/someone/{STOCK}/resolve/main/model.safetensors") for _, p in local_hub.requests)
