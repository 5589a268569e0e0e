"""Train a config's recipe with Accelerate: one CPU to many GPUs and machines, exact resume.

    resnet-hub train --config resnet18_8xb16_cifar10 --dataset digits --epochs 3
    accelerate launch -m resnet_hub.train --config resnet18_8xb16_cifar10 --dataset digits --epochs 3

:func:`run` reads top to bottom like accelerate's ``complete_cv_example.py``: the plan of the run
(:mod:`resnet_hub.train.plan`), the Accelerator, data, model, one ``prepare``, resume, then the
loop (:mod:`resnet_hub.train.loop`) and the run folder's outputs (:mod:`resnet_hub.train.run_dir`:
``run.json``, checkpoints, ``metrics.json``, ``curves.png``, tensorboard logs under ``logs/`` and
the best epoch's Hub bundle in ``final/``, ``timm.create_model("local-dir:OUT/final")``).

SIGTERM/SIGINT stop at the next optimizer step on every process, save, and exit 143/130;
``--resume`` continues from the latest complete checkpoint, mid-epoch included, and gives the
weights an uninterrupted run would have.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import torch

from resnet_hub.commands import (
    CommandError,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from resnet_hub.zoo.configs import HubConfig, load_config

from .evaluate import eval_collate, evaluate_loop, measured_result
from .plan import PRECISIONS, TrainPlan, describe_phase, resolve_plan
from .run_dir import TRAINER_STATE, Checkpoints, RunState, claim_output_dir, export_bundle, run_identity, write_metrics

__all__ = ["add_arguments", "run", "main", "TrainStep", "build_train_step", "create_model", "train_batches",
           "evaluate_loop",
           "eval_collate", "Checkpoints", "TRAINER_STATE", "TrainPlan", "resolve_plan"]


# ----------------------------------------------------------------------------- model


def create_model(cfg: HubConfig, **kwargs: Any) -> torch.nn.Module:
    """A fresh model of ``cfg``: the registered timm model, or, for a YAML file of its own, its architecture."""
    import timm

    from resnet_hub.zoo.configs import all_configs

    registered = all_configs().get(cfg.name)
    if registered is not None and registered == cfg:
        return timm.create_model(cfg.name, **kwargs)
    from resnet_hub.zoo.models import config_pretrained_cfg, model_args

    overlay = {k: v for k, v in config_pretrained_cfg(cfg).items() if k != "hf_hub_id"}
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


def build_train_step(cfg: HubConfig, accelerator, model, *, lr: float, iters_per_epoch: int, num_classes: int,
                     fused: bool = False, channels_last: bool = False, compile: bool = False,
                     schedule=None, compile_options: Optional[dict] = None) -> TrainStep:
    """Everything one optimizer step needs, prepared by ``accelerator``; ``model`` is fresh from :func:`create_model`.

    ``compile_options`` go to ``torch.compile`` (``mode``, ``backend``) when ``compile`` is set.
    Used by the trainer and by the benchmarks (resnet_hub.bench) on in-memory batches::

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
        model.compile(**(compile_options or {}))  # in place: state_dict keys stay those of the plain model
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


# ----------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> int:
    """Train ``args.config``'s recipe (flags: :func:`add_arguments`); 0 when done, 128 + N when stopped by signal N.

    A process lost from the run (a machine died) stops every other one at its next collective, at
    the latest after ``--dist-timeout`` seconds, with one line (:class:`CommandError`) naming the
    last complete checkpoint to ``--resume`` from.
    """
    import contextlib

    from .lost_process import is_lost_process, lost_process_message

    try:
        with contextlib.ExitStack() as held:  # the output folder's lock, released however the run ends
            return _run(args, held)
    except Exception as e:
        if not is_lost_process(e):
            raise
        out = Path(args.output_dir) if args.output_dir else Path("runs") / load_config(args.config).name
        raise CommandError(lost_process_message(e, checkpoints=out / "checkpoints",
                                                timeout_s=args.dist_timeout)) from e


def _run(args: argparse.Namespace, held) -> int:
    from accelerate import PartialState
    from accelerate.utils import set_seed

    from .loop import StopSignal, agreed_stop, finish_epoch, train_one_epoch

    # The plan first: every setting resolved once from the flags, the recipe and the processes, and
    # printed, before anything runs. PartialState is the process group the Accelerator below joins.
    cfg = load_config(args.config)
    processes = PartialState(cpu=args.cpu, timeout=timedelta(seconds=args.dist_timeout))
    device = processes.device
    plan = resolve_plan(args, cfg, world_size=processes.num_processes, device_type=device.type,
                        bf16_supported=device.type == "cuda" and torch.cuda.is_bf16_supported(),
                        streaming=args.streaming)
    out = Path(args.output_dir or f"runs/{cfg.name}")
    acc = _accelerator(plan, out, args)
    set_seed(args.seed)

    # Data, in the main process first so that one process downloads and caches.
    spec, splits, label_names = _load_data(args, cfg, plan, acc)
    for note in plan.notes if acc.is_main_process else ():
        print(note, file=sys.stderr)

    # Claim the run folder before writing into it, locked for this run: a folder in use, another run's
    # folder, or this run's outputs without --resume/--overwrite are refused, files untouched.
    identity = run_identity(cfg, splits.spec, plan, args)
    if acc.is_main_process:
        held.enter_context(claim_output_dir(out, identity, args.resume, args.overwrite))
    acc.wait_for_everyone()

    # The model, its training batches and eval loader, and one prepare in build_train_step.
    model = _build_model(cfg, plan, resume=args.resume)
    batches = train_batches(plan, spec, splits.train, device=acc.device, world_size=acc.num_processes,
                            rank=acc.process_index, seed=args.seed, workers=args.workers,
                            steps_per_epoch=args.steps_per_epoch)
    eval_dl = acc.prepare(_eval_loader(args, model, cfg, plan, spec, splits))
    step = build_train_step(cfg, acc, model, lr=plan.lr, iters_per_epoch=batches.steps_per_epoch,
                            num_classes=plan.num_classes, fused=plan.fused, channels_last=plan.channels_last,
                            compile=plan.compile, schedule=plan.schedule)
    _print_plan(acc, plan, cfg, spec, splits, batches.steps_per_epoch)

    # Resume: weights, optimizer, RNG states and the position in the epoch of the latest checkpoint.
    checkpoints = Checkpoints(out / "checkpoints", acc, args.keep)
    state = _resume(checkpoints, step, batches.steps_per_epoch, out) if args.resume else RunState()
    log = args.tracker != "none"
    if log:
        acc.init_trackers("train", config={"config": cfg.name, "dataset": spec.path, "epochs": plan.epochs,
                                           "total_batch": plan.total_batch, "lr": plan.lr,
                                           "precision": plan.precision, "seed": args.seed})

    # The loop: train an epoch, evaluate it, export the best, write metrics, checkpoint.
    stop = 0
    with StopSignal() as signals:
        while state.epoch < plan.epochs and not stop:
            totals = train_one_epoch(step, batches, state, checkpoints, signals, plan=plan,
                                     bad_images=args.bad_images, where=f"dataset {spec.path}",
                                     checkpoint_steps=args.checkpoint_steps, log=log)
            stop = totals.stop
            if stop:
                break
            record, best = finish_epoch(step, eval_dl, state, totals, bad_images=args.bad_images,
                                        epochs=plan.epochs, log=log)
            if best and acc.is_main_process:
                export_bundle(acc.unwrap_model(step.model), cfg, out / "final", label_names=label_names,
                              model_kwargs=plan.model_kwargs, provenance=_provenance(plan, args, splits, record),
                              measured=[measured_result(spec.path, splits.eval, splits.spec.eval_split, record)])
            acc.wait_for_everyone()
            if acc.is_main_process:
                write_metrics(out, state, identity, plan.lr_scaling, finished=False)
            checkpoints.save(state.to_checkpoint(lr=step.lr, epochs=plan.epochs,
                                                 steps_per_epoch=batches.steps_per_epoch))
            stop = agreed_stop(acc, signals.signum, every=1, step=0, last=True)
    if acc.is_main_process:
        write_metrics(out, state, identity, plan.lr_scaling, finished=not stop)
    if log:
        acc.end_training()
    return _farewell(acc, state, out, stop)


def _accelerator(plan: TrainPlan, out: Path, args):
    """The run's Accelerator: the plan's precision and accumulation, trackers, logs under ``out``, the
    process group's timeout."""
    from accelerate import Accelerator
    from accelerate.utils import (
        DataLoaderConfiguration,
        GradientAccumulationPlugin,
        GradScalerKwargs,
        InitProcessGroupKwargs,
        ProjectConfiguration,
    )

    # how long a collective waits for a silent peer before the run stops (lost_process.py)
    handlers = [InitProcessGroupKwargs(timeout=timedelta(seconds=args.dist_timeout))]
    if plan.static_loss_scale is not None:
        handlers.append(GradScalerKwargs(init_scale=plan.static_loss_scale))
    return Accelerator(
        mixed_precision=plan.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=plan.grad_accum, sync_with_dataloader=False),
        dataloader_config=DataLoaderConfiguration(even_batches=True),
        log_with=None if args.tracker == "none" else [args.tracker], kwargs_handlers=handlers,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        cpu=args.cpu,
    )


def _load_data(args, cfg: HubConfig, plan: TrainPlan, acc):
    """The dataset's spec, its two splits (limited as asked) and the label names of the plan's classes."""
    from . import data as D

    spec = D.resolve_dataset(args.dataset, cfg, train_split=args.train_split, eval_split=args.eval_split,
                             image_column=args.image_column, label_column=args.label_column,
                             streaming=args.streaming)
    with acc.main_process_first():
        splits = D.load_splits(spec, cfg.eval.input_size)
    n = plan.num_classes
    if splits.num_classes and splits.num_classes != n:
        raise ValueError(f"dataset {spec.path} has {splits.num_classes} classes but {plan.num_classes_from} says "
                         f"{n}; pass --num-classes {splits.num_classes} to train a head of that size")
    if args.limit_train or args.limit_eval:
        if spec.streaming:
            raise ValueError("--limit-train/--limit-eval are for map-style datasets, not --streaming")
        if args.limit_train:
            splits.train = splits.train.select(range(min(args.limit_train, len(splits.train))))
        if args.limit_eval:
            splits.eval = splits.eval.select(range(min(args.limit_eval, len(splits.eval))))
    label_names = splits.label_names if len(splits.label_names) == n else tuple(map(str, range(n)))
    return spec, splits, label_names


def _init_from_checkpoint(model, cfg: HubConfig, checkpoint: str) -> None:
    from resnet_hub.hub.convert import load_pretrained_backbone

    prefix = cfg.training.init_from.prefix if cfg.training.init_from else "backbone"
    load_pretrained_backbone(model, checkpoint, cfg=cfg, prefix=prefix or "backbone")


def _build_model(cfg: HubConfig, plan: TrainPlan, *, resume: bool) -> torch.nn.Module:
    """A fresh model of the plan's classes, from its init checkpoint unless resuming, with SyncBN if planned."""
    try:
        model = create_model(cfg, num_classes=plan.num_classes, drop_path_rate=plan.drop_path_rate,
                             **plan.model_kwargs)
    except (TypeError, ValueError, RuntimeError) as e:  # an argument the architecture does not take, or a bad value
        raise ValueError(f"cannot build {cfg.name} with --model-kwargs {plan.model_kwargs} ({e})") from None
    if plan.init_checkpoint and not resume:  # a resume loads every weight from its checkpoint
        _init_from_checkpoint(model, cfg, plan.init_checkpoint)
    if plan.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def train_batches(plan: TrainPlan, spec, train_split, *, device, world_size: int = 1, rank: int = 0, seed: int = 0,
                  workers: int = 0, steps_per_epoch: Optional[int] = None):
    """What the trainer iterates for ``plan``: the training split as per-step batches (``data.TrainBatches``),
    held and augmented on the device, streamed, or read by a DataLoader whose workers decode (PIL) and
    augment (:class:`~resnet_hub.train.augment.TrainTransform`) each image. The benchmarks time this object."""
    from . import data as D
    from .augment import TrainTransform

    ops = plan.augmentation_ops
    if plan.data_on_device:
        from .device_data import DeviceTrainBatches

        return DeviceTrainBatches(ops, train_split, batch_size=plan.batch_size, image_column=spec.image_column,
                                  label_column=spec.label_column, device=device, world_size=world_size, rank=rank,
                                  accumulation=plan.grad_accum, seed=seed)
    transform = TrainTransform(ops)
    if spec.streaming:
        from .streaming import StreamBatches

        return StreamBatches(train_split, transform, spec.image_column, spec.label_column,
                             batch_size=plan.batch_size, world_size=world_size, rank=rank,
                             accumulation=plan.grad_accum, seed=seed, steps_per_epoch=steps_per_epoch,
                             workers=workers, pin_memory=plan.pin_memory)
    sampler = D.TrainBatchSampler(len(train_split), plan.batch_size, world_size=world_size, rank=rank,
                                  accumulation=plan.grad_accum, seed=seed, repeats=plan.repeat_augment)
    images = D.LabeledImages(train_split, transform, spec.image_column, spec.label_column, seed=seed)
    return D.LoaderBatches(images, sampler, workers=workers, pin_memory=plan.pin_memory,
                           persistent_workers=plan.persistent_workers)


def _eval_loader(args, model, cfg: HubConfig, plan: TrainPlan, spec, splits):
    """The evaluation split in order, with the model's eval transform; ``prepare`` shards it."""
    from . import data as D
    from .recipe import eval_transform

    images = D.LabeledImages(splits.eval, eval_transform(model), spec.image_column, spec.label_column)
    shape = (3, cfg.eval.input_size, cfg.eval.input_size)
    return torch.utils.data.DataLoader(images, batch_size=plan.eval_batch_size, shuffle=False,
                                       num_workers=args.workers, pin_memory=plan.pin_memory,
                                       persistent_workers=args.workers > 0, collate_fn=eval_collate(shape))


def _print_plan(acc, plan: TrainPlan, cfg: HubConfig, spec, splits, steps_per_epoch: int) -> None:
    sizes = "? train / ? eval" if spec.streaming else f"{len(splits.train)} train / {len(splits.eval)} eval"
    acc.print(f"{cfg.name} on {spec.path} ({sizes} images, {plan.num_classes} classes): "
              + plan.summary(steps_per_epoch))
    acc.print(plan.lr_scaling)
    acc.print(f"augmentation: {plan.augmentation_reason}")
    if plan.schedule_fitted:
        acc.print(f"lr schedule fitted from the recipe's {plan.recipe_epochs} epochs to {plan.epochs}: "
                  + "; ".join(describe_phase(p) for p in plan.schedule))


def _resume(checkpoints: Checkpoints, step: TrainStep, steps_per_epoch: int, out: Path) -> RunState:
    """The state of the latest complete checkpoint, loaded into the prepared model, optimizer and RNGs."""
    latest = checkpoints.latest()
    if latest is None:
        raise FileNotFoundError(f"--resume: no complete checkpoint in {out / 'checkpoints'}; pass --overwrite "
                                "instead to start this run again")
    saved = checkpoints.load(latest)
    state = RunState.from_checkpoint(saved)
    step.set_updates(state.global_step)
    if abs(step.lr - saved["lr"]) > 1e-12 * max(1.0, abs(saved["lr"])):
        raise ValueError(f"checkpoint {latest} was written with lr {saved['lr']} at update {state.global_step}, "
                         f"this run's schedule gives {step.lr}; resume with the same --lr / --batch-size")
    step.accelerator.print(f"resumed from {latest.name}: epoch {state.epoch}, step {state.step_in_epoch}/"
                           f"{steps_per_epoch}")
    return state


def _provenance(plan: TrainPlan, args, splits, record: dict) -> dict:
    """How the bundle of ``record``'s epoch was trained, for its card and weights' metadata."""
    return {"trained_with": "resnet_hub.train", "dataset": splits.spec.path, "train_split": splits.spec.train_split,
            "eval_split": splits.spec.eval_split, "epoch": record["epoch"], "epochs": plan.epochs,
            "top1": round(record["top1"], 4), "top5": round(record["top5"], 4), "total_batch": plan.total_batch,
            "processes": plan.world_size, "lr": plan.lr, "seed": args.seed, "precision": plan.precision}


def _farewell(acc, state: RunState, out: Path, stop: int) -> int:
    if stop:
        acc.print(f"stopped by signal {stop} at epoch {state.epoch}, step {state.step_in_epoch}; checkpoint saved. "
                  "Continue with --resume.")
        return 128 + stop
    acc.print(f"done: best top-1 {state.best_top1:.2f} at epoch {state.best_epoch}; bundle in {out / 'final'} "
              f"(timm.create_model('local-dir:{out / 'final'}'))")
    return 0


# ----------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The trainer's flags, in three groups: the data, the recipe's hyperparameters, the run."""
    _add_data_arguments(parser.add_argument_group("data"))
    _add_recipe_arguments(parser.add_argument_group("recipe (default: the config's)"))
    _add_run_arguments(parser.add_argument_group("run"))


def _add_data_arguments(p) -> None:
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
    p.add_argument("--steps-per-epoch", type=positive_int, default=None,
                   help="steps per epoch for a streaming dataset whose size is not known")
    p.add_argument("--limit-train", type=positive_int, default=None,
                   help="train on the first N images of the training split only (quick checks)")
    p.add_argument("--limit-eval", type=positive_int, default=None,
                   help="evaluate on the first N images of the evaluation split only")
    p.add_argument("--num-classes", type=positive_int, default=None,
                   help="classifier size when the dataset's classes differ from the config's")
    p.add_argument("--bad-images", default="skip", choices=["skip", "error"],
                   help="unreadable images: drop and count them, or stop with an error")
    p.add_argument("--workers", type=non_negative_int, default=min(8, os.cpu_count() or 1),
                   help="data loading worker processes per device")
    p.add_argument("--data-on-device", choices=("auto", "on", "off"), default="auto",
                   help="hold the whole training split on the device as uint8 and augment it there in batches "
                        "(resnet_hub/device_data.py); auto: on CUDA for CIFAR-size images")


def _add_recipe_arguments(p) -> None:
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs to train (default: the recipe's); the lr schedule stays the recipe's, in epochs")
    p.add_argument("--fit-schedule", action="store_true",
                   help="stretch the recipe's lr schedule (warmup, milestones, cosine length) to --epochs")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per device per step (default: the recipe's)")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches accumulated per optimizer step")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="base lr used as given (default: the recipe's, scaled linearly to the total batch)")
    p.add_argument("--no-scale-lr", action="store_true",
                   help="keep the recipe's lr when the total batch differs from its base batch")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="mixed precision: auto = on CUDA, fp16 for fp16 recipes, else bf16 where the device has it; "
                        "fp32 elsewhere ('no' is Accelerate's word for fp32)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for the data order, augmentation and initialisation")
    p.add_argument("--model-kwargs", default=None,
                   help='extra timm.create_model arguments as JSON, e.g. \'{"channels": [16, 32, 64, 128]}\' for a '
                        "narrow smoke-test model; recorded in run.json and the bundle's config.json")
    p.add_argument("--drop-path-rate", type=fraction, default=None,
                   help="stochastic depth (default: the recipe's)")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="SyncBatchNorm across processes on CUDA (default: the recipe's)")
    p.add_argument("--init-checkpoint", default=None,
                   help="backbone weights to start from, path or URL (default: the recipe's init_from, e.g. CUB's "
                        "ImageNet-21k model; 'none' for random init)")
    p.add_argument("--eval-batch-size", type=positive_int, default=None, help="images per device per eval batch")


def _add_run_arguments(p) -> None:
    p.add_argument("--output-dir", default=None, help="run folder (default: runs/CONFIG)")
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint in --output-dir")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in --output-dir (its checkpoints, metrics and final bundle) and "
                        "start again; without it a folder holding a run is refused unless --resume")
    p.add_argument("--checkpoint-steps", type=positive_int, default=None,
                   help="also checkpoint every N optimizer steps (default: at the end of each epoch only)")
    p.add_argument("--keep", type=positive_int, default=3, help="complete checkpoints to keep")
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
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when an accelerator is present")
    p.add_argument("--dist-timeout", type=positive_float, default=1800.0,
                   help="seconds a collective waits for a silent process (a hung or unreachable machine) before "
                        "the run stops; a dead machine's closed connections stop it at once")


def main(argv=None, prog: Optional[str] = None) -> int:
    from resnet_hub.commands import main as command_main

    return command_main(add_arguments, run, __doc__.split("\n\n")[0], argv, prog=prog)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

