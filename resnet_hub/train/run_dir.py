"""A training run's folder: who it belongs to, its checkpoints, metrics, curves and final bundle.

    OUT/run.json                      what run this is (config, data, batch, precision, ...)
    OUT/checkpoints/step-NNNNNNNNN/   the last ``--keep`` complete ``Accelerator.save_state`` folders
    OUT/metrics.json, OUT/curves.png  per epoch: loss, lr, top-1, top-5, img/s
    OUT/final/                        the best epoch's model as a Hub bundle (``local-dir:OUT/final``)

A folder holding another run (a different ``run.json``) or other files is refused. Checkpoints are
written into ``checkpoints/.tmp-*`` and renamed into place when complete, so a crash during a save
leaves the last complete one usable; older ones are pruned only after. Each records the size and
sha256 of its files in ``manifest.json`` when complete; a resume verifies the newest and falls back
to the newest intact one, naming each one it skipped and why.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from resnet_hub.atomic import replacing, write_json
from resnet_hub.hashing import sha256_file

__all__ = ["RunState", "Checkpoints", "run_identity", "claim_output_dir", "write_metrics", "export_bundle",
           "software_versions", "OutputDirLock", "RUN_FILE", "MANIFEST", "METRICS", "CURVES", "TRAINER_STATE"]

TRAINER_STATE = "trainer_state.json"
MANIFEST = "manifest.json"
RUN_FILE = "run.json"
METRICS = "metrics.json"
CURVES = "curves.png"


@dataclass
class RunState:
    """Where the run is; saved with every checkpoint (``trainer_state.json``) and restored on resume."""
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_top1: float = -1.0
    best_epoch: int = -1
    skipped_images: int = 0
    history: list = field(default_factory=list)
    # the epoch in progress, so that a resumed epoch reports what an uninterrupted one would
    epoch_loss_sum: float = 0.0
    epoch_loss_n: int = 0
    epoch_seen: int = 0
    epoch_time: float = 0.0

    def to_checkpoint(self, *, lr: float, epochs: int, steps_per_epoch: int) -> dict:
        return dict(self.__dict__, lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch)

    @classmethod
    def from_checkpoint(cls, saved: dict) -> "RunState":
        return cls(**{k: saved[k] for k in cls.__dataclass_fields__})


# ----------------------------------------------------------------------------- claiming the folder


def run_identity(cfg, spec, plan, start: dict) -> dict:
    """What makes two runs the same run: a resume must match it field by field. ``plan`` and ``start`` (what the
    run started from, for the card) are recorded beside it: the settings as resolved, read by people and cards."""
    text = cfg.path.read_bytes() if cfg.path else repr(cfg).encode()
    return {
        "config": cfg.name,
        "config_sha256": hashlib.sha256(text).hexdigest(),
        "dataset": spec.describe(),
        "num_classes": plan.num_classes,
        "seed": plan.seed,
        "batch_size_per_device": plan.batch_size,
        "processes_x_accumulation": plan.world_size * plan.grad_accum,
        "precision": plan.precision,
        "model_kwargs": plan.settings()["model_kwargs"] or None,
        "fit_schedule_to_epochs": plan.epochs if plan.schedule_fitted else None,
        # the device path draws augmentations per batch, the CPU path per image: not interchangeable mid-run
        "data_on_device": plan.data_on_device,
        **({"model_ema": True} if plan.model_ema else {}),  # its checkpoints hold the EMA too
        "pretrained": plan.pretrained.description if plan.pretrained else None,
        "plan": plan.settings(),
        "start": start,
    }


# run.json entries that describe a run without deciding whether a resume is the same run (a resume may
# extend the epochs; the lr check on resume catches a changed schedule)
RECORD_ONLY = ("plan", "start")


LOCK_FILE = ".lock"
# what a run writes into its folder: a folder holding any of it belongs to that run
RUN_OUTPUTS = (RUN_FILE, METRICS, CURVES, "final", "checkpoints", "logs")


class OutputDirLock:
    """``fcntl.flock`` on ``OUT/.lock``: one run writes a folder at a time.

    The kernel drops the lock when its process ends, however it ends (SIGKILL included), so a
    lock file left behind by a dead run is simply taken again; what it says of its holder (pid,
    host, start time) is only read to name the holder to the run that is refused."""

    def __init__(self, out: Path):
        import fcntl
        import socket
        import time

        self.path = Path(out) / LOCK_FILE
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            raise FileExistsError(f"{out} is in use by another run ({holder}); wait for it to end or choose "
                                  "another --output-dir") from None
        # the holder's description, in place (not an atomic.py write: the lock lives on this inode)
        text = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def claim_output_dir(out: Path, identity: dict, resume: bool, overwrite: bool = False) -> OutputDirLock:
    """Lock ``out`` for this run (:class:`OutputDirLock`, held until ``release``), refuse it if it holds
    another run, this run's outputs without ``resume`` (``overwrite`` deletes them first), or files of
    anything else; then write ``run.json``. Call on the main process only."""
    out.mkdir(parents=True, exist_ok=True)
    lock = OutputDirLock(out)
    try:
        _check_output_dir(out, identity, resume, overwrite)
        write_json(out / RUN_FILE, identity)
    except BaseException:
        lock.release()
        raise
    return lock


def _check_output_dir(out: Path, identity: dict, resume: bool, overwrite: bool) -> None:
    entries = {p.name for p in out.iterdir()} - {LOCK_FILE}
    run_file = out / RUN_FILE
    if entries and not run_file.is_file() and not entries <= set(RUN_OUTPUTS):
        raise FileExistsError(f"{out} is not empty and holds no resnet_hub run ({RUN_FILE}); choose another "
                              "--output-dir")
    if not entries:
        if resume:
            raise FileNotFoundError(f"--resume: {out} holds no run to resume")
        return
    if overwrite:
        if resume:
            raise ValueError("--resume continues the run in --output-dir, --overwrite replaces it: not both")
        for name in sorted(entries):  # only what a run writes: the check above refused anything else
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    old = _read_run_file(run_file) if run_file.is_file() else None
    if old is not None:
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k) and k not in RECORD_ONLY)
        if diff:
            what = ", ".join(f"{k}: {old.get(k)!r} there, {identity.get(k)!r} here" for k in diff)
            raise FileExistsError(f"{out} holds a different run ({what}); choose another --output-dir or pass "
                                  "--overwrite to replace it")
    if not resume:
        raise FileExistsError(f"{out} already holds a run ({', '.join(sorted(entries))}); pass --resume to continue "
                              "it, --overwrite to replace it, or choose another --output-dir")


def _read_run_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable run file ({e}); pass --overwrite to replace the run") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a run file (a JSON object); pass --overwrite to replace the run")
    return data


# ----------------------------------------------------------------------------- checkpoints


class Checkpoints:
    """``save_state`` folders under ``root``, complete or absent, the newest ``keep`` kept."""

    def __init__(self, root: Path, accelerator, keep: int):
        if keep < 1:
            raise ValueError("--keep must be at least 1")
        self.root, self.accelerator, self.keep = Path(root), accelerator, keep

    def complete(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("step-"))

    def latest(self) -> Optional[Path]:
        done = self.complete()
        return done[-1] if done else None

    def required(self) -> list[str]:
        """The files ``Accelerator.save_state`` writes for one model and one optimizer, and ours.

        Accelerate's own constants, combined as its ``checkpointing.save_accelerator_state`` combines them
        (the first optimizer is ``{OPTIMIZER_NAME}.bin``, each process's RNG ``{RNG_STATE_NAME}_{i}.pkl``)."""
        from accelerate.utils.constants import OPTIMIZER_NAME, RNG_STATE_NAME, SAFE_WEIGHTS_NAME, SCALER_NAME

        acc = self.accelerator
        names = [SAFE_WEIGHTS_NAME, f"{OPTIMIZER_NAME}.bin", TRAINER_STATE]
        names += [f"{RNG_STATE_NAME}_{i}.pkl" for i in range(acc.num_processes)]
        if acc.scaler is not None:
            names.append(SCALER_NAME)
        return names

    def missing(self, folder: Path) -> list[str]:
        return [n for n in self.required() if not (folder / n).is_file()]

    def save(self, state: dict) -> Path:
        acc = self.accelerator
        final = self.root / f"step-{state['global_step']:09d}"
        tmp = self.root / f".tmp-{final.name}"
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            write_json(tmp / TRAINER_STATE, state)
            missing = self.missing(tmp)
            if missing:
                raise RuntimeError(f"checkpoint {tmp} is missing {', '.join(missing)} after save_state")
            write_json(tmp / MANIFEST, _manifest(tmp))
            if final.exists():  # the same update saved twice (step interval at an epoch's end)
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.root)
            for old in self.complete()[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def problem(self, folder: Path) -> Optional[str]:
        """Why ``folder`` cannot be resumed from (a file missing, cut short or changed since it was saved), or None."""
        missing = self.missing(folder)
        if missing:
            return (f"missing {', '.join(missing)} (written by {self.accelerator.num_processes} process(es)"
                    f"{' with fp16' if self.accelerator.scaler is not None else ''}?)")
        try:
            recorded = json.loads((folder / MANIFEST).read_text())
            items = sorted(recorded.items())
        except FileNotFoundError:
            return f"no {MANIFEST} (its save did not complete)"
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
            return f"{MANIFEST} is unreadable ({' '.join(str(e).split())})"
        for name, want in items:
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            size = path.stat().st_size
            if size != want.get("size"):
                return f"{name} is {size} bytes, {want.get('size')} when it was saved (cut short or changed)"
            if sha256_file(path) != want.get("sha256"):
                return f"{name} has changed since it was saved (sha256 differs)"
        return None

    def intact(self) -> tuple[Optional[Path], list[str]]:
        """The newest checkpoint that verifies, and a line for each newer one skipped (name: why)."""
        skipped = []
        for folder in reversed(self.complete()):
            why = self.problem(folder)
            if why is None:
                return folder, skipped
            skipped.append(f"{folder.name}: {why}")
        return None, skipped

    def load(self, folder: Path) -> dict:
        why = self.problem(folder)
        if why is not None:
            raise ValueError(f"checkpoint {folder} cannot be resumed from: {why}")
        state_file = folder / TRAINER_STATE
        try:
            saved = json.loads(state_file.read_text())
            RunState.from_checkpoint(saved)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{state_file}: not a readable trainer state ({' '.join(str(e).split())})") from None
        try:
            self.accelerator.load_state(str(folder))
        except (OSError, RuntimeError, ValueError, KeyError, EOFError) as e:
            raise ValueError(f"checkpoint {folder} does not load into this run ({' '.join(str(e).split())[:300]})"
                             ) from None
        return saved


def _manifest(folder: Path) -> dict:
    """Each file under ``folder``: its size and sha256, for :meth:`Checkpoints.problem` to verify at resume."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in files}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- metrics, curves, bundle


def software_versions(optional: tuple[str, ...] = ("accelerate",)) -> dict:
    """The versions that made a result: recorded in metrics, bundles, benchmark rows and tables.
    ``optional`` packages are listed where installed (accelerate is not, for a benchmark of inference)."""
    import importlib

    import timm
    import torch
    import torchvision

    from resnet_hub import __version__

    versions = {"resnet_hub": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "timm": timm.__version__, "cuda": torch.version.cuda}
    for package in optional:
        try:
            versions[package] = importlib.import_module(package).__version__
        except ImportError:
            pass
    return versions


def write_metrics(out: Path, state: RunState, identity: dict, lr_scaling: str, finished: bool) -> None:
    """``metrics.json`` and ``curves.png`` as of now; call on the main process only."""
    write_json(out / METRICS, {"run": identity, "epochs": state.history, "best_epoch": state.best_epoch,
                               "best_top1": state.best_top1 if state.best_epoch >= 0 else None,
                               "skipped_images": state.skipped_images, "finished": finished,
                               "lr_scaling": lr_scaling, "versions": software_versions()})
    if state.history:
        plot_curves(state.history, out / CURVES)


def plot_curves(history: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [h["loss"] for h in history], marker="o")
    axes[0].set_title("training loss")
    axes[1].plot(epochs, [h["top1"] for h in history], marker="o", label="top-1")
    axes[1].plot(epochs, [h["top5"] for h in history], marker="o", label="top-5")
    axes[1].set_title("validation accuracy (%)")
    axes[1].legend()
    axes[2].plot(epochs, [h["lr"] for h in history], marker="o")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with replacing(path) as tmp:  # keeps the .png suffix savefig goes by
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def export_bundle(model, cfg, folder: Path, *, label_names, model_kwargs: dict, provenance: dict,
                  measured=()) -> None:
    """The trained ``model`` (unwrapped) as a Hub bundle in ``folder``: its provenance in the card and weights,
    ``measured`` results (:class:`resnet_hub.hub.card.MeasuredResult`) in the card's model-index, and
    architecture arguments beyond the config's in config.json's ``model_args``."""
    from resnet_hub.hub.bundle import write_bundle

    model = getattr(model, "_orig_mod", model)  # torch.compile's wrapper holds the plain model
    model.pretrained_cfg = dict(model.pretrained_cfg, label_names=list(label_names))
    write_bundle(model, cfg, folder, provenance=dict(provenance, versions=software_versions()),
                 model_args=model_kwargs, measured=list(measured), overwrite=True)  # final/ is this run's
