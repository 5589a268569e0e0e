from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def numerics_threads(default: int) -> int:
    """Intra-op threads for a test's float numerics: ``RESNET_HUB_TEST_THREADS`` when set, else ``default``.

    Rerunning with RESNET_HUB_TEST_THREADS=1 and =2 finds a comparison that holds for only one way of
    splitting a reduction across threads (README, "Tests"); test subprocesses get it as OMP_NUM_THREADS.
    """
    return int(os.environ.get("RESNET_HUB_TEST_THREADS") or default)


def _cores_per_worker() -> int:
    """This process's share of the cores: the suite runs in pytest-xdist workers (pyproject's addopts)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, min(2, (os.cpu_count() or 1) // workers))


torch.set_num_threads(numerics_threads(_cores_per_worker()))


def _has_mmpretrain() -> bool:
    try:
        import mmpretrain  # noqa: F401
    except ImportError:
        return False
    return True


HAS_MMPRETRAIN = _has_mmpretrain()
requires_mmpretrain = pytest.mark.skipif(
    not HAS_MMPRETRAIN and not os.environ.get("CI"),
    reason="mmpretrain (test extra) is not installed",
)


def run_python(code: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    """Run ``code`` in a fresh interpreter (for env vars read at import, e.g. HF_HUB_OFFLINE)."""
    return run_command(["-c", code], env=env, cwd=cwd, timeout=timeout)


def run_command(args: list, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    """``python ARGS...`` (a script and its arguments, or ``-m module ...``) in a fresh interpreter, as a user runs it.

    The caller's ``HF_*`` and ``RESNET_HUB_*`` variables are left out; ``env`` adds to the rest.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "RESNET_HUB_"))}
    full_env.update(env or {})
    full_env.setdefault("PYTHONPATH", str(REPO))
    return subprocess.run([sys.executable, *map(str, args)], env=full_env, cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=timeout)


# the modules that train in subprocesses, about 10 of the suite's 18 minutes on 2 cores; scheduled
# first, each runs in one xdist worker (--dist loadscope) while the other takes the rest
_LONGEST_FIRST = ("test_train.py", "test_multinode.py", "test_install.py")


def pytest_collection_modifyitems(config, items):
    """The longest modules first; tests marked ``cuda`` skipped, with the reason, without CUDA."""
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run scripts/gpu_check.sh on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def local_hub():
    from hub_server import LocalHub

    with LocalHub() as hub:
        yield hub
