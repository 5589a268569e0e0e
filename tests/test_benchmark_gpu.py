"""The GPU benchmark rows run their real code path (the trainer's build_train_step, the device loaders)
on the CPU at tiny sizes, and on CUDA where there is one (``-m cuda``, scripts/gpu_check.sh).

What is checked is that each row runs and that ours and the reference compute the same thing
(first-step loss and gradients, or logits); the timings themselves are never asserted.
"""
from __future__ import annotations

import io
import json
import math

import PIL.Image
import pytest
import torch

from resnet_hub.bench.benchmark_gpu import (
    GPU_ROWS,
    TARGETS,
    gpu_rows,
    inference_resnet50,
    main,
    synthetic_jpeg_dataset,
    train_resnet18_cifar,
    train_resnet50,
    train_resnet50_end_to_end,
)
from resnet_hub.bench.benchmark_gpu import TINY as TINY_SIZES

TINY = dict(device="cpu", steps=1, warmup=0, compile=False)


def _check_row(row, name):
    assert set(row) == {"name", "ours", "reference", "ratio", "unit", "device", "settings"}
    assert row["name"] == name and row["unit"] == "img/s" and row["device"].startswith("cpu")
    assert row["ours"] > 0 and row["reference"] > 0
    assert math.isclose(row["ratio"], row["ours"] / row["reference"])
    assert row["settings"]["target_img_per_s"] == TARGETS[name]
    assert row["settings"]["ours"]["dtype"] == "bfloat16 autocast" and row["settings"]["ours"]["channels_last"]


def _check_first_step(first):
    # bf16 vs fp32 on the same batch from the same weights: the same loss and gradient direction
    assert abs(first["loss_ours"] - first["loss_reference"]) < 0.02 * first["loss_reference"]
    assert first["grad_cosine"] > 0.98, first


@pytest.mark.slow
def test_train_resnet50_row_on_cpu():
    row = train_resnet50(batch_size=2, image_size=64, **TINY)
    _check_row(row, "train resnet50")
    _check_first_step(row["settings"]["first_step"])
    assert row["settings"]["ours"]["fused_optimizer"] and not row["settings"]["reference_setup"]["fused_optimizer"]


@pytest.mark.slow
def test_train_resnet50_end_to_end_row_on_cpu():
    row = train_resnet50_end_to_end(batch_size=2, image_size=64, num_images=4, source_size=(72, 96), num_workers=0,
                                    **TINY)
    _check_row(row, "train resnet50 end-to-end")
    _check_first_step(row["settings"]["first_step"])


def test_train_resnet18_cifar_row_on_cpu_compiled():
    # torch.compile's own tracing (dynamo) with the eager backend: the compiled call path, without
    # the minutes inductor needs on a CPU
    row = train_resnet18_cifar(device="cpu", steps=1, warmup=0, batch_size=4, num_images=8, num_workers=0,
                               compile=True, compile_backend="eager")
    _check_row(row, "train resnet18_cifar")
    _check_first_step(row["settings"]["first_step"])
    assert row["settings"]["ours"]["compile"] == {"backend": "eager", "mode": None}


def test_training_rows_time_the_trainers_step(monkeypatch):
    """The rows build their steps with the trainer's own build_train_step: fp32 eager plain, bf16 + fast paths
    ours, each with an Accelerator of its precision, and leave Accelerate's process state unset."""
    from accelerate.state import AcceleratorState

    import resnet_hub.bench.benchmark_gpu as rows
    from resnet_hub.train import trainer

    built = []

    def spy(cfg, accelerator, model, **kwargs):
        step = trainer.build_train_step(cfg, accelerator, model, **kwargs)
        built.append((accelerator.mixed_precision, kwargs["fused"], kwargs["channels_last"], kwargs["compile"],
                      kwargs["compile_options"], type(step)))
        return step

    monkeypatch.setattr(rows, "build_train_step", spy)
    row = train_resnet18_cifar(device="cpu", steps=1, warmup=0, batch_size=4, num_images=8, num_workers=0,
                               compile=True, compile_backend="eager")
    assert built == [("no", False, False, False, None, trainer.TrainStep),
                     ("bf16", True, True, True, {"mode": None, "backend": "eager"}, trainer.TrainStep)]
    assert row["settings"]["train_step"] == "resnet_hub.train.trainer.build_train_step"
    assert not AcceleratorState._shared_state


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_command_writes_blocked_rows_without_cuda(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["--json", str(out)]) == 1
    written = json.loads(out.read_text())
    assert written["device"] is None and [r["name"] for r in written["rows"]] == list(GPU_ROWS)
    assert all(r["skipped"] == "CUDA is not available on this machine" for r in written["rows"])
    assert "train resnet50: blocked: CUDA is not available" in capsys.readouterr().err
    assert main(["--json", str(out), "--only", "train resnet51"]) == 1
    assert "unknown GPU benchmark row 'train resnet51'" in capsys.readouterr().err


def test_command_runs_a_row_on_cpu_at_tiny_size(tmp_path, capsys):
    """What scripts/gpu_check.sh --rehearse runs: the command, on the CPU, each row at its TINY size."""
    assert list(TINY_SIZES) == list(GPU_ROWS)
    out = tmp_path / "gpu_cpu.json"
    assert main(["--json", str(out), "--device", "cpu", "--tiny", "--only", "inference resnet50"]) == 0
    written = json.loads(out.read_text())
    assert written["device"] == "cpu" and written["tiny"] is True
    (row,) = written["rows"]
    _check_row(row, "inference resnet50")
    assert row["settings"]["batch_size"] == TINY_SIZES["inference resnet50"]["batch_size"]
    assert row["settings"]["ours"]["compile"] == {"backend": "eager", "mode": None}
    assert "inference resnet50 [cpu: " in capsys.readouterr().err


def test_command_records_a_failing_row_and_runs_the_rest(tmp_path, monkeypatch, capsys):
    import resnet_hub.bench.benchmark_gpu as rows

    def broken(device, **kwargs):
        raise RuntimeError("nvJPEG said no")

    monkeypatch.setitem(rows.GPU_ROWS, "train resnet50 end-to-end", broken)
    monkeypatch.setitem(rows.GPU_ROWS, "inference resnet50",
                        lambda device, **kw: rows._row("inference resnet50", 2.0, 1.0, torch.device(device), {}))
    out = tmp_path / "gpu_cpu.json"
    assert main(["--json", str(out), "--device", "cpu", "--tiny", "--only",
                 "train resnet50 end-to-end,inference resnet50"]) == 1
    failed, ran = json.loads(out.read_text())["rows"]
    assert failed["failed"] == "RuntimeError: nvJPEG said no" and failed["ours"] is None
    assert failed["name"] == "train resnet50 end-to-end" and (ran["name"], ran["ratio"]) == ("inference resnet50", 2.0)
    err = capsys.readouterr().err
    assert "Traceback" in err and "train resnet50 end-to-end: failed: RuntimeError: nvJPEG said no" in err


@pytest.mark.cuda
def test_training_rows_on_cuda_agree_with_eager_fp32():
    """On the GPU: bf16 + channels_last + fused SGD (+ inductor for CIFAR) against eager fp32, first step."""
    cifar = train_resnet18_cifar(device="cuda", steps=2, warmup=1, batch_size=32, num_images=256, num_workers=2)
    _check_first_step(cifar["settings"]["first_step"])
    r50 = train_resnet50(device="cuda", batch_size=8, image_size=128, steps=2, warmup=1, compile=False)
    _check_first_step(r50["settings"]["first_step"])
    assert cifar["device"].startswith("cuda: ") and cifar["ours"] > 0 and r50["reference"] > 0


@pytest.mark.cuda
def test_end_to_end_row_feeds_the_gpu_from_the_trainers_loader():
    row = train_resnet50_end_to_end(device="cuda", batch_size=8, image_size=128, steps=2, warmup=1, num_images=32,
                                    source_size=(150, 200), num_workers=2, compile=False)
    _check_first_step(row["settings"]["first_step"])
    assert row["ours"] > 0 and row["reference"] > 0


def test_inference_resnet50_row_on_cpu():
    row = inference_resnet50(batch_size=2, image_size=64, **TINY)
    _check_row(row, "inference resnet50")
    check = row["settings"]["first_batch"]
    assert check["max_abs_logit_diff_over_range"] < 0.02 and check["top1_agreement"] == 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")
def test_rows_skip_cleanly_without_cuda():
    rows = gpu_rows()
    assert [r["name"] for r in rows] == list(GPU_ROWS) == list(TARGETS)
    for row in rows:
        assert row["skipped"] == "CUDA is not available on this machine"
        assert row["ours"] is row["reference"] is row["ratio"] is None
        assert row["settings"]["target_img_per_s"] == TARGETS[row["name"]]
    assert [r["name"] for r in gpu_rows(names=["inference resnet50"])] == ["inference resnet50"]
    with pytest.raises(ValueError, match="unknown GPU benchmark row 'train resnet51'.*choices"):
        gpu_rows(names=["train resnet51"])


def test_synthetic_jpeg_dataset_holds_photo_sized_jpegs():
    ds = synthetic_jpeg_dataset(3, height=75, width=100, num_classes=10, seed=1)
    assert ds.num_rows == 3 and all(0 <= label < 10 for label in ds["label"])
    raw = ds.cast_column("image", type(ds.features["image"])(decode=False))[0]["image"]["bytes"]
    assert raw[:2] == b"\xff\xd8"  # JPEG
    assert PIL.Image.open(io.BytesIO(raw)).size == (100, 75) and ds[0]["image"].size == (100, 75)
    again = synthetic_jpeg_dataset(3, height=75, width=100, num_classes=10, seed=1)
    assert again.cast_column("image", type(ds.features["image"])(decode=False))[0]["image"]["bytes"] == raw
