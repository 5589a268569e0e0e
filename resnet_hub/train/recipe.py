"""A config's training recipe, built from timm's own pieces.

``cfg.training`` says what mmpretrain did; this module turns it into timm/torch objects:
- optimizer: ``timm.optim.create_optimizer_v2`` (SGD, SGD with Nesterov, ``Lamb``); mmpretrain's
  ``bias_decay_mult=0, norm_decay_mult=0`` is timm's ``filter_bias_and_bn`` (no decay on 1-D
  parameters: every norm weight and bias and the classifier bias of a ResNet);
- lr: :class:`RecipeLRScheduler` on timm's ``Scheduler`` base, mmengine's closed forms of
  ``LinearLR`` (per iteration), ``CosineAnnealingLR`` and ``MultiStepLR`` (per epoch);
- loss: ``CrossEntropyLoss`` (label smoothing), timm's ``BinaryCrossEntropy`` for
  ``use_sigmoid`` and ``SoftTargetCrossEntropy`` after timm's ``Mixup`` (Mixup/CutMix picked
  with probability 0.5 each, as mmpretrain's ``RandomBatchAugment`` does);
- eval transform: timm's ``resolve_data_config`` + ``create_transform``, uint8 out (the train
  augmentation is :mod:`resnet_hub.train.augment`);
- lr scaling: mmengine's ``auto_scale_lr``, linear in the total batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from timm.scheduler.scheduler import Scheduler

__all__ = [
    "scaled_lr", "LrScaling", "fit_schedule", "build_optimizer", "RecipeLRScheduler", "lr_factor", "build_mixup",
    "build_loss", "eval_transform", "OPTIMIZER_NAMES",
]


# ----------------------------------------------------------------------------- lr scaling


@dataclass(frozen=True)
class LrScaling:
    lr: float
    recipe_lr: float
    total_batch: int
    base_batch: int
    scaled: bool

    def message(self) -> str:
        if not self.scaled:
            return f"lr {self.lr:g} (total batch {self.total_batch}, recipe's base batch {self.base_batch}, not scaled)"
        return (f"lr {self.recipe_lr:g} x {self.total_batch}/{self.base_batch} = {self.lr:g} (mmpretrain's linear "
                f"auto_scale_lr: total batch {self.total_batch} vs the recipe's base batch {self.base_batch})")


def scaled_lr(training, total_batch: int, lr: Optional[float] = None, scale: bool = True) -> LrScaling:
    """The base lr for ``total_batch`` images per step (per-device x processes x accumulation).

    mmengine's ``Runner.scale_lr``: ``lr * total_batch / auto_scale_lr.base_batch_size``; the
    scheduler's ``eta_min`` is absolute and is not scaled. An explicit ``lr`` is used as given.
    """
    base = training.lr_base_batch_size
    if lr is not None:
        return LrScaling(lr, training.optimizer.lr, total_batch, base, False)
    if not scale or total_batch == base:
        return LrScaling(training.optimizer.lr, training.optimizer.lr, total_batch, base, False)
    return LrScaling(training.optimizer.lr * total_batch / base, training.optimizer.lr, total_batch, base, True)


# ----------------------------------------------------------------------------- optimizer

OPTIMIZER_NAMES = {("sgd", False): "momentum", ("sgd", True): "sgd", ("lamb", None): "lamb", ("adamw", None): "adamw"}


def build_optimizer(model: torch.nn.Module, training, lr: float, *, fused: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimizer on ``model`` through ``timm.optim.create_optimizer_v2``."""
    from timm.optim import create_optimizer_v2

    o = training.optimizer
    no_decay = set(o.no_weight_decay)
    if no_decay not in (set(), {"bias", "norm"}):
        raise ValueError(f"no_weight_decay {sorted(no_decay)}: only [] or [bias, norm] (timm's 1-D rule) is supported")
    kwargs: dict = {}
    if o.type == "sgd":
        name = OPTIMIZER_NAMES[("sgd", bool(o.nesterov))]
        kwargs["momentum"] = o.momentum or 0.0
        if fused:
            kwargs["fused"] = True
    elif o.type == "lamb":
        name = "lamb"
        kwargs.update(betas=tuple(o.betas), eps=o.eps, max_grad_norm=o.max_grad_norm)
    elif o.type == "adamw":
        name = "adamw"
        kwargs.update(betas=tuple(o.betas), eps=o.eps)
        if fused:
            kwargs["fused"] = True
    else:  # the schema allows no other
        raise ValueError(f"unknown optimizer {o.type!r}; choose sgd, adamw or lamb")
    return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=o.weight_decay,
                               filter_bias_and_bn=bool(no_decay), **kwargs)


# ----------------------------------------------------------------------------- lr schedule


def lr_factor(phases, epoch: int, iteration: int, iters_per_epoch: int, base: float = 1.0) -> float:
    """lr at (``epoch``, ``iteration`` within it) of mmengine's chained schedulers, closed form.

    ``per_iteration`` phases (mmengine's ``convert_to_iter_based``) move every step, others at
    epoch boundaries. Phases chain: each starts from the value the earlier ones left.
    """
    lr = base
    t = epoch * iters_per_epoch + iteration
    for p in phases:
        if p.per_iteration:
            begin, end, now = round(p.begin * iters_per_epoch), round(p.end * iters_per_epoch), t
        else:
            begin, end, now = p.begin, p.end, epoch
        if now < begin:
            continue
        k = min(now, end - 1) - begin  # a finished phase holds its last value
        if p.type == "linear":
            total = end - begin - 1
            lr *= p.start_factor + (p.end_factor - p.start_factor) * (min(k, total) / total if total > 0 else 1.0)
        elif p.type == "cosine":
            t_max = p.t_max if not p.per_iteration else p.t_max * iters_per_epoch
            lr = p.eta_min + (lr - p.eta_min) * (1 + math.cos(math.pi * k / t_max)) / 2
        elif p.type == "multistep":
            lr *= p.gamma ** sum(1 for m in p.milestones if epoch >= m)
        else:
            raise ValueError(f"unknown lr phase {p.type!r}; choose linear, cosine or multistep")
    return lr


def fit_schedule(phases, recipe_epochs: int, epochs: int) -> tuple:
    """The recipe's phases stretched or compressed from ``recipe_epochs`` to ``epochs``.

    Per-epoch boundaries, milestones and cosine lengths round to whole epochs (a phase keeps at
    least one); per-iteration phases (warmup) keep fractional epochs and so stay smooth.
    """
    from dataclasses import replace

    f = epochs / recipe_epochs

    def at(x, whole):
        return max(1, round(x * f)) if whole and x else (x * f if x else x)

    out = []
    for p in phases:
        whole = not p.per_iteration
        begin, end = (round(p.begin * f), max(round(p.begin * f) + 1, round(p.end * f))) if whole \
            else (p.begin * f, p.end * f)
        out.append(replace(p, begin=begin, end=end,
                           t_max=at(p.t_max, whole) if p.t_max is not None else None,
                           milestones=tuple(at(m, True) for m in p.milestones) if p.milestones else p.milestones))
    return tuple(out)


class RecipeLRScheduler(Scheduler):
    """The recipe's lr schedule on timm's ``Scheduler``, driven per optimizer update.

    Call ``step_update(num_updates)`` before each update (timm's convention). The value is a pure
    function of the update count, so a resumed run needs no scheduler state beyond it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, phases, iters_per_epoch: int):
        self.phases, self.iters_per_epoch = tuple(phases), iters_per_epoch
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=False, initialize=True)

    def _get_lr(self, t: int) -> list[float]:
        epoch, iteration = divmod(t, self.iters_per_epoch)
        return [lr_factor(self.phases, epoch, iteration, self.iters_per_epoch, base) for base in self.base_values]


# ----------------------------------------------------------------------------- loss and batch augments


def build_mixup(training, num_classes: int):
    """timm's ``Mixup`` for the recipe's batch augments (``None`` when it has none)."""
    if not training.batch_augments:
        return None
    from timm.data import Mixup

    alphas = {a.type: a.alpha for a in training.batch_augments}
    return Mixup(mixup_alpha=alphas.get("mixup", 0.0), cutmix_alpha=alphas.get("cutmix", 0.0), prob=1.0,
                 switch_prob=0.5, mode="batch", correct_lam=True, label_smoothing=training.loss.label_smoothing,
                 num_classes=num_classes)


def build_loss(training, mixup: bool) -> torch.nn.Module:
    """The training loss; with ``mixup`` targets arrive dense and already smoothed by ``Mixup``."""
    loss = training.loss
    if loss.smoothing_mode not in (None, "original"):
        raise ValueError(f"label smoothing mode {loss.smoothing_mode!r}: only 'original' is supported")
    if loss.type == "bce":
        from timm.loss import BinaryCrossEntropy

        return BinaryCrossEntropy(smoothing=0.0 if mixup else loss.label_smoothing)
    if mixup:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()
    return torch.nn.CrossEntropyLoss(label_smoothing=loss.label_smoothing)


# ----------------------------------------------------------------------------- transforms


def eval_transform(model: torch.nn.Module):
    """The config's test pipeline (timm's ``resolve_data_config`` + ``create_transform``), uint8 out."""
    from timm.data import MaybePILToTensor, create_transform, resolve_data_config

    data_cfg = resolve_data_config({}, model=model)
    transform = create_transform(**data_cfg, is_training=False, use_prefetcher=True)
    transform.transforms[-1] = MaybePILToTensor()  # uint8 CHW tensor instead of timm's numpy
    return transform
