"""Running scripts/train.py and scripts/eval.py for tests: one process, or two under accelerate launch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import numerics_threads
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
CONFIG = "resnet18_8xb16_cifar10"
# a narrow ResNet-18 (same recipe, blocks, stem and 32x32 digits) so that mechanics tests take seconds
TINY = json.dumps({"channels": [8, 16, 32, 64], "stem_width": 8})
# few images, few steps: 48 train images in steps of 2 x 4 -> 6 steps per epoch
TINY_RUN = ["--config", CONFIG, "--dataset", "digits", "--model-kwargs", TINY, "--limit-train", "48",
            "--limit-eval", "24", "--batch-size", "4", "--workers", "0", "--tracker", "none", "--seed", "3"]


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RESNET_HUB_", "ACCELERATE_"))}
    e.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
             PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(numerics_threads(1)))
    return e


def script(name: str, args: list[str], processes: int = 1, **kwargs) -> subprocess.CompletedProcess:
    """``python scripts/NAME.py ARGS`` or, for 2+ processes, ``accelerate launch --cpu`` of it (gloo)."""
    if processes == 1:
        cmd = [sys.executable, str(REPO / "scripts" / f"{name}.py"), *args]
    else:
        # accelerate 1.x sends `launch --cpu` with 2+ processes to mpirun; torchrun (its multi-process
        # launcher) with the script's own --cpu gives gloo on the CPU (DistributedType.MULTI_CPU)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(29500 + os.getpid() % 1000),
               str(REPO / "scripts" / f"{name}.py"), *args, "--cpu"]
    return subprocess.run(cmd, env=env(), cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs)


def start(name: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / f"{name}.py"), *args], env=env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoints(out: Path) -> list[Path]:
    root = out / "checkpoints"
    return sorted(p for p in root.iterdir() if p.name.startswith("step-")) if root.is_dir() else []


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def parameters(checkpoint: Path, model_kwargs: str = TINY) -> dict[str, torch.Tensor]:
    """The trainable parameters only (BatchNorm running statistics are buffers)."""
    import timm

    import resnet_hub  # noqa: F401

    model = timm.create_model(CONFIG, **{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in json.loads(model_kwargs).items()})
    names = {n for n, _ in model.named_parameters()}
    return {k: v for k, v in weights(checkpoint).items() if k in names}


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())
