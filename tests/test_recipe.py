"""Each recipe against mmpretrain/mmengine themselves: lr schedule, param groups, optimizer, loss, lr scaling."""
from __future__ import annotations

import warnings

import pytest
import torch
from conftest import requires_mmpretrain

import resnet_hub
from resnet_hub import load_config
from resnet_hub.train.recipe import (
    RecipeLRScheduler,
    build_loss,
    build_mixup,
    build_optimizer,
    lr_factor,
    scaled_lr,
)

pytestmark = [requires_mmpretrain, pytest.mark.mmpretrain]
# one config per distinct recipe
RECIPES = ["resnet18_8xb16_cifar10", "resnet50_8xb16_cifar100", "resnet50_8xb32_in1k", "resnet50_8xb32-fp16_in1k",
           "resnet50_8xb256-rsb-a1-600e_in1k", "resnet50_8xb256-rsb-a2-300e_in1k",
           "resnet50_8xb256-rsb-a3-100e_in1k", "resnet50_8xb8_cub",
           "resnetv1c50_8xb32_in1k"]  # v1c/v1d: pillow instead of cv2 crops


def test_recipes_cover_every_config():
    def key(name):
        t = load_config(name).training
        return (t.optimizer, t.lr_schedule, t.loss, t.batch_augments, t.sampler, t.drop_path_rate, t.precision,
                t.augmentation)

    assert {key(n) for n in resnet_hub.list_configs()} == {key(n) for n in RECIPES}


def _mmengine_lrs(name: str, iters_per_epoch: int, epochs: int) -> dict:
    """lr of every (epoch, iteration) as mmengine's runner drives the config's param schedulers."""
    import mmengine.optim  # noqa: F401  (registers the schedulers)
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS

    from resnet_hub.reference import load_mmpretrain_config

    cfg = load_mmpretrain_config(name)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim_wrapper.optimizer.lr)
    wrapper = OptimWrapper(optimizer)
    schedulers = []
    phases = cfg.param_scheduler
    for s in [phases] if isinstance(phases, dict) else phases:
        s = dict(s)
        per_iter = s.pop("convert_to_iter_based", False)
        cls = PARAM_SCHEDULERS.get(s.pop("type"))
        schedulers.append(cls.build_iter_from_epoch(wrapper, **s, epoch_length=iters_per_epoch) if per_iter
                          else cls(wrapper, **s))
    lrs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mmengine warns of scheduler.step() before optimizer.step()
        for epoch in range(epochs):
            for it in range(iters_per_epoch):
                lrs[epoch, it] = optimizer.param_groups[0]["lr"]
                for s in schedulers:  # ParamSchedulerHook.after_train_iter
                    if not s.by_epoch:
                        s.step()
            for s in schedulers:  # ParamSchedulerHook.after_train_epoch
                if s.by_epoch:
                    s.step()
    return lrs


@pytest.mark.parametrize("name", RECIPES)
def test_lr_schedule_equals_mmengine(name):
    cfg = load_config(name)
    ipe = 4
    epochs = min(cfg.training.epochs + 2, 160)  # past the end of short recipes; RSB's cosine in part
    reference = _mmengine_lrs(name, ipe, epochs)
    base = cfg.training.optimizer.lr
    for (epoch, it), lr in reference.items():
        assert lr_factor(cfg.training.lr_schedule, epoch, it, ipe, base) == pytest.approx(lr, rel=1e-9, abs=1e-15), \
            (epoch, it)
    # and through the scheduler on a real optimizer: every param group, driven per update
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = build_optimizer(model, cfg.training, base)
    scheduler = RecipeLRScheduler(optimizer, cfg.training.lr_schedule, ipe)
    for epoch, it in [(0, 0), (0, 3), (1, 2), (4, 3), (5, 0), (29, 3), (30, 0), (99, 3), (100, 0), (150, 1)]:
        if epoch < epochs:
            scheduler.step_update(epoch * ipe + it)
            assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
                [reference[epoch, it]] * len(optimizer.param_groups), rel=1e-9)


def _decay_by_shape(params_and_groups):
    return [(tuple(p.shape), wd) for p, wd in params_and_groups]


def _by_parameter(optimizer, model) -> list[tuple]:
    """(shape, weight_decay, lr) per parameter, in the model's parameter order."""
    groups = {id(p): (g["weight_decay"], g["lr"]) for g in optimizer.param_groups for p in g["params"]}
    assert len(groups) == len(list(model.parameters()))
    return [(tuple(p.shape), *groups[id(p)]) for p in model.parameters()]


@pytest.mark.parametrize("name", ["resnet50_8xb256-rsb-a1-600e_in1k", "resnet50_8xb32_in1k", "resnet50_8xb8_cub",
                                  "resnet18_8xb16_cifar10"])
def test_param_groups_equal_mmengine(name):
    """mmpretrain's bias_decay_mult=0 + norm_decay_mult=0 is timm's no decay on 1-D parameters, on the real
    model: every parameter gets the same weight decay and lr from both (the two ResNets register their
    modules in the same order)."""
    import timm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from resnet_hub.reference import build_mmpretrain_model, load_mmpretrain_config

    init_default_scope("mmpretrain")
    mm_model = build_mmpretrain_model(name)
    mm_opt = build_optim_wrapper(mm_model, load_mmpretrain_config(name).optim_wrapper).optimizer
    cfg = load_config(name)
    model = timm.create_model(name)
    ours = build_optimizer(model, cfg.training, cfg.training.optimizer.lr)
    assert type(ours).__name__ == type(mm_opt).__name__  # SGD or Lamb
    theirs = _by_parameter(mm_opt, mm_model)
    assert _by_parameter(ours, model) == theirs
    no_decay = [shape for shape, wd, _ in theirs if wd == 0]
    if cfg.training.optimizer.no_weight_decay:
        assert no_decay and all(len(shape) == 1 for shape in no_decay)
    else:
        assert not no_decay
    for key in ("momentum", "nesterov", "betas", "eps", "max_grad_norm"):
        if key in mm_opt.defaults:
            assert ours.defaults[key] == pytest.approx(mm_opt.defaults[key]), key


# Measured on an AMD EPYC (Zen 4, AVX-512), 30 seeds x 1 and 2 threads, greatest |timm - mmpretrain| after 3 steps:
# float64 2.2e-16 (3.5e-15 relative): the same algorithm; float32 1.5e-7, rounding that LAMB's normalised steps carry.
LAMB_TOLERANCE = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=1e-5, atol=1e-6)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_lamb_step_equals_mmpretrain(dtype):
    """timm's Lamb as the recipe builds it == mmpretrain's, 3 clipped steps with and without weight decay.

    float64 is the default dtype while it runs: mmpretrain sums the global gradient norm into a
    ``torch.zeros(1)``, float32 otherwise. The first Linear has no bias, as a ResNet conv before its
    BatchNorm: such a bias's gradient is 0 up to rounding, which LAMB's m / sqrt(v) turns into steps of
    pure rounding noise (measured: 4e-5 apart in float32, 6e-13 in float64).
    """
    from mmpretrain.engine.optimizers import Lamb as MMLamb

    cfg = load_config("resnet50_8xb256-rsb-a1-600e_in1k")
    o = cfg.training.optimizer
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        a, b = (torch.nn.Sequential(torch.nn.Linear(8, 6, bias=False), torch.nn.BatchNorm1d(6), torch.nn.ReLU(),
                                    torch.nn.Linear(6, 3)) for _ in range(2))
        b.load_state_dict(a.state_dict())
        ours = build_optimizer(a, cfg.training, 0.01)
        decay = [p for p in b.parameters() if p.ndim > 1]
        no_decay = [p for p in b.parameters() if p.ndim <= 1]
        theirs = MMLamb([dict(params=decay), dict(params=no_decay, weight_decay=0.0)], lr=0.01,
                        weight_decay=o.weight_decay, betas=o.betas, eps=o.eps, max_grad_norm=o.max_grad_norm)
        x = torch.randn(16, 8)
        start = [p.detach().clone() for p in a.parameters()]
        for _ in range(3):
            for model, opt in ((a, ours), (b, theirs)):
                opt.zero_grad()
                (model(x) ** 2).mean().mul(40).backward()  # grads large enough for max_grad_norm to clip
                opt.step()
    finally:
        torch.set_default_dtype(default)
    for pa, pb, p0 in zip(a.parameters(), b.parameters(), start, strict=True):
        assert pa.dtype == dtype and (pa - p0).abs().max() > 1e-3  # every parameter moved
        torch.testing.assert_close(pa, pb, **LAMB_TOLERANCE[dtype])


def test_losses_equal_mmpretrain():
    """Default float32 tolerance; measured 0 apart (AMD EPYC Zen 4, 1 and 2 threads): both sides run the same
    torch loss kernels on the same float32 tensors. Not in float64: mmpretrain casts labels with
    ``label.float()``, so its smoothed targets are float32 whatever the logits."""
    from mmpretrain.models.losses import CrossEntropyLoss, LabelSmoothLoss

    torch.manual_seed(0)
    logits, target = torch.randn(8, 10), torch.randint(0, 10, (8,))
    rsb = load_config("resnet50_8xb256-rsb-a1-600e_in1k").training
    mm_bce = LabelSmoothLoss(label_smooth_val=0.1, mode="original", use_sigmoid=True)
    torch.testing.assert_close(build_loss(rsb, mixup=False)(logits, target), mm_bce(logits, target))
    # after Mixup: timm's targets are mixed and smoothed, mmpretrain smooths the mixed one-hot; same numbers
    mixup = build_mixup(rsb, 10)
    assert (mixup.mixup_alpha, mixup.cutmix_alpha, mixup.switch_prob, mixup.mix_prob) == (0.2, 1.0, 0.5, 1.0)
    from timm.data.mixup import mixup_target

    lam = 0.7
    soft = lam * torch.nn.functional.one_hot(target, 10).float() + (1 - lam) * torch.nn.functional.one_hot(
        target.flip(0), 10).float()
    torch.testing.assert_close(build_loss(rsb, mixup=True)(logits, mixup_target(target, 10, lam, 0.1)),
                               mm_bce(logits, soft))
    ce = load_config("resnet50_8xb32_in1k").training
    torch.testing.assert_close(build_loss(ce, mixup=False)(logits, target), CrossEntropyLoss()(logits, target))


def test_lr_scaling_is_mmpretrains_linear_rule():
    t = load_config("resnet50_8xb32_in1k").training  # lr 0.1 at 256
    assert scaled_lr(t, 256).lr == pytest.approx(0.1) and not scaled_lr(t, 256).scaled
    s = scaled_lr(t, 64)
    assert s.scaled and s.lr == pytest.approx(0.025) and "0.1 x 64/256 = 0.025" in s.message()
    assert scaled_lr(t, 64, lr=0.3).lr == 0.3 and scaled_lr(t, 64, scale=False).lr == pytest.approx(0.1)
