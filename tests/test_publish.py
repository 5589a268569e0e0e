"""Publishing: model cards, bundle checks, the push command, and loading what was pushed.

Uploads go to an in-process recording double of ``HfApi`` (the real Hub is unreachable here);
downloads go through the real huggingface_hub client and timm, from ``LocalHub`` on 127.0.0.1.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import shutil

import pytest
import timm
import torch
from conftest import run_python
from huggingface_hub import ModelCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.repocard_data import model_index_to_eval_results
from publish_helpers import PROVENANCE, RecordingHub, file_hashes, make_bundle
from safetensors.torch import load_file

import resnet_hub
from resnet_hub import commands, list_configs, load_config
from resnet_hub.hub import push
from resnet_hub.hub.bundle import BUNDLE_FILES, validate_bundle
from resnet_hub.hub.card import measure_complexity, render_card
from resnet_hub.zoo.configs import InitFrom

CIFAR = "resnet18_8xb16_cifar10"  # plugin architecture resnet18_cifar
STOCK = "resnet18_8xb32_in1k"  # plain timm resnet18
TOKEN = "hf_TESTtokenNEVERprinted0123456789"


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
    card, data = _card(render_card(cfg, model, PROVENANCE))
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
                 cfg.checkpoint.url, PROVENANCE["source_sha256"], "2.5e-06", "He, Kaiming", "MMPreTrain Contributors"):
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
    provenance = {"source_url": PROVENANCE["source_url"]} | ({"parity": parity} if parity is not None else {})
    text = render_card(load_config(CIFAR), _meta_model(CIFAR), provenance)
    assert expected in text
    assert "not recorded (the released file name carries its first 8 hex digits, `bd6371c8`)" in text


def test_weights_not_converted_from_the_release_claim_no_results():
    text = render_card(load_config(CIFAR), _meta_model(CIFAR), {"trained_by": "scripts/train.py", "epochs": 3})
    card, data = _card(text)
    assert "model-index" not in data and "datasets" not in data and data["library_name"] == "timm"
    assert "were **not** converted" in card.text and "- `trained_by`: scripts/train.py" in card.text


def test_base_model_only_for_a_hub_repo():
    cub = load_config("resnet50_8xb8_cub")
    text = render_card(cub, _meta_model(cub.name), PROVENANCE)
    assert "base_model" not in _card(text)[1]
    assert f"fine-tuned from <{cub.training.init_from.url}>, a checkpoint that is not a Hub repo" in text
    hub_init = dataclasses.replace(cub, training=dataclasses.replace(
        cub.training, init_from=InitFrom(url="hf-hub:someone/resnet50-in21k", prefix=None)))
    assert _card(render_card(hub_init, _meta_model(cub.name), PROVENANCE))[1]["base_model"] == "someone/resnet50-in21k"


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


@pytest.mark.parametrize("case", BAD_BUNDLES)
def test_bad_bundle_is_refused_with_one_line_and_nothing_changes(case, bundle_copy, tmp_path, capsys, monkeypatch):
    spoil, message = BAD_BUNDLES[case]
    spoil(bundle_copy, tmp_path)
    before = file_hashes(bundle_copy)
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_bundle(bundle_copy)
    hub = RecordingHub()
    monkeypatch.setattr(push, "HfApi", hub.client)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    rc = commands.main(push.add_arguments, push.run, "push", [str(bundle_copy), "--repo-id", "someone/x"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and err.count("\n") == 1 and message.split(" (")[0] in err
    assert hub.clients == [] and file_hashes(bundle_copy) == before


# ----------------------------------------------------------------------------- pushing (recording double)


@pytest.fixture
def hub(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    recording = RecordingHub()
    monkeypatch.setattr(push, "HfApi", recording.client)
    return recording


def _push(capsys, *argv):
    rc = commands.main(push.add_arguments, push.run, "push", [str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _no_token_anywhere(out, err, caplog):
    assert TOKEN not in out and TOKEN not in err and TOKEN not in caplog.text


def test_push_makes_one_commit_of_exactly_the_bundle(hub, bundle, capsys, caplog):
    rc, out, err = _push(capsys, bundle, "--repo-id", f"someone/{CIFAR}")
    assert rc == 0, err
    assert hub.clients == [{"token": TOKEN, "library_name": "resnet_hub", "library_version": resnet_hub.__version__}]
    assert [c for c, _ in hub.calls] == ["create_repo", "get_paths_info", "create_commit"]
    assert hub.calls[0][1]["exist_ok"] is True
    assert hub.commits == [{"repo_id": f"someone/{CIFAR}", "revision": "main", "files": sorted(BUNDLE_FILES),
                            "message": f"Upload {CIFAR}: model.safetensors, config.json, README.md"}]
    files = hub.files(f"someone/{CIFAR}")
    assert {n: hashlib.sha256(files[n]).hexdigest() for n in BUNDLE_FILES} == file_hashes(bundle)
    assert f"someone/{CIFAR}: committed model.safetensors, config.json, README.md" in out
    _no_token_anywhere(out, err, caplog)


def test_unchanged_repush_makes_no_commit(hub, bundle, capsys, caplog):
    assert _push(capsys, bundle, "--repo-id", f"someone/{CIFAR}")[0] == 0
    rc, out, err = _push(capsys, bundle, "--repo-id", f"someone/{CIFAR}")
    assert rc == 0 and len(hub.commits) == 1 and "up to date, no commit" in out
    _no_token_anywhere(out, err, caplog)


def test_card_edited_on_the_hub_is_kept_unless_overwrite(hub, bundle, tmp_path, capsys, caplog):
    repo = f"someone/{CIFAR}"
    assert _push(capsys, bundle, "--repo-id", repo)[0] == 0
    edited = b"---\nlibrary_name: timm\n---\n# edited on the Hub\n"
    hub.repos[repo]["revisions"]["main"]["README.md"] = edited
    rc, out, _ = _push(capsys, bundle, "--repo-id", repo)
    assert rc == 0 and len(hub.commits) == 1 and "README.md on the Hub differs from ours and was kept" in out
    retrained = make_bundle(CIFAR, tmp_path / "new", seed=1)  # new weights, same card
    rc, out, _ = _push(capsys, retrained, "--repo-id", repo)
    assert rc == 0 and hub.commits[-1]["files"] == ["model.safetensors"] and "was kept" in out
    assert hub.files(repo)["README.md"] == edited
    rc, out, err = _push(capsys, retrained, "--repo-id", repo, "--overwrite-card")
    assert rc == 0 and hub.commits[-1]["files"] == ["README.md"]
    assert hub.files(repo)["README.md"] == (retrained / "README.md").read_bytes()
    _no_token_anywhere(out, err, caplog)


def test_revision_private_and_pull_request(hub, bundle, capsys):
    repo = f"someone/{CIFAR}"
    rc, out, err = _push(capsys, bundle, "--repo-id", repo, "--private", "--revision", "dev", "--create-pr")
    assert rc == 0, err
    assert hub.repos[repo]["private"] and ("create_branch", {"repo_id": repo, "branch": "dev", "exist_ok": True}) in \
        hub.calls
    assert hub.commits[0]["revision"] == "refs/pr/1" and f"https://huggingface.co/{repo}/discussions/1" in out
    assert "README.md" not in hub.files(repo, "dev")  # a pull request, not a commit to the branch


def test_all_pushes_every_config_to_the_namespace_and_a_collection(hub, bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RESNET_HUB_NAMESPACE", "someone")
    shutil.copytree(bundle, tmp_path / "all" / CIFAR)
    make_bundle(STOCK, tmp_path / "all" / STOCK)
    rc, out, err = _push(capsys, "--all", tmp_path / "all", "--collection", "mmpretrain ResNets")
    assert rc == 0, err
    assert [c["repo_id"] for c in hub.commits] == [f"someone/{CIFAR}", f"someone/{STOCK}"]
    assert all(c["files"] == sorted(BUNDLE_FILES) for c in hub.commits) and len(hub.clients) == 1
    assert list(hub.collections.values()) == [[f"someone/{CIFAR}", f"someone/{STOCK}"]]
    assert "collection https://huggingface.co/collections/someone/mmpretrain-resnets" in out


def test_all_refuses_a_folder_that_is_not_a_config(hub, bundle, tmp_path, capsys):
    shutil.copytree(bundle, tmp_path / "all" / "resnet18_8xb16_cifar1O")
    rc, _, err = _push(capsys, "--all", tmp_path / "all")
    assert rc == 1 and "closest: resnet18_8xb16_cifar10" in err and hub.clients == []


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
    rc, out, err = _push(capsys, bundle, "--repo-id", repo_id)
    assert rc == 1 and err.startswith(f"error: invalid repo id {repo_id!r}") and err.count("\n") == 1
    assert hub.clients == []


def test_dir_and_all_together_is_refused(hub, bundle, capsys):
    rc, _, err = _push(capsys, bundle, "--all", bundle.parent)
    assert rc == 1 and "not both" in err and hub.clients == []


def _server_error(message):
    http = importlib.import_module(HfHubHTTPError.__mro__[1].__module__)  # the HTTP library huggingface_hub uses
    url = "https://huggingface.co/api/models/someone/x/commit/main"
    return HfHubHTTPError(message, response=http.Response(500, request=http.Request("POST", url)))


@pytest.mark.parametrize("step, error", [
    ("create_commit", lambda: _server_error(f"500 Server Error for url with {TOKEN} in it")),
    ("get_paths_info", lambda: ConnectionResetError(f"connection reset while sending {TOKEN}")),
])
def test_network_failure_mid_push(hub, bundle, capsys, caplog, step, error):
    before = file_hashes(bundle)
    hub.fail[step] = error()
    rc, out, err = _push(capsys, bundle, "--repo-id", f"someone/{CIFAR}")
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith(f"error: pushing {bundle} to someone/{CIFAR} failed at {step}: ")
    assert "***" in err and "(local files untouched)" in err
    assert hub.commits == [] and file_hashes(bundle) == before
    _no_token_anywhere(out, err, caplog)


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
    assert rc == 1 and err == "error: no Hugging Face token: set HF_TOKEN or run `hf auth login` (nothing was pushed)\n"


def test_saved_login_is_used(logged_out, bundle, capsys, caplog, monkeypatch):
    logged_out.parent.mkdir()
    logged_out.write_text(TOKEN)
    recording = RecordingHub()
    monkeypatch.setattr(push, "HfApi", recording.client)
    rc, out, err = _push(capsys, bundle, "--repo-id", "someone/x")
    assert rc == 0 and recording.clients[0]["token"] == TOKEN and len(recording.commits) == 1
    _no_token_anywhere(out, err, caplog)


def test_unreachable_hub_with_the_real_client(bundle, capsys, caplog, monkeypatch):
    from huggingface_hub import constants

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    before = file_hashes(bundle)
    rc, out, err = _push(capsys, bundle, "--repo-id", "someone/x")
    assert rc == 1 and err.startswith(f"error: pushing {bundle} to someone/x failed at create_repo: ")
    assert err.count("\n") == 1 and file_hashes(bundle) == before
    _no_token_anywhere(out, err, caplog)


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


def test_hub_name_end_to_end_after_a_push(hub, bundle, tmp_path, capsys, monkeypatch, local_hub):
    """Push through the recording double, serve exactly what was committed, load it with hub: names."""
    monkeypatch.setenv("RESNET_HUB_NAMESPACE", "someone")
    shutil.copytree(bundle, tmp_path / "all" / CIFAR)
    rc, _, err = _push(capsys, "--all", tmp_path / "all")
    assert rc == 0, err
    committed = hub.files(f"someone/{CIFAR}")
    local_hub.add(f"someone/{CIFAR}", committed)
    expected = tmp_path / "committed.safetensors"
    expected.write_bytes(committed["model.safetensors"])
    code = "import resnet_hub\n" + EQUAL + (
        f"print(check('hub:{CIFAR}', '{expected}'), check('hf-hub:someone/{CIFAR}', '{expected}'),\n"
        f"      check('local-dir:{bundle}', '{expected}'))\n"
    )
    env = {"HF_ENDPOINT": local_hub.url, "HF_HUB_CACHE": str(tmp_path / "c"), "RESNET_HUB_NAMESPACE": "someone"}
    proc = run_python(code, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["CifarResNet"] * 3
    assert load_file(str(expected)).keys() == load_file(str(bundle / "model.safetensors")).keys()
