"""The settings of one training run, resolved once from the flags, the config's recipe and the devices.

:func:`resolve_plan` is pure: it reads ``args`` (never writes it), the :class:`HubConfig` and what
the caller says about the processes and the device, and returns a frozen :class:`TrainPlan` that
the trainer follows and that prints as what will happen::

    plan = resolve_plan(args, load_config("resnet18_8xb16_cifar10"), world_size=1, device_type="cpu")
    print(plan)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from resnet_hub.numerics import native_bf16
from resnet_hub.zoo.configs import HubConfig

__all__ = ["TrainPlan", "resolve_plan", "PRECISIONS", "ACCELERATE_PRECISION", "native_bf16"]

# --precision choices; "no" is Accelerate's word for fp32, accepted as given to `accelerate launch`
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "no")
# our word -> Accelerator(mixed_precision=...)
ACCELERATE_PRECISION = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}

@dataclass(frozen=True)
class TrainPlan:
    """What a run does: batch, lr, schedule, precision, fast paths, model and data placement."""
    config: str
    epochs: int
    recipe_epochs: int
    batch_size: int  # images per device per micro-batch
    grad_accum: int
    world_size: int
    lr: float
    lr_scaling: str  # why the lr is what it is (recipe's, scaled, or --lr)
    schedule: tuple  # the recipe's lr phases, or those fitted to ``epochs``
    schedule_fitted: bool
    precision: str  # "fp32" | "fp16" | "bf16"
    static_loss_scale: Optional[float]  # mmengine's AmpOptimWrapper(loss_scale=512.) for fp16 recipes
    channels_last: bool
    compile: bool
    fused: bool
    pin_memory: bool
    persistent_workers: bool
    num_classes: int
    num_classes_from: str  # who says so, for the dataset mismatch error
    drop_path_rate: Optional[float]
    model_kwargs: dict = field(default_factory=dict)
    init_checkpoint: Optional[str] = None  # backbone weights to start from (None: random init)
    sync_bn: bool = False  # convert BatchNorm to SyncBatchNorm
    data_on_device: bool = False  # augmentation backend "device": the split held and augmented on the device
    augmentation: str = "workers"  # where the recipe's augmentation runs (resnet_hub.train.augment.BACKENDS)
    augmentation_reason: str = ""  # augment.choose_backend's one line on why
    augmentation_ops: tuple = ()  # the recipe's training augmentation ops, at the size trained (the one source)
    repeat_augment: Optional[int] = None  # repeated augmentation's repeats (the recipe's repeat_aug sampler)
    eval_batch_size: int = 0
    notes: tuple = ()  # what the run cannot do as asked on this device, said before it starts

    @property
    def total_batch(self) -> int:
        return self.batch_size * self.world_size * self.grad_accum

    @property
    def mixed_precision(self) -> str:
        return ACCELERATE_PRECISION[self.precision]

    def fast_paths(self) -> dict:
        return dict(channels_last=self.channels_last, compile=self.compile, fused=self.fused,
                    pin_memory=self.pin_memory, persistent_workers=self.persistent_workers)

    def summary(self, steps_per_epoch: int) -> str:
        """Epochs, batch, precision and fast paths in one line (the end of the trainer's first line)."""
        return (f"{self.epochs} epochs x {steps_per_epoch} steps of {self.batch_size} x {self.world_size} "
                f"process(es) x {self.grad_accum} accumulation = {self.total_batch} images; "
                f"precision {self.precision}; "
                + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in self.fast_paths().items()))


def resolve_plan(args, cfg: HubConfig, *, world_size: int, device_type: str, bf16_supported: bool = False,
                 streaming: bool = False) -> TrainPlan:
    """The plan for ``cfg``'s recipe under the trainer's ``args`` (see ``trainer.add_arguments``), on
    ``world_size`` processes of ``device_type`` ("cpu", "cuda", ...). ``args`` is left as it was."""
    from .augment import choose_backend
    from .recipe import fit_schedule, scaled_lr

    t = cfg.training
    batch = t.batch_size_per_device if args.batch_size is None else args.batch_size
    total = batch * world_size * args.grad_accum
    scaling = scaled_lr(t, total, lr=args.lr, scale=not args.no_scale_lr)
    epochs = t.epochs if args.epochs is None else args.epochs
    precision = _precision(args.precision, cfg, device_type, bf16_supported)
    cuda = device_type == "cuda"
    init = args.init_checkpoint if args.init_checkpoint is not None else (t.init_from.url if t.init_from else None)
    sync_bn = t.sync_bn if args.sync_bn is None else args.sync_bn
    ops = tuple(t.augmentation)
    augmentation = choose_backend(ops, device_type, on_device=args.data_on_device, streaming=streaming,
                                  image_size=cfg.eval.input_size)
    notes = []
    if sync_bn and world_size > 1 and not cuda:
        notes.append("note: SyncBN needs CUDA; BatchNorm statistics stay per process on this device")
    if precision == "fp16" and device_type == "cpu":
        notes.append("note: fp16 autocast needs a GPU; on the CPU Accelerate trains in fp32")
    return TrainPlan(
        config=cfg.name, epochs=epochs, recipe_epochs=t.epochs, batch_size=batch, grad_accum=args.grad_accum,
        world_size=world_size, lr=scaling.lr, lr_scaling=scaling.message(),
        schedule=tuple(fit_schedule(t.lr_schedule, t.epochs, epochs) if args.fit_schedule else t.lr_schedule),
        schedule_fitted=bool(args.fit_schedule), precision=precision,
        static_loss_scale=_static_loss_scale(precision, cfg),
        channels_last=_auto(args.channels_last, cuda), compile=_auto(args.compile, cuda),
        fused=_auto(args.fused_optimizer, cuda) and cuda, pin_memory=_auto(args.pin_memory, cuda) and cuda,
        persistent_workers=True,
        num_classes=cfg.num_classes if args.num_classes is None else args.num_classes,
        num_classes_from=f"config {cfg.name}" if args.num_classes is None else "--num-classes",
        drop_path_rate=t.drop_path_rate if args.drop_path_rate is None else args.drop_path_rate,
        model_kwargs=_model_kwargs(args.model_kwargs),
        init_checkpoint=None if init in (None, "", "none") else init,
        sync_bn=bool(sync_bn and world_size > 1 and cuda),
        data_on_device=augmentation.backend == "device",
        augmentation=augmentation.backend, augmentation_reason=str(augmentation), augmentation_ops=ops,
        repeat_augment=t.sampler.num_repeats if t.sampler.type == "repeat_aug" else None,
        eval_batch_size=batch * 2 if args.eval_batch_size is None else args.eval_batch_size,
        notes=tuple(notes),
    )


def _auto(value: Optional[bool], default: bool) -> bool:
    return default if value is None else bool(value)


def _precision(arg: str, cfg: HubConfig, device_type: str, bf16_supported: bool) -> str:
    """``auto``: the recipe's fp16 on CUDA, else bf16 where the CUDA device has it, else fp32."""
    if arg == "no":
        return "fp32"
    if arg != "auto":
        return arg
    if device_type == "cuda" and cfg.training.precision.type == "fp16":
        return "fp16"
    if device_type == "cuda" and bf16_supported:
        return "bf16"
    return "fp32"


def _static_loss_scale(precision: str, cfg: HubConfig) -> Optional[float]:
    scale = cfg.training.precision.loss_scale
    return float(scale) if precision == "fp16" and isinstance(scale, float) else None


def _model_kwargs(text: Optional[str]) -> dict:
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--model-kwargs is not JSON ({e}): {text!r}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--model-kwargs must be a JSON object, got {text!r}")
    own = {"num_classes": "--num-classes", "drop_path_rate": "--drop-path-rate", "pretrained": "--init-checkpoint",
           "pretrained_cfg": "--config", "pretrained_cfg_overlay": "--config"}
    taken = [f"{k} (set by {own[k]})" for k in kwargs if k in own]
    if taken:
        raise ValueError(f"--model-kwargs sets what the trainer sets itself: {', '.join(taken)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def describe_phase(p) -> str:
    """One lr phase in words, for the fitted schedule's line."""
    if p.type == "linear":
        extra = f"x{p.start_factor:g}->x{p.end_factor:g}"
    elif p.type == "cosine":
        extra = f"to {p.eta_min:g} over {p.t_max:g}"
    else:
        extra = f"milestones {list(p.milestones or ())} gamma {p.gamma:g}"
    return f"{p.type} {extra} over epochs [{p.begin:g}, {p.end:g})"

