"""Benchmarks measured side by side in one run: resnet_hub against the reference way.

Every row is a function registered with :func:`register`: ``fn(ctx: BenchContext) ->
Iterable[BenchRow]``. It measures "ours" and "reference" on the same data on the same machine,
interleaved round by round (:func:`measure_pair`, so load from other processes hits both sides
alike), and yields rows. ``run`` writes the rows as JSON (``--json``) and as a markdown table
with the machine (``--markdown``, by default ``benchmarks/RESULTS.md`` for a full run).

Rows here: ``inference`` (``resnet_hub.inference_model`` vs mmpretrain's ``inference_model``, same weights,
same images) and ``inference bf16`` (ours in bf16 against mmpretrain in fp32; blocked where the device lacks
native bf16), ``inference_backends`` (``inference_model(backend=...)``, eager and ONNX Runtime, against plain
timm eager with timm's transform and against mmpretrain, and the fraction of the measured fp32 matmul peak),
``inference_compile`` (the inductor backend: throughput, compile time, warm-cache start-up), ``pipeline`` /
``pipeline_cifar`` (the loader the trainer iterates, built by
:func:`resnet_hub.train.trainer.train_batches`, vs HF ``Image()`` + ``with_transform`` +
``torchvision.transforms.v2``, same workers), ``cores_per_gpu`` (CPU cores one H100 needs at 3,500 training
images/s, from the ``pipeline`` row), ``decode`` (the trainer's JPEG decoder vs PIL), ``streaming`` (the
trainer's ``--streaming`` loader vs HF streaming + a torchvision map, same workers) and ``train`` (the
trainer's step vs a bare loop). Needs the ``train`` and ``test`` extras.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch

from resnet_hub.atomic import write_json, write_text

__all__ = ["BenchContext", "BenchRow", "ROWS", "register", "measure_pair", "run_rows", "write_markdown",
           "make_photos", "write_jpegs", "jpeg_dataset", "arrow_shards", "inference_pair", "mmpretrain_inference",
           "baseline_train_transform", "trainer_loader", "add_arguments", "run"]

DEFAULT_MARKDOWN = Path("benchmarks") / "RESULTS.md"


@dataclasses.dataclass(frozen=True)
class BenchContext:
    """What a row function gets: the run's size, a scratch folder, the devices to measure on."""
    quick: bool
    workdir: Path
    devices: tuple[str, ...]
    log: Callable[[str], None] = print


@dataclasses.dataclass(frozen=True)
class BenchRow:
    name: str
    ours: Optional[float]
    reference: Optional[float]
    unit: str
    device: str
    settings: str
    target: Optional[float] = None  # the ratio to reach, shown in the markdown table
    blocked: Optional[str] = None  # why this row could not be measured here (e.g. no GPU); ours/reference None

    @property
    def ratio(self) -> float:
        return self.ours / self.reference if self.ours is not None and self.reference else float("nan")

    def as_json(self) -> dict:
        out = dict(name=self.name, ours=None if self.ours is None else round(self.ours, 4),
                   reference=None if self.reference is None else round(self.reference, 4),
                   ratio=None if self.blocked or self.reference is None else round(self.ratio, 4), unit=self.unit,
                   device=self.device,
                   settings=self.settings)
        if self.blocked:
            out["blocked"] = self.blocked
        return out


ROWS: dict[str, Callable[[BenchContext], Iterable[BenchRow]]] = {}


def register(name: str):
    """Decorator: add a row function, run by ``scripts/benchmark.py`` (``--only NAME`` selects)."""
    def decorate(fn):
        ROWS[name] = fn
        return fn
    return decorate


def measure_pair(ours: Callable[[], object], reference: Callable[[], object], items: int, rounds: int,
                 warmup: bool = True) -> tuple[float, float]:
    """Items per second of each side, the median of ``rounds`` interleaved runs of each."""
    if warmup:
        ours(), reference()
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    for _ in range(rounds):
        for side, fn in (("ours", ours), ("reference", reference)):
            start = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - start)
    return items / statistics.median(times["ours"]), items / statistics.median(times["reference"])


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------- data


_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "camera")


def make_photos(n: int, size: tuple[int, int] = (500, 375), jitter: float = 0.2, seed: int = 0) -> list[np.ndarray]:
    """``n`` RGB photographs: random crops of scikit-image's sample photos resized to ``size``
    (w, h) +- ``jitter`` (ImageNet-like by default)."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = []
    for name in _PHOTOS:
        a = getattr(skimage.data, name)()
        sources.append(np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3])
    photos = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = src[top:top + ch, left:left + cw]
        out_w, out_h = (max(1, round(s * rng.uniform(1 - jitter, 1 + jitter))) for s in size)
        photos.append(np.asarray(Image.fromarray(crop).resize((out_w, out_h), Image.BILINEAR)))
    return photos


def _encode(array: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_jpegs(folder: Path, photos: Sequence[np.ndarray]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, photo in enumerate(photos):
        path = folder / f"photo_{i:04d}.jpg"
        path.write_bytes(_encode(photo, "JPEG"))
        paths.append(path)
    return paths


def jpeg_dataset(photos: Sequence[np.ndarray], fmt: str = "JPEG", image_column: str = "image",
                 label_column: str = "label", num_classes: int = 1000):
    """An in-memory HF dataset of encoded images, as ImageNet or CIFAR on the Hub hold them."""
    from datasets import Dataset, Features, Image, Value

    return Dataset.from_dict(
        {image_column: [{"bytes": _encode(p, fmt), "path": None} for p in photos],
         label_column: [i % num_classes for i in range(len(photos))]},
        features=Features({image_column: Image(), label_column: Value("int64")}),
    )


# ----------------------------------------------------------------------------- inference


def _randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics, so that a mismatch anywhere would show in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)


def inference_pair(name: str, device: str = "cpu", seed: int = 0):
    """(our timm model, mmpretrain's ``get_model(name)``) for config ``name``, same random weights: mmpretrain's,
    mapped by the converter's key map (:func:`resnet_hub.hub.convert.mmpretrain_to_timm`) and loaded strictly."""
    import timm
    from mmpretrain.apis import get_model as mmpretrain_get_model

    from resnet_hub.hub.convert import mmpretrain_to_timm
    from resnet_hub.zoo.configs import load_config

    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        reference = mmpretrain_get_model(name, pretrained=False)
    _randomize_batchnorm(reference, seed)
    ours = timm.create_model(name)
    ours.load_state_dict(mmpretrain_to_timm(reference.state_dict(), load_config(name)), strict=True)
    return ours.to(device).eval(), reference.to(device).eval()


def mmpretrain_inference(model, images: Sequence, batch_size: int) -> list[dict]:
    """All results of mmpretrain's inferencer (``mmpretrain.apis.inference_model`` builds the same
    one but returns only the first image's result)."""
    from mmpretrain.apis import ImageClassificationInferencer

    with contextlib.redirect_stdout(io.StringIO()):  # its progress bar
        return ImageClassificationInferencer(model, pretrained=False)(
            [str(p) if isinstance(p, Path) else p for p in images], batch_size=batch_size)


@register("inference")
def inference_rows(ctx: BenchContext) -> Iterator[BenchRow]:
    from mmpretrain.apis import inference_model as mmpretrain_inference_model

    from resnet_hub.inference import inference_model

    name = "resnet18_8xb32_in1k" if ctx.quick else "resnet50_8xb32_in1k"
    n, batch, rounds = (8, 4, 1) if ctx.quick else (64, 16, 3)
    paths = [str(p) for p in write_jpegs(ctx.workdir / "inference", make_photos(n, seed=1))]
    for device in ctx.devices:
        ours_model, ref_model = inference_pair(name, device)
        ours_results = inference_model(ours_model, paths, batch_size=batch)
        ref_results = mmpretrain_inference(ref_model, paths, batch_size=batch)
        agree = sum(a["pred_label"] == b["pred_label"] for a, b in zip(ours_results, ref_results, strict=True))

        def ours(model=ours_model) -> None:
            inference_model(model, paths, batch_size=batch)

        def reference(model=ref_model) -> None:
            with contextlib.redirect_stdout(io.StringIO()):  # its progress bar
                mmpretrain_inference_model(model, paths, batch_size=batch)

        ctx.log(f"inference {name} on {device}: {n} images, batch {batch}, {rounds} rounds")
        ours_ips, ref_ips = measure_pair(ours, reference, items=n, rounds=rounds)
        threads = torch.get_num_threads() if device == "cpu" else "-"
        yield BenchRow("inference", ours_ips, ref_ips, "images/s", device,
                       f"{name}, fp32, {n} JPEGs ~500x375 from disk, batch {batch} both sides, {threads} threads, "
                       f"median of {rounds}; same weights: top-1 agrees on {agree}/{n}; each side calls its "
                       f"inference_model on the same model object every round (ours keeps its BN-folded copy, "
                       f"in the layout this CPU runs fastest, between calls)", target=1.3)
        yield _inference_bf16_row(ours_model, ref_model, ref_results, paths, batch, rounds, name, device)


def _inference_bf16_row(ours_model, ref_model, ref_results, paths, batch: int, rounds: int, name: str,
                        device: str) -> BenchRow:
    """``inference_model(precision="bf16")`` vs mmpretrain in fp32, same images and weights; where the
    device would only emulate bf16 (slower than fp32), the row says so instead of a number."""
    from mmpretrain.apis import inference_model as mmpretrain_inference_model

    from resnet_hub.inference import inference_model
    from resnet_hub.train.plan import native_bf16

    n = len(paths)
    native = native_bf16(torch.device(device))
    threads = torch.get_num_threads() if device == "cpu" else "-"
    settings = (f"{name}, ours bf16 (BN-folded channels_last copy in bf16 weights, fp32 classifier) vs mmpretrain "
                f"fp32, {n} JPEGs ~500x375 from disk, batch {batch} both sides, {threads} threads, median of {rounds}")
    if native is None:
        return BenchRow("inference bf16", None, None, "images/s", device, settings,
                        blocked=f"this {device} has no native bf16 (emulated bf16 is slower than fp32)")
    ours_results = inference_model(ours_model, paths, batch_size=batch, precision="bf16")
    agree = sum(a["pred_label"] == b["pred_label"] for a, b in zip(ours_results, ref_results, strict=True))

    def ours(model=ours_model) -> None:
        inference_model(model, paths, batch_size=batch, precision="bf16")

    def reference(model=ref_model) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # its progress bar
            mmpretrain_inference_model(model, paths, batch_size=batch)

    ours_ips, ref_ips = measure_pair(ours, reference, items=n, rounds=rounds)
    return BenchRow("inference bf16", ours_ips, ref_ips, "images/s", device,
                    f"{settings}; native bf16: {native}; top-1 agrees with mmpretrain fp32 on {agree}/{n}")


# ----------------------------------------------------------------------------- training step


def train_step_pair(name: str, device: str, batch: int, seed: int = 0):
    """``scripts/train.py``'s step and a bare PyTorch loop: same model, batch, optimizer and loss.

    Returns ``(ours, bare)``, each a no-argument callable doing one optimizer step on the same
    uint8 batch held in memory on ``device`` and returning the loss. Only SGD + cross-entropy
    recipes (ImageNet SGD, CIFAR) have a bare twin; both start from the same weights.
    """
    import copy

    from accelerate import Accelerator

    from resnet_hub.train.trainer import build_train_step, create_model
    from resnet_hub.zoo.configs import load_config

    cfg = load_config(name)
    t = cfg.training
    o = t.optimizer
    if o.type != "sgd" or t.loss.type != "cross_entropy" or t.loss.label_smoothing or t.batch_augments:
        raise ValueError(f"{name}: the bare loop twin is for SGD + cross-entropy recipes")
    accelerator = Accelerator(cpu=device == "cpu")
    dev = accelerator.device
    torch.manual_seed(seed)
    model = create_model(cfg)
    bare = copy.deepcopy(model).to(dev).train()
    step = build_train_step(cfg, accelerator, model, lr=o.lr, iters_per_epoch=10_000, num_classes=cfg.num_classes)

    g = torch.Generator().manual_seed(seed)
    size = cfg.eval.input_size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g).to(dev)
    labels = torch.randint(0, cfg.num_classes, (batch,), generator=g).to(dev)
    mean = torch.tensor(cfg.eval.mean, device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg.eval.std, device=dev).view(1, 3, 1, 1) * 255
    params = list(bare.parameters())
    if o.no_weight_decay:
        groups = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    else:
        groups = [{"params": params}]
    optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum or 0.0, weight_decay=o.weight_decay,
                                nesterov=bool(o.nesterov))
    loss_fn = torch.nn.CrossEntropyLoss()

    def ours() -> torch.Tensor:
        return step(images, labels)

    def bare_step() -> torch.Tensor:
        loss = loss_fn(bare((images.float() - mean) / std), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return ours, bare_step


@register("train")
def train_rows(ctx: BenchContext) -> Iterator[BenchRow]:
    name = "resnet18_8xb16_cifar10"
    batch, rounds = (8, 1) if ctx.quick else (64, 5)
    for device in ctx.devices:
        ours, bare = train_step_pair(name, device, batch)
        ctx.log(f"train {name} on {device}: batch {batch}, {rounds} rounds")
        ours_ips, ref_ips = measure_pair(ours, bare, items=batch, rounds=rounds)
        threads = torch.get_num_threads() if device == "cpu" else "-"
        yield BenchRow("train", ours_ips, ref_ips, "images/s", device,
                       f"{name} recipe (SGD momentum, cross-entropy), fp32, batch {batch} of uint8 32x32 images "
                       f"already in memory, {threads} threads, median of {rounds}; ours = resnet_hub.train.trainer's "
                       f"TrainStep (Accelerate, on-device normalize, lr schedule), reference = a bare PyTorch "
                       f"loop on a copy of the same model", target=0.95)


# ----------------------------------------------------------------------------- input pipeline


def baseline_train_transform(cfg, image_column: str = "image", label_column: str = "label"):
    """What a user writes without resnet_hub: HF ``Image()`` decodes with PIL, ``torchvision.transforms.v2``
    runs the recipe's ops per sample on the uint8 tensor (PILToTensor first, as torchvision advises for
    speed) and ends in normalized float32."""
    from torchvision.transforms import v2

    from resnet_hub.train.augment import pair

    ops = []
    for op in cfg.training.augmentation:
        mode = v2.InterpolationMode(op.interpolation or "bilinear")
        if op.type == "random_resized_crop":
            ops.append(v2.RandomResizedCrop(op.size, scale=op.scale, ratio=op.ratio, interpolation=mode,
                                            antialias=True))
        elif op.type == "random_crop":
            ops.append(v2.RandomCrop(op.size, padding=op.padding, fill=op.fill or 0))
        elif op.type == "resize":
            ops.append(v2.Resize(pair(op.size), interpolation=mode, antialias=True))
        elif op.type == "horizontal_flip":
            ops.append(v2.RandomHorizontalFlip(op.prob))
        else:
            raise ValueError(f"no baseline for {op.type}")
    tf = v2.Compose([v2.PILToTensor(), *ops, v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(cfg.eval.mean, cfg.eval.std)])

    def transform(examples: dict) -> dict:
        return {image_column: [tf(img.convert("RGB")) for img in examples[image_column]],
                label_column: examples[label_column]}
    return transform


def trainer_loader(config: str, train_split, *, batch: int, workers: int, streaming: bool = False,
                   steps: Optional[int] = None, device: str = "cpu", img_size: Optional[int] = None):
    """What ``resnet-hub train --config CONFIG --batch-size B --workers W [--img-size S]`` iterates on
    ``train_split`` (image column ``Image(decode=False)``, labels in ``label``) on ``device``, built by the
    trainer's own functions: its flags parsed, :func:`resolve_plan`, :func:`resnet_hub.train.trainer.train_batches`."""
    from resnet_hub.train import trainer
    from resnet_hub.train.data import DatasetSpec
    from resnet_hub.train.plan import resolve_plan
    from resnet_hub.zoo.configs import load_config

    dev = torch.device(device)
    parser = argparse.ArgumentParser()
    trainer.add_arguments(parser)
    argv = ["--config", config, "--batch-size", str(batch), "--workers", str(workers)]
    argv += ["--cpu"] if dev.type == "cpu" else []
    argv += ["--img-size", str(img_size)] if img_size else []
    argv += ["--steps-per-epoch", str(steps)] if steps else []
    plan = resolve_plan(parser.parse_args(argv), load_config(config), world_size=1, device_type=dev.type,
                        streaming=streaming)
    spec = DatasetSpec("hub", "benchmark", "train", "", "image", "label", streaming=streaming)
    return trainer.train_batches(plan, spec, train_split, device=dev)


def _pipeline_pair(config: str, dataset, batch: int, workers: int):
    """(ours, reference): each reads one epoch of ``dataset`` (an HF dataset of encoded images) with ``workers``
    DataLoader workers, shuffled, whole batches."""
    import datasets
    from torch.utils.data import DataLoader

    from resnet_hub.zoo.configs import load_config

    loader = trainer_loader(config, dataset.cast_column("image", datasets.Image(decode=False)), batch=batch,
                            workers=workers)
    plain = DataLoader(dataset.with_transform(baseline_train_transform(load_config(config))), batch_size=batch,
                       shuffle=True, drop_last=True, num_workers=workers, persistent_workers=workers > 0,
                       generator=torch.Generator().manual_seed(0))

    def ours() -> Iterator:
        return loader.batches(0)

    def reference() -> Iterator:
        return iter(plain)
    return ours, reference


H100_TRAIN_IMAGES_PER_S = 3500  # issue 13: ResNet-50 training end to end on one H100
_TRAINER = ("the trainer's loader: resnet_hub.train.trainer.train_batches(plan) -> LoaderBatches (LabeledImages + "
            "TrainBatchSampler; PIL decode, augment.TrainTransform per image in the workers), uint8 out, normalized "
            "on the accelerator")
_REFERENCE = ("HF Image() (PIL) + torchvision.transforms.v2 (PILToTensor, the recipe's ops, ToDtype, Normalize) "
              "through with_transform in a DataLoader, normalized float32 out")


@register("pipeline")
def pipeline_rows(ctx: BenchContext) -> Iterator[BenchRow]:
    """The trainer's map-style loader vs the plain way, ImageNet-size JPEGs and CIFAR-size PNGs; and the CPU cores
    one H100 needs, from the JPEG figures."""
    rounds, batch, workers = (1, 8, 0) if ctx.quick else (5, 32, 2)
    cores = max(1, workers)  # 0 workers: the main process, one core
    cases = [("pipeline", "resnet50_8xb32_in1k", 16 if ctx.quick else 256, (500, 375), "JPEG",
              "RandomResizedCrop 224 + flip", 1.5),
             ("pipeline_cifar", "resnet18_8xb16_cifar10", 64 if ctx.quick else 2048, (32, 32), "PNG",
              "RandomCrop 32 pad 4 + flip", 2.0)]
    for row_name, config, n, size, fmt, what, target in cases:
        jitter = 0.0 if size == (32, 32) else 0.2  # CIFAR images are exactly 32x32
        dataset = jpeg_dataset(make_photos(n, size=size, jitter=jitter, seed=2), fmt=fmt)
        ctx.log(f"{row_name}: {n} {fmt} images, batch {batch}, {workers} workers, {rounds} rounds")
        with torch_threads(1):
            ours, reference = _pipeline_pair(config, dataset, batch, workers)
            ours_ips, ref_ips = measure_pair(_drain(ours), _drain(reference), items=n, rounds=rounds)
        common = (f"{what} ({config}), one epoch of {n} {fmt} ~{size[0]}x{size[1]} in an in-memory HF dataset, "
                  f"batch {batch}, {workers} DataLoader workers both sides, 1 torch thread each, images/s / "
                  f"{cores} core(s), median of {rounds} interleaved rounds")
        yield BenchRow(row_name, ours_ips / cores, ref_ips / cores, "images/s/core", "cpu",
                       f"{common}. Ours: {_TRAINER}. Reference: {_REFERENCE}", target=target)
        if row_name == "pipeline":
            need = H100_TRAIN_IMAGES_PER_S
            yield BenchRow("cores_per_gpu", ours_ips / cores, ref_ips / cores, "images/s/core", "cpu",
                           f"one H100 at {need:,} ResNet-50 training images/s needs {need * cores / ours_ips:.1f} "
                           f"CPU cores of this machine for the trainer's loader, {need * cores / ref_ips:.1f} for "
                           f"the reference (3,500 / the `pipeline` row's per-core rates of this run; N cores assumed "
                           f"to give N x)")


@register("decode")
def decode_rows(ctx: BenchContext) -> Iterator[BenchRow]:
    """The trainer's decoder (:func:`resnet_hub.train.data.decode_rgb`: simplejpeg for JPEGs) against PIL, which
    HF ``Image()`` decodes with, to the same RGB array, on the same ImageNet-size JPEGs."""
    from PIL import Image

    from resnet_hub.train.data import decode_rgb

    n, rounds = (8, 1) if ctx.quick else (128, 5)
    rows = [{"bytes": _encode(p, "JPEG"), "path": None} for p in make_photos(n, seed=5)]

    def ours() -> None:
        for row in rows:
            decode_rgb(row)

    def reference() -> None:
        for row in rows:
            np.array(Image.open(io.BytesIO(row["bytes"])).convert("RGB"))

    ctx.log(f"decode: {n} JPEGs, {rounds} rounds")
    ours_ips, ref_ips = measure_pair(ours, reference, items=n, rounds=rounds)
    yield BenchRow("decode", ours_ips, ref_ips, "images/s/core", "cpu",
                   f"{n} JPEGs ~500x375 (quality 90) to an RGB uint8 array, one core, median of {rounds} interleaved "
                   f"rounds. Ours: resnet_hub.train.data.decode_rgb (simplejpeg, libjpeg-turbo; the same pixels). "
                   f"Reference: PIL Image.open + convert('RGB') + numpy, as HF Image() decodes")


def arrow_shards(dataset, folder: Path, num_shards: int) -> list[str]:
    """``dataset`` as ``num_shards`` Arrow stream files, features kept: what a streamed Hub dataset is, locally.

    Arrow rather than parquet: datasets' parquet reader sleeps 5 s at the end of every stream (an
    Arrow thread-shutdown workaround), which would swamp a short timing.
    """
    import pyarrow as pa

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for s in range(num_shards):
        table = dataset.shard(num_shards, s, contiguous=True).flatten_indices().data.table
        path = folder / f"train-{s:05d}-of-{num_shards:05d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        files.append(str(path))
    return files


def _stream_pair(config: str, files: list[str], batch: int, workers: int, steps: int):
    """(ours, reference): each returns a new iterator over one epoch of the same streamed JPEGs, read by
    ``workers`` DataLoader workers."""
    import datasets
    from torch.utils.data import DataLoader

    from resnet_hub.zoo.configs import load_config

    stream = datasets.load_dataset("arrow", data_files={"train": files}, split="train", streaming=True)
    ours_batches = trainer_loader(config, stream.cast_column("image", datasets.Image(decode=False)), batch=batch,
                                  workers=workers, streaming=True, steps=steps)
    # IterableDataset has no with_transform; a lazy batched map is its twin, run in the reading worker
    plain = stream.shuffle(seed=0, buffer_size=10_000).map(baseline_train_transform(load_config(config)),
                                                           batched=True, batch_size=batch)

    def ours() -> Iterator[dict]:
        return ours_batches.batches(0)

    def reference() -> Iterator[dict]:
        return iter(DataLoader(plain, batch_size=batch, num_workers=workers))
    return ours, reference


def _drain(batches: Callable[[], Iterator]) -> Callable[[], None]:
    def drain() -> None:
        for _ in batches():
            pass
    return drain


@register("streaming")
def streaming_rows(ctx: BenchContext) -> Iterator[BenchRow]:
    config, shards, workers = "resnet50_8xb32_in1k", 4, 2
    batch, rounds = (4, 1) if ctx.quick else (32, 3)
    n = shards * batch * (1 if ctx.quick else 4)  # each worker's shards hold whole batches: nothing dropped
    files = arrow_shards(jpeg_dataset(make_photos(n, seed=3)), ctx.workdir / "streaming", shards)
    ctx.log(f"streaming: {n} JPEGs in {shards} Arrow shards, batch {batch}, {workers} workers, {rounds} rounds")
    ours, reference = _stream_pair(config, files, batch, workers, steps=n // batch)
    ours_ips, ref_ips = measure_pair(_drain(ours), _drain(reference), items=n, rounds=rounds)
    yield BenchRow("streaming", ours_ips / workers, ref_ips / workers, "images/s/core", "cpu",
                   f"RandomResizedCrop 224 + flip ({config}), one epoch of {n} JPEGs ~500x375 streamed "
                   f"(load_dataset(streaming=True)) from {shards} local Arrow shards, shuffle buffer 10,000, batch "
                   f"{batch}, {workers} DataLoader workers both sides (images/s / workers; a worker is one process "
                   f"with 1 torch thread; worker start-up included), median of {rounds}. Ours: the trainer's "
                   f"--streaming loader (resnet_hub.train.trainer.train_batches(plan) -> StreamBatches, PIL decode, "
                   f"augment.TrainTransform), uint8 out. Reference: the same stream .shuffle().map(HF Image() (PIL) + "
                   f"torchvision.transforms.v2, batched=True) in a DataLoader, normalized float32 out", target=1.5)


@register("gpu")
def gpu_rows(ctx: BenchContext) -> Iterator[BenchRow]:
    """Issue 7's GPU rows (resnet_hub/benchmark_gpu.py), each against its eager fp32 baseline.

    Without CUDA each row is reported as blocked, with its absolute target, rather than left out.
    """
    from .benchmark_gpu import GPU_ROWS

    device = "cuda" if "cuda" in ctx.devices else None
    size = dict(steps=3, warmup=1) if ctx.quick else {}
    for fn in GPU_ROWS.values():
        row = fn(device, **size) if device else fn(None)
        settings = dict(row["settings"])
        target = settings.pop("target_img_per_s", None)
        text = (f"target >= {target:,} {row['unit']} on one H100; " if target else "") + \
            ", ".join(f"{k}={v}" for k, v in settings.items())
        yield BenchRow(row["name"], row["ours"], row["reference"], row["unit"], row["device"], text,
                       blocked=row.get("skipped"))


# ----------------------------------------------------------------------------- running and reporting


# ----------------------------------------------------------------------------- inference backends (issue 19)


def timm_eager_inference(model, paths: Sequence[str], batch_size: int) -> torch.Tensor:
    """What a timm user already has: PIL, timm's own eval transform (``create_transform`` with ToTensor and
    Normalize), plain eager forward under ``inference_mode``; class probabilities."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=model))
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start:start + batch_size]])
            out.append(model(batch).softmax(-1))
    return torch.cat(out)


def matmul_gflops(threads: int, n: int = 4096, rounds: int = 3) -> float:
    """The CPU's measured fp32 peak on ``threads`` cores: the best of ``rounds`` n x n matmuls, GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    with torch_threads(threads):
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(rounds))
    return 2 * n ** 3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _backend_setup(ctx: BenchContext):
    name = "resnet18_8xb32_in1k" if ctx.quick else "resnet50_8xb32_in1k"
    n, batch, rounds = (8, 4, 1) if ctx.quick else (64, 16, 3)
    paths = [str(p) for p in write_jpegs(ctx.workdir / "inference_backends", make_photos(n, seed=1))]
    return name, n, batch, rounds, paths


@register("inference_backends")
def inference_backend_rows(ctx: BenchContext) -> Iterator[BenchRow]:
    """``inference_model(..., backend=B)`` (JPEG decode included) per backend, against plain timm eager with
    timm's eval transform and against mmpretrain's ``inference_model``, all in one run; and the fraction of the
    CPU's measured fp32 peak the model alone reaches under ONNX Runtime."""
    from mmpretrain.apis import inference_model as mmpretrain_inference_model

    from resnet_hub.backends import resolve_backend
    from resnet_hub.inference import ImageClassificationInferencer

    name, n, batch, rounds, paths = _backend_setup(ctx)
    ours_model, ref_model = inference_pair(name, "cpu")
    threads = torch.get_num_threads()
    for backend in ("eager", "onnxruntime"):
        try:
            resolve_backend(backend, torch.device("cpu"), "fp32")
        except ImportError as e:
            yield BenchRow(f"inference {backend} vs timm", None, None, "images/s", "cpu", name, blocked=str(e))
            continue
        inferencer = ImageClassificationInferencer(ours_model, backend=backend)

        def ours(inf=inferencer) -> None:
            inf(paths, batch_size=batch)

        def plain_timm() -> None:
            timm_eager_inference(ours_model, paths, batch)

        def mmpretrain() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                mmpretrain_inference_model(ref_model, paths, batch_size=batch)

        ctx.log(f"inference {backend} {name}: {n} JPEGs, batch {batch}, {rounds} rounds")
        ours_ips, timm_ips = measure_pair(ours, plain_timm, items=n, rounds=rounds)
        ours_ips2, mm_ips = measure_pair(ours, mmpretrain, items=n, rounds=rounds)
        settings = (f"{name}, fp32, {n} JPEGs ~500x375 from disk (decode included), batch {batch}, {threads} threads, "
                    f"median of {rounds}, interleaved; ours: inference_model backend={backend} (BN folded, "
                    f"{'channels_last' if inferencer.channels_last else 'contiguous'}; prepared once, "
                    f"{inferencer.prepare_seconds:.1f} s, not counted)")
        yield BenchRow(f"inference {backend} vs timm", ours_ips, timm_ips, "images/s", "cpu",
                       settings + "; reference: timm eager, timm's create_transform on PIL images", target=1.5)
        yield BenchRow(f"inference {backend} vs mmpretrain", ours_ips2, mm_ips, "images/s", "cpu",
                       settings + "; reference: mmpretrain's inference_model", target=2.0)
        if backend == "onnxruntime":
            yield _peak_fraction_row(inferencer, ours_model, batch, rounds, threads, name)


def _peak_fraction_row(inferencer, model, batch: int, rounds: int, threads: int, name: str) -> BenchRow:
    """The model alone (preprocessed batch in, logits out) in GFLOP/s against a large fp32 matmul on the same
    threads: the fraction of the CPU's measured peak the backend reaches."""
    from resnet_hub.hub.card import measure_complexity

    size = model.pretrained_cfg["input_size"][-1]
    flops = measure_complexity(model, size).flops * batch
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        inferencer._forward(x)
        model_s = min(_timed(lambda: inferencer._forward(x)) for _ in range(max(rounds, 2)))
    peak = matmul_gflops(threads)
    return BenchRow("inference onnxruntime, fraction of fp32 peak", flops / model_s / 1e9, peak, "GFLOP/s", "cpu",
                    f"{name}, batch {batch}, {threads} threads: the model alone in ONNX Runtime (FLOPs = 2 x MACs of "
                    f"convolutions and the head) vs the best 4096x4096 fp32 matmul in torch; ratio = fraction",
                    target=0.85)


@register("inference_compile")
def inference_compile_rows(ctx: BenchContext) -> Iterator[BenchRow]:
    """``backend="compile"``: throughput once compiled (vs plain timm eager), the compile time in this process,
    and the start-up of a second process that finds inductor's cache warm (both as rows of seconds)."""

    name, n, batch, rounds, paths = _backend_setup(ctx)
    ours_model, _ = inference_pair(name, "cpu")
    with tempfile.TemporaryDirectory() as cache, _inductor_cache(cache):
        yield from _compile_rows(ours_model, name, n, batch, rounds, paths)


@contextlib.contextmanager
def _inductor_cache(folder: str) -> Iterator[None]:
    """Inductor's on-disk cache in ``folder`` (empty: the compile row is a cold compile, whatever earlier runs
    left in the default cache), for this process and the warm-start process it starts."""
    old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = old


def _compile_rows(ours_model, name: str, n: int, batch: int, rounds: int, paths) -> Iterator[BenchRow]:
    from resnet_hub.inference import ImageClassificationInferencer

    inferencer = ImageClassificationInferencer(ours_model, backend="compile")
    inferencer(paths[:batch], batch_size=batch)  # compiles, from an empty cache
    compile_s = inferencer.prepare_seconds

    def ours() -> None:
        inferencer(paths, batch_size=batch)

    ours_ips, timm_ips = measure_pair(ours, lambda: timm_eager_inference(ours_model, paths, batch), n, rounds)
    layout = "channels_last" if inferencer.channels_last else "contiguous"
    yield BenchRow("inference compile vs timm", ours_ips, timm_ips, "images/s", "cpu",
                   f"{name}, fp32, {n} JPEGs, batch {batch}, inductor freezing, {layout}; compile not counted",
                   target=1.5)
    yield BenchRow("inference compile: compile time", compile_s, None, "s", "cpu",
                   f"{name}, batch {batch}: the first batch in this process, its compile and one forward, inductor's "
                   "cache empty (a fresh TORCHINDUCTOR_CACHE_DIR)")
    yield BenchRow("inference compile: warm-cache start-up", _warm_start_seconds(name, paths[:batch], batch), None,
                   "s", "cpu", f"{name}: the first batch of a fresh process after this one filled inductor's cache "
                               "(the same TORCHINDUCTOR_CACHE_DIR)")


def _warm_start_seconds(name: str, paths: Sequence[str], batch: int) -> float:
    import json
    import subprocess
    import sys

    code = ("import json, sys, resnet_hub\n"
            "from resnet_hub.bench.benchmark import inference_pair\n"
            "from resnet_hub.inference import ImageClassificationInferencer\n"
            f"inf = ImageClassificationInferencer(inference_pair({name!r})[0], backend='compile')\n"
            f"inf({list(paths)!r}, batch_size={batch})\n"
            "print(json.dumps(inf.prepare_seconds))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def _figure(x: Optional[float]) -> str:
    """A row's figure; "-" where a row has none (a one-sided row: a compile time has no reference)."""
    return "-" if x is None else f"{x:.2f}"


def run_rows(names: Sequence[str], ctx: BenchContext) -> list[BenchRow]:
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise ValueError(f"unknown benchmark row(s) {', '.join(unknown)}; known: {', '.join(ROWS)}")
    rows: list[BenchRow] = []
    for name in names:
        for row in ROWS[name](ctx):
            if row.blocked:
                ctx.log(f"  {row.name}: blocked: {row.blocked}")
            else:
                ctx.log(f"  {row.name} [{row.device}]: ours {row.ours:.2f}, reference {_figure(row.reference)} "
                        f"{row.unit}, ratio {_figure(None if row.reference is None else row.ratio)}")
            rows.append(row)
    return rows


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    from resnet_hub.train.run_dir import software_versions

    info = {"cpu": _cpu_model(), "cores": str(os.cpu_count()), "torch threads": str(torch.get_num_threads()),
            "python": platform.python_version(),
            **software_versions(("accelerate", "datasets", "mmpretrain", "mmcv", "mmengine"))}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if hasattr(os, "getloadavg"):  # other processes on the machine: rows interleave sides so both share it
        info["load average (1, 5, 15 min) at the end"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    info["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def write_markdown(rows: Sequence[BenchRow], path: Path, quick: bool) -> None:
    lines = ["# Benchmarks", "",
             "Measured side by side in one run by `python scripts/benchmark.py" + (" --quick" if quick else "") + "`: "
             "each row times resnet_hub (\"ours\") and the reference way on the same data, interleaved round by "
             "round. Higher is better; ratio = ours / reference.", "",
             "| row | device | ours | reference | unit | ratio | target | settings |",
             "| --- | --- | ---: | ---: | --- | ---: | --- | --- |"]
    for r in rows:
        if r.blocked:
            lines.append(f"| {r.name} | {r.device} | blocked | blocked | {r.unit} | - | - | "
                         f"not measured: {r.blocked}; {r.settings} |")
            continue
        met = r.reference is not None and r.ratio >= (r.target or 0)
        target = "-" if r.target is None or r.reference is None else f">= {r.target:g} " + (
            "met" if met else "**MISSED**")
        lines.append(f"| {r.name} | {r.device} | {r.ours:.2f} | {_figure(r.reference)} | {r.unit} | "
                     f"{_figure(None if r.reference is None else r.ratio)} | {target} | {r.settings} |")
    missed = [r for r in rows if not r.blocked and r.target is not None and r.reference and r.ratio < r.target]
    if missed:
        lines += ["", "Targets missed: " + "; ".join(f"{r.name} [{r.device}] {r.ratio:.2f} < {r.target:g}"
                                                    for r in missed) + "."]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in machine().items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "\n".join(lines) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: checks it runs")
    parser.add_argument("--json", metavar="OUT", help="write the rows as a JSON list to this file")
    parser.add_argument("--markdown", metavar="PATH",
                        help=f"write the markdown table and the machine here; without it a full run writes "
                             f"{DEFAULT_MARKDOWN} and --quick writes none")
    parser.add_argument("--only", metavar="ROWS", help=f"comma-separated rows to run, of: {', '.join(ROWS)}; "
                                                       "without it, all")
    parser.add_argument("--device", action="append", choices=["cpu", "cuda"],
                        help="device for the model rows, repeatable; without it cpu, and cuda when present")


def run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(ROWS)
    devices = tuple(args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]))
    if "cuda" in devices and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    with tempfile.TemporaryDirectory(prefix="resnet_hub_bench_") as tmp:
        ctx = BenchContext(quick=args.quick, workdir=Path(tmp), devices=devices)
        rows = run_rows(names, ctx)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, [r.as_json() for r in rows])
    markdown = args.markdown or (None if args.quick else str(DEFAULT_MARKDOWN))
    if markdown:
        write_markdown(rows, Path(markdown), args.quick)
        print(f"wrote {markdown}")
    return 0
