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


# ----------------------------------------------------------------------------- fine-tuning (issue 18)

IN1K = "resnet18_8xb32_in1k"


def test_fine_tune_default_is_the_zoos_fine_tune_recipe_not_the_squeezed_one():
    from resnet_hub.train.recipe import lr_factor

    plan = _plan("--pretrained", f"hub:{IN1K}", "--epochs", "2", "--batch-size", "8", "--num-classes", "4",
                 config=IN1K)
    assert plan.pretrained.kind == "hub" and plan.pretrained.base_model.endswith(f"/{IN1K}")
    assert plan.sched == "cosine" and "fine-tune default" in plan.sched_reason
    assert plan.lr == pytest.approx(0.01 * 8 / 64) and "fine-tune default" in plan.lr_scaling
    warmup, cosine = plan.schedule
    assert warmup.type == "linear" and warmup.per_iteration and warmup.end == pytest.approx(0.1)
    assert cosine.type == "cosine" and cosine.per_iteration and cosine.end == 2
    ipe = 100
    lrs = [lr_factor(plan.schedule, e, i, ipe) for e in range(2) for i in range(ipe)]
    assert lrs[0] == pytest.approx(0.01) and max(lrs) == pytest.approx(1.0, abs=0.02)
    assert lrs[ipe] > 0.4  # the squeezed from-scratch recipe is at 0.01 after epoch 1 ([1, 1, 2] milestones)
    after = lrs[ipe // 10:]  # warmup over, the cosine only decreases, to near 0
    assert all(b <= a + 1e-12 for a, b in zip(after[:-1], after[1:], strict=True)) and lrs[-1] < 0.01
    assert plan.recipe.training.lr_schedule == plan.schedule
    squeezed = _plan("--pretrained", f"hub:{IN1K}", "--epochs", "2", "--fit-schedule", config=IN1K)
    assert squeezed.sched == "recipe" and squeezed.schedule_fitted and "fine-tune" not in squeezed.lr_scaling
    assert _plan("--pretrained", f"hub:{IN1K}", "--sched", "recipe", config=IN1K).schedule == \
        tuple(load_config(IN1K).training.lr_schedule)


def test_from_scratch_keeps_the_recipe_and_cub_its_own_fine_tune_recipe():
    assert _plan("--epochs", "8").sched == "recipe" and _plan("--epochs", "8").pretrained is None
    cub = load_config("resnet50_8xb8_cub")  # its recipe starts from init_from and is a fine-tune recipe
    plan = _plan(config=cub.name)
    assert plan.sched == "recipe" and plan.schedule == tuple(cub.training.lr_schedule)
    assert plan.pretrained.kind == "mmpretrain" and plan.pretrained.prefix == "backbone"


def test_schedules_in_timms_words():
    cos = _plan("--sched", "cosine", "--warmup-epochs", "2", "--epochs", "10", "--min-lr", "1e-5")
    assert [p.type for p in cos.schedule] == ["linear", "cosine"] and cos.schedule[1].eta_min == 1e-5
    assert cos.warmup_epochs == 2 and cos.lr == pytest.approx(0.1 * 16 / 128)  # no pretrained: recipe's lr
    step = _plan("--sched", "step", "--decay-epochs", "3", "--epochs", "10", "--decay-rate", "0.5")
    assert step.schedule[-1].milestones == (3, 6, 9) and step.schedule[-1].gamma == 0.5
    multi = _plan("--sched", "multistep", "--decay-milestones", "4", "7", "--epochs", "10")
    assert multi.schedule[-1].milestones == (4, 7)
    with pytest.raises(ValueError, match="--warmup-epochs goes with"):
        _plan("--warmup-epochs", "1")
    with pytest.raises(ValueError, match="--fit-schedule stretches"):
        _plan("--sched", "cosine", "--fit-schedule")


def test_optimizers_in_timms_words():
    from resnet_hub.train import trainer
    from resnet_hub.train.recipe import build_optimizer

    assert _plan().opt == "momentum" and not _plan().recipe.training.optimizer.nesterov
    nesterov = _plan("--opt", "sgd", "--momentum", "0.8", "--weight-decay", "0.001")
    o = nesterov.recipe.training.optimizer
    assert nesterov.opt == "sgd" and o.nesterov and o.momentum == 0.8 and o.weight_decay == 0.001
    with pytest.raises(ValueError, match="--opt adamw: give --lr"):
        _plan("--opt", "adamw")
    with pytest.raises(ValueError, match="--momentum is for SGD"):
        _plan("--opt", "adamw", "--lr", "1e-3", "--momentum", "0.9")
    adamw = _plan("--opt", "adamw", "--lr", "1e-3", "--weight-decay", "0.05")
    model = trainer.create_model(adamw.recipe, num_classes=10)
    opt = build_optimizer(model, adamw.recipe.training, adamw.lr)
    assert type(opt).__name__ == "AdamW" and opt.param_groups[0]["lr"] == 1e-3
    assert opt.param_groups[0]["weight_decay"] == 0.05 and adamw.settings()["momentum"] is None
    lamb = _plan("--opt", "lamb", "--lr", "5e-3")
    assert type(build_optimizer(model, lamb.recipe.training, lamb.lr)).__name__ == "Lamb"


def test_loss_and_batch_augment_flags():
    plan = _plan("--smoothing", "0.1", "--mixup", "0.2", "--clip-grad", "1.5", "--model-ema")
    t = plan.recipe.training
    assert t.loss.label_smoothing == 0.1 and {(a.type, a.alpha) for a in t.batch_augments} == {("mixup", 0.2)}
    assert plan.clip_grad == 1.5 and plan.model_ema and plan.model_ema_decay == 0.9998
    rsb = load_config("resnet50_8xb256-rsb-a1-600e_in1k")
    off = _plan("--cutmix", "0", config=rsb.name, **{})
    assert [a.type for a in off.recipe.training.batch_augments] == ["mixup"]
    assert _plan(config=rsb.name).recipe.training.batch_augments == rsb.training.batch_augments


def test_img_size_sets_train_crop_and_eval_together():
    in1k = _plan("--img-size", "64", config=IN1K)
    e, ops = in1k.recipe.eval, in1k.recipe.training.augmentation
    assert in1k.img_size == e.input_size == e.center_crop == 64
    assert e.resize.size == round(256 * 64 / 224)  # the crop ratio (crop_pct 0.875) is kept
    assert ops[0].type == "random_resized_crop" and ops[0].size == 64
    cifar = _plan("--img-size", "128")
    assert cifar.recipe.eval.input_size == 128 and cifar.recipe.training.augmentation[0].size == 128
    plain = _plan()  # no flag: the config's input and crops as they are
    assert plain.img_size == 32 and plain.recipe.eval == load_config(CIFAR).eval
    assert plain.recipe.training.augmentation == load_config(CIFAR).training.augmentation


def test_settings_are_json_and_name_the_run(monkeypatch, tmp_path):
    import json

    monkeypatch.setenv("RESNET_HUB_NAMESPACE", "me")
    plan = _plan("--output-dir", str(tmp_path / "shapes_r18"), "--opt", "adamw", "--lr", "1e-3", "--mixup", "0.1")
    settings = json.loads(json.dumps(plan.settings()))
    for key in ("opt", "lr", "sched", "epochs", "warmup_epochs", "smoothing", "mixup", "cutmix", "img_size",
                "model_ema", "total_batch", "clip_grad", "weight_decay", "lr_schedule"):
        assert key in settings, key
    assert settings["opt"] == "adamw" and settings["mixup"] == 0.1
    assert plan.model_name == "shapes_r18" and plan.repo_id == "me/shapes_r18"
    named = _plan("--model-name", "birds", "--repo-id", "org/birds-r18", "--dataset-name", "org/birds")
    assert (named.model_name, named.repo_id, named.dataset_name) == ("birds", "org/birds-r18", "org/birds")
    assert _plan("--model-name", "birds").repo_id == "me/birds"
    with pytest.raises(ValueError, match="not a valid Hub model name"):
        _plan("--model-name", "bad name!")
    assert plan.run.output_dir == str(tmp_path / "shapes_r18") and not plan.run.resume


def test_pretrained_forms(tmp_path):
    from resnet_hub.train.pretrained import parse_pretrained

    bundle = tmp_path / "my_bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text("{}")
    (bundle / "model.safetensors").write_bytes(b"")
    pth = tmp_path / "mine.pth"
    pth.write_bytes(b"")
    forms = {f"hub:{IN1K}@v1": ("hub", f"hub:{IN1K}@v1"), "hf-hub:org/repo": ("hf-hub", "hf-hub:org/repo"),
             f"local-dir:{bundle}": ("bundle", "local folder my_bundle"),
             str(bundle): ("bundle", "local folder my_bundle"),
             str(bundle / "model.safetensors"): ("safetensors", "local file model.safetensors"),
             str(pth): ("mmpretrain", "mmpretrain checkpoint mine.pth")}
    for text, (kind, description) in forms.items():
        source = parse_pretrained(text)
        assert (source.kind, source.description) == (kind, description)
        assert str(tmp_path) not in source.description
    assert parse_pretrained("hf-hub:org/repo").base_model == "org/repo"
    assert parse_pretrained(f"hub:{IN1K}@v1").revision == "v1"
    assert parse_pretrained("none") is None and parse_pretrained(None) is None
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        parse_pretrained(str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="unknown config"):
        parse_pretrained("hub:resnet18_nope")
    (bundle / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        parse_pretrained(str(bundle))
    plan = _plan("--init-checkpoint", str(pth), "--sha256", "ab" * 32)  # the old flag's name still works
    assert plan.pretrained.sha256 == "ab" * 32 and plan.init_checkpoint == str(pth)
    assert not _plan("--pretrained", str(pth), "--no-verify").pretrained.verify
