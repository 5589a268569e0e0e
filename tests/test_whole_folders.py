"""Bundle folders appear whole (issue 22, case 4): convert builds a bundle in a temporary sibling folder
and swaps it in, so a SIGKILL at the swap leaves the old bundle or the new one; replacing a bundle of
another config or other weights takes --overwrite, and a folder holding anything else is never replaced.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from conftest import REPO, requires_mmpretrain
from convert_helpers import checkpoint_dict, reference_model, save_as_released, tree_digest
from train_helpers import env

from resnet_hub import commands
from resnet_hub.atomic import recover_dir, replacing_dir
from resnet_hub.hub import convert

R18, R34 = "resnet18_8xb16_cifar10", "resnet34_8xb16_cifar10"


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> dict[str, Path]:
    """mmcls v0 checkpoints of two CIFAR configs with random weights, named as released."""
    folder = tmp_path_factory.mktemp("released")
    return {name: save_as_released(checkpoint_dict(reference_model(name, seed=3), name, "mmcls-v0"), folder, name)
            for name in (R18, R34)}


def _convert(capsys, name: str, checkpoint: Path, out: Path, *extra: str) -> tuple[int, str]:
    code = commands.main(convert.add_arguments, convert.run, "convert",
                         ["--config", name, "--checkpoint", str(checkpoint), "--output-dir", str(out), "--no-parity",
                          *extra])
    return code, capsys.readouterr().err


def _config_of(bundle: Path) -> str:
    return json.loads((bundle / "config.json").read_text())["architecture"]


@requires_mmpretrain
def test_a_bundle_of_another_config_or_weights_needs_overwrite(tmp_path, capsys, released):
    out = tmp_path / "bundle"
    assert _convert(capsys, R18, released[R18], out) == (0, "")
    before = tree_digest(out)
    code, err = _convert(capsys, R34, released[R34], out)
    assert code == 1 and f"holds a bundle of the config '{R18}', not of these {R34} weights; pass --overwrite" in err
    assert tree_digest(out) == before
    assert _convert(capsys, R18, released[R18], out) == (0, "")  # the same weights again: replaced, same bytes
    assert tree_digest(out) == before
    (out / "notes.txt").write_text("mine")
    code, err = _convert(capsys, R34, released[R34], out, "--overwrite")
    assert code == 1 and "notes.txt, which is not part of a bundle" in err
    (out / "notes.txt").unlink()
    assert _convert(capsys, R34, released[R34], out, "--overwrite") == (0, "")
    assert _config_of(out) == "resnet34_cifar" and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


# a convert --overwrite of R34 over R18 in a fresh interpreter, paused at the swap by replacing one of
# resnet_hub.atomic's steps: "exchange" (the one-step swap) or "aside" (between the two renames of the fallback)
_PAUSED_CONVERT = textwrap.dedent("""
    import sys, time
    from resnet_hub import atomic
    from resnet_hub.cli import main
    where, argv = sys.argv[1], sys.argv[2:]

    def pause(*args):
        print("paused", flush=True)
        time.sleep(600)

    if where == "exchange":
        atomic._exchange = pause
    else:
        real = atomic._move_aside
        atomic._exchange = lambda a, b: False
        atomic._move_aside = lambda path: (real(path), pause())
    sys.exit(main(["convert", *argv]))
""")


@requires_mmpretrain
@pytest.mark.slow
@pytest.mark.parametrize("where", ["exchange", "aside"])
def test_sigkill_at_the_swap_leaves_a_whole_bundle(tmp_path, capsys, released, where):
    out = tmp_path / "bundle"
    assert _convert(capsys, R18, released[R18], out) == (0, "")
    before = tree_digest(out)
    proc = subprocess.Popen([sys.executable, "-c", _PAUSED_CONVERT, where, "--config", R34, "--checkpoint",
                             str(released[R34]), "--output-dir", str(out), "--no-parity", "--overwrite"],
                            env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "paused", proc.communicate()
        new = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(new) == 1 and len(tree_digest(new[0])) == 3  # the whole new bundle waits beside the old one
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if where == "aside":  # killed between the renames: the old bundle, whole, set aside
        assert not out.exists() and tree_digest(tmp_path / ".bundle.old") == before
        recover_dir(out)
    assert tree_digest(out) == before
    model = timm.create_model(f"local-dir:{out}")  # plain timm reads it as the R18 bundle it is
    assert model.num_classes == 10 and sum(p.numel() for p in model.parameters()) < 12_000_000
    # the next writer finishes the job, leaving only the folder (the killed writer's temporary aside)
    assert _convert(capsys, R34, released[R34], out, "--overwrite") == (0, "")
    assert _config_of(out) == "resnet34_cifar" and not (tmp_path / ".bundle.old").exists()


def test_replacing_dir_leaves_the_old_folder_on_error(tmp_path):
    target = tmp_path / "folder"
    with replacing_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), replacing_dir(target) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("failed half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"] and tree_digest(target).keys() == {"a"}
    assert oct(target.stat().st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode
    torch.manual_seed(0)


def test_export_replaces_its_folder_whole_and_never_a_folder_of_other_files(tmp_path):
    """`resnet-hub export` builds its folder beside the target and swaps it in, as convert does."""
    from resnet_hub.export import PREPROCESSING_FILE, export_model

    out = tmp_path / "deploy"
    model = timm.create_model(R18).eval()
    export_model(model, out, "pt2")
    first = tree_digest(out)
    assert sorted(first) == ["model.pt2", PREPROCESSING_FILE]
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    export_model(model, out, "pt2")  # another model's export: replaced whole, nothing left beside it
    assert tree_digest(out).keys() == first.keys() and tree_digest(out) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]
    (out / "notes.txt").write_text("mine")
    before = tree_digest(out)
    with pytest.raises(FileExistsError, match="notes.txt, which is not part of an export"):
        export_model(model, out, "pt2")
    assert tree_digest(out) == before
