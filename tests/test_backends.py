"""``--backend eager|compile|onnxruntime|auto``: every backend gives eager's results and says which ran."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import requires_mmpretrain
from inference_helpers import CIFAR, photos, random_model, save
from safetensors.torch import save_file

import resnet_hub
from resnet_hub import backends, cli


@pytest.fixture(scope="module")
def model():
    return random_model()


def _agree(results, reference, tolerance):
    assert [r["pred_label"] for r in results] == [e["pred_label"] for e in reference]
    assert max(float(np.abs(r["pred_scores"] - e["pred_scores"]).max()) for r, e in
               zip(results, reference, strict=True)) <= tolerance


def test_onnxruntime_and_auto_give_eagers_results_and_say_so(model):
    images = photos(5)
    reference = resnet_hub.inference_model(model, images, batch_size=2)
    assert {r["backend"] for r in reference} == {"eager"}
    for backend in ("onnxruntime", "auto"):
        results = resnet_hub.inference_model(model, images, batch_size=2, backend=backend)
        assert {r["backend"] for r in results} == {"onnxruntime"}  # auto: ONNX Runtime is installed (test extra)
        _agree(results, reference, 1e-6)  # probabilities; measured max difference 1.5e-8


@pytest.mark.slow
def test_compile_gives_eagers_results_pads_the_last_batch_and_reports_its_compile(model):
    images = photos(3)
    reference = resnet_hub.inference_model(model, images, batch_size=2)
    inferencer = resnet_hub.inference.ImageClassificationInferencer(model, backend="compile")
    assert inferencer.prepare_seconds is None  # compiled on the first batch, not before
    results = inferencer(images, batch_size=2)  # batches of 2 and 1: the 1 is padded, not recompiled
    assert {r["backend"] for r in results} == {"compile"} and inferencer.prepare_seconds > 0
    _agree(results, reference, 1e-6)  # measured max difference 7.5e-9


def test_layout_follows_the_cpu(monkeypatch):
    for capability, expected in (("AVX2", False), ("DEFAULT", False), ("AVX512", True)):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert backends.cpu_channels_last() is expected
        assert resnet_hub.inference.ImageClassificationInferencer(random_model()).channels_last is expected


def test_bad_backends_are_refused():
    with pytest.raises(ValueError, match="backend must be one of eager, compile, onnxruntime, auto"):
        backends.resolve_backend("tensorrt", torch.device("cpu"), "fp32")
    with pytest.raises(ValueError, match="runs fp32 on the CPU"):
        backends.resolve_backend("onnxruntime", torch.device("cpu"), "bf16")
    assert backends.resolve_backend("auto", torch.device("cpu"), "bf16") == "eager"


def test_predict_backend_onnxruntime_says_which_ran(model, tmp_path, capsys):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    images = [save(p, tmp_path / f"{i}.png") for i, p in enumerate(photos(2))]
    expected = resnet_hub.inference_model(model, images)
    code = cli.main(["predict", CIFAR, *map(str, images), "--weights", str(tmp_path / "w.safetensors"), "--json",
                     "--backend", "auto"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert [g["backend"] for g in got] == ["onnxruntime"] * 2
    assert [g["pred_label"] for g in got] == [e["pred_label"] for e in expected]
    assert "backend auto -> onnxruntime" in err and "backend onnxruntime: prepared in" in err


@requires_mmpretrain
@pytest.mark.slow
@pytest.mark.mmpretrain
def test_quick_backend_rows_run_side_by_side(tmp_path):
    from resnet_hub.bench import benchmark

    rows = benchmark.run_rows(["inference_backends"], benchmark.BenchContext(quick=True, workdir=tmp_path,
                                                                             devices=("cpu",), log=lambda s: None))
    assert [r.name for r in rows] == ["inference eager vs timm", "inference eager vs mmpretrain",
                                      "inference onnxruntime vs timm", "inference onnxruntime vs mmpretrain",
                                      "inference onnxruntime, fraction of fp32 peak"]
    assert all(r.ours > 0 and r.reference > 0 and r.blocked is None for r in rows)
