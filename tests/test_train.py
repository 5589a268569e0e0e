"""scripts/train.py end to end: processes, resume, crashes, outputs, bad input.

Mechanics run a narrow ResNet-18 (train_helpers.TINY) on 48 digits so each run takes seconds; the
accuracy test runs the real config's recipe on all the digits.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import numerics_threads
from train_helpers import CONFIG, TINY_RUN, checkpoints, metrics, parameters, script, start, weights

pytestmark = pytest.mark.slow


def _ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory) -> tuple[Path, str]:
    """2 epochs x 12 steps, 1 process: the reference every interrupted run must equal, and what it printed."""
    out = tmp_path_factory.mktemp("uninterrupted")
    result = _ok(script("train", [*TINY_RUN, "--epochs", "2", "--output-dir", str(out)]))
    return out, result.stdout


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_run) -> Path:
    return uninterrupted_run[0]


def test_run_outputs(uninterrupted, uninterrupted_run):
    first = uninterrupted_run[1].splitlines()[0]
    assert first.startswith(f"{CONFIG} on digits (48 train / 24 eval images, 10 classes): 2 epochs x 12 steps of 4 "
                            "x 1 process(es) x 1 accumulation = 4 images; precision fp32; channels_last off"), first
    assert json.loads((uninterrupted / "run.json").read_text())["precision"] == "fp32"  # not Accelerate's "no"
    m = metrics(uninterrupted)
    assert m["finished"] and [e["epoch"] for e in m["epochs"]] == [1, 2]
    for e in m["epochs"]:
        assert set(e) >= {"loss", "lr", "top1", "top5", "images_per_s"} and 0 <= e["top1"] <= e["top5"] <= 100
        assert e["eval_images"] == 24
    # lr scaled from the recipe's 0.1 at batch 128 to a total batch of 4
    assert m["epochs"][0]["lr"] == pytest.approx(0.1 * 4 / 128)
    assert (uninterrupted / "curves.png").stat().st_size > 1000
    assert [p.name for p in checkpoints(uninterrupted)] == ["step-000000012", "step-000000024"]
    assert not list((uninterrupted / "checkpoints").glob(".tmp-*"))


def test_final_bundle_loads_with_local_dir_and_matches_best_epoch(uninterrupted):
    import timm

    import resnet_hub  # noqa: F401

    m = metrics(uninterrupted)
    model = timm.create_model(f"local-dir:{uninterrupted / 'final'}").eval()
    assert model.num_classes == 10 and model.pretrained_cfg["label_names"] == [str(i) for i in range(10)]
    best = max(m["epochs"], key=lambda e: e["top1"])
    # the eval script on the bundle reproduces the trainer's top-1 of the best epoch
    result = _ok(script("eval", ["--model", f"local-dir:{uninterrupted / 'final'}", "--dataset", "digits",
                                 "--limit", "24", "--workers", "0", "--no-progress"]))
    assert json.loads(result.stdout)["top1"] == pytest.approx(best["top1"])


def test_two_processes_equal_one_process_with_accumulation(tmp_path):
    """gloo, 2 processes x batch 4 == 1 process x batch 4 x accumulation 2: same micro-batches."""
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(script("train", [*TINY_RUN, "--epochs", "2", "--grad-accum", "2", "--output-dir", str(one)]))
    _ok(script("train", [*TINY_RUN, "--epochs", "2", "--output-dir", str(two)], processes=2))
    a, b = parameters(checkpoints(one)[-1]), parameters(checkpoints(two)[-1])
    assert checkpoints(one)[-1].name == checkpoints(two)[-1].name == "step-000000012"
    initial = parameters(checkpoints(one)[0])
    assert any(not torch.equal(initial[k], a[k]) for k in a)  # training moved the weights
    for k in a:  # measured 0 apart (AMD EPYC Zen 4, OMP_NUM_THREADS 1 and 2): gloo's sum of 2 equals accumulation
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert metrics(two)["epochs"][-1]["eval_images"] == 24  # gather_for_metrics: no duplicates


def _interrupt(out: Path, sig: int) -> int:
    """Start a run, send ``sig`` once its first step checkpoint exists, return its exit code."""
    proc = start("train", [*TINY_RUN, "--epochs", "2", "--checkpoint-steps", "5", "--output-dir", str(out)])
    deadline = time.monotonic() + 300
    while not checkpoints(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.communicate(timeout=300)
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_resume_after_kill_mid_epoch_equals_uninterrupted(tmp_path, uninterrupted, sig):
    out = tmp_path / "run"
    code = _interrupt(out, sig)
    assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    assert not metrics(out)["finished"] if (out / "metrics.json").exists() else True
    last = json.loads((checkpoints(out)[-1] / "trainer_state.json").read_text())
    assert 5 <= last["global_step"] < 24
    _ok(script("train", [*TINY_RUN, "--epochs", "2", "--checkpoint-steps", "5", "--output-dir", str(out),
                         "--resume"]))
    final, reference = weights(checkpoints(out)[-1]), weights(checkpoints(uninterrupted)[-1])
    assert checkpoints(out)[-1].name == "step-000000024"
    for k in reference:  # parameters and BatchNorm statistics, bit for bit
        assert torch.equal(final[k], reference[k]), k
    assert [e["top1"] for e in metrics(out)["epochs"]] == [e["top1"] for e in metrics(uninterrupted)["epochs"]]
    assert [e["loss"] for e in metrics(out)["epochs"]] == pytest.approx(
        [e["loss"] for e in metrics(uninterrupted)["epochs"]], rel=1e-6)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, uninterrupted, monkeypatch):
    """A save that dies half-way (disk full) leaves the last complete checkpoint, which resumes."""
    import accelerate

    from resnet_hub import commands, train

    out = tmp_path / "run"
    real_save = accelerate.Accelerator.save_state
    calls = []

    def failing_save(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        if len(calls) == 2:
            Path(output_dir, "model.safetensors").write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(self, output_dir, **kwargs)

    argv = [*TINY_RUN, "--epochs", "2", "--output-dir", str(out)]
    threads = torch.get_num_threads()
    torch.set_num_threads(numerics_threads(1))  # as the subprocesses run (OMP_NUM_THREADS): same float sums
    try:
        monkeypatch.setattr(accelerate.Accelerator, "save_state", failing_save)
        with pytest.raises(OSError, match="No space left"):
            train.run(_parse(train, argv))
        assert [p.name for p in checkpoints(out)] == ["step-000000012"]
        monkeypatch.setattr(accelerate.Accelerator, "save_state", real_save)
        assert commands.main(train.add_arguments, train.run, "train", [*argv, "--resume"]) == 0
    finally:
        torch.set_num_threads(threads)
    final, reference = weights(checkpoints(out)[-1]), weights(checkpoints(uninterrupted)[-1])
    for k in reference:
        assert torch.equal(final[k], reference[k]), k


def _parse(module, argv):
    import argparse

    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def test_resume_skips_damaged_checkpoints_naming_each(tmp_path, uninterrupted, capsys):
    """Issue 22 case 5: --resume verifies the latest checkpoint against the sizes and sha256 it recorded and
    falls back to the newest intact one, saying which it skipped and why; with none intact, one line."""
    import shutil

    from resnet_hub import commands, train

    argv = [*TINY_RUN, "--epochs", "2", "--resume", "--output-dir"]
    broken = tmp_path / "broken"
    shutil.copytree(uninterrupted, broken)
    first, latest = checkpoints(broken)
    (latest / "random_states_0.pkl").unlink()
    state = first / "trainer_state.json"
    state.write_text(state.read_text()[:40])
    code = commands.main(train.add_arguments, train.run, "train", [*argv, str(broken)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 3, err  # two skipped, one error
    assert "error: --resume: no intact checkpoint in " in err and "step-000000024: missing random_states_0.pkl" in err
    assert "step-000000012: trainer_state.json is 40 bytes, " in err and "when it was saved (cut short" in err
    assert checkpoints(broken) == [first, latest]  # nothing deleted

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    first, latest = checkpoints(out)
    data = (latest / "model.safetensors").read_bytes()
    (latest / "model.safetensors").write_bytes(data[:len(data) // 2])
    result = _ok(script("train", [*argv, str(out)]))  # threads as the uninterrupted run's: bit-equal results
    assert f"--resume: skipped checkpoint step-000000024: model.safetensors is {len(data) // 2} bytes" in result.stderr
    assert "resumed from step-000000012: epoch 1, step 0/12" in result.stdout
    # epoch 2 trained again from the intact checkpoint: the uninterrupted run's weights, bit for bit
    want, got = weights(checkpoints(uninterrupted)[-1]), weights(checkpoints(out)[-1])
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_output_dir_of_another_run_is_refused(tmp_path, uninterrupted, capsys):
    import shutil

    from resnet_hub import commands, train

    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    before = sorted(p.name for p in out.rglob("*"))
    for extra, needle in ((["--seed", "4"], "different run"), ([], "--resume")):
        argv = [*TINY_RUN, "--epochs", "3", "--output-dir", str(out), *extra]
        assert commands.main(train.add_arguments, train.run, "train", argv) == 1
        assert needle in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert commands.main(train.add_arguments, train.run, "train",
                         [*TINY_RUN, "--output-dir", str(tmp_path / "other")]) == 1
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--config", "resnet18_8xb16_cifar1"], "unknown config"),
    (["--num-classes", "7"], "has 10 classes but --num-classes says 7"),
    (["--config", "resnet50_8xb32_in1k"], "has 10 classes but config resnet50_8xb32_in1k says 1000"),
    (["--label-column", "digit"], "no label column 'digit'"),
    (["--dataset", "/no/such/folder"], "not a folder"),
    (["--model-kwargs", "[1]"], "JSON object"),
    (["--batch-size", "100"], "too few for one step"),
    (["--config", "resnet50_8xb256-rsb-a3-100e_in1k", "--num-classes", "10", "--data-on-device", "on"],
     "--data-on-device on: "),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, needle):
    from resnet_hub import commands, train

    code = commands.main(train.add_arguments, train.run, "train",
                         [*TINY_RUN, "--output-dir", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert code == 1 and needle in err, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_unknown_config_from_the_script(tmp_path):
    result = script("train", ["--config", "resnet18_8xb16_cifar1", "--output-dir", str(tmp_path / "run")])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "unknown config 'resnet18_8xb16_cifar1'; closest: resnet18_8xb16_cifar10" in result.stderr


@pytest.mark.accuracy
@pytest.mark.slow
def test_digits_reach_90_percent(tmp_path):
    """An accuracy check, not an equality proof: the recipe still learns (a bug that slows learning without
    breaking a parity test fails here); the 90% bar is a judgement. The CIFAR-10 recipe (ResNet-18 blocks and
    stem, SGD + multi-step lr, random crop + flip) at 32x32 on the digits, its schedule fitted to 8 epochs
    (milestones 4 and 6). Narrow channels (8..64) keep it to about a minute on 2 cores; measured: see the
    README's Training section.
    """
    out = tmp_path / "digits"
    _ok(script("train", ["--config", CONFIG, "--dataset", "digits", "--model-kwargs",
                         json.dumps({"channels": [8, 16, 32, 64], "stem_width": 8}), "--batch-size", "16",
                         "--lr", "0.1", "--epochs", "8", "--fit-schedule", "--workers", "0",
                         "--tracker", "tensorboard", "--output-dir", str(out)]))
    m = metrics(out)
    assert m["best_top1"] >= 90.0, [e["top1"] for e in m["epochs"]]
    assert [e["lr"] for e in m["epochs"]] == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    assert list(out.rglob("events.out.tfevents.*"))  # tensorboard through init_trackers


def _step_after(steps: int, **fast) -> tuple[dict, list]:
    """Parameters and losses after ``steps`` optimizer steps of the tiny model on fixed digits."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from resnet_hub import load_config
    from resnet_hub.train import data as D
    from resnet_hub.train.trainer import build_train_step, create_model

    precision = fast.pop("precision", "no")
    AcceleratorState._reset_state(reset_partial_state=True)  # a new mixed precision in this process
    cfg = load_config(CONFIG)
    torch.manual_seed(0)
    model = create_model(cfg, channels=(8, 16, 32, 64), stem_width=8)
    accelerator = Accelerator(cpu=True, mixed_precision=precision)
    step = build_train_step(cfg, accelerator, model, lr=0.05, iters_per_epoch=10, num_classes=10, **fast)
    digits = D.digits_splits(32).train.select(range(16))
    images = D.LabeledImages(digits, lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1), "image", "label")
    batch = D.collate_images([images[i] for i in range(16)])
    losses = [float(step(batch["images"], batch["labels"])) for _ in range(steps)]
    plain = accelerator.unwrap_model(step.model)
    return {k: v.detach().clone() for k, v in plain.state_dict().items()}, losses


@pytest.fixture(scope="module")
def plain_path():
    return _step_after(3)


# measured (AMD EPYC Zen 4, 1 and 2 threads): losses 1.1e-5 / 2.1e-7 / 5.2e-4 apart (relative), parameters
# 4.5e-4 (conv1.weight, which the 3 steps move by 6.8e-2) / 1.2e-5 / 1.1e-2
@pytest.mark.parametrize("fast, loss_tol, tol", [
    (dict(channels_last=True), 1e-4, 2e-3),
    (dict(compile=True), 1e-4, 5e-4),
    (dict(precision="bf16"), 2e-2, 2e-2),
], ids=["channels_last", "compile", "bf16"])
def test_fast_paths_equal_the_plain_path(plain_path, fast, loss_tol, tol):
    """Float reordering only: 3 SGD steps (lr 0.05) of each fast path stay within tolerance of fp32 eager.
    Small batches through BatchNorm amplify rounding step after step: tolerances are measured, not ulps."""
    params, losses = _step_after(3, **fast)
    reference, reference_losses = plain_path
    assert losses == pytest.approx(reference_losses, rel=loss_tol)
    if "precision" in fast:  # CPU autocast keeps batch_norm in bf16: its running statistics drift more
        reference = {k: v for k, v in reference.items() if "running" not in k}
    for k, v in reference.items():
        diff = (params[k].float() - v.float()).abs().max().item()
        assert diff <= tol * max(1.0, v.abs().max().item()), (k, diff)


def test_fp16_static_loss_scale_is_mmengines(monkeypatch):
    """resnet50_8xb32-fp16_in1k: AmpOptimWrapper(loss_scale=512.) keeps the scale at 512 (update(512.) after every
    step) and skips a step whose gradients overflow. Accelerate has no CPU fp16 scaler, so a real CPU GradScaler
    with the recipe's init_scale stands in for the CUDA one Accelerate builds from GradScalerKwargs."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from resnet_hub import load_config
    from resnet_hub.train.trainer import build_train_step, create_model

    AcceleratorState._reset_state(reset_partial_state=True)
    cfg = load_config("resnet50_8xb32-fp16_in1k")
    assert cfg.training.precision.loss_scale == 512.0
    accelerator = Accelerator(cpu=True, mixed_precision="fp16")
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=cfg.training.precision.loss_scale)
    monkeypatch.setattr(type(accelerator), "mixed_precision", property(lambda self: "fp16"))
    torch.manual_seed(0)
    model = create_model(cfg, channels=(8, 16, 32, 64), stem_width=8, num_classes=10)
    step = build_train_step(cfg, accelerator, model, lr=0.01, iters_per_epoch=10, num_classes=10)
    assert step.static_loss_scale == 512.0
    images, labels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.arange(4)
    step(images, labels)
    assert accelerator.scaler.get_scale() == 512.0
    before = {k: v.clone() for k, v in accelerator.unwrap_model(step.model).state_dict().items() if "running" not in k}
    handle = next(iter(step.model.parameters())).register_hook(lambda g: g * float("inf"))
    step(images, labels)
    handle.remove()
    after = accelerator.unwrap_model(step.model).state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items() if "num_batches" not in k)  # step skipped
    assert accelerator.scaler.get_scale() == 512.0  # not backed off to 256
    AcceleratorState._reset_state(reset_partial_state=True)


def test_unreadable_images_are_counted_or_one_clear_error(tmp_path, capsys, monkeypatch):
    """An image folder with a broken JPEG among grayscale/CMYK/RGBA ones: skipped and counted, or stopped."""
    from PIL import Image

    from resnet_hub import commands, train

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("validation", 4)):
        for cls in ("a", "b"):
            folder = tmp_path / "images" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
                mode = ["RGB", "L", "CMYK", "RGBA"][i % 4]
                image.convert(mode).save(folder / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}")
    (tmp_path / "images" / "train" / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    common = ["--config", CONFIG, "--dataset", str(tmp_path / "images"), "--num-classes", "2", "--model-kwargs",
              json.dumps({"channels": [8, 16, 32, 64], "stem_width": 8}), "--batch-size", "17", "--epochs", "1",
              "--workers", "0", "--tracker", "none"]
    assert commands.main(train.add_arguments, train.run, "train",
                         [*common, "--output-dir", str(tmp_path / "skip")]) == 0
    m = metrics(tmp_path / "skip")
    # all 17 images in one step: the broken one dropped from the batch and counted
    assert m["finished"] and m["skipped_images"] == 1 and m["epochs"][0]["eval_images"] == 8
    code = commands.main(train.add_arguments, train.run, "train",
                         [*common, "--output-dir", str(tmp_path / "error"), "--bad-images", "error"])
    errors = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert code == 1 and len(errors) == 1 and "unreadable training image (row" in errors[0]
    assert "pass --bad-images skip" in errors[0] and not (tmp_path / "error" / "final").exists()


def test_data_on_device_trains_and_is_part_of_the_run(tmp_path, capsys):
    """The GPU-resident path (resnet_hub/train/device_data.py), run on the CPU device: it trains, and a
    resume cannot switch data paths mid-run (augmentations are drawn differently)."""
    from resnet_hub import commands, train

    out = tmp_path / "run"
    argv = [*TINY_RUN, "--output-dir", str(out), "--epochs", "1", "--cpu"]
    assert commands.main(train.add_arguments, train.run, "train", [*argv, "--data-on-device", "on"]) == 0
    run = json.loads((out / "metrics.json").read_text())
    assert run["run"]["data_on_device"] is True and len(run["epochs"]) == 1
    assert run["epochs"][0]["loss"] == run["epochs"][0]["loss"]  # not NaN
    capsys.readouterr()
    assert commands.main(train.add_arguments, train.run, "train",
                         [*argv, "--data-on-device", "off", "--resume", "--epochs", "2"]) == 1
    assert "data_on_device" in capsys.readouterr().err


def test_cub_recipe_starts_from_its_init_checkpoint(tmp_path, monkeypatch, capsys):
    """CUB fine-tunes from mmpretrain's ImageNet-21k backbone: by default the trainer asks for the
    config's init_from URL, and pretrained.load_pretrained loads that backbone through the converter."""
    import timm
    from convert_helpers import checkpoint_dict, reference_model, save_as_released

    from resnet_hub import commands, load_config, train
    from resnet_hub.train import pretrained

    cub = load_config("resnet50_8xb8_cub")
    seen = {}

    def record(create, source, *, cfg, num_classes):
        seen.update(config=cfg.name, checkpoint=source.text, kind=source.kind, num_classes=num_classes)
        raise ValueError("stopped after init")

    monkeypatch.setattr(pretrained, "load_pretrained", record)  # where the trainer looks it up
    folder = tmp_path / "birds"  # a tiny image folder: two classes, train and test splits
    for split in ("train", "test"):
        for label in ("albatross", "wren"):
            (folder / split / label).mkdir(parents=True)
            for i in range(2):
                PIL.Image.new("RGB", (64, 48), (40 * i, 90, 200)).save(folder / split / label / f"{i}.png")
    code = commands.main(train.add_arguments, train.run, "train", [
        "--config", cub.name, "--dataset", str(folder), "--num-classes", "2", "--batch-size", "2", "--workers", "0",
        "--tracker", "none", "--output-dir", str(tmp_path / "run")])
    assert code == 1 and "stopped after init" in capsys.readouterr().err
    assert seen == {"config": cub.name, "checkpoint": cub.training.init_from.url, "kind": "mmpretrain",
                    "num_classes": 2}
    monkeypatch.undo()

    reference = reference_model("resnet50_8xb32_in1k", seed=4)
    path = save_as_released(checkpoint_dict(reference, "resnet50_8xb32_in1k", "mmpretrain-1.x"), tmp_path,
                            "resnet50_8xb32_in1k")
    model, lines = pretrained.load_pretrained(lambda: timm.create_model(cub.name, num_classes=10),
                                              pretrained.parse_pretrained(str(path)), cfg=cub, num_classes=10)
    want = reference.backbone.state_dict()
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items() if k in got)
    assert sum(k in got for k in want) > 300
    assert model.fc.weight.shape[0] == 10 and "fc (10 classes), freshly initialised" in lines[1]


def test_streaming_in_workers_resumes_mid_epoch_to_the_same_weights(tmp_path):
    """--streaming with 2 DataLoader workers on an image folder: a run resumed from its step-2 checkpoint
    (the later ones removed, as after a crash) ends bit for bit where the uninterrupted run ended."""
    import shutil

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("validation", 4)):
        for cls in ("a", "b"):
            folder = tmp_path / "images" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                PIL.Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    run = ["--config", CONFIG, "--dataset", str(tmp_path / "images"), "--streaming", "--num-classes", "2",
           "--model-kwargs", json.dumps({"channels": [8, 16, 32, 64], "stem_width": 8}), "--batch-size", "4",
           "--epochs", "1", "--steps-per-epoch", "6", "--workers", "2", "--tracker", "none", "--checkpoint-steps",
           "2", "--keep", "10"]
    full = tmp_path / "full"
    _ok(script("train", [*run, "--output-dir", str(full)]))
    assert [c.name for c in checkpoints(full)] == [f"step-00000000{s}" for s in (2, 4, 6)]
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    for later in checkpoints(resumed)[1:]:
        shutil.rmtree(later)
    _ok(script("train", [*run, "--output-dir", str(resumed), "--resume"]))
    final, reference = weights(checkpoints(resumed)[-1]), weights(checkpoints(full)[-1])
    assert checkpoints(resumed)[-1].name == "step-000000006"
    for k in reference:
        assert torch.equal(final[k], reference[k]), k


def test_final_bundle_card_carries_the_measured_results(uninterrupted):
    from huggingface_hub import ModelCardData, metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    import resnet_hub
    from resnet_hub.hub.bundle import validate_bundle

    best = max(metrics(uninterrupted)["epochs"], key=lambda e: e["top1"])
    meta = metadata_load(uninterrupted / "final" / "README.md")
    ModelCardData(**meta)
    assert "model_name" not in meta and "transformers" in meta["tags"]
    _, results = model_index_to_eval_results(meta["model-index"])
    assert {(r.dataset_type, r.dataset_split, r.dataset_args["images"], r.metric_type, r.source_name): r.metric_value
            for r in results} == {
        ("digits", "validation", 24, kind, f"resnet_hub {resnet_hub.__version__}"): round(best[key], 4)
        for kind, key in (("accuracy", "top1"), ("top_5_accuracy", "top5"))}
    validate_bundle(uninterrupted / "final")
