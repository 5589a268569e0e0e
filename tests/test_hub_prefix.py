"""`hub:` names: real safetensors through timm's own Hub loader, offline cache and HF_ENDPOINT."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from conftest import REPO, run_python
from hub_server import fill_hf_cache
from safetensors.torch import save

import resnet_hub
from resnet_hub.zoo import hub_prefix

NAME = "resnet18_8xb16_cifar10"

LOAD = """
import json, timm, torch, resnet_hub
from safetensors.torch import load_file
kwargs = json.loads({kwargs!r})
model = timm.create_model({name!r}, pretrained=True, **kwargs)
expected = load_file({expected!r})
got = model.state_dict()
same = [k for k in expected if k in got and got[k].shape == expected[k].shape and torch.equal(got[k], expected[k])]
print(json.dumps(dict(n=len(expected), same=len(same), fc=list(got['fc.weight'].shape),
                      conv1=list(got['conv1.weight'].shape))))
"""


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(1)
    model = timm.create_model(NAME)
    for m in model.modules():  # non-trivial BN statistics, so a skipped buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("w") / "expected.safetensors"
    data = save({k: v.contiguous() for k, v in model.state_dict().items()})
    path.write_bytes(data)
    return path, data


def _run(name, expected, env, kwargs=None):
    proc = run_python(LOAD.format(name=name, expected=str(expected), kwargs=json.dumps(kwargs or {})), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hub_name_loads_from_filled_cache_offline(tmp_path, weights):
    expected, data = weights
    fill_hf_cache(tmp_path / "hub", f"someone/{NAME}", {"model.safetensors": data})
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "RESNET_HUB_NAMESPACE": "someone",
           "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there: any request would fail
    out = _run(f"hub:{NAME}", expected, env)
    assert out["same"] == out["n"] > 100


def test_hub_name_downloads_through_hf_endpoint(tmp_path, weights, local_hub):
    expected, data = weights
    local_hub.add(f"someone/{NAME}", {"model.safetensors": data})
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": local_hub.url, "RESNET_HUB_NAMESPACE": "someone"}
    out = _run(f"hub:{NAME}", expected, env)
    assert out["same"] == out["n"]
    assert any("/someone/resnet18_8xb16_cifar10/resolve/main/model.safetensors" in p for _, p in local_hub.requests)
    # now cached: offline works, with the server gone from the environment
    out = _run(f"hub:{NAME}", expected, dict(env, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9"))
    assert out["same"] == out["n"]


def test_hub_name_revision(tmp_path, weights, local_hub):
    expected, data = weights
    local_hub.add(f"someone/{NAME}", {"model.safetensors": data}, revision="v1")
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_ENDPOINT": local_hub.url, "RESNET_HUB_NAMESPACE": "someone"}
    assert _run(f"hub:{NAME}@v1", expected, env)["same"] > 100
    assert any("/resolve/v1/" in p for _, p in local_hub.requests)


def test_num_classes_and_in_chans_adapt_pretrained(tmp_path, weights):
    expected, data = weights
    fill_hf_cache(tmp_path / "hub", f"someone/{NAME}", {"model.safetensors": data})
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "RESNET_HUB_NAMESPACE": "someone"}
    out = _run(f"hub:{NAME}", expected, env, kwargs=dict(num_classes=3, in_chans=1))
    assert out["fc"] == [3, 512] and out["conv1"] == [64, 1, 3, 3]
    # everything but the reset head and the adapted first conv is the pretrained weights
    assert out["same"] == out["n"] - 3


def test_plain_name_pretrained_uses_namespace_at_import(tmp_path, weights):
    expected, data = weights
    fill_hf_cache(tmp_path / "hub", f"other/{NAME}", {"model.safetensors": data})
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "RESNET_HUB_NAMESPACE": "other"}
    assert _run(NAME, expected, env)["same"] > 100


def test_missing_repo_offline_is_a_clear_error(tmp_path):
    proc = run_python(f"import timm, resnet_hub; timm.create_model('hub:{NAME}', pretrained=True)",
                      env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode != 0
    assert "resnet-hub/resnet18_8xb16_cifar10" in proc.stderr or "offline" in proc.stderr.lower()


@pytest.mark.parametrize("namespace", ["bad/ns", "-lead", "two..dots", "x" * 200])
def test_invalid_namespace_fails_before_any_download(monkeypatch, namespace):
    import huggingface_hub

    monkeypatch.setenv("RESNET_HUB_NAMESPACE", namespace)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(ValueError, match="RESNET_HUB_NAMESPACE"):
        timm.create_model(f"hub:{NAME}", pretrained=True)


@pytest.mark.parametrize("bad, match", [
    ("hub:", "names no config"),
    ("hub:  ", "names no config"),
    ("hub:resnet50_8xb32_inlk", "closest: resnet50_8xb32_in1k"),
    ("HUB:nope", "unknown config"),
])
def test_bad_hub_names(bad, match):
    with pytest.raises(ValueError, match=match):
        timm.create_model(bad)


def test_pretrained_cfg_with_hub_name_is_refused():
    with pytest.raises(ValueError, match="pretrained_cfg"):
        timm.create_model(f"hub:{NAME}", pretrained_cfg={"num_classes": 10})


def test_hook_is_installed_once_and_other_prefixes_still_work(tmp_path):
    from timm.models import _factory

    hooked = _factory._resolve_model_source
    assert hooked.__resnet_hub__
    hub_prefix.install()
    assert _factory._resolve_model_source is hooked
    timm.models.save_for_hf(timm.create_model(NAME), tmp_path)
    assert isinstance(timm.create_model(f"local-dir:{tmp_path}"), resnet_hub.zoo.models.CifarResNet)


@pytest.mark.parametrize("replacement", [
    None,  # renamed away in a future timm
    lambda model_name, kwargs: None,  # reshaped
])
def test_hook_fails_loudly_when_timm_changes(monkeypatch, replacement):
    from timm.models import _factory

    if replacement is None:
        monkeypatch.delattr(_factory, "_resolve_model_source")
    else:
        monkeypatch.setattr(_factory, "_resolve_model_source", replacement)
    with pytest.raises(ImportError, match="cannot add the 'hub:' prefix to timm"):
        hub_prefix.install()


def test_import_is_warning_free():
    proc = run_python("import resnet_hub", env={"PYTHONWARNINGS": "error"})
    assert proc.returncode == 0, proc.stderr
    assert REPO.is_dir()
