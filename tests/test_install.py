"""A built wheel, installed into a fresh virtual environment, carries hub_configs/ and works: the zoo,
and training from the installed package (no checkout, no scripts/)."""
from __future__ import annotations

import json
import site
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO
from train_helpers import CONFIG, TINY


@pytest.mark.slow
def test_wheel_installs_and_works_in_fresh_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = dist.glob("resnet_hub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    configs = len(list((REPO / "hub_configs").glob("*.yaml")))  # the zoo's count, from the checkout it was built from
    assert configs and sum(n.startswith("resnet_hub/hub_configs/") and n.endswith(".yaml") for n in names) == configs
    assert "resnet_hub/zoo/labels/imagenet-1k.txt" in names and "resnet_hub/MODEL_CARD.md" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # torch, timm & co. come from this environment; resnet_hub only from the wheel
    venv_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / "venv" / venv_site.split(str(venv) + "/", 1)[1] / "deps.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, capture_output=True)
    code = (
        "import resnet_hub, timm, torch\n"
        "assert resnet_hub.__file__.startswith(%r), resnet_hub.__file__\n"
        "from resnet_hub.zoo.configs import config_dir\n"
        "assert str(config_dir()).startswith(%r)\n"
        "from resnet_hub.hub.card import template_path\n"
        "assert str(template_path()).startswith(%r)\n"
        f"assert len(resnet_hub.list_configs()) == {configs}\n"
        "m = timm.create_model('hub:resnet18_8xb16_cifar10').eval()\n"
        "print(m(torch.randn(1, 3, 32, 32)).shape)\n"
    ) % (str(venv), str(venv), str(venv))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([str(py), "-W", "error", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "torch.Size([1, 10])" in proc.stdout

    # the trainer from the wheel, outside any checkout: the console script trains two steps on the digits
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    proc = subprocess.run([str(venv / "bin" / "resnet-hub"), "train", "--config", CONFIG, "--dataset", "digits",
                           "--model-kwargs", TINY, "--limit-train", "8", "--limit-eval", "8", "--batch-size", "4",
                           "--workers", "0", "--tracker", "none", "--epochs", "1", "--output-dir", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = proc.stdout.splitlines()[0]
    assert first.startswith(f"{CONFIG} on digits (8 train / 8 eval images, 10 classes): 1 epochs x 2 steps"), first
    assert "precision fp32;" in first  # our word, not Accelerate's "no"
    assert json.loads((out / "run.json").read_text())["precision"] == "fp32"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["finished"] and metrics["versions"]["resnet_hub"] and (out / "final" / "model.safetensors").is_file()
    assert (out / "checkpoints" / "step-000000002" / "model.safetensors").is_file()

    # python -m resnet_hub.train, as accelerate launch -m runs it
    for cmd in ([str(py), "-m", "resnet_hub.train", "--help"],
                [str(py), "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
                 "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", "-m", "resnet_hub.train", "--help"]):
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.startswith("usage: python -m resnet_hub.train") and "--fit-schedule" in proc.stdout
