"""GPU benchmark rows: the trainer's fast paths against its eager fp32 baseline, measured in one run.

Each training row builds the step users run, the trainer's own
:func:`resnet_hub.train.trainer.build_train_step` (Accelerate, on-device normalize, the recipe's
optimizer, loss and lr schedule), twice in the same process: the fast way (``ours``: bf16
autocast, channels_last, ``torch.compile``, fused SGD, batches from the trainer's loaders:
``DeviceDataLoader`` and ``resnet_hub.train.trainer.train_batches``) and the plain way (``reference``: eager fp32,
default SGD, a CPU DataLoader where data is loaded). Each returns one row ``{"name", "ours",
"reference", "ratio", "unit", "device", "settings"}`` in images per second. Both sides start
from the same weights and take their first step on the same uint8 batch; the two first-step
losses and the cosine of their gradients go into ``settings`` as evidence that they compute the
same thing.

Without CUDA a row is returned marked ``"skipped"`` with the reason and ``None`` numbers,
unless a device is named: ``device="cpu"`` runs the same code at whatever (tiny) size is asked,
which is how the tests check it. The targets are the issue's, for one H100.

    python -m resnet_hub.bench.benchmark_gpu --json benchmarks/gpu_h100.json   # scripts/gpu_check.sh
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import itertools
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as nnf

from resnet_hub.atomic import write_json
from resnet_hub.train.augment import TrainAugmentation
from resnet_hub.train.device_data import DeviceDataLoader
from resnet_hub.train.run_dir import software_versions
from resnet_hub.train.trainer import TrainStep, build_train_step, create_model
from resnet_hub.zoo.configs import load_config

__all__ = [
    "GPU_ROWS", "TARGETS", "TINY", "gpu_rows", "inference_resnet50", "synthetic_jpeg_dataset", "train_resnet18_cifar",
    "train_resnet50", "train_resnet50_end_to_end", "trainer_step", "main",
]

# images/s on one H100 (issue 7)
TARGETS = {
    "train resnet50": 4_500,
    "train resnet50 end-to-end": 3_500,
    "train resnet18_cifar": 20_000,
    "inference resnet50": 15_000,
}
IN1K_CONFIG = "resnet50_8xb32_in1k"
CIFAR_CONFIG = "resnet18_8xb16_cifar10"
DeviceLike = Union[str, torch.device, None]


# ----------------------------------------------------------------------------- shared pieces


def _resolve_device(device: DeviceLike) -> tuple[Optional[torch.device], Optional[str]]:
    """The device to run on, or ``(None, reason)`` when CUDA is wanted and absent."""
    if device is None:
        device = "cuda"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return None, "CUDA is not available on this machine"
    return device, None


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type}: {torch.get_num_threads()} threads"


def _row(name: str, ours: Optional[float], reference: Optional[float], device: Optional[torch.device],
         settings: dict[str, Any], skipped: Optional[str] = None) -> dict[str, Any]:
    settings = dict(settings, target_img_per_s=TARGETS[name], **software_versions())
    row = {"name": name, "ours": ours, "reference": reference,
           "ratio": None if ours is None or not reference else ours / reference, "unit": "img/s",
           "device": _device_label(device) if device is not None else "none", "settings": settings}
    if skipped:
        row["skipped"] = skipped
    return row


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images_per_second(step: Callable[[], Any], batch_size: int, steps: int, warmup: int,
                       device: torch.device) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch_size * steps / (time.perf_counter() - start)


def _loader_rate(train_step: TrainStep, batches, batch_size: int, steps: int, warmup: int,
                 device: torch.device) -> float:
    """Training images/s with each step's batch taken from ``batches`` (moved to ``device``)."""

    def step():
        x, y = next(batches)
        return train_step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))

    return _images_per_second(step, batch_size, steps, warmup, device)


@contextlib.contextmanager
def _cudnn_benchmark():
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # both sides: picks the fastest conv kernels for the fixed shapes
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def _forever(loader, set_epoch: bool = False):
    for epoch in itertools.count():
        if set_epoch:
            loader.set_epoch(epoch)
        yield from loader


def _num_workers(num_workers: Optional[int]) -> int:
    return max(1, (os.cpu_count() or 2) - 2) if num_workers is None else num_workers


def trainer_step(cfg, model: torch.nn.Module, device: torch.device, fast: bool,
                 compile_options: Optional[dict] = None) -> TrainStep:
    """The trainer's step (:func:`build_train_step`) for ``model`` on ``device``, the fast way or the plain way.

    Each side gets an Accelerator of its own precision (bf16 or fp32): Accelerate's state is one
    per process, so it is reset first; the autocast that ``prepare`` wraps around a model's
    forward stays with that model.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if fast else "no")
    return build_train_step(cfg, accelerator, model, lr=0.1, iters_per_epoch=1000, num_classes=cfg.num_classes,
                            fused=fast, channels_last=fast, compile=fast and compile_options is not None,
                            compile_options=compile_options)


@contextlib.contextmanager
def _own_accelerate_state():
    """Leave Accelerate's per-process state as it was found: unset (a row sets it twice)."""
    from accelerate.state import AcceleratorState

    try:
        yield
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def _fast_settings(compile: bool, compile_mode: Optional[str], compile_backend: str) -> dict[str, Any]:
    return {"train_step": "resnet_hub.train.trainer.build_train_step",
            "ours": {"dtype": "bfloat16 autocast", "channels_last": True, "fused_optimizer": True,
                     "compile": {"backend": compile_backend, "mode": compile_mode} if compile else False},
            "reference_setup": {"dtype": "float32", "channels_last": False, "fused_optimizer": False, "compile": False}}


def _compile_options(compile: bool, compile_mode: Optional[str], compile_backend: str) -> Optional[dict]:
    return dict(mode=compile_mode, backend=compile_backend) if compile else None


def _model(config: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(load_config(config))


def _first_step(step: TrainStep, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    """One step of ``step``; its loss and all gradients (flattened, fp32) as the optimizer got them."""
    grads = []
    params = [p for group in step.optimizer.param_groups for p in group["params"]]
    hook = step.optimizer.optimizer.register_step_pre_hook(
        lambda *_: grads.append(torch.cat([p.grad.float().flatten() for p in params])))
    try:
        loss = step(images, labels).item()
    finally:
        hook.remove()
    return loss, grads[0]


def _compare_first_step(cfg, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        device: torch.device, compile_options: Optional[dict]
                        ) -> tuple[TrainStep, TrainStep, dict[str, float]]:
    """Both sides from the same weights; each takes its first step on the same uint8 batch.

    A random-init network's loss is close to log(classes) whatever it is fed, so the cosine
    between the two first-step gradients is recorded as well: bf16 keeps it above ~0.99, while
    shuffled labels, other images or a broken backward pull it far lower (0.72 for labels
    shifted by one, measured).
    """
    reference = trainer_step(cfg, copy.deepcopy(model), device, fast=False)
    loss_ref, grad_ref = _first_step(reference, images, labels)
    ours = trainer_step(cfg, model, device, fast=True, compile_options=compile_options)
    loss_ours, grad_ours = _first_step(ours, images, labels)
    cosine = nnf.cosine_similarity(grad_ref, grad_ours, dim=0).item()
    return ours, reference, {"loss_reference": loss_ref, "loss_ours": loss_ours, "grad_cosine": cosine}


# ----------------------------------------------------------------------------- rows


def train_resnet50(device: DeviceLike = None, *, batch_size: int = 256, image_size: int = 224, steps: int = 50,
                   warmup: int = 10, compile: bool = True, compile_mode: Optional[str] = None,
                   compile_backend: str = "inductor", seed: int = 0) -> dict[str, Any]:
    """``train resnet50``: the trainer's steps on a synthetic uint8 batch already on the device."""
    name = "train resnet50"
    settings = dict(config=IN1K_CONFIG, batch_size=batch_size, image_size=image_size, steps=steps, warmup=warmup,
                    data="synthetic, on the device", **_fast_settings(compile, compile_mode, compile_backend))
    dev, reason = _resolve_device(device)
    if dev is None:
        return _row(name, None, None, None, settings, skipped=reason)
    g = torch.Generator(device=dev).manual_seed(seed)
    x = torch.randint(0, 256, (batch_size, 3, image_size, image_size), device=dev, generator=g, dtype=torch.uint8)
    y = torch.randint(0, 1000, (batch_size,), device=dev, generator=g)
    cfg = load_config(IN1K_CONFIG)
    with _cudnn_benchmark(), _own_accelerate_state():
        ours, reference, losses = _compare_first_step(cfg, _model(IN1K_CONFIG, seed), x, y, dev,
                                                      _compile_options(compile, compile_mode, compile_backend))
        ref_rate = _images_per_second(functools.partial(reference, x, y), batch_size, steps, warmup, dev)
        del reference  # frees its memory for ours
        ours_rate = _images_per_second(functools.partial(ours, x, y), batch_size, steps, warmup, dev)
    return _row(name, ours_rate, ref_rate, dev, dict(settings, first_step=losses))


def synthetic_jpeg_dataset(num_images: int, height: int = 375, width: int = 500, num_classes: int = 1000,
                           seed: int = 0, quality: int = 90):
    """An HF dataset of photo-like JPEGs (``image``: ``Image()``, ``label``), made on this machine.

    Smooth random colour fields plus noise: they compress like photographs (tens of kB at
    375x500, ImageNet's most common size), unlike pure noise.
    """
    import io

    import datasets
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    blobs = []
    for start in range(0, num_images, 64):
        n = min(64, num_images - start)
        low = torch.rand(n, 3, max(2, height // 24), max(2, width // 24), generator=g)
        img = nnf.interpolate(low, size=(height, width), mode="bicubic", align_corners=False)
        img = (img + 0.04 * torch.randn(img.shape, generator=g)).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        for one in img.permute(0, 2, 3, 1).numpy():
            buf = io.BytesIO()
            Image.fromarray(one).save(buf, format="JPEG", quality=quality)
            blobs.append(buf.getvalue())
    labels = torch.randint(0, num_classes, (num_images,), generator=g).tolist()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=num_classes)})
    return datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in blobs], "label": labels},
                                      features=features)


def _plain_imagenet_transform(cfg, image_size: int):
    """The plain CPU path: HF ``Image()`` decodes with PIL, torchvision transforms per image to uint8
    (the trainer's step normalizes)."""
    import torchvision.transforms as T

    rrc = next(a for a in cfg.training.augmentation if a.type == "random_resized_crop")
    transform = T.Compose([
        T.RandomResizedCrop(image_size, scale=rrc.scale, ratio=rrc.ratio,
                            interpolation=T.InterpolationMode(rrc.interpolation)),
        T.RandomHorizontalFlip(), T.PILToTensor()])

    def apply(batch):
        return {"image": [transform(im.convert("RGB")) for im in batch["image"]], "label": batch["label"]}

    return apply


def _tuple_collate(batch):
    return torch.stack([b["image"] for b in batch]), torch.tensor([b["label"] for b in batch])


def train_resnet50_end_to_end(device: DeviceLike = None, *, batch_size: int = 256, image_size: int = 224,
                              steps: int = 30, warmup: int = 10, num_images: Optional[int] = None,
                              source_size: tuple[int, int] = (375, 500), num_workers: Optional[int] = None,
                              compile: bool = True, compile_mode: Optional[str] = None,
                              compile_backend: str = "inductor", seed: int = 0) -> dict[str, Any]:
    """``train resnet50 end-to-end``: JPEGs in an HF dataset, decoded and augmented per step.

    ours: the trainer's loader (:func:`resnet_hub.bench.benchmark.trainer_loader`: the plan, then
    ``train_batches``), whose DataLoader workers decode and augment each batch to uint8, pinned memory.
    reference: ``Image()`` (PIL) + ``with_transform`` + torchvision
    RandomResizedCrop/flip/PILToTensor in the same number of workers, pinned memory, eager fp32.
    Both feed the trainer's step, which normalizes on the device. The recipe is
    ``resnet50_8xb32_in1k``'s (bilinear, scale 0.08-1).
    """
    import datasets
    from torch.utils.data import DataLoader

    from .benchmark import trainer_loader

    name = "train resnet50 end-to-end"
    cfg = load_config(IN1K_CONFIG)
    num_images = num_images or batch_size * 8
    workers = _num_workers(num_workers)
    settings = dict(config=IN1K_CONFIG, batch_size=batch_size, image_size=image_size, steps=steps, warmup=warmup,
                    data=f"{num_images} synthetic JPEGs of {source_size[0]}x{source_size[1]} in an HF dataset",
                    num_workers=workers, ours_data="the trainer's loader: train_batches(plan) -> LoaderBatches, "
                    "decode + augmentation in workers, uint8",
                    reference_data="HF Image() (PIL) + with_transform(torchvision) in workers",
                    **_fast_settings(compile, compile_mode, compile_backend))
    dev, reason = _resolve_device(device)
    if dev is None:
        return _row(name, None, None, None, settings, skipped=reason)
    ds = synthetic_jpeg_dataset(num_images, *source_size, seed=seed)
    loader_kw = dict(batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                     persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed))
    plain = DataLoader(ds.with_transform(_plain_imagenet_transform(cfg, image_size)), collate_fn=_tuple_collate,
                       pin_memory=dev.type == "cuda", **loader_kw)
    loader = trainer_loader(IN1K_CONFIG, ds.cast_column("image", datasets.Image(decode=False)), batch=batch_size,
                            workers=workers, device=str(dev), img_size=image_size)

    def ours_batches():
        for epoch in itertools.count():
            for b in loader.batches(epoch):
                yield b["images"].to(dev, non_blocking=True), b["labels"].to(dev, non_blocking=True)

    with _cudnn_benchmark(), _own_accelerate_state():
        ours_data = ours_batches()
        x0, y0 = next(ours_data)
        ours, reference, losses = _compare_first_step(cfg, _model(IN1K_CONFIG, seed), x0, y0, dev,
                                                      _compile_options(compile, compile_mode, compile_backend))
        ref_rate = _loader_rate(reference, _forever(plain), batch_size, steps, warmup, dev)
        del reference, plain  # frees memory and stops the reference's workers
        ours_rate = _loader_rate(ours, ours_data, batch_size, steps, warmup, dev)
    return _row(name, ours_rate, ref_rate, dev, dict(settings, first_step=losses))


class _PlainCifar(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: uint8 HWC array -> PIL -> transforms."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        import PIL.Image

        return self.transform(PIL.Image.fromarray(self.images[i])), int(self.labels[i])


def train_resnet18_cifar(device: DeviceLike = None, *, batch_size: int = 128, steps: int = 200, warmup: int = 20,
                         num_images: int = 50_000, num_workers: Optional[int] = None, compile: bool = True,
                         compile_mode: Optional[str] = None, compile_backend: str = "inductor",
                         seed: int = 0) -> dict[str, Any]:
    """``train resnet18_cifar``: the CIFAR-10 recipe's batch, data held on the device.

    ours: :class:`DeviceDataLoader` (the split as one uint8 tensor on the device, crop + flip in
    batch there). reference: a torchvision-CIFAR10-style dataset (PIL + RandomCrop(32, 4) + flip +
    PILToTensor per image) in a DataLoader with workers and pinned memory, eager fp32. Both feed
    the trainer's step, which normalizes on the device. Synthetic CIFAR-shaped data (no download
    on the machine).
    """
    import numpy as np
    import torchvision.transforms as T
    from torch.utils.data import DataLoader

    name = "train resnet18_cifar"
    cfg = load_config(CIFAR_CONFIG)
    workers = _num_workers(num_workers)
    settings = dict(config=CIFAR_CONFIG, batch_size=batch_size, image_size=32, steps=steps, warmup=warmup,
                    data=f"{num_images} synthetic 32x32 images", num_workers=workers,
                    ours_data="DeviceDataLoader (GPU-resident uint8, device crop + flip)",
                    reference_data="PIL + torchvision transforms in DataLoader workers",
                    **_fast_settings(compile, compile_mode, compile_backend))
    dev, reason = _resolve_device(device)
    if dev is None:
        return _row(name, None, None, None, settings, skipped=reason)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, cfg.num_classes, num_images)
    device_loader = DeviceDataLoader(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels),
                                     batch_size, drop_last=True, seed=seed, device=dev,
                                     augmentation=TrainAugmentation.from_recipe(cfg.training.augmentation, True))
    crop = next(a for a in cfg.training.augmentation if a.type == "random_crop")
    transform = T.Compose([T.RandomCrop(crop.size, padding=crop.padding, fill=crop.fill), T.RandomHorizontalFlip(),
                           T.PILToTensor()])
    plain = DataLoader(_PlainCifar(images, labels, transform), batch_size=batch_size, shuffle=True, drop_last=True,
                       num_workers=workers, persistent_workers=workers > 0, pin_memory=dev.type == "cuda",
                       generator=torch.Generator().manual_seed(seed))
    with _cudnn_benchmark(), _own_accelerate_state():
        ours_data = _forever(device_loader, set_epoch=True)
        x0, y0 = next(ours_data)
        ours, reference, losses = _compare_first_step(cfg, _model(CIFAR_CONFIG, seed), x0, y0, dev,
                                                      _compile_options(compile, compile_mode, compile_backend))
        ref_rate = _loader_rate(reference, _forever(plain), batch_size, steps, warmup, dev)
        del reference, plain  # frees memory and stops the reference's workers
        ours_rate = _loader_rate(ours, ours_data, batch_size, steps, warmup, dev)
    return _row(name, ours_rate, ref_rate, dev, dict(settings, first_step=losses))


def inference_resnet50(device: DeviceLike = None, *, batch_size: int = 256, image_size: int = 224, steps: int = 50,
                       warmup: int = 10, compile: bool = True, compile_mode: Optional[str] = None,
                       compile_backend: str = "inductor", seed: int = 0) -> dict[str, Any]:
    """``inference resnet50``: forward passes in inference mode on a batch already on the device.

    ours: bf16 autocast, channels_last, compiled. reference: eager fp32. Both in eval mode with
    the same weights; the largest logit difference relative to the logits' range, and how often
    both pick the same class, go into ``settings``.
    """
    name = "inference resnet50"
    settings = dict(config=IN1K_CONFIG, batch_size=batch_size, image_size=image_size, steps=steps, warmup=warmup,
                    data="synthetic, on the device", **_fast_settings(compile, compile_mode, compile_backend))
    settings["ours"].pop("fused_optimizer")
    settings["reference_setup"].pop("fused_optimizer")
    dev, reason = _resolve_device(device)
    if dev is None:
        return _row(name, None, None, None, settings, skipped=reason)
    g = torch.Generator(device=dev).manual_seed(seed)
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev, generator=g)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    plain = _model(IN1K_CONFIG, seed).to(dev).eval()
    fast_model = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    fast = torch.compile(fast_model, mode=compile_mode, backend=compile_backend) if compile else fast_model

    def ours_step():
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
            return fast(x_cl)

    def reference_step():
        with torch.inference_mode():
            return plain(x)

    with _cudnn_benchmark():
        ref_logits, our_logits = reference_step().float(), ours_step().float()
        spread = (ref_logits.max() - ref_logits.min()).clamp_min(1e-12)
        check = {"max_abs_logit_diff_over_range": ((our_logits - ref_logits).abs().max() / spread).item(),
                 "top1_agreement": (our_logits.argmax(1) == ref_logits.argmax(1)).float().mean().item()}
        ref_rate = _images_per_second(reference_step, batch_size, steps, warmup, dev)
        ours_rate = _images_per_second(ours_step, batch_size, steps, warmup, dev)
    return _row(name, ours_rate, ref_rate, dev, dict(settings, first_batch=check))


GPU_ROWS: dict[str, Callable[..., dict[str, Any]]] = {
    "train resnet50": train_resnet50,
    "train resnet50 end-to-end": train_resnet50_end_to_end,
    "train resnet18_cifar": train_resnet18_cifar,
    "inference resnet50": inference_resnet50,
}


# Each row at a size a CPU runs in seconds, compiled by dynamo with its eager backend (inductor takes
# minutes on a CPU), DataLoader workers included: ``--tiny``, which ``scripts/gpu_check.sh --rehearse`` runs
# on the CPU so that everything but the GPU itself is exercised before a GPU is at hand.
TINY: dict[str, dict[str, Any]] = {
    "train resnet50": dict(batch_size=2, image_size=64, steps=1, warmup=0),
    "train resnet50 end-to-end": dict(batch_size=2, image_size=64, steps=1, warmup=0, num_images=4,
                                      source_size=(72, 96), num_workers=1),
    "train resnet18_cifar": dict(batch_size=4, steps=1, warmup=0, num_images=8, num_workers=1),
    "inference resnet50": dict(batch_size=2, image_size=64, steps=1, warmup=0),
}
TINY_COMPILE_BACKEND = "eager"


def _row_names(names: Optional[list[str]]) -> list[str]:
    unknown = sorted(set(names or ()) - set(GPU_ROWS))
    if unknown:
        raise ValueError(f"unknown GPU benchmark row {unknown[0]!r} (choices: {', '.join(GPU_ROWS)})")
    return [name for name in GPU_ROWS if names is None or name in names]


def _row_kwargs(name: str, tiny: bool) -> dict[str, Any]:
    return dict(TINY[name], compile_backend=TINY_COMPILE_BACKEND) if tiny else {}


def gpu_rows(device: DeviceLike = None, names: Optional[list[str]] = None, tiny: bool = False
             ) -> list[dict[str, Any]]:
    """Every GPU row (or those named), in order, at the issue's sizes (or :data:`TINY`'s)."""
    return [GPU_ROWS[name](device, **_row_kwargs(name, tiny)) for name in _row_names(names)]


# ----------------------------------------------------------------------------- command line


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, required=True, help="where to write the rows and the device's name")
    parser.add_argument("--only", default=None, help=f"comma-separated rows (default: all: {', '.join(GPU_ROWS)})")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cpu runs the same code without a GPU (with --tiny: scripts/gpu_check.sh --rehearse)")
    parser.add_argument("--tiny", action="store_true",
                        help="each row at a size a CPU runs in seconds, compiled with dynamo's eager backend")


def _measure_row(name: str, device: str, tiny: bool) -> dict[str, Any]:
    """One row; a row that raises is recorded as failed (traceback on stderr) so that the rows after it still
    run in the one GPU session at hand."""
    try:
        return GPU_ROWS[name](device, **_row_kwargs(name, tiny))
    except Exception as e:  # noqa: BLE001 (reported whole, never hidden: the command exits 1)
        traceback.print_exc()
        return dict(_row(name, None, None, None, {}), failed=f"{type(e).__name__}: {e}")


def _print_row(row: dict[str, Any]) -> None:
    if row.get("failed"):
        print(f"{row['name']}: failed: {row['failed']}", file=sys.stderr, flush=True)
    elif row.get("skipped"):
        print(f"{row['name']}: blocked: {row['skipped']}", file=sys.stderr, flush=True)
    else:
        print(f"{row['name']} [{row['device']}]: ours {_rate(row['ours'])} {row['unit']} (target "
              f"{TARGETS[row['name']]:,}), reference {_rate(row['reference'])}, ratio {row['ratio']:.2f}",
              file=sys.stderr, flush=True)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"  # a tiny CPU run gives a few img/s


def _run(args: argparse.Namespace) -> int:
    """The rows into ``--json``, rewritten whole after each row (a row cut short by a time limit leaves
    the rows before it); 1 when a row is blocked (no CUDA) or failed."""
    names = _row_names([n.strip() for n in args.only.split(",")] if args.only else None)
    cuda = args.device == "cuda" and torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else ("cpu" if args.device == "cpu" else None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        rows.append(_measure_row(name, args.device, args.tiny))
        _print_row(rows[-1])
        write_json(args.json, {"device": device, "targets_for": "one H100 or H200", "tiny": args.tiny,
                               "rows": rows}, indent=1)
    return 1 if any(r.get("skipped") or r.get("failed") for r in rows) else 0


def main(argv=None) -> int:
    """``python -m resnet_hub.bench.benchmark_gpu --json OUT [--only ROW,ROW] [--device cpu --tiny]``."""
    from resnet_hub.commands import main as command_main

    return command_main(_add_arguments, _run, "The four GPU benchmark rows, into one JSON file.", argv,
                        prog="python -m resnet_hub.bench.benchmark_gpu")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
