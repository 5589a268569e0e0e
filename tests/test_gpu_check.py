"""scripts/gpu_check.sh's two lists agree with pyproject.toml: the versions the GPU image holds
(scripts/gpu_image.txt) and the wheels carried to it (scripts/gpu_wheels.txt) meet every range the
package declares for them. The check itself runs in .ci/run (`--rehearse`); these take a second."""
from __future__ import annotations

import subprocess

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as the GPU image's 3.12


def _pins(path) -> dict[str, str]:
    """``name: version`` for each ``name==version`` line (other lines are the image's unrecorded versions)."""
    pins = {}
    for line in (REPO / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["train"] + extras.get("export", [])]


def test_every_carried_wheel_is_pinned_and_differs_from_the_image():
    carried, image = _pins("scripts/gpu_wheels.txt"), _pins("scripts/gpu_image.txt")
    lines = [ln for ln in (REPO / "scripts/gpu_wheels.txt").read_text().splitlines() if ln.strip()[:1] not in ("", "#")]
    assert len(carried) == len(lines) >= 1  # every line a pin: --prepare downloads exactly these
    assert "datasets" in carried and "datasets" not in image  # what the image lacks
    # carried over a version the image has: only where it differs (the rehearsal's older timm)
    assert all(carried[name] != image[name] for name in set(carried) & set(image))


def test_declared_ranges_admit_the_gpu_image_and_the_carried_wheels():
    """The image's torch 2.11, torchvision 0.26, ... and the carried timm/datasets meet pyproject's ranges."""
    versions = {**_pins("scripts/gpu_image.txt"), **_pins("scripts/gpu_wheels.txt")}
    checked = []
    for req in _declared():
        have = versions.get(canonicalize_name(req.name))
        if have is not None:
            assert req.specifier.contains(have), f"pyproject's {req} excludes the GPU machine's {have}"
            checked.append(canonicalize_name(req.name))
    assert {"torch", "torchvision", "timm", "huggingface-hub", "safetensors", "accelerate", "datasets"} <= set(checked)


def test_a_bad_argument_is_one_line():
    done = subprocess.run(["bash", "scripts/gpu_check.sh", "--bogus"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and done.stderr == "gpu_check: error: unknown argument '--bogus' (see --help)\n"
