"""Train a config's recipe with Accelerate: one CPU to many GPUs and machines, exact resume.

    accelerate launch scripts/train.py --config resnet18_8xb16_cifar10 --dataset digits --epochs 3

The output dir holds ``run.json`` (what run this is), ``checkpoints/step-NNNNNNNNN/`` (the last
``--keep`` complete ``Accelerator.save_state`` folders), ``metrics.json`` (per epoch: loss, lr,
top-1, top-5, img/s), ``curves.png``, tensorboard logs under ``logs/`` and ``final/``: the
best epoch's model as a Hub bundle (``timm.create_model("local-dir:OUT/final")``).

Checkpoints are written into ``checkpoints/.tmp-*`` and renamed into place when complete, so
a crash during a save leaves the last complete one usable; older ones are pruned only after.
SIGTERM/SIGINT stop at the next optimizer step on every process, save, and exit 143/130;
``--resume`` continues from the latest complete checkpoint, mid-epoch included, and gives the
weights an uninterrupted run would have.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from resnet_hub.zoo.configs import HubConfig, load_config

__all__ = ["add_arguments", "run", "TrainStep", "build_train_step", "create_model", "evaluate_loop", "Checkpoints",
           "TRAINER_STATE"]

TRAINER_STATE = "trainer_state.json"
RUN_FILE = "run.json"
METRICS = "metrics.json"
CURVES = "curves.png"
PRECISIONS = ("auto", "no", "fp16", "bf16")


# ----------------------------------------------------------------------------- model


def create_model(cfg: HubConfig, **kwargs: Any) -> torch.nn.Module:
    """A fresh model of ``cfg``: the registered timm model, or, for a YAML file of its own, its architecture."""
    import timm

    from resnet_hub.zoo import configs

    registered = configs._all_configs().get(cfg.name)
    if registered is not None and registered == cfg:
        return timm.create_model(cfg.name, **kwargs)
    from resnet_hub.zoo.models import _config_cfg, model_args

    overlay = {k: v for k, v in _config_cfg(cfg).items() if k != "hf_hub_id"}
    args = dict(model_args(cfg), **kwargs)
    args.pop("block"), args.pop("layers")
    return timm.create_model(cfg.architecture_name, pretrained_cfg_overlay=overlay, **args)


# ----------------------------------------------------------------------------- the step


class TrainStep:
    """One micro-batch of training: normalize on the device, batch-augment, forward, backward,
    and on the last micro-batch of an accumulation cycle the optimizer update and the lr.

    ``step(images, labels)`` takes uint8 NCHW images and int64 labels (host or device) and returns
    the detached loss. ``updates`` counts optimizer updates; the lr for the next one is set from it.
    """

    def __init__(self, accelerator, model, optimizer, scheduler, loss_fn, normalize, mixup=None,
                 static_loss_scale: Optional[float] = None):
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.loss_fn, self.normalize, self.mixup = loss_fn, normalize, mixup
        self.static_loss_scale = static_loss_scale
        self.updates = 0
        self.last_lr = None  # the lr of the latest update

    def set_updates(self, updates: int) -> None:
        self.updates = updates
        self.scheduler.step_update(updates)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        acc = self.accelerator
        x = self.normalize(images)
        y = labels.to(x.device, non_blocking=True)
        if self.mixup is not None:
            if len(x) % 2:  # timm's Mixup pairs a batch with its reverse; an odd one left by skipped images
                x, y = x[:-1], y[:-1]
            x, y = self.mixup(x, y)
        with acc.accumulate(self.model):
            loss = self.loss_fn(self.model(x), y)
            acc.backward(loss)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if acc.sync_gradients:
                self.last_lr = self.lr
                self.updates += 1
                self.scheduler.step_update(self.updates)
                if self.static_loss_scale is not None and acc.scaler is not None:
                    # mmengine's AmpOptimWrapper(loss_scale=512.): update(512.) after every step
                    acc.scaler.update(self.static_loss_scale)
        return loss.detach()

    step = __call__

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def _fast_paths(args, device: torch.device) -> dict:
    cuda = device.type == "cuda"

    def auto(value, default):
        return default if value is None else bool(value)

    return dict(
        channels_last=auto(args.channels_last, cuda),
        compile=auto(args.compile, cuda),
        fused=auto(args.fused_optimizer, cuda) and cuda,
        pin_memory=auto(args.pin_memory, cuda) and cuda,
        persistent_workers=True,
    )


def _data_on_device(choice: str, cfg: HubConfig, spec, device: torch.device) -> bool:
    """Hold the training split on the device? ``auto``: on CUDA, for CIFAR-size images whose recipe the
    device path supports; ``on`` insists (and says why it cannot); ``off`` never."""
    from .device_data import DeviceAugmentation, UnsupportedOnDevice

    if choice == "off":
        return False
    reason = None
    if spec.streaming:
        reason = "a streaming dataset is never all in memory"
    else:
        try:
            DeviceAugmentation.from_config(cfg)
        except UnsupportedOnDevice as e:
            reason = str(e)
    if choice == "on":
        if reason:
            raise ValueError(f"--data-on-device on: {reason}")
        return True
    return reason is None and device.type == "cuda" and cfg.eval.input_size <= 64


def _train_transform(decode: str, training):
    """The per-sample train transform: resnet_hub.train.pipeline's (torchvision decode, uint8 tensor ops)
    where it implements the recipe, else timm/torchvision transforms on PIL images."""
    from .pipeline import EncodedImageTransform
    from .recipe import train_transform

    if decode == "pil":
        return train_transform(training)
    try:
        return EncodedImageTransform(training.augmentation)
    except ValueError as e:  # e.g. RandAugment (the RSB recipes) exists for PIL images only
        if decode == "torchvision":
            raise ValueError(f"--decode torchvision: {e}") from None
        return train_transform(training)


def _precision(arg: str, cfg: HubConfig) -> str:
    if arg != "auto":
        return arg
    if cfg.training.precision.type == "fp16" and torch.cuda.is_available():
        return "fp16"
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def build_train_step(cfg: HubConfig, accelerator, model, *, lr: float, iters_per_epoch: int, num_classes: int,
                     fused: bool = False, channels_last: bool = False, compile: bool = False,
                     schedule=None) -> TrainStep:
    """Everything one optimizer step needs, prepared by ``accelerator``; ``model`` is fresh from :func:`create_model`.

    Used by the trainer and by benchmarks on in-memory batches::

        step = build_train_step(cfg, Accelerator(), create_model(cfg), lr=0.1, iters_per_epoch=100, num_classes=10)
        loss = step(uint8_images, labels)
    """
    from .data import DeviceNormalize
    from .recipe import RecipeLRScheduler, build_loss, build_mixup, build_optimizer

    t = cfg.training
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, t, lr, fused=fused)
    if compile:
        model.compile()  # in place: state_dict keys stay those of the plain model
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = RecipeLRScheduler(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                                  t.lr_schedule if schedule is None else schedule, iters_per_epoch)
    mixup = build_mixup(t, num_classes)
    loss_fn = build_loss(t, mixup is not None)
    normalize = DeviceNormalize(cfg.eval.mean, cfg.eval.std, channels_last=channels_last).to(accelerator.device)
    static = None
    if accelerator.mixed_precision == "fp16" and isinstance(t.precision.loss_scale, float):
        static = float(t.precision.loss_scale)
    step = TrainStep(accelerator, model, optimizer, scheduler, loss_fn, normalize, mixup, static)
    step.set_updates(0)
    return step


# ----------------------------------------------------------------------------- evaluation


def evaluate_loop(model, loader, accelerator, normalize, *, progress: bool = True, desc: str = "eval") -> dict:
    """top-1/top-5 (percent) over ``loader`` (prepared by ``accelerator``), every sample counted once.

    Batches are ``{"images", "labels", "valid"}``; unreadable images arrive as ``valid=False``
    placeholders so every process gathers equal shapes, and are counted in ``skipped``.
    """
    from tqdm.auto import tqdm

    model.eval()
    correct1 = correct5 = seen = skipped = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_local_main_process))
    with torch.inference_mode():
        for batch in bar:
            logits = model(normalize(batch["images"]))
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            labels = batch["labels"].to(top.device)
            valid = batch["valid"].to(top.device)
            top, labels, valid = accelerator.gather_for_metrics((top, labels, valid))
            hits = top == labels[:, None]
            correct1 += int((hits[:, 0] & valid).sum())
            correct5 += int((hits.any(dim=1) & valid).sum())
            seen += int(valid.sum())
            skipped += int((~valid).sum())
    model.train()
    if seen == 0:
        raise ValueError("no readable image in the evaluation split")
    return {"top1": 100.0 * correct1 / seen, "top5": 100.0 * correct5 / seen, "images": seen, "skipped": skipped}


def eval_collate(shape):
    """Collate for evaluation: unreadable images become zero placeholders with ``valid=False``."""
    def collate(samples):
        images = [x if err is None else torch.zeros(shape, dtype=torch.uint8) for x, _, err in samples]
        return {"images": torch.stack(images), "labels": torch.tensor([int(y) for _, y, _ in samples]),
                "valid": torch.tensor([err is None for _, _, err in samples]),
                "bad": [err for _, _, err in samples if err is not None]}
    return collate


# ----------------------------------------------------------------------------- checkpoints


class Checkpoints:
    """``save_state`` folders under ``root``, complete or absent, the newest ``keep`` kept."""

    def __init__(self, root: Path, accelerator, keep: int):
        if keep < 1:
            raise ValueError("--keep must be at least 1")
        self.root, self.accelerator, self.keep = Path(root), accelerator, keep

    def complete(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("step-"))

    def latest(self) -> Optional[Path]:
        done = self.complete()
        return done[-1] if done else None

    def required(self) -> list[str]:
        acc = self.accelerator
        names = ["model.safetensors", "optimizer.bin", TRAINER_STATE]
        names += [f"random_states_{i}.pkl" for i in range(acc.num_processes)]
        if acc.scaler is not None:
            names.append("scaler.pt")
        return names

    def missing(self, folder: Path) -> list[str]:
        return [n for n in self.required() if not (folder / n).is_file()]

    def save(self, state: dict) -> Path:
        acc = self.accelerator
        final = self.root / f"step-{state['global_step']:09d}"
        tmp = self.root / f".tmp-{final.name}"
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            _write_json(tmp / TRAINER_STATE, state)
            missing = self.missing(tmp)
            if missing:
                raise RuntimeError(f"checkpoint {tmp} is missing {', '.join(missing)} after save_state")
            if final.exists():  # the same update saved twice (step interval at an epoch's end)
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.root)
            for old in self.complete()[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load(self, folder: Path) -> dict:
        missing = self.missing(folder)
        if missing:
            raise ValueError(f"checkpoint {folder} is incomplete: missing {', '.join(missing)} (written by "
                             f"{self.accelerator.num_processes} process(es)"
                             f"{' with fp16' if self.accelerator.scaler is not None else ''}?)")
        self.accelerator.load_state(str(folder))
        return json.loads((folder / TRAINER_STATE).read_text())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the run


@dataclass
class RunState:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_top1: float = -1.0
    best_epoch: int = -1
    skipped_images: int = 0
    history: list = field(default_factory=list)
    # the epoch in progress, so that a resumed epoch reports what an uninterrupted one would
    epoch_loss_sum: float = 0.0
    epoch_loss_n: int = 0
    epoch_seen: int = 0
    epoch_time: float = 0.0


class _StopSignal:
    """SIGTERM/SIGINT set a flag; the loop stops at the next optimizer step boundary."""

    def __init__(self):
        self.signum = 0
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _describe_phase(p) -> str:
    if p.type == "linear":
        extra = f"x{p.start_factor:g}->x{p.end_factor:g}"
    elif p.type == "cosine":
        extra = f"to {p.eta_min:g} over {p.t_max:g}"
    else:
        extra = f"milestones {list(p.milestones or ())} gamma {p.gamma:g}"
    return f"{p.type} {extra} over epochs [{p.begin:g}, {p.end:g})"


def _model_kwargs(text: Optional[str]) -> dict:
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model-kwargs is not JSON ({e}): {text!r}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--model-kwargs must be a JSON object, got {text!r}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def _agreed_stop(acc, signum: int, *, every: int, step: int, last: bool) -> int:
    """The signal any process received, agreed by all (a collective every ``every`` steps)."""
    if acc.num_processes == 1:
        return signum
    if step % every and not last:
        return 0
    flag = acc.reduce(torch.tensor([signum], device=acc.device), reduction="max")
    return int(flag.item())


def _run_identity(cfg: HubConfig, spec, args, num_classes: int, virtual: int, precision: str,
                  on_device: bool) -> dict:
    text = cfg.path.read_bytes() if cfg.path else repr(cfg).encode()
    return {
        "config": cfg.name,
        "config_sha256": hashlib.sha256(text).hexdigest(),
        "dataset": spec.describe(),
        "num_classes": num_classes,
        "seed": args.seed,
        "batch_size_per_device": args.batch_size,
        "processes_x_accumulation": virtual,
        "precision": precision,
        "model_kwargs": args.model_kwargs,
        "fit_schedule_to_epochs": args.epochs if args.fit_schedule else None,
        # the device path draws augmentations per batch, the CPU path per image: not interchangeable mid-run
        "data_on_device": on_device,
        "decode": args.decode,
    }


def _claim_output_dir(out: Path, identity: dict, resume: bool) -> None:
    run_file = out / RUN_FILE
    if run_file.is_file():
        old = json.loads(run_file.read_text())
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if diff:
            what = ", ".join(f"{k}: {old.get(k)!r} there, {identity.get(k)!r} here" for k in diff)
            raise FileExistsError(f"{out} holds a different run ({what}); choose another --output-dir")
        if not resume and (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step-*")):
            raise FileExistsError(f"{out} already holds checkpoints of this run; pass --resume to continue it "
                                  "or choose another --output-dir")
        return
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no resnet_hub run ({RUN_FILE}); choose another "
                              "--output-dir")
    if resume:
        raise FileNotFoundError(f"--resume: {out} holds no run to resume")


def _plot_curves(history: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [h["loss"] for h in history], marker="o")
    axes[0].set_title("training loss")
    axes[1].plot(epochs, [h["top1"] for h in history], marker="o", label="top-1")
    axes[1].plot(epochs, [h["top5"] for h in history], marker="o", label="top-5")
    axes[1].set_title("validation accuracy (%)")
    axes[1].legend()
    axes[2].plot(epochs, [h["lr"] for h in history], marker="o")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _versions() -> dict:
    import accelerate
    import timm

    from resnet_hub import __version__
    return {"resnet_hub": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "accelerate": accelerate.__version__}


def _init_from_checkpoint(model, cfg: HubConfig, checkpoint: str) -> None:
    from resnet_hub.hub.convert import load_pretrained_backbone

    prefix = cfg.training.init_from.prefix if cfg.training.init_from else "backbone"
    load_pretrained_backbone(model, checkpoint, cfg=cfg, prefix=prefix or "backbone")


def run(args: argparse.Namespace) -> int:
    from accelerate import Accelerator
    from accelerate.utils import (
        DataLoaderConfiguration,
        GradientAccumulationPlugin,
        GradScalerKwargs,
        ProjectConfiguration,
        set_seed,
    )
    from tqdm.auto import tqdm

    from . import data as D
    from .recipe import eval_transform, fit_schedule, scaled_lr

    cfg = load_config(args.config)
    t = cfg.training
    args.batch_size = args.batch_size or t.batch_size_per_device
    if args.batch_size < 1 or args.grad_accum < 1:
        raise ValueError("--batch-size and --grad-accum must be at least 1")
    if args.bad_images not in D.BAD_IMAGE_POLICIES:
        raise ValueError(f"--bad-images {args.bad_images!r}; choose one of {', '.join(D.BAD_IMAGE_POLICIES)}")
    precision = _precision(args.precision, cfg)
    out = Path(args.output_dir or f"runs/{cfg.name}")

    handlers = []
    if precision == "fp16" and isinstance(t.precision.loss_scale, float):
        handlers.append(GradScalerKwargs(init_scale=t.precision.loss_scale))
    trackers = [] if args.tracker == "none" else [args.tracker]
    accelerator = Accelerator(
        mixed_precision=precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=args.grad_accum, sync_with_dataloader=False),
        dataloader_config=DataLoaderConfiguration(even_batches=True),
        log_with=trackers or None, kwargs_handlers=handlers,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        cpu=args.cpu,
    )
    acc = accelerator
    set_seed(args.seed)
    world, rank = acc.num_processes, acc.process_index
    virtual = world * args.grad_accum
    total_batch = args.batch_size * virtual
    fast = _fast_paths(args, acc.device)

    # data
    spec = D.resolve_dataset(args.dataset, cfg, train_split=args.train_split, eval_split=args.eval_split,
                             image_column=args.image_column, label_column=args.label_column,
                             streaming=args.streaming)
    with acc.main_process_first():
        splits = D.load_splits(spec, cfg.eval.input_size)
    num_classes = args.num_classes or cfg.num_classes
    if splits.num_classes and splits.num_classes != num_classes:
        who = "--num-classes" if args.num_classes else f"config {cfg.name}"
        raise ValueError(f"dataset {spec.path} has {splits.num_classes} classes but {who} says {num_classes}; "
                         f"pass --num-classes {splits.num_classes} to train a head of that size")
    if args.limit_train or args.limit_eval:
        if spec.streaming:
            raise ValueError("--limit-train/--limit-eval are for map-style datasets, not --streaming")
        if args.limit_train:
            splits.train = splits.train.select(range(min(args.limit_train, len(splits.train))))
        if args.limit_eval:
            splits.eval = splits.eval.select(range(min(args.limit_eval, len(splits.eval))))
    if precision == "fp16" and acc.device.type == "cpu":
        print("note: fp16 autocast needs a GPU; on the CPU Accelerate trains in fp32", file=sys.stderr)
    label_names = splits.label_names if len(splits.label_names) == num_classes else tuple(map(str, range(num_classes)))

    on_device = _data_on_device(args.data_on_device, cfg, spec, acc.device)
    identity = _run_identity(cfg, splits.spec, args, num_classes, virtual, precision, on_device)
    if acc.is_main_process:
        _claim_output_dir(out, identity, args.resume)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / RUN_FILE, identity)
    acc.wait_for_everyone()

    # model and step
    model_kwargs = _model_kwargs(args.model_kwargs)
    model = create_model(cfg, num_classes=num_classes, drop_path_rate=t.drop_path_rate
                         if args.drop_path_rate is None else args.drop_path_rate, **model_kwargs)
    init_checkpoint = args.init_checkpoint
    if init_checkpoint is None and t.init_from is not None:
        init_checkpoint = t.init_from.url
    if init_checkpoint and init_checkpoint != "none" and not args.resume:
        _init_from_checkpoint(model, cfg, init_checkpoint)
    sync_bn = t.sync_bn if args.sync_bn is None else args.sync_bn
    if sync_bn and world > 1 and acc.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif sync_bn and world > 1:
        acc.print("note: SyncBN needs CUDA; BatchNorm statistics stay per process on this device")

    train_tf = _train_transform(args.decode, t)
    eval_tf = eval_transform(model)
    if on_device:
        from .device_data import DeviceTrainBatches

        batches = DeviceTrainBatches(cfg, splits.train, batch_size=args.batch_size, image_column=spec.image_column,
                                     label_column=spec.label_column, device=acc.device, world_size=world, rank=rank,
                                     accumulation=args.grad_accum, seed=args.seed)
    elif spec.streaming:
        from .streaming import StreamBatches

        batches = StreamBatches(splits.train, train_tf, spec.image_column, spec.label_column,
                                batch_size=args.batch_size, world_size=world, rank=rank, accumulation=args.grad_accum,
                                seed=args.seed, steps_per_epoch=args.steps_per_epoch, workers=args.workers,
                                pin_memory=fast["pin_memory"])
    else:
        sampler = D.TrainBatchSampler(len(splits.train), args.batch_size, world_size=world, rank=rank,
                                      accumulation=args.grad_accum, seed=args.seed,
                                      repeats=t.sampler.num_repeats if t.sampler.type == "repeat_aug" else None)
        batches = D.LoaderBatches(D.LabeledImages(splits.train, train_tf, spec.image_column, spec.label_column,
                                                  seed=args.seed),
                                  sampler, workers=args.workers, pin_memory=fast["pin_memory"],
                                  persistent_workers=fast["persistent_workers"])
    steps_per_epoch = batches.steps_per_epoch
    eval_images = D.LabeledImages(splits.eval, eval_tf, spec.image_column, spec.label_column)
    input_shape = (3, cfg.eval.input_size, cfg.eval.input_size)
    eval_dl = torch.utils.data.DataLoader(eval_images, batch_size=args.eval_batch_size or args.batch_size * 2,
                                          shuffle=False, num_workers=args.workers, pin_memory=fast["pin_memory"],
                                          persistent_workers=args.workers > 0, collate_fn=eval_collate(input_shape))
    eval_dl = acc.prepare(eval_dl)

    scaling = scaled_lr(t, total_batch, lr=args.lr, scale=not args.no_scale_lr)
    epochs = args.epochs or t.epochs
    schedule = fit_schedule(t.lr_schedule, t.epochs, epochs) if args.fit_schedule else t.lr_schedule
    step = build_train_step(cfg, acc, model, lr=scaling.lr, iters_per_epoch=steps_per_epoch,
                            num_classes=num_classes, fused=fast["fused"], channels_last=fast["channels_last"],
                            compile=fast["compile"], schedule=schedule)
    acc.print(f"{cfg.name} on {spec.path} ({len(splits.train) if not spec.streaming else '?'} train / "
              f"{len(splits.eval) if not spec.streaming else '?'} eval images, {num_classes} classes): {epochs} epochs "
              f"x {steps_per_epoch} steps of {args.batch_size} x {world} process(es) x {args.grad_accum} "
              f"accumulation = {total_batch} images; precision {precision}; "
              + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in fast.items()))
    acc.print(scaling.message())
    if args.fit_schedule:
        acc.print(f"lr schedule fitted from the recipe's {t.epochs} epochs to {epochs}: "
                  + "; ".join(_describe_phase(p) for p in schedule))

    checkpoints = Checkpoints(out / "checkpoints", acc, args.keep)
    state = RunState()
    if args.resume:
        latest = checkpoints.latest()
        if latest is None:
            raise FileNotFoundError(f"--resume: no complete checkpoint in {out / 'checkpoints'}")
        saved = checkpoints.load(latest)
        state = RunState(**{k: saved[k] for k in RunState.__dataclass_fields__})
        step.set_updates(state.global_step)
        if abs(step.lr - saved["lr"]) > 1e-12 * max(1.0, abs(saved["lr"])):
            raise ValueError(f"checkpoint {latest} was written with lr {saved['lr']} at update {state.global_step}, "
                             f"this run's schedule gives {step.lr}; resume with the same --lr / --batch-size")
        acc.print(f"resumed from {latest.name}: epoch {state.epoch}, step {state.step_in_epoch}/{steps_per_epoch}")
    if trackers:
        acc.init_trackers("train", config={"config": cfg.name, "dataset": spec.path, "epochs": epochs,
                                           "total_batch": total_batch, "lr": scaling.lr, "precision": precision,
                                           "seed": args.seed})

    def trainer_state() -> dict:
        return dict(state.__dict__, lr=step.lr, epochs=epochs, steps_per_epoch=steps_per_epoch)

    def write_outputs(finished: bool) -> None:
        if not acc.is_main_process:
            return
        _write_json(out / METRICS, {"run": identity, "epochs": state.history, "best_epoch": state.best_epoch,
                                    "best_top1": state.best_top1 if state.best_epoch >= 0 else None,
                                    "skipped_images": state.skipped_images, "finished": finished,
                                    "lr_scaling": scaling.message(), "versions": _versions()})
        if state.history:
            _plot_curves(state.history, out / CURVES)

    def export_best(record: dict) -> None:
        from resnet_hub.hub.bundle import write_bundle
        from resnet_hub.train.evaluate import measured_result

        if not acc.is_main_process:
            return
        plain = acc.unwrap_model(step.model)
        plain = getattr(plain, "_orig_mod", plain)
        plain.pretrained_cfg = dict(plain.pretrained_cfg, label_names=list(label_names))
        write_bundle(plain, cfg, out / "final", provenance={
            "trained_with": "resnet_hub.train", "dataset": spec.path, "train_split": spec.train_split,
            "eval_split": splits.spec.eval_split, "epoch": record["epoch"], "epochs": epochs,
            "top1": round(record["top1"], 4), "top5": round(record["top5"], 4), "total_batch": total_batch,
            "processes": world, "lr": scaling.lr, "seed": args.seed, "precision": precision,
            "versions": _versions(),
        }, model_args=model_kwargs, measured=[measured_result(spec.path, splits.eval, splits.spec.eval_split, record)])

    stop = 0
    with _StopSignal() as signals:
        while state.epoch < epochs and not stop:
            epoch = state.epoch
            step.model.train()
            start, seen = time.perf_counter(), 0
            loss_sum = torch.tensor(state.epoch_loss_sum, device=acc.device)
            loss_n = state.epoch_loss_n
            bar = tqdm(total=steps_per_epoch, initial=state.step_in_epoch, desc=f"epoch {epoch + 1}/{epochs}",
                       disable=not acc.is_local_main_process, dynamic_ncols=True)
            micro = 0
            try:
                for batch in batches.batches(epoch, state.step_in_epoch):
                    if batch["bad"]:
                        if args.bad_images == "error":
                            raise D.BadImages(f"unreadable training image ({batch['bad'][0]}); pass --bad-images skip "
                                              "to drop and count such images")
                        state.skipped_images += len(batch["bad"])
                    if len(batch["labels"]) == 0:
                        raise D.BadImages(f"every image of a training batch is unreadable ({batch['bad'][0]})")
                    D.check_labels(batch["labels"], num_classes, f"dataset {spec.path}")
                    loss = step(batch["images"], batch["labels"])
                    loss_sum += loss * len(batch["labels"])
                    loss_n += len(batch["labels"])
                    micro += 1
                    if micro % args.grad_accum:
                        continue
                    state.step_in_epoch += 1
                    state.global_step += 1
                    seen += total_batch
                    elapsed = time.perf_counter() - start
                    bar.update(1)
                    if state.global_step % 10 == 0 or state.step_in_epoch == steps_per_epoch:
                        # .item() waits for the device: only every 10 steps
                        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{step.lr:.3g}", img_s=f"{seen / elapsed:.0f}")
                        if trackers:
                            acc.log({"train/loss": loss.item(), "train/lr": step.lr}, step=state.global_step)
                    stop = _agreed_stop(acc, signals.signum, every=1 if world == 1 else 10, step=state.global_step,
                                        last=state.step_in_epoch == steps_per_epoch)
                    if stop or (args.checkpoint_steps and state.global_step % args.checkpoint_steps == 0):
                        state.epoch_loss_sum, state.epoch_loss_n = float(loss_sum), loss_n
                        state.epoch_seen, state.epoch_time = state.epoch_seen + seen, state.epoch_time + elapsed
                        seen, start = 0, time.perf_counter()
                        checkpoints.save(trainer_state())
                    if stop:
                        break
            finally:
                bar.close()  # before any error line
            if stop:
                break
            train_time = time.perf_counter() - start + state.epoch_time
            seen += state.epoch_seen
            totals = torch.stack([loss_sum.float(), torch.tensor(float(loss_n), device=acc.device)])
            totals = acc.reduce(totals, reduction="sum") if world > 1 else totals
            metrics = evaluate_loop(step.model, eval_dl, acc, step.normalize, desc=f"eval {epoch + 1}")
            record = {"epoch": epoch + 1, "loss": float(totals[0] / max(totals[1], 1)),
                      "lr": step.last_lr if step.last_lr is not None else step.lr,
                      "top1": metrics["top1"], "top5": metrics["top5"],
                      "images_per_s": seen / train_time if train_time > 0 else None,
                      "train_time_s": train_time, "eval_images": metrics["images"],
                      "eval_skipped_images": metrics["skipped"]}
            if args.bad_images == "error" and metrics["skipped"]:
                raise D.BadImages(f"{metrics['skipped']} unreadable evaluation image(s); pass --bad-images skip to "
                                  "drop and count them")
            state.history.append(record)
            acc.print(f"epoch {epoch + 1}/{epochs}: loss {record['loss']:.4f}  lr {record['lr']:.4g}  "
                      f"top-1 {record['top1']:.2f}  top-5 {record['top5']:.2f}  "
                      f"{record['images_per_s'] or 0:.0f} img/s")
            if trackers:
                acc.log({"eval/top1": record["top1"], "eval/top5": record["top5"], "train/epoch_loss": record["loss"]},
                        step=state.global_step)
            state.epoch, state.step_in_epoch = epoch + 1, 0
            state.epoch_loss_sum, state.epoch_loss_n, state.epoch_seen, state.epoch_time = 0.0, 0, 0, 0.0
            if record["top1"] > state.best_top1:
                state.best_top1, state.best_epoch = record["top1"], epoch + 1
                export_best(record)
            acc.wait_for_everyone()
            write_outputs(finished=False)
            checkpoints.save(trainer_state())
            stop = _agreed_stop(acc, signals.signum, every=1, step=0, last=True)
    write_outputs(finished=not stop)
    if trackers:
        acc.end_training()
    if stop:
        acc.print(f"stopped by signal {stop} at epoch {state.epoch}, step {state.step_in_epoch}; checkpoint saved. "
                  "Continue with --resume.")
        return 128 + stop
    if acc.is_main_process:
        best = state.best_epoch
        acc.print(f"done: best top-1 {state.best_top1:.2f} at epoch {best}; bundle in {out / 'final'} "
                  f"(timm.create_model('local-dir:{out / 'final'}'))")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    p.add_argument("--config", required=True,
                   help="config name (resnet_hub.list_configs()) or a hub_configs-style YAML file")
    p.add_argument("--dataset", default=None,
                   help="'digits' (scikit-learn's handwritten digits, offline), a local image folder "
                        "(class sub-folders under train/ and validation/ or test/), or a Hub dataset id; "
                        "default: the config's own Hub dataset")
    p.add_argument("--train-split", default=None, help="training split name (default: the config's)")
    p.add_argument("--eval-split", default=None, help="evaluation split name (default: the config's)")
    p.add_argument("--image-column", default=None, help="image column of the dataset (default: the config's)")
    p.add_argument("--label-column", default=None, help="label column of the dataset (default: the config's)")
    p.add_argument("--streaming", action="store_true",
                   help="stream the training split (ImageNet-scale data), split across processes")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="steps per epoch for a streaming dataset whose size is not known")
    p.add_argument("--limit-train", type=int, default=None,
                   help="train on the first N images of the training split only (quick checks)")
    p.add_argument("--limit-eval", type=int, default=None,
                   help="evaluate on the first N images of the evaluation split only")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier size when the dataset's classes differ from the config's")
    p.add_argument("--bad-images", default="skip", choices=["skip", "error"],
                   help="unreadable images: drop and count them, or stop with an error")
    p.add_argument("--output-dir", default=None, help="run folder (default: runs/CONFIG)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default: the recipe's); the lr schedule stays the recipe's, in epochs")
    p.add_argument("--fit-schedule", action="store_true",
                   help="stretch the recipe's lr schedule (warmup, milestones, cosine length) to --epochs")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in --output-dir")
    p.add_argument("--batch-size", type=int, default=None, help="images per device per step (default: the recipe's)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches accumulated per optimizer step")
    p.add_argument("--lr", type=float, default=None,
                   help="base lr used as given (default: the recipe's, scaled linearly to the total batch)")
    p.add_argument("--no-scale-lr", action="store_true",
                   help="keep the recipe's lr when the total batch differs from its base batch")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="mixed precision: auto = fp16 for fp16 recipes and bf16 on CUDA devices that have it, "
                        "else fp32 ('no')")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="data loading worker processes per device")
    p.add_argument("--seed", type=int, default=0, help="seed for the data order, augmentation and initialisation")
    p.add_argument("--checkpoint-steps", type=int, default=0,
                   help="also checkpoint every N optimizer steps (0: at the end of each epoch only)")
    p.add_argument("--keep", type=int, default=3, help="complete checkpoints to keep")
    p.add_argument("--eval-batch-size", type=int, default=None, help="images per device per eval batch")
    p.add_argument("--model-kwargs", default=None,
                   help='extra timm.create_model arguments as JSON, e.g. \'{"channels": [16, 32, 64, 128]}\' for a '
                        "narrow smoke-test model; recorded in run.json and the bundle's config.json")
    p.add_argument("--drop-path-rate", type=float, default=None, help="stochastic depth (default: the recipe's)")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="SyncBatchNorm across processes on CUDA (default: the recipe's)")
    p.add_argument("--init-checkpoint", default=None,
                   help="backbone weights to start from, path or URL (default: the recipe's init_from, e.g. CUB's "
                        "ImageNet-21k model; 'none' for random init)")
    p.add_argument("--tracker", default="tensorboard",
                   help="Accelerate tracker for init_trackers (tensorboard, wandb, ...; 'none' to disable)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CUDA)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for CUDA)")
    p.add_argument("--fused-optimizer", action=argparse.BooleanOptionalAction, default=None,
                   help="torch's fused optimizer kernel where there is one (CUDA only; default on there)")
    p.add_argument("--pin-memory", action=argparse.BooleanOptionalAction, default=None,
                   help="pinned host memory for non-blocking copies (default: on for CUDA)")
    p.add_argument("--decode", choices=("auto", "torchvision", "pil"), default="auto",
                   help="training images: torchvision decode + uint8 tensor augmentation (resnet_hub.train.pipeline, "
                        "measured faster in benchmarks/RESULTS.md) or PIL + timm/torchvision transforms; auto: "
                        "torchvision where it implements the recipe (all but RandAugment)")
    p.add_argument("--data-on-device", choices=("auto", "on", "off"), default="auto",
                   help="hold the whole training split on the device as uint8 and augment it there in batches "
                        "(resnet_hub/device_data.py); auto: on CUDA for CIFAR-size images")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when an accelerator is present")


def main(argv=None) -> int:
    from resnet_hub.commands import main as command_main

    return command_main(add_arguments, run, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

