"""The benchmark's own correctness: both sides of each row compute the same thing (never timings)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import re

import datasets
import numpy as np
import pytest
import torch
from conftest import requires_mmpretrain
from inference_helpers import save
from PIL import Image

from resnet_hub import inference_model
from resnet_hub.bench import benchmark
from resnet_hub.numerics import normalize
from resnet_hub.train.augment import TrainTransform
from resnet_hub.train.data import decode_rgb
from resnet_hub.zoo.configs import Augmentation, load_config


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("name", ["resnet18_8xb32_in1k", "resnetv1d50_8xb32_in1k", "resnet18_8xb16_cifar10"])
def test_inference_pair_has_the_same_weights(name):
    ours, reference = benchmark.inference_pair(name)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # measured 0 apart (AMD EPYC Zen 4, 1 and 2 threads): the same conv and pool kernels
        torch.testing.assert_close(ours(x), reference(x, mode="tensor"), rtol=1e-5, atol=1e-5)


@requires_mmpretrain
@pytest.mark.mmpretrain
def test_inference_predictions_equal_mmpretrain_on_the_same_weights(tmp_path):
    """Photos whose shorter edge is already 256: neither side resizes, so inputs and outputs must agree."""
    ours, reference = benchmark.inference_pair("resnet18_8xb32_in1k")
    sizes = [(300, 256), (256, 340), (256, 256)]
    paths = [save(p, tmp_path / f"{i}.png") for i, p in
             enumerate(benchmark.make_photos(1, size=s, jitter=0.0, seed=i)[0] for i, s in enumerate(sizes))]
    mine = inference_model(ours, paths, batch_size=2)
    theirs = benchmark.mmpretrain_inference(reference, paths, batch_size=2)
    assert [m["pred_label"] for m in mine] == [t["pred_label"] for t in theirs]
    assert [m["pred_class"] for m in mine] == [t["pred_class"] for t in theirs]
    for m, t in zip(mine, theirs, strict=True):  # measured 1.8e-10 apart (AMD EPYC Zen 4, 1 and 2 threads)
        np.testing.assert_allclose(m["pred_scores"], t["pred_scores"], rtol=1e-4, atol=1e-6)


def _with_ops(name, *ops):
    cfg = load_config(name)
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, augmentation=tuple(ops)))


def _both(cfg, dataset):
    """The trainer's transform and the reference's on the same rows: (uint8 batch, normalized float batch, labels)."""
    rows = dataset.cast_column("image", datasets.Image(decode=False))
    ours = TrainTransform(cfg.training.augmentation).batch([decode_rgb(r["image"]) for r in rows], seed=0)
    reference = dataset.with_transform(benchmark.baseline_train_transform(cfg))[:]
    return ours, torch.stack(reference["image"]), reference["label"]


@pytest.mark.parametrize("config, size, fmt", [("resnet50_8xb32_in1k", (120, 90), "JPEG"),
                                               ("resnet18_8xb16_cifar10", (32, 32), "PNG")])
def test_pipeline_row_sides_read_every_image_once_at_the_recipes_size(config, size, fmt):
    """Both sides of a `pipeline` row: one epoch, every image once, the recipe's size; uint8 (ours, the trainer's
    loader) and normalized float32 (the reference), in the same value range."""
    cfg = load_config(config)
    photos = benchmark.make_photos(8, size=size, jitter=0.0 if fmt == "PNG" else 0.2, seed=3)
    ours, reference = benchmark._pipeline_pair(config, benchmark.jpeg_dataset(photos, fmt=fmt), batch=4, workers=0)
    mine, theirs = list(ours()), list(reference())
    assert sorted(int(y) for b in mine for y in b["labels"]) == sorted(int(y) for b in theirs for y in b["label"]) \
        == list(range(8))
    s = cfg.eval.input_size
    assert all(b["images"].dtype == torch.uint8 and b["images"].shape == (4, 3, s, s) and not b["bad"] for b in mine)
    assert all(b["image"].dtype == torch.float32 and b["image"].shape == (4, 3, s, s) for b in theirs)
    low = (-torch.tensor(cfg.eval.mean) / torch.tensor(cfg.eval.std)).view(1, 3, 1, 1)
    high = ((1 - torch.tensor(cfg.eval.mean)) / torch.tensor(cfg.eval.std)).view(1, 3, 1, 1)
    for b in theirs:
        assert (b["image"] >= low - 1e-5).all() and (b["image"] <= high + 1e-5).all()


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_fixed_crop_gives_near_identical_pixels(flip):
    """Whole-image crop of square photos: resize and flip of both pipelines agree (antialiased bilinear both)."""
    cfg = _with_ops("resnet50_8xb32_in1k",
                    Augmentation(type="random_resized_crop", size=224, scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                 interpolation="bilinear"),
                    Augmentation(type="horizontal_flip", prob=flip))
    photos = benchmark.make_photos(3, size=(300, 300), jitter=0.0, seed=4)
    ours, reference, _ = _both(cfg, benchmark.jpeg_dataset(photos, fmt="JPEG"))
    x = normalize(ours, cfg.eval.mean, cfg.eval.std, channels_last=False)
    mad = (x - reference).abs().mean().item()
    # measured 6.1e-8 (AMD EPYC, AVX2): the same pixels, float32 rounding of the two normalizations
    assert mad < 1e-5, mad
    assert (x - reference).abs().max() <= 1.01 / (255 * min(cfg.eval.std))
    flipped = normalize(ours.flip(-1), cfg.eval.mean, cfg.eval.std)
    assert (flipped - reference).abs().mean() > 10 * mad  # a flip would show


def test_cifar_fixed_crop_is_exact():
    photos = benchmark.make_photos(5, size=(32, 32), jitter=0.0, seed=5)
    cfg = _with_ops("resnet18_8xb16_cifar10", Augmentation(type="random_crop", size=32, padding=0, fill=0),
                    Augmentation(type="horizontal_flip", prob=1.0))
    ours, reference, _ = _both(cfg, benchmark.jpeg_dataset(photos, fmt="PNG"))
    torch.testing.assert_close(normalize(ours, cfg.eval.mean, cfg.eval.std), reference, rtol=0, atol=1e-5)


def test_rows_json_and_markdown(tmp_path, monkeypatch):
    @benchmark.register("fake")
    def fake(ctx):
        assert ctx.quick and ctx.workdir.is_dir() and ctx.devices == ("cpu",)
        yield benchmark.BenchRow("fake", ours=3.0, reference=4.0, unit="things/s", device="cpu", settings="s",
                                 target=1.0)
    try:
        args = argparse.Namespace(quick=True, json=str(tmp_path / "rows.json"), markdown=str(tmp_path / "R.md"),
                                  only="fake", device=["cpu"])
        assert benchmark.run(args) == 0
    finally:
        benchmark.ROWS.pop("fake")
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows == [dict(name="fake", ours=3.0, reference=4.0, ratio=0.75, unit="things/s", device="cpu",
                         settings="s")]
    text = (tmp_path / "R.md").read_text()
    assert "| fake | cpu | 3.00 | 4.00 | things/s | 0.75 | >= 1 **MISSED** | s |" in text
    assert "Targets missed: fake [cpu] 0.75 < 1." in text and "| cpu |" in text and "| timm |" in text
    with pytest.raises(ValueError, match="unknown benchmark row"):
        benchmark.run_rows(["nope"], benchmark.BenchContext(quick=True, workdir=tmp_path, devices=("cpu",)))


def test_quick_pipeline_rows_run_and_derive_the_core_counts(tmp_path):
    args = argparse.Namespace(quick=True, json=str(tmp_path / "rows.json"), markdown=None, only="pipeline,decode",
                              device=None)
    assert benchmark.run(args) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["name"] for r in rows] == ["pipeline", "cores_per_gpu", "pipeline_cifar", "decode"]
    for r in rows:
        assert set(r) == {"name", "ours", "reference", "ratio", "unit", "device", "settings"}
        assert r["ours"] > 0 and r["reference"] > 0 and r["ratio"] == pytest.approx(r["ours"] / r["reference"], 1e-3)
    assert all("train_batches" in r["settings"] for r in rows if r["name"].startswith("pipeline"))
    assert "decode_rgb" in rows[3]["settings"]
    pipeline, cores = rows[0], rows[1]
    assert (cores["ours"], cores["reference"]) == (pipeline["ours"], pipeline["reference"])
    needs = [float(x) for x in re.findall(r"needs ([0-9.]+) ", cores["settings"]) +
             re.findall(r", ([0-9.]+) for the reference", cores["settings"])]
    assert needs == pytest.approx([3500 / pipeline["ours"], 3500 / pipeline["reference"]], rel=0.01, abs=0.06)
    assert not (tmp_path / "RESULTS.md").exists()


def test_make_photos_are_real_photographs():
    photos = benchmark.make_photos(4, size=(100, 80), seed=0)
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos)
    assert all(64 <= p.shape[0] <= 96 and 80 <= p.shape[1] <= 120 for p in photos)
    assert all(p.std() > 10 for p in photos)  # not flat
    assert Image.fromarray(photos[0]).size == photos[0].shape[1::-1]


def test_gpu_rows_are_reported_blocked_without_cuda(tmp_path, monkeypatch):
    from resnet_hub.bench.benchmark_gpu import GPU_ROWS, TARGETS

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rows = benchmark.run_rows(["gpu"], benchmark.BenchContext(quick=True, workdir=tmp_path, devices=("cpu",),
                                                             log=lambda _: None))
    assert [r.name for r in rows] == list(GPU_ROWS)
    assert all(r.blocked and r.ours is None and r.as_json()["ratio"] is None for r in rows)
    benchmark.write_markdown(rows, tmp_path / "r.md", quick=True)
    text = (tmp_path / "r.md").read_text()
    for name, target in TARGETS.items():
        assert f"| {name} | none | blocked | blocked |" in text and f"target >= {target:,} img/s" in text


def test_train_row_compares_the_same_computation():
    """The trainer's step and the bare loop start equal and stay equal: same loss, step after step."""
    ours, bare = benchmark.train_step_pair("resnet18_8xb16_cifar10", "cpu", batch=4)
    for _ in range(3):  # measured 2.4e-7 apart (AMD EPYC Zen 4, 1 and 2 threads)
        torch.testing.assert_close(ours(), bare(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="SGD \\+ cross-entropy"):
        benchmark.train_step_pair("resnet50_8xb256-rsb-a1-600e_in1k", "cpu", batch=2)


def test_streaming_row_sides_read_the_same_images_once(tmp_path):
    """Both sides of the `streaming` row: every image of the epoch once, 224x224, uint8 (ours) / float (theirs)."""
    cfg = load_config("resnet50_8xb32_in1k")
    files = benchmark.arrow_shards(benchmark.jpeg_dataset(benchmark.make_photos(8, size=(120, 90), seed=1)),
                                   tmp_path, num_shards=4)
    ours, reference = benchmark._stream_pair(cfg.name, files, batch=2, workers=2, steps=4)
    mine, theirs = list(ours()), list(reference())
    assert sorted(int(y) for b in mine for y in b["labels"]) == list(range(8))
    assert sorted(int(y) for b in theirs for y in b["label"]) == list(range(8))
    assert all(b["images"].dtype == torch.uint8 and b["images"].shape == (2, 3, 224, 224) for b in mine)
    assert all(b["image"].dtype == torch.float32 and b["image"].shape == (2, 3, 224, 224) for b in theirs)


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("native", [None, "avx512_bf16"])
def test_inference_bf16_row_is_blocked_without_native_bf16_and_measured_with_it(tmp_path, monkeypatch, native):
    """The row's own logic on a tiny model (timings are not checked); with detection monkeypatched either way."""
    monkeypatch.setattr("resnet_hub.train.plan.native_bf16", lambda device: native)
    ours, reference = benchmark.inference_pair("resnet18_8xb16_cifar10")
    photos = benchmark.make_photos(2, size=(32, 32), jitter=0.0, seed=0)  # CIFAR's eval does not resize
    paths = [save(p, tmp_path / f"{i}.png") for i, p in enumerate(photos)]
    ref_results = benchmark.mmpretrain_inference(reference, paths, batch_size=2)
    row = benchmark._inference_bf16_row(ours, reference, ref_results, paths, 2, 1, "resnet18_8xb16_cifar10", "cpu")
    agree = None
    if native is not None:  # the row's own count, recomputed: it must report what bf16 inference gave
        bf16 = inference_model(ours, paths, batch_size=2, precision="bf16")
        agree = sum(a["pred_label"] == b["pred_label"] for a, b in zip(bf16, ref_results, strict=True))
    assert row.name == "inference bf16" and "ours bf16" in row.settings and "mmpretrain fp32" in row.settings
    if native is None:
        assert row.blocked == "this cpu has no native bf16 (emulated bf16 is slower than fp32)" and row.ours is None
    else:
        assert not row.blocked and row.ours > 0 and row.reference > 0
        assert f"top-1 agrees with mmpretrain fp32 on {agree}/2" in row.settings and native in row.settings
