"""The recipe as run: a config's training recipe with the trainer's timm-vocabulary flags applied.

:func:`resolve_recipe` is pure. It returns the config with ``training`` (optimizer, lr phases, loss,
batch augments, train crop) and ``eval`` (input size) replaced as the flags say, so that every
builder (:mod:`resnet_hub.train.recipe`, the data pipelines, the model's pretrained cfg) reads one
object, and the plan's lr, schedule and the words that say why.

The fine-tune default: training from ``--pretrained`` weights with no ``--sched``/``--lr`` runs the
zoo's own fine-tuning recipe shape (mmpretrain's ``resnet50_8xb8_cub``: lr 0.01 per 64 images,
linear warmup over 5% of the epochs from 1% of the lr, then cosine to 0), per iteration so that a
1-epoch fine-tune still decays smoothly, instead of the from-scratch recipe (lr 0.1 per 256
images, steps at 30/60/90 of 100 epochs) squeezed into a few epochs.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from resnet_hub.zoo.configs import BatchAugment, HubConfig, LrPhase, Optimizer

__all__ = ["resolve_recipe", "OPT_CHOICES", "SCHED_CHOICES", "FINE_TUNE", "cosine_phases", "resize_recipe"]

# timm's create_optimizer_v2 names (timm: "sgd" and "nesterov" are SGD with Nesterov momentum)
OPT_CHOICES = ("sgd", "nesterov", "momentum", "adamw", "lamb")
_OPT_TYPE = {"sgd": ("sgd", True), "nesterov": ("sgd", True), "momentum": ("sgd", False), "adamw": ("adamw", None),
             "lamb": ("lamb", None)}
# timm's defaults for an optimizer the recipe did not use
_OPT_DEFAULTS = {"adamw": dict(betas=(0.9, 0.999), eps=1e-8), "lamb": dict(betas=(0.9, 0.999), eps=1e-6,
                                                                            max_grad_norm=1.0)}
SCHED_CHOICES = ("recipe", "cosine", "step", "multistep")
# the zoo's fine-tuning recipe (mmpretrain resnet50_8xb8_cub): lr per base batch, warmup share, warmup start
FINE_TUNE = dict(lr=0.01, base_batch=64, warmup_share=0.05, warmup_start=0.01)


def _optimizer(args, o: Optimizer) -> tuple[str, Optimizer]:
    """The timm optimizer name and the recipe's optimizer with --opt/--weight-decay/--momentum applied."""
    recipe_opt = "lamb" if o.type == "lamb" else ("sgd" if o.nesterov else "momentum") if o.type == "sgd" else o.type
    opt = args.opt or recipe_opt
    kind, nesterov = _OPT_TYPE[opt]
    if kind != o.type:
        if args.lr is None:
            raise ValueError(f"--opt {opt}: give --lr too (the recipe's lr {o.lr:g} is for its {o.type} optimizer)")
        o = Optimizer(type=kind, lr=o.lr, weight_decay=o.weight_decay, no_weight_decay=o.no_weight_decay,
                      **_OPT_DEFAULTS.get(kind, {}))
    changes: dict = {}
    if kind == "sgd":
        changes.update(nesterov=nesterov, momentum=args.momentum if args.momentum is not None else (o.momentum or 0.9))
    elif args.momentum is not None:
        raise ValueError(f"--momentum is for SGD; --opt {opt} has betas")
    if args.weight_decay is not None:
        changes["weight_decay"] = args.weight_decay
    return opt, replace(o, **changes)


def _lr(args, t, total_batch: int, fine_tune: bool):
    """The base lr and its words: --lr, the fine-tune default (SGD recipes), or the recipe's, scaled."""
    from .recipe import LrScaling, scaled_lr

    if args.lr is None and fine_tune and t.optimizer.type == "sgd":
        ft = FINE_TUNE
        lr = ft["lr"] * total_batch / ft["base_batch"] if not args.no_scale_lr else ft["lr"]
        return LrScaling(lr, ft["lr"], total_batch, ft["base_batch"], not args.no_scale_lr
                         and total_batch != ft["base_batch"]), "fine-tune default (the zoo's fine-tune recipe): "
    return scaled_lr(t, total_batch, lr=args.lr, scale=not args.no_scale_lr), ""


def cosine_phases(epochs: int, warmup_epochs: float, *, warmup_start: float = FINE_TUNE["warmup_start"],
                  eta_min: float = 0.0) -> tuple:
    """Linear warmup over ``warmup_epochs`` then cosine to ``eta_min`` at ``epochs``, both per iteration."""
    cosine = LrPhase(type="cosine", begin=warmup_epochs, end=epochs, t_max=epochs - warmup_epochs, eta_min=eta_min,
                     per_iteration=True)
    return _warmup(warmup_epochs, warmup_start) + (cosine,)


def _warmup(warmup_epochs: float, start: float) -> tuple:
    if not warmup_epochs:
        return ()
    return (LrPhase(type="linear", begin=0, end=warmup_epochs, start_factor=start, end_factor=1.0,
                    per_iteration=True),)


def _schedule(args, t, epochs: int, fine_tune: bool) -> tuple[tuple, str, str, float]:
    """The lr phases run, the scheduler's name, why, and the warmup epochs."""
    from .recipe import fit_schedule

    sched = args.sched
    if sched is None and fine_tune and not args.fit_schedule:
        warmup = args.warmup_epochs if args.warmup_epochs is not None else FINE_TUNE["warmup_share"] * epochs
        return (cosine_phases(epochs, warmup), "cosine",
                f"fine-tune default (starting from pretrained weights): linear warmup {warmup:g} epochs, cosine "
                f"to 0 at epoch {epochs}, per step", warmup)
    if sched in (None, "recipe"):
        if args.warmup_epochs is not None:
            raise ValueError("--warmup-epochs goes with --sched cosine, step or multistep (the recipe's schedule "
                             "has its own warmup)")
        if args.fit_schedule:
            return (tuple(fit_schedule(t.lr_schedule, t.epochs, epochs)), "recipe",
                    f"the recipe's, fitted from {t.epochs} to {epochs} epochs", 0.0)
        return tuple(t.lr_schedule), "recipe", "the recipe's", 0.0
    if args.fit_schedule:
        raise ValueError(f"--fit-schedule stretches the recipe's schedule; --sched {sched} is built for --epochs")
    warmup = args.warmup_epochs or 0.0
    if sched == "cosine":
        return cosine_phases(epochs, warmup, eta_min=args.min_lr), sched, "--sched cosine", warmup
    if sched == "step":
        milestones = tuple(range(args.decay_epochs, epochs, args.decay_epochs))
    else:
        milestones = tuple(args.decay_milestones) if args.decay_milestones else (epochs // 2, epochs * 3 // 4)
    step = LrPhase(type="multistep", begin=0, end=epochs, milestones=milestones, gamma=args.decay_rate)
    return _warmup(warmup, FINE_TUNE["warmup_start"]) + (step,), sched, f"--sched {sched}", warmup


def _batch_augments(args, t) -> tuple:
    if args.mixup is None and args.cutmix is None:
        return t.batch_augments
    alphas = {a.type: a.alpha for a in t.batch_augments}
    for kind in ("mixup", "cutmix"):
        if getattr(args, kind) is not None:
            alphas[kind] = getattr(args, kind)
    return tuple(BatchAugment(type=k, alpha=a) for k, a in alphas.items() if a > 0)


def resize_recipe(cfg: HubConfig, img_size: int) -> HubConfig:
    """``cfg`` with train crops and the eval input at ``img_size``; train and eval resizes keep their ratio to it."""
    e = cfg.eval
    if img_size == e.input_size:
        return cfg
    f = img_size / e.input_size
    ops = []
    for a in cfg.training.augmentation:
        if a.type in ("random_resized_crop", "random_crop") and a.size is not None:
            a = replace(a, size=img_size)
        elif a.type == "resize" and isinstance(a.size, int):
            a = replace(a, size=round(a.size * f))
        elif a.type == "resize" and a.size:
            a = replace(a, size=tuple(round(s * f) for s in a.size))
        ops.append(a)
    resize = replace(e.resize, size=round(e.resize.size * f)) if e.resize else None
    eval_ = replace(e, input_size=img_size, resize=resize, center_crop=img_size if e.center_crop else None)
    return replace(cfg, eval=eval_, training=replace(cfg.training, augmentation=tuple(ops)))


def resolve_recipe(args, cfg: HubConfig, *, total_batch: int, epochs: int, fine_tune: bool) -> tuple[HubConfig, dict]:
    """``cfg`` as run under the flags, and the plan's lr and schedule fields (see :class:`TrainPlan`).

    ``fine_tune``: the run starts from ``--pretrained`` weights and the recipe is a from-scratch one.
    """
    t = cfg.training
    opt, optimizer = _optimizer(args, t.optimizer)
    scaling, why = _lr(args, replace(t, optimizer=optimizer), total_batch,
                       fine_tune and args.sched != "recipe" and not args.fit_schedule)
    phases, sched, sched_reason, warmup = _schedule(args, t, epochs, fine_tune)
    loss = t.loss if args.smoothing is None else replace(t.loss, label_smoothing=args.smoothing)
    training = replace(t, optimizer=replace(optimizer, lr=scaling.lr), lr_base_batch_size=total_batch,
                       lr_schedule=phases, loss=loss, batch_augments=_batch_augments(args, t))
    recipe = resize_recipe(replace(cfg, training=training), args.img_size or cfg.eval.input_size)
    hyper = dict(lr=scaling.lr, lr_scaling=why + scaling.message(), schedule=phases,
                 schedule_fitted=bool(args.fit_schedule), opt=opt, sched=sched, sched_reason=sched_reason,
                 warmup_epochs=warmup)
    return recipe, hyper


def describe_optimizer(opt: str, o: Optimizer, lr: float) -> str:
    extra = f", momentum {o.momentum:g}" if o.type == "sgd" else f", betas {tuple(o.betas or ())}"
    return f"optimizer: {opt} (timm create_optimizer_v2), lr {lr:g}, weight decay {o.weight_decay:g}{extra}"


def optional_float(value: Optional[float]) -> str:
    return "off" if value is None else f"{value:g}"
