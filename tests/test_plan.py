"""resnet_hub.train.plan: the run's settings from the flags, the recipe and the devices, in-process."""
from __future__ import annotations

import argparse
import copy

import pytest

from resnet_hub import load_config
from resnet_hub.train import trainer
from resnet_hub.train.plan import TrainPlan, resolve_plan

CIFAR = "resnet18_8xb16_cifar10"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    trainer.add_arguments(parser)
    return parser.parse_args(["--config", CIFAR, *argv])


def _plan(*argv: str, config: str = CIFAR, world_size: int = 1, device_type: str = "cpu", **kw) -> TrainPlan:
    args = _args(*argv)
    before = copy.deepcopy(vars(args))
    plan = resolve_plan(args, load_config(config), world_size=world_size, device_type=device_type, **kw)
    assert vars(args) == before  # the plan never writes into args
    return plan


def test_recipe_defaults_on_one_cpu():
    cfg = load_config(CIFAR)
    plan = _plan()
    t = cfg.training
    assert (plan.batch_size, plan.grad_accum, plan.world_size) == (t.batch_size_per_device, 1, 1)
    assert plan.total_batch == t.batch_size_per_device
    assert plan.epochs == plan.recipe_epochs == t.epochs == 200
    assert plan.schedule == tuple(t.lr_schedule) and not plan.schedule_fitted
    assert plan.precision == "fp32" and plan.mixed_precision == "no"
    assert not any(plan.fast_paths()[k] for k in ("channels_last", "compile", "fused", "pin_memory"))
    assert plan.num_classes == 10 and plan.num_classes_from == f"config {CIFAR}"
    assert plan.eval_batch_size == 2 * plan.batch_size and plan.init_checkpoint is None and not plan.sync_bn
    assert "precision fp32" in plan.summary(12) and f"{CIFAR}" in repr(plan)


def test_lr_scales_linearly_with_the_total_batch():
    # the recipe: lr 0.1 at a total batch of 128 (8 x 16); 4 processes x 8 x accumulation 2 = 64
    plan = _plan("--batch-size", "8", "--grad-accum", "2", world_size=4)
    assert plan.total_batch == 64
    assert plan.lr == pytest.approx(0.1 * 64 / 128)
    assert "64" in plan.lr_scaling and "128" in plan.lr_scaling
    assert _plan("--batch-size", "16", world_size=8).lr == 0.1  # the recipe's own batch: unscaled
    assert _plan("--batch-size", "8", "--no-scale-lr").lr == 0.1


def test_lr_flag_is_used_as_given():
    plan = _plan("--batch-size", "8", "--lr", "0.03", world_size=4)
    assert plan.lr == 0.03 and plan.total_batch == 32


@pytest.mark.parametrize("device_type, bf16, want", [("cpu", False, "fp32"), ("cpu", True, "fp32"),
                                                       ("cuda", False, "fp16"), ("cuda", True, "fp16")])
def test_precision_auto_for_the_fp16_recipe(device_type, bf16, want):
    plan = _plan(config="resnet50_8xb32-fp16_in1k", device_type=device_type, bf16_supported=bf16)
    assert plan.precision == want
    assert plan.static_loss_scale == (512.0 if want == "fp16" else None)
    assert plan.notes == ()


def test_precision_words():
    assert _plan(device_type="cuda", bf16_supported=True).precision == "bf16"
    assert _plan(device_type="cuda").precision == "fp32"
    assert _plan("--precision", "no").precision == "fp32"  # Accelerate's word, as accelerate launch takes it
    assert _plan("--precision", "bf16").mixed_precision == "bf16"
    fp16_on_cpu = _plan("--precision", "fp16")
    assert fp16_on_cpu.precision == "fp16" and "fp16 autocast needs a GPU" in fp16_on_cpu.notes[0]


def test_fit_schedule_stretches_the_recipe_to_the_epochs():
    plan = _plan("--epochs", "8", "--fit-schedule")
    (phase,) = plan.schedule  # the CIFAR recipe: multi-step at 100 and 150 of 200 epochs
    assert plan.schedule_fitted and plan.epochs == 8 and plan.recipe_epochs == 200
    assert list(phase.milestones) == [4, 6] and phase.end == 8
    unfitted = _plan("--epochs", "8")
    assert list(unfitted.schedule[0].milestones) == [100, 150] and unfitted.epochs == 8


def test_fast_paths_default_on_for_cuda_and_follow_the_flags():
    cuda = _plan(device_type="cuda")
    assert all(cuda.fast_paths().values())
    assert not _plan("--no-compile", device_type="cuda").compile
    cpu = _plan("--channels-last", "--fused-optimizer", "--pin-memory")
    assert cpu.channels_last and not cpu.fused and not cpu.pin_memory  # fused and pinned memory are CUDA-only


def test_sync_bn_init_checkpoint_and_classes():
    cub = load_config("resnet50_8xb8_cub")
    plan = _plan("--num-classes", "2", config=cub.name, world_size=2, device_type="cuda")
    assert plan.init_checkpoint == cub.training.init_from.url and plan.num_classes == 2
    assert plan.num_classes_from == "--num-classes"
    assert _plan("--init-checkpoint", "none", config=cub.name).init_checkpoint is None
    assert _plan("--sync-bn", world_size=2, device_type="cuda").sync_bn
    on_cpu = _plan("--sync-bn", world_size=2)
    assert not on_cpu.sync_bn and "SyncBN needs CUDA" in on_cpu.notes[0]
    assert not _plan("--sync-bn", device_type="cuda").sync_bn  # one process: nothing to sync


def test_data_placement():
    assert _plan(device_type="cuda").data_on_device  # CIFAR-size, a recipe the device path implements
    assert not _plan().data_on_device and not _plan("--data-on-device", "off", device_type="cuda").data_on_device
    assert _plan("--data-on-device", "on").data_on_device
    with pytest.raises(ValueError, match="--data-on-device on: a streaming dataset"):
        _plan("--data-on-device", "on", streaming=True)
    assert not _plan(config="resnet50_8xb32_in1k", device_type="cuda").data_on_device  # 224 px


def test_model_kwargs_are_parsed_once():
    plan = _plan("--model-kwargs", '{"channels": [8, 16, 32, 64], "stem_width": 8}')
    assert plan.model_kwargs == {"channels": (8, 16, 32, 64), "stem_width": 8}
    with pytest.raises(ValueError, match="JSON object"):
        _plan("--model-kwargs", "[1]")
