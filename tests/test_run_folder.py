"""A run folder belongs to one run (issue 22, cases 1-3): a lock for the run, nothing finished replaced
without --overwrite, and a diverged run fails without saving its non-finite weights.

Two trainers on one folder run as two real processes; the rest in process on the tiny digits run.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_helpers import REPO, TINY_RUN, checkpoints, env, metrics, script, start, weights

from resnet_hub import commands, train
from resnet_hub.train.run_dir import LOCK_FILE, OutputDirLock, claim_output_dir

pytestmark = pytest.mark.slow


def _train(argv, capsys) -> tuple[int, str]:
    code = commands.main(train.add_arguments, train.run, "train", [*TINY_RUN, *argv])
    return code, capsys.readouterr().err


def _error_lines(err: str) -> list[str]:
    return [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]


def test_two_trainers_on_one_folder_the_second_is_refused_naming_the_first(tmp_path, capsys):
    """Case 1: the second of two trainers started on one --output-dir stops with one line naming the holder;
    the first finishes alone. Case 2: then the same command with another --lr (checkpoints deleted too) is
    refused, and --overwrite replaces the run."""
    out = tmp_path / "run"
    first = start("train", [*TINY_RUN, "--epochs", "2", "--lr", "0.05", "--output-dir", str(out)])
    deadline = time.monotonic() + 300
    while not (out / "run.json").is_file():  # written under the lock
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)  # paused mid-run, so that it is surely still running when the second claims
    try:
        second = script("train", [*TINY_RUN, "--epochs", "2", "--lr", "0.4", "--output-dir", str(out)])
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert _error_lines(second.stderr) == [line for line in second.stderr.splitlines() if line.strip()][-1:]
    assert f"is in use by another run (pid {first.pid} on " in second.stderr
    assert "done:" not in second.stdout and "done:" in stdout
    assert metrics(out)["run"]["seed"] == 3 and [e["lr"] for e in metrics(out)["epochs"]][0] == 0.05

    # case 2: a finished run is not replaced, with or without its checkpoints
    before = (out / "final" / "model.safetensors").read_bytes(), (out / "metrics.json").read_bytes()
    for path in checkpoints(out):
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    code, err = _train(["--epochs", "1", "--lr", "0.4", "--output-dir", str(out)], capsys)
    assert code == 1 and "already holds a run" in err and "--overwrite" in err
    assert ((out / "final" / "model.safetensors").read_bytes(), (out / "metrics.json").read_bytes()) == before
    # the lock file a finished run leaves behind is not held: --overwrite takes the folder
    code, err = _train(["--epochs", "1", "--lr", "0.4", "--output-dir", str(out), "--overwrite"], capsys)
    assert code == 0, err[-3000:]
    assert [e["lr"] for e in metrics(out)["epochs"]] == [0.4]
    assert (out / "final" / "model.safetensors").read_bytes() != before[0]


def test_a_dead_runs_lock_is_taken_again(tmp_path):
    """flock dies with its process: a SIGKILLed holder leaves a lock file that the next run takes."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from resnet_hub.train.run_dir import OutputDirLock; "
        f"lock = OutputDirLock(Path({str(tmp_path)!r})); print('held', flush=True); time.sleep(600)")],
        env=env(), cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FileExistsError, match=f"in use by another run \\(pid {holder.pid} on .*, since "):
            OutputDirLock(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with claim_output_dir(tmp_path / "x", {"config": "a"}, resume=False) as lock:
        assert (tmp_path / "x" / LOCK_FILE).is_file() and lock.fd is not None
    lock = OutputDirLock(tmp_path)  # the killed holder's lock file, taken
    lock.release()


def test_claim_refuses_what_is_not_this_runs(tmp_path):
    identity = {"config": "a", "seed": 0}
    out = tmp_path / "run"
    claim_output_dir(out, identity, resume=False).release()
    for resume, overwrite, error in ((False, False, "already holds a run"), (True, True, "not both")):
        with pytest.raises((FileExistsError, ValueError), match=error):
            claim_output_dir(out, identity, resume=resume, overwrite=overwrite)
    with pytest.raises(FileExistsError, match="different run .*--overwrite"):
        claim_output_dir(out, dict(identity, seed=1), resume=True)
    (out / "metrics.json").write_text("{}")
    claim_output_dir(out, dict(identity, seed=1), resume=False, overwrite=True).release()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, "run.json"]
    assert json.loads((out / "run.json").read_text())["seed"] == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="holds no resnet_hub run"):  # --overwrite deletes only a run's files
        claim_output_dir(tmp_path / "mine", identity, resume=False, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("flag", ["--lr", "--dist-timeout"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_non_finite_numbers_are_refused(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit:
        _train([f"{flag}={value}", "--output-dir", str(tmp_path / "run")], capsys)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and f"argument {flag}: must be a finite number, got {value}" in err
    assert not (tmp_path / "run").exists()


def test_a_diverged_run_fails_and_keeps_only_finite_weights(tmp_path, capsys):
    """Case 3: a run whose loss becomes non-finite stops with one line (step, loss, lr) and exit 1; its
    checkpoints hold finite weights only and no final/ bundle is written from the diverged weights."""
    out = tmp_path / "run"
    code, err = _train(["--epochs", "2", "--lr", "1e30", "--checkpoint-steps", "1", "--output-dir", str(out)], capsys)
    errors = _error_lines(err)
    assert code == 1 and len(errors) == 1, err[-3000:]
    assert "training diverged at step " in errors[0] and "non-finite (loss " in errors[0] and ", lr 1e+30" in errors[0]
    kept = checkpoints(out)
    assert kept and f"Last finite checkpoint: {kept[-1]}" in errors[0]
    for checkpoint in kept:
        assert all(torch.isfinite(v).all() for v in weights(checkpoint).values() if v.is_floating_point())
    assert not (out / "final").exists() and not (out / "metrics.json").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--drop-path-rate", "2"], "argument --drop-path-rate: must be less than 1, got 2"),
])
def test_out_of_range_flags_are_refused_by_the_parser(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as exit:
        _train([*argv, "--output-dir", str(tmp_path / "run")], capsys)
    err = capsys.readouterr().err
    assert exit.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kwargs, needle", [
    ('{"num_classes": 5}', "--model-kwargs sets what the trainer sets itself: num_classes (set by --num-classes)"),
    ('{"no_such_argument": 1}', "cannot build resnet18_8xb16_cifar10 with --model-kwargs"),
])
def test_model_kwargs_the_model_cannot_take_are_one_line(tmp_path, capsys, kwargs, needle):
    code, err = _train(["--model-kwargs", kwargs, "--output-dir", str(tmp_path / "run")], capsys)
    assert code == 1 and len(_error_lines(err)) == 1 and needle in err, err[-2000:]
