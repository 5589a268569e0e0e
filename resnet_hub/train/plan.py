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
from pathlib import Path
from typing import Optional

from resnet_hub.numerics import native_bf16
from resnet_hub.zoo.configs import HubConfig

from .data import DatasetSpec
from .hyperparams import resolve_recipe
from .pretrained import PretrainedSource, parse_pretrained

__all__ = ["TrainPlan", "RunSettings", "resolve_plan", "PRECISIONS", "ACCELERATE_PRECISION",
           "native_bf16"]

# --precision choices; "no" is Accelerate's word for fp32, accepted as given to `accelerate launch`
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "no")
# our word -> Accelerator(mixed_precision=...)
ACCELERATE_PRECISION = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}

@dataclass(frozen=True)
class RunSettings:
    """Runtime flags (where, how often, what to log): they change no weight, so a resume may change them."""
    output_dir: str
    resume: bool = False
    overwrite: bool = False  # replace the run already in output_dir
    checkpoint_steps: Optional[int] = None
    keep: int = 3
    tracker: str = "tensorboard"
    cpu: bool = False
    dist_timeout: float = 1800.0
    workers: int = 0
    bad_images: str = "skip"


@dataclass(frozen=True)
class TrainPlan:
    """What a run does: batch, lr, schedule, precision, fast paths, model and data placement.

    ``recipe`` is the config as run: its ``training`` (optimizer, lr phases, loss, batch augments,
    augmentation) and ``eval`` (input size) after every flag; the builders read it and nothing else.
    """
    config: str
    epochs: int
    recipe_epochs: int
    batch_size: int  # images per device per micro-batch
    grad_accum: int
    world_size: int
    lr: float
    lr_scaling: str  # why the lr is what it is (recipe's, scaled, fine-tune default or --lr)
    schedule: tuple  # the lr phases run: the recipe's, fitted to ``epochs``, or built from --sched
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
    pretrained: Optional[PretrainedSource] = None  # weights to start from (None: random init)
    sync_bn: bool = False  # convert BatchNorm to SyncBatchNorm
    data_on_device: bool = False  # augmentation backend "device": the split held and augmented on the device
    augmentation: str = "workers"  # where the recipe's augmentation runs (resnet_hub.train.augment.BACKENDS)
    augmentation_reason: str = ""  # augment.choose_backend's one line on why
    eval_batch_size: int = 0
    notes: tuple = ()  # what the run cannot do as asked on this device, said before it starts
    recipe: Optional[HubConfig] = field(default=None, repr=False)  # the config as run (see above)
    opt: str = "momentum"  # timm's create_optimizer_v2 name
    sched: str = "recipe"  # "recipe" | "cosine" | "step" | "multistep"
    sched_reason: str = ""  # why this schedule (the recipe's, --sched, the fine-tune default)
    warmup_epochs: float = 0.0
    clip_grad: Optional[float] = None  # max gradient norm (None: no clipping)
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    img_size: int = 0  # train crop and eval input size
    seed: int = 0
    dataset: Optional[DatasetSpec] = None
    limit_train: Optional[int] = None
    limit_eval: Optional[int] = None
    steps_per_epoch: Optional[int] = None  # streaming datasets of unknown size
    model_name: str = ""  # the bundle's own name
    repo_id: str = ""  # the bundle's Hub repo id
    dataset_name: Optional[str] = None  # --dataset-name (the card's datasets:); None: from the dataset
    run: RunSettings = field(default_factory=lambda: RunSettings(output_dir="runs"))

    @property
    def init_checkpoint(self) -> Optional[str]:
        """--init-checkpoint's word for :attr:`pretrained`, as given."""
        return self.pretrained.text if self.pretrained else None

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

    def settings(self) -> dict:
        """The resolved settings that make the weights what they are, JSON-able: run.json's and the card's
        ``plan``. Runtime flags (:class:`RunSettings`) are not among them."""
        t = self.recipe.training if self.recipe else None
        o = t.optimizer if t else None
        mix = {a.type: a.alpha for a in t.batch_augments} if t else {}
        return {
            "config": self.config, "epochs": self.epochs, "batch_size": self.batch_size, "grad_accum": self.grad_accum,
            "processes": self.world_size, "total_batch": self.total_batch, "opt": self.opt, "lr": self.lr,
            "lr_scaling": self.lr_scaling, "weight_decay": o.weight_decay if o else None,
            "momentum": o.momentum if o and self.opt in ("sgd", "momentum", "nesterov") else None,
            "sched": self.sched, "sched_reason": self.sched_reason, "warmup_epochs": self.warmup_epochs,
            "lr_schedule": [describe_phase(p) for p in self.schedule],
            "smoothing": t.loss.label_smoothing if t else None, "mixup": mix.get("mixup", 0.0),
            "cutmix": mix.get("cutmix", 0.0), "clip_grad": self.clip_grad, "model_ema": self.model_ema,
            "model_ema_decay": self.model_ema_decay if self.model_ema else None, "img_size": self.img_size,
            "drop_path_rate": self.drop_path_rate, "num_classes": self.num_classes, "precision": self.precision,
            "seed": self.seed, "pretrained": self.pretrained.description if self.pretrained else None,
            "model_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_kwargs.items()},
            "augmentation": [a.type for a in t.augmentation] if t else [],
        }


def resolve_plan(args, cfg: HubConfig, *, world_size: int, device_type: str, bf16_supported: bool = False,
                 streaming: Optional[bool] = None) -> TrainPlan:
    """The plan for ``cfg``'s recipe under the trainer's ``args`` (see ``trainer.add_arguments``), on
    ``world_size`` processes of ``device_type`` ("cpu", "cuda", ...). ``args`` is left as it was."""
    from .augment import choose_backend

    streaming = args.streaming if streaming is None else streaming
    t = cfg.training
    batch = t.batch_size_per_device if args.batch_size is None else args.batch_size
    epochs = t.epochs if args.epochs is None else args.epochs
    pretrained = _pretrained(args, t)
    recipe, hyper = resolve_recipe(args, cfg, total_batch=batch * world_size * args.grad_accum, epochs=epochs,
                                   fine_tune=pretrained is not None and t.init_from is None)
    precision = _precision(args.precision, cfg, device_type, bf16_supported)
    cuda = device_type == "cuda"
    sync_bn = t.sync_bn if args.sync_bn is None else args.sync_bn
    augmentation = choose_backend(recipe.training.augmentation, device_type, on_device=args.data_on_device,
                                  streaming=streaming,
                                  image_size=recipe.eval.input_size)
    notes = []
    if sync_bn and world_size > 1 and not cuda:
        notes.append("note: SyncBN needs CUDA; BatchNorm statistics stay per process on this device")
    if precision == "fp16" and device_type == "cpu":
        notes.append("note: fp16 autocast needs a GPU; on the CPU Accelerate trains in fp32")
    output_dir = args.output_dir or f"runs/{cfg.name}"
    model_name = args.model_name or Path(output_dir).resolve().name
    return TrainPlan(
        config=cfg.name, epochs=epochs, recipe_epochs=t.epochs, batch_size=batch, grad_accum=args.grad_accum,
        world_size=world_size, precision=precision, static_loss_scale=_static_loss_scale(precision, cfg),
        channels_last=_auto(args.channels_last, cuda), compile=_auto(args.compile, cuda),
        fused=_auto(args.fused_optimizer, cuda) and cuda, pin_memory=_auto(args.pin_memory, cuda) and cuda,
        persistent_workers=True,
        num_classes=cfg.num_classes if args.num_classes is None else args.num_classes,
        num_classes_from=f"config {cfg.name}" if args.num_classes is None else "--num-classes",
        drop_path_rate=t.drop_path_rate if args.drop_path_rate is None else args.drop_path_rate,
        model_kwargs=_model_kwargs(args.model_kwargs), pretrained=pretrained,
        sync_bn=bool(sync_bn and world_size > 1 and cuda),
        data_on_device=augmentation.backend == "device",
        augmentation=augmentation.backend, augmentation_reason=str(augmentation),
        eval_batch_size=batch * 2 if args.eval_batch_size is None else args.eval_batch_size,
        notes=tuple(notes), recipe=recipe, clip_grad=args.clip_grad, model_ema=args.model_ema,
        model_ema_decay=args.model_ema_decay, img_size=recipe.eval.input_size, seed=args.seed,
        dataset=_dataset(args, cfg, streaming), limit_train=args.limit_train, limit_eval=args.limit_eval,
        steps_per_epoch=args.steps_per_epoch, model_name=model_name,
        repo_id=args.repo_id or _repo_id(model_name), dataset_name=args.dataset_name,
        run=RunSettings(output_dir=output_dir, resume=args.resume, overwrite=args.overwrite,
                        checkpoint_steps=args.checkpoint_steps,
                        keep=args.keep, tracker=args.tracker, cpu=args.cpu, dist_timeout=args.dist_timeout,
                        workers=args.workers, bad_images=args.bad_images),
        **hyper,
    )



def _pretrained(args, t) -> Optional[PretrainedSource]:
    given = args.pretrained
    if given is None:  # the recipe's own init_from (CUB: an ImageNet-21k backbone), unless told otherwise
        if t.init_from is None:
            return None
        return parse_pretrained(t.init_from.url, prefix=t.init_from.prefix or "backbone")
    prefix = (t.init_from.prefix or "backbone") if t.init_from else "backbone"
    return parse_pretrained(given, sha256=args.sha256, verify=not args.no_verify, prefix=prefix)


def _dataset(args, cfg: HubConfig, streaming: bool) -> DatasetSpec:
    from .data import resolve_dataset

    return resolve_dataset(args.dataset, cfg, train_split=args.train_split, eval_split=args.eval_split,
                           image_column=args.image_column, label_column=args.label_column, streaming=streaming)


def _repo_id(model_name: str) -> str:
    from huggingface_hub.utils import validate_repo_id

    from resnet_hub.zoo.configs import hub_namespace

    repo_id = f"{hub_namespace()}/{model_name}"
    try:
        validate_repo_id(repo_id)
    except Exception:  # huggingface_hub's HFValidationError
        raise ValueError(f"{model_name!r} (the output folder's name) is not a valid Hub model name; give "
                         "--model-name NAME or --repo-id ORG/NAME") from None
    return repo_id


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
        extra = f"to {p.eta_min:g} (period {p.t_max:g} epochs)"
    else:
        extra = f"milestones {list(p.milestones or ())} gamma {p.gamma:g}"
    return f"{p.type} {extra} over epochs [{p.begin:g}, {p.end:g})"

