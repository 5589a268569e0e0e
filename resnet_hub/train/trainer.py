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
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import torch

from resnet_hub.commands import (
    CommandError,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from resnet_hub.zoo.configs import HubConfig, load_config

from .evaluate import eval_collate, evaluate_loop, measured_result
from .plan import PRECISIONS, TrainPlan, describe_phase, resolve_plan
from .run_dir import (
    RUN_FILE,
    TRAINER_STATE,
    Checkpoints,
    RunState,
    claim_output_dir,
    export_bundle,
    run_identity,
    write_metrics,
)

__all__ = ["add_arguments", "run", "train", "main", "TrainStep", "build_train_step", "create_model", "train_batches",
           "evaluate_loop",
           "eval_collate", "Checkpoints", "TRAINER_STATE", "TrainPlan", "resolve_plan"]


# ----------------------------------------------------------------------------- model


def create_model(cfg: HubConfig, **kwargs: Any) -> torch.nn.Module:
    """A fresh model of ``cfg``: the registered timm model, or, for a YAML file of its own, its architecture."""
    import timm

    from resnet_hub.zoo.configs import all_configs

    registered = all_configs().get(cfg.name)
    # the training recipe does not shape the model: a registered config trained with other flags is still it
    if registered is not None and replace(cfg, training=registered.training) == registered:
        return timm.create_model(cfg.name, **kwargs)
    from resnet_hub.zoo.models import config_pretrained_cfg, model_args

    overlay = {k: v for k, v in config_pretrained_cfg(cfg).items() if k != "hf_hub_id"}
    overlay.update(kwargs.pop("pretrained_cfg_overlay", None) or {})
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
                 static_loss_scale: Optional[float] = None, clip_grad: Optional[float] = None, ema=None):
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.loss_fn, self.normalize, self.mixup = loss_fn, normalize, mixup
        self.static_loss_scale = static_loss_scale
        self.clip_grad = clip_grad  # max gradient norm over all parameters, None: no clipping
        self.ema = ema  # timm's ModelEmaV3 of the model, updated after every optimizer update
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
            if self.clip_grad is not None and acc.sync_gradients:
                acc.clip_grad_norm_(self.model.parameters(), self.clip_grad)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if acc.sync_gradients:
                self.last_lr = self.lr
                self.updates += 1
                self.scheduler.step_update(self.updates)
                if self.ema is not None:
                    self.ema.update(acc.unwrap_model(self.model), step=self.updates)
                if self.static_loss_scale is not None and acc.scaler is not None:
                    # mmengine's AmpOptimWrapper(loss_scale=512.): update(512.) after every step
                    acc.scaler.update(self.static_loss_scale)
        return loss.detach()

    step = __call__

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is evaluated and exported: the EMA weights when the run keeps them (timm's train.py scores
        and saves the EMA too), else the model."""
        return self.ema.module if self.ema is not None else self.model


def build_train_step(cfg: HubConfig, accelerator, model, *, lr: float, iters_per_epoch: int, num_classes: int,
                     fused: bool = False, channels_last: bool = False, compile: bool = False,
                     schedule=None, compile_options: Optional[dict] = None, clip_grad: Optional[float] = None,
                     model_ema_decay: Optional[float] = None) -> TrainStep:
    """Everything one optimizer step needs, prepared by ``accelerator``; ``model`` is fresh from :func:`create_model`.

    ``compile_options`` go to ``torch.compile`` (``mode``, ``backend``) when ``compile`` is set; ``clip_grad``
    clips the gradient norm; ``model_ema_decay`` keeps timm's ``ModelEmaV3`` of the weights (warmed up).
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
    ema = None
    if model_ema_decay is not None:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(accelerator.unwrap_model(model), decay=model_ema_decay, use_warmup=True)
        accelerator.register_for_checkpointing(ema)  # a resume continues the average, not a fresh copy
    step = TrainStep(accelerator, model, optimizer, scheduler, loss_fn, normalize, mixup, static, clip_grad, ema)
    step.set_updates(0)
    return step


# ----------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> int:
    """Train ``args.config``'s recipe (flags: :func:`add_arguments`); 0 when done, 128 + N when stopped by signal N.

    The flags are read here, once, into a :class:`TrainPlan`; :func:`train` follows the plan.
    """
    from accelerate import PartialState

    # The plan first: every setting resolved once from the flags, the recipe and the processes, and
    # printed, before anything runs. PartialState is the process group the Accelerator below joins.
    cfg = load_config(args.config)
    processes = PartialState(cpu=args.cpu, timeout=timedelta(seconds=args.dist_timeout))
    device = processes.device
    plan = resolve_plan(args, cfg, world_size=processes.num_processes, device_type=device.type,
                        bf16_supported=device.type == "cuda" and torch.cuda.is_bf16_supported())
    return train(plan)


def train(plan: TrainPlan) -> int:
    """Run ``plan`` (:func:`resolve_plan`); 0 when done, 128 + N when stopped by signal N.

    A process lost from the run (a machine died) stops every other one at its next collective, at
    the latest after ``--dist-timeout`` seconds, with one line (:class:`CommandError`) naming the
    last complete checkpoint to ``--resume`` from.
    """
    import contextlib

    from .lost_process import is_lost_process, lost_process_message

    try:
        with contextlib.ExitStack() as held:  # the output folder's lock, released however the run ends
            return _train(plan, held)
    except Exception as e:
        if not is_lost_process(e):
            raise
        raise CommandError(lost_process_message(e, checkpoints=Path(plan.run.output_dir) / "checkpoints",
                                                timeout_s=plan.run.dist_timeout)) from e


def _train(plan: TrainPlan, held) -> int:
    from accelerate.utils import set_seed

    from .loop import StopSignal, agreed_stop, finish_epoch, train_one_epoch

    cfg, run = plan.recipe, plan.run  # the config as run: flags applied (hyperparams.resolve_recipe)
    out = Path(run.output_dir)
    acc = _accelerator(plan, out)
    set_seed(plan.seed)

    # Data, in the main process first so that one process downloads and caches.
    spec, splits, label_names = _load_data(plan, cfg, acc)
    for note in plan.notes if acc.is_main_process else ():
        print(note, file=sys.stderr)

    # Claim the run folder before writing into it, locked for this run: a folder in use, another run's
    # folder, or this run's outputs without --resume/--overwrite are refused, files untouched.
    facts, note = _start_facts(plan, spec, out)
    if note and acc.is_main_process:
        print(note, file=sys.stderr)
    identity = run_identity(cfg, splits.spec, plan, facts)
    if acc.is_main_process:
        held.enter_context(claim_output_dir(out, identity, run.resume, run.overwrite))
    acc.wait_for_everyone()

    # The model (from --pretrained unless resuming), its training batches and eval loader, one prepare.
    model = _build_model(cfg, plan, acc)
    batches = train_batches(plan, spec, splits.train, device=acc.device, world_size=acc.num_processes,
                            rank=acc.process_index)
    eval_dl = acc.prepare(_eval_loader(model, cfg, plan, spec, splits))
    step = build_train_step(cfg, acc, model, lr=plan.lr, iters_per_epoch=batches.steps_per_epoch,
                            num_classes=plan.num_classes, fused=plan.fused, channels_last=plan.channels_last,
                            compile=plan.compile, schedule=plan.schedule, clip_grad=plan.clip_grad,
                            model_ema_decay=plan.model_ema_decay if plan.model_ema else None)
    _print_plan(acc, plan, cfg, spec, splits, batches.steps_per_epoch)
    if acc.is_main_process:
        _say_image_sizes(acc, cfg, spec, splits)

    # Resume: weights, optimizer, RNG states and the position in the epoch of the latest checkpoint.
    checkpoints = Checkpoints(out / "checkpoints", acc, run.keep)
    state = _resume(checkpoints, step, batches.steps_per_epoch, out) if run.resume else RunState()
    log = run.tracker != "none"
    if log:
        acc.init_trackers("train", config={k: v for k, v in plan.settings().items()
                                           if isinstance(v, (int, float, str, bool))})

    # The loop: train an epoch, evaluate it, export the best, write metrics, checkpoint.
    stop = 0
    with StopSignal() as signals:
        while state.epoch < plan.epochs and not stop:
            totals = train_one_epoch(step, batches, state, checkpoints, signals, plan=plan,
                                     bad_images=run.bad_images, where=f"dataset {spec.path}",
                                     checkpoint_steps=run.checkpoint_steps, log=log)
            stop = totals.stop
            if stop:
                break
            record, best = finish_epoch(step, eval_dl, state, totals, bad_images=run.bad_images,
                                        epochs=plan.epochs, log=log)
            if best and acc.is_main_process:
                export_bundle(acc.unwrap_model(step.eval_model), cfg, out / "final", label_names=label_names,
                              model_kwargs=plan.model_kwargs, provenance=_provenance(plan, splits, record, facts),
                              measured=[measured_result(facts["dataset_name"], splits.eval, splits.spec.eval_split,
                                                        record)])
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


def _accelerator(plan: TrainPlan, out: Path):
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

    run = plan.run
    # how long a collective waits for a silent peer before the run stops (lost_process.py)
    handlers = [InitProcessGroupKwargs(timeout=timedelta(seconds=run.dist_timeout))]
    if plan.static_loss_scale is not None:
        handlers.append(GradScalerKwargs(init_scale=plan.static_loss_scale))
    return Accelerator(
        mixed_precision=plan.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=plan.grad_accum, sync_with_dataloader=False),
        dataloader_config=DataLoaderConfiguration(even_batches=True),
        log_with=None if run.tracker == "none" else [run.tracker], kwargs_handlers=handlers,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        cpu=run.cpu,
    )


def _load_data(plan: TrainPlan, cfg: HubConfig, acc):
    """The dataset's spec, its two splits (limited as asked) and the label names of the plan's classes."""
    from . import data as D

    spec = plan.dataset
    with acc.main_process_first():
        splits = D.load_splits(spec, cfg.eval.input_size)
    n = plan.num_classes
    if splits.num_classes and splits.num_classes != n:
        raise ValueError(f"dataset {spec.path} has {splits.num_classes} classes but {plan.num_classes_from} says "
                         f"{n}; pass --num-classes {splits.num_classes} to train a head of that size")
    if plan.limit_train or plan.limit_eval:
        if spec.streaming:
            raise ValueError("--limit-train/--limit-eval are for map-style datasets, not --streaming")
        if plan.limit_train:
            splits.train = splits.train.select(range(min(plan.limit_train, len(splits.train))))
        if plan.limit_eval:
            splits.eval = splits.eval.select(range(min(plan.limit_eval, len(splits.eval))))
    label_names = splits.label_names if len(splits.label_names) == n else tuple(map(str, range(n)))
    return spec, splits, label_names


def _start_facts(plan: TrainPlan, spec, out: Path) -> tuple[dict, Optional[str]]:
    """What the card says of the start and the data, without local paths: the --pretrained description,
    base_model when known, and the dataset's name. A resume takes them from run.json (never re-reading the
    starting weights)."""
    from .pretrained import describe_dataset_name, read_json, source_facts

    if plan.run.resume:
        saved = read_json(out / RUN_FILE).get("start")
        if saved:
            return saved, None
    name, guessed = describe_dataset_name(plan.dataset_name, spec)
    return {**source_facts(plan.pretrained), "dataset_name": name}, guessed


def _build_model(cfg: HubConfig, plan: TrainPlan, acc) -> torch.nn.Module:
    """A fresh model of the plan's classes, from its pretrained weights unless resuming, with SyncBN if planned;
    the first lines say what was loaded and what is new."""
    def create(**kwargs):
        try:
            return create_model(cfg, num_classes=plan.num_classes, drop_path_rate=plan.drop_path_rate,
                                **plan.model_kwargs, **kwargs)
        except (TypeError, ValueError, RuntimeError) as e:  # an argument the architecture does not take, or a bad value
            raise ValueError(f"cannot build {cfg.name} with --model-kwargs {plan.model_kwargs} ({e})") from None

    if plan.pretrained and not plan.run.resume:  # a resume loads every weight from its checkpoint
        from .pretrained import load_pretrained

        model, lines = load_pretrained(create, plan.pretrained, cfg=cfg, num_classes=plan.num_classes)
        for line in lines:
            acc.print(line)
    else:
        model = create()
        if plan.pretrained:
            acc.print(f"pretrained: {plan.pretrained.description} not read again: --resume restores every weight "
                      "from its checkpoint")
    if plan.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def train_batches(plan: TrainPlan, spec, train_split, *, device, world_size: int = 1, rank: int = 0):
    """What the trainer iterates for ``plan``: the training split as per-step batches (``data.TrainBatches``),
    held and augmented on the device, streamed, or read by a DataLoader whose workers decode and augment each
    batch (:class:`~resnet_hub.train.augment.TrainTransform`), with the ops of ``plan.recipe`` (the crop size
    as run). The benchmarks time this object."""
    from . import data as D
    from .augment import TrainTransform

    t, workers = plan.recipe.training, plan.run.workers
    if plan.data_on_device:
        from .device_data import DeviceTrainBatches

        return DeviceTrainBatches(t.augmentation, train_split, batch_size=plan.batch_size,
                                  image_column=spec.image_column, label_column=spec.label_column, device=device,
                                  world_size=world_size, rank=rank, accumulation=plan.grad_accum, seed=plan.seed)
    transform = TrainTransform(t.augmentation)
    if spec.streaming:
        from .streaming import StreamBatches

        return StreamBatches(train_split, transform, spec.image_column, spec.label_column,
                             batch_size=plan.batch_size, world_size=world_size, rank=rank,
                             accumulation=plan.grad_accum, seed=plan.seed, steps_per_epoch=plan.steps_per_epoch,
                             workers=workers, pin_memory=plan.pin_memory)
    sampler = D.TrainBatchSampler(len(train_split), plan.batch_size, world_size=world_size, rank=rank,
                                  accumulation=plan.grad_accum, seed=plan.seed,
                                  repeats=t.sampler.num_repeats if t.sampler.type == "repeat_aug" else None)
    images = D.LabeledImages(train_split, transform, spec.image_column, spec.label_column, seed=plan.seed)
    return D.LoaderBatches(images, sampler, workers=workers, pin_memory=plan.pin_memory,
                           persistent_workers=plan.persistent_workers)


def _eval_loader(model, cfg: HubConfig, plan: TrainPlan, spec, splits):
    """The evaluation split in order, with the model's eval transform; ``prepare`` shards it."""
    from . import data as D
    from .recipe import eval_transform

    images = D.LabeledImages(splits.eval, eval_transform(model), spec.image_column, spec.label_column)
    shape = (3, cfg.eval.input_size, cfg.eval.input_size)
    workers = plan.run.workers
    return torch.utils.data.DataLoader(images, batch_size=plan.eval_batch_size, shuffle=False,
                                       num_workers=workers, pin_memory=plan.pin_memory,
                                       persistent_workers=workers > 0, collate_fn=eval_collate(shape))


def _print_plan(acc, plan: TrainPlan, cfg: HubConfig, spec, splits, steps_per_epoch: int) -> None:
    from .hyperparams import describe_optimizer, optional_float

    sizes = "? train / ? eval" if spec.streaming else f"{len(splits.train)} train / {len(splits.eval)} eval"
    acc.print(f"{cfg.name} on {spec.path} ({sizes} images, {plan.num_classes} classes): "
              + plan.summary(steps_per_epoch))
    acc.print(plan.lr_scaling)
    t = cfg.training
    acc.print(describe_optimizer(plan.opt, t.optimizer, plan.lr))
    acc.print(f"lr schedule: {plan.sched_reason}: " + "; ".join(describe_phase(p) for p in plan.schedule))
    mix = {a.type: a.alpha for a in t.batch_augments}
    acc.print(f"input {plan.img_size} px; label smoothing {t.loss.label_smoothing:g}; mixup "
              f"{mix.get('mixup', 0):g}, cutmix {mix.get('cutmix', 0):g}; clip-grad {optional_float(plan.clip_grad)}; "
              f"model EMA {optional_float(plan.model_ema_decay if plan.model_ema else None)}")
    acc.print(f"augmentation: {plan.augmentation_reason}")


def _say_image_sizes(acc, cfg: HubConfig, spec, splits) -> None:
    """One line when the dataset's images are much larger than the crop: what the recipe does to them."""
    from .imagesize import describe_image_fit, sample_image_sizes

    if spec.streaming:
        return
    line = describe_image_fit(cfg, sample_image_sizes(splits.train, spec.image_column))
    if line:
        acc.print(line)


def _resume(checkpoints: Checkpoints, step: TrainStep, steps_per_epoch: int, out: Path) -> RunState:
    """The state of the newest intact checkpoint (newer damaged ones skipped, each named with why), loaded into
    the prepared model, optimizer and RNGs."""
    latest, skipped = checkpoints.intact()
    for line in skipped:
        step.accelerator.print(f"--resume: skipped checkpoint {line}", file=sys.stderr)
    if latest is None:
        why = f" ({'; '.join(skipped)})" if skipped else ""
        raise FileNotFoundError(f"--resume: no intact checkpoint in {out / 'checkpoints'}{why}; pass --overwrite "
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


def _provenance(plan: TrainPlan, splits, record: dict, facts: dict) -> dict:
    """How the bundle of ``record``'s epoch was trained, for its card and weights' metadata (no local paths)."""
    return {"trained_with": "resnet_hub.train", "dataset": facts["dataset_name"],
            "train_split": splits.spec.train_split, "eval_split": splits.spec.eval_split, "epoch": record["epoch"],
            "epochs": plan.epochs, "top1": round(record["top1"], 4), "top5": round(record["top5"], 4),
            "total_batch": plan.total_batch, "processes": plan.world_size, "lr": plan.lr, "seed": plan.seed,
            "precision": plan.precision, "model_name": plan.model_name, "repo_id": plan.repo_id,
            "plan": plan.settings(), "ema": plan.model_ema, **facts}


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
    """The trainer's flags, in four groups: the data, the recipe's hyperparameters, fine-tuning, the run."""
    _add_data_arguments(parser.add_argument_group("data"))
    _add_recipe_arguments(parser.add_argument_group("recipe (default: the config's)"))
    _add_fine_tune_arguments(parser.add_argument_group("fine-tuning, in timm's words (default: the config's recipe)"))
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
    p.add_argument("--dataset-name", default=None,
                   help="the dataset's name on the card (a Hub dataset id, e.g. ORG/NAME) for a local folder; "
                        "default: the Hub id, or the folder's base name (never its path)")
    p.add_argument("--img-size", type=positive_int, default=None,
                   help="train crop and eval input size together, in pixels (default: the config's); eval and "
                        "train resizes keep their ratio to it")
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
    p.add_argument("--pretrained", "--init-checkpoint", dest="pretrained", default=None,
                   help="weights to start from: hub:NAME[@REV], hf-hub:ORG/REPO[@REV], local-dir:PATH, a bundle "
                        "folder, a .safetensors file, or an mmpretrain .pth path or URL (backbone only); the head is "
                        "new when --num-classes differs (default: the recipe's init_from, e.g. CUB's ImageNet-21k "
                        "model; 'none' for random init)")
    p.add_argument("--sha256", default=None,
                   help="expected sha256 of an mmpretrain --pretrained file whose name does not end in -<8 hex>.pth")
    p.add_argument("--no-verify", action="store_true",
                   help="load an mmpretrain --pretrained file without checking its sha256")
    p.add_argument("--eval-batch-size", type=positive_int, default=None, help="images per device per eval batch")


def _add_fine_tune_arguments(p) -> None:
    from .hyperparams import OPT_CHOICES, SCHED_CHOICES

    p.add_argument("--opt", choices=OPT_CHOICES, default=None,
                   help="optimizer by timm's create_optimizer_v2 name (sgd and nesterov: SGD with Nesterov momentum; "
                        "momentum: plain momentum SGD); another family than the recipe's needs --lr")
    p.add_argument("--momentum", type=non_negative_float, default=None, help="SGD momentum (default: the recipe's)")
    p.add_argument("--weight-decay", type=non_negative_float, default=None, help="weight decay (default: the recipe's)")
    p.add_argument("--sched", choices=SCHED_CHOICES, default=None,
                   help="lr schedule: the recipe's, or cosine/step/multistep built for --epochs (default: the "
                        "recipe's; cosine with a 5%% warmup when starting from --pretrained weights)")
    p.add_argument("--warmup-epochs", type=non_negative_float, default=None,
                   help="linear warmup from 1%% of the lr, in epochs, per step (with --sched cosine/step/multistep)")
    p.add_argument("--min-lr", type=non_negative_float, default=0.0, help="the lr cosine ends at (--sched cosine)")
    p.add_argument("--decay-epochs", type=positive_int, default=30, help="--sched step: epochs between decays")
    p.add_argument("--decay-milestones", type=positive_int, nargs="+", default=None,
                   help="--sched multistep: the epochs the lr decays at (default: 1/2 and 3/4 of --epochs)")
    p.add_argument("--decay-rate", type=positive_float, default=0.1, help="--sched step/multistep: lr factor")
    p.add_argument("--smoothing", type=non_negative_float, default=None, help="label smoothing (default: the recipe's)")
    p.add_argument("--mixup", type=non_negative_float, default=None,
                   help="Mixup alpha (timm's Mixup; 0 turns it off; default: the recipe's)")
    p.add_argument("--cutmix", type=non_negative_float, default=None,
                   help="CutMix alpha (timm's Mixup; 0 turns it off; default: the recipe's)")
    p.add_argument("--clip-grad", type=positive_float, default=None, help="clip the gradient norm to this value")
    p.add_argument("--model-ema", action="store_true",
                   help="keep timm's ModelEmaV3 of the weights; it is evaluated and exported (the bundle says so)")
    p.add_argument("--model-ema-decay", type=positive_float, default=0.9998,
                   help="EMA decay (timm's default), reached after a warmup (ModelEmaV3 use_warmup)")

def _add_run_arguments(p) -> None:
    p.add_argument("--output-dir", default=None, help="run folder (default: runs/CONFIG)")
    p.add_argument("--model-name", default=None,
                   help="the trained bundle's own name, on its card (default: the output folder's name)")
    p.add_argument("--repo-id", default=None,
                   help="the bundle's Hub repo id, used by its card's snippets (default: NAMESPACE/MODEL_NAME, "
                        "NAMESPACE from RESNET_HUB_NAMESPACE)")
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

