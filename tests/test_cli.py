"""The resnet-hub console script: every subcommand's --help, list/info/predict/bench, one-line errors."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import requires_mmpretrain, run_python
from inference_helpers import CIFAR, photos, random_model, save
from safetensors.torch import save_file

import resnet_hub
from resnet_hub import cli


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def own_cache(cache_home, monkeypatch):
    """A fresh complexity cache for this module, shared by its tests (measuring every config takes seconds)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("list", "info", "predict", "convert", "push", "train", "eval", "bench"):
        assert f"\n    {name} " in out


def test_installed_console_script_runs():
    script = Path(sys.executable).with_name("resnet-hub")
    if not script.exists():
        script = shutil.which("resnet-hub")
    if not script:
        pytest.skip("resnet-hub is not installed in this environment (pip install -e .)")
    proc = run_python(f"import subprocess, sys; sys.exit(subprocess.call([{str(script)!r}, '--help']))")
    assert proc.returncode == 0 and "predict" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize("command, options", [
    ("list", ["--dataset", "--json", "PATTERN"]),
    ("info", ["--json", "NAME"]),
    ("predict", ["--weights", "--topk", "--batch-size", "--device", "--precision", "--json", "IMAGE"]),
    ("bench", ["--quick", "--json", "--markdown", "--only", "--device"]),
])
def test_subcommand_help_is_complete(capsys, command, options):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: resnet-hub {command}")
    assert all(option in out for option in options)


@pytest.mark.parametrize("command, module", [("convert", "resnet_hub.hub.convert"), ("push", "resnet_hub.hub.push"),
                                             ("eval", "resnet_hub.train.evaluate"),
                                             ("train", "resnet_hub.train.trainer")])
def test_merged_subcommand_help(capsys, command, module):
    """convert/push/eval come from other branches; this runs once their modules are merged."""
    mod = pytest.importorskip(module)
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: resnet-hub {command}")
    import argparse
    parser = argparse.ArgumentParser()
    mod.add_arguments(parser)
    for action in parser._actions:
        assert action.help, f"{command}: {action.dest} has no help"
        for flag in action.option_strings:
            assert flag in out


def test_missing_module_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("resnet_hub.no_such_module", "add_arguments", "run", "not here"))
    code, out, err = _run(capsys, "ghost", "--help")
    assert code == 1
    assert err.strip() == "error: resnet-hub ghost: this install of resnet_hub has no resnet_hub.no_such_module"


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["lst"])
    assert e.value.code == 2 and "invalid choice: 'lst'" in capsys.readouterr().err


def test_list_filters_and_measures(capsys):
    code, out, _ = _run(capsys, "list", "--json")
    rows = json.loads(out)
    assert code == 0 and sorted(r["name"] for r in rows) == resnet_hub.list_configs()
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet50_8xb32_in1k"]["params_m"] == 25.56 and by_name["resnet50_8xb32_in1k"]["gmacs"] == 4.09
    assert by_name["resnet50_8xb32_in1k"]["top1"] == 76.55 and by_name[CIFAR]["top5"] is None
    cache = list((Path(cli._cache_file()).parent).glob("complexity-*.json"))
    assert len(cache) == 1 and len(json.loads(cache[0].read_text())) == len(rows)

    code, out, _ = _run(capsys, "list", "cifar", "--dataset", "cifar10")
    names = [line.split()[0] for line in out.splitlines()[2:] if line.strip() and not line.startswith("GMACs")]
    assert code == 0 and names == [f"resnet{d}_8xb16_cifar10" for d in (18, 34, 50, 101, 152)]
    assert "multiply-accumulates" in out
    code, out, _ = _run(capsys, "list", "resnet50*in1k", "--json")
    assert {r["name"] for r in json.loads(out)} == set(resnet_hub.list_configs("resnet50*in1k"))


# mmpretrain's ResNet README tables: ImageNet-1k, CIFAR-10, CIFAR-100, CUB; v1 by depth, then v1c, v1d, then the
# recipe variants (the README puts v1d before v1c; the zoo lists stems in mmpretrain's class order)
TABLE_ORDER = (
    [f"resnet{d}_8xb32_in1k" for d in (18, 34, 50, 101, 152)]
    + [f"resnetv1{s}{d}_8xb32_in1k" for s in "cd" for d in (50, 101, 152)]
    + ["resnet50_8xb32-fp16_in1k"] + [f"resnet50_8xb256-rsb-{r}_in1k" for r in ("a1-600e", "a2-300e", "a3-100e")]
    + [f"resnet{d}_8xb16_cifar10" for d in (18, 34, 50, 101, 152)] + ["resnet50_8xb16_cifar100", "resnet50_8xb8_cub"]
)


def test_list_is_in_the_tables_order(capsys):
    code, out, _ = _run(capsys, "list")
    names = [line.split()[0] for line in out.splitlines()[2:] if line.strip() and not line.startswith("GMACs")]
    assert code == 0 and names == TABLE_ORDER
    code, out, _ = _run(capsys, "list", "resnet*", "--dataset", "imagenet-1k", "--json")
    assert [r["name"] for r in json.loads(out)] == TABLE_ORDER[:15]


def test_list_errors_are_one_line(capsys):
    code, _, err = _run(capsys, "list", "--dataset", "imagenet22k")
    assert code == 1 and err.startswith("error: unknown dataset 'imagenet22k'; known: ") and "cifar10" in err
    code, _, err = _run(capsys, "list", "resnet5O")
    assert code == 1 and err.count("\n") == 1 and "no config matches" in err


@requires_mmpretrain
@pytest.mark.mmpretrain
def test_measured_macs_match_mmpretrain_metafile():
    """mmpretrain's metafile "FLOPs" are multiply-accumulates of all layers; ours count conv and linear (within 2%)."""
    from resnet_hub.reference import _metafile

    sizes = cli.complexity(resnet_hub.list_configs())
    for name, meta in _metafile().items():
        assert sizes[name]["macs"] == pytest.approx(meta["Metadata"]["FLOPs"], rel=0.02), name


def test_info(capsys):
    code, out, _ = _run(capsys, "info", "resnetv1d50_8xb32_in1k")
    assert code == 0
    assert "timm: resnet50d" in out and "top-1 77.54" in out and "resize shorter edge 256, bilinear" in out
    assert "center crop 224" in out and "resnet-hub/resnetv1d50_8xb32_in1k" in out and "25.58 M" in out
    code, out, _ = _run(capsys, "info", CIFAR, "--json")
    data = json.loads(out)
    assert data["eval"]["resize"] is None and data["num_classes"] == 10
    assert data["timm_architecture"] == "resnet18_cifar"
    code, _, err = _run(capsys, "info", "resnet50_8xb32_inlk")
    assert code == 1 and err.startswith("error: unknown config") and "resnet50_8xb32_in1k" in err


def test_predict_with_a_weights_file(capsys, tmp_path):
    model = random_model()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    images = [save(p, tmp_path / f"{i}.png") for i, p in enumerate(photos(2))]
    expected = resnet_hub.inference_model(model, images, topk=3)
    code, out, _ = _run(capsys, "predict", CIFAR, *map(str, images), "--weights", str(tmp_path / "w.safetensors"),
                        "--topk", "3", "--json")
    assert code == 0
    got = [json.loads(line) for line in out.splitlines()]
    assert [g["image"] for g in got] == [str(p) for p in images]
    assert [g["pred_label"] for g in got] == [e["pred_label"] for e in expected]
    assert [g["pred_class"] for g in got] == [e["pred_class"] for e in expected]
    assert all(len(g["topk"]) == 3 for g in got)

    code, out, _ = _run(capsys, "predict", CIFAR, str(tmp_path / "0.png"), "--weights", str(tmp_path / "w.safetensors"))
    first = out.splitlines()[0]
    best = expected[0]
    assert code == 0 and first.startswith(f"{tmp_path / '0.png'}: {best['pred_class']} ({best['pred_label']})")
    assert len(out.splitlines()) == 5  # the best, then 4 more of the top 5


@pytest.mark.parametrize("native", [None, "avx512_bf16"])
def test_predict_precision_auto_says_what_it_chose(capsys, tmp_path, monkeypatch, native):
    monkeypatch.setattr("resnet_hub.inference.native_bf16", lambda device: native)
    image = save(photos(1)[0], tmp_path / "x.png")
    code, out, err = _run(capsys, "predict", CIFAR, str(image), "--random-init", "--precision", "auto", "--json")
    ran = "bf16" if native else "fp32"
    assert code == 0 and json.loads(out)["precision"] == ran
    assert err.strip() == (f"precision auto -> bf16: native bf16 ({native})" if native
                           else "precision auto -> fp32: this cpu has no native bf16")


def test_predict_bad_precision_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        _run(capsys, "predict", CIFAR, "x.png", "--precision", "fp16")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "choose from 'fp32', 'bf16', 'auto'" in err, err


@pytest.mark.parametrize("argv, message", [
    (["predict", CIFAR, "nowhere.jpg", "--random-init"], "error: no such image file: nowhere.jpg"),
    (["predict", "resnet18_8xb16_cifar1O", "x.png"], "error: unknown model 'resnet18_8xb16_cifar1O'; closest: "),
    (["predict", CIFAR, "x.png", "--weights", "none.safetensors"], "error: no weights file none.safetensors"),
])
def test_predict_errors_are_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    save(photos(1)[0], tmp_path / "x.png")
    code, _, err = _run(capsys, *argv)
    assert code == 1 and err.startswith(message) and err.count("\n") == 1, err


def test_predict_without_the_hub_says_which_model(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty"))
    image = save(photos(1)[0], tmp_path / "x.png")
    code, _, err = _run(capsys, "predict", f"hub:{CIFAR}", str(image))
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: cannot get the weights of hub:{CIFAR} from the Hugging Face Hub"), err


def test_predict_reports_a_non_image(capsys, tmp_path):
    (tmp_path / "a.jpg").write_text("hello")
    code, _, err = _run(capsys, "predict", CIFAR, str(tmp_path / "a.jpg"), "--random-init")
    assert code == 1 and err.startswith(f"error: {tmp_path / 'a.jpg'} is not an image") and err.count("\n") == 1


def _readme_section(title):
    from conftest import REPO

    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _blocks(section, language):
    import re

    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_readme_inference_snippets_run(capsys, tmp_path, monkeypatch):
    section = _readme_section("Inference and the resnet-hub CLI")
    [python] = _blocks(section, "python")
    exec(compile(python, "README.md", "exec"), {})
    assert "[" in capsys.readouterr().out  # the top-k classes were printed

    import shlex

    monkeypatch.chdir(tmp_path)
    save(photos(1)[0], tmp_path / "photo.jpg")
    [bash] = _blocks(section, "bash")
    ran = 0
    for line in bash.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv or "hub:" in line or argv[1] == "bench":  # needs the Hub / takes minutes (test_benchmark)
            continue
        assert argv[0] == "resnet-hub"
        code, out, err = _run(capsys, *argv[1:])
        assert code == 0 and out and not err, (line, err)
        ran += 1
    assert ran == 4


# ----------------------------------------------------------------------------- numeric flags

def _parser(command):
    import argparse
    import importlib

    module, add, *_ = cli.COMMANDS[command]
    parser = argparse.ArgumentParser()
    getattr(importlib.import_module(module), add)(parser)
    return parser


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_numeric_flag_checks_its_range(command):
    """No bare int/float: each numeric flag's type is one of resnet_hub.commands' range-checking types, and
    a flag whose value comes from elsewhere (the recipe) defaults to None, never to a number that means "unset"."""
    from resnet_hub import commands

    checked = {commands.positive_int, commands.non_negative_int, commands.positive_float, commands.non_negative_float}
    for action in _parser(command)._actions:
        assert action.type not in (int, float), f"resnet-hub {command} {action.option_strings}: bare {action.type}"
        if action.type in checked and action.default is not None:
            assert action.type(str(action.default)) == action.default  # the default is itself in range


@pytest.mark.parametrize("argv, flag, message", [
    (["train", "--config", CIFAR, "--epochs", "0"], "--epochs", "must be at least 1, got 0"),
    (["train", "--config", CIFAR, "--batch-size", "0"], "--batch-size", "must be at least 1, got 0"),
    (["train", "--config", CIFAR, "--grad-accum", "-2"], "--grad-accum", "must be at least 1, got -2"),
    (["train", "--config", CIFAR, "--lr", "0"], "--lr", "must be greater than 0, got 0"),
    (["train", "--config", CIFAR, "--lr", "nan"], "--lr", "must be a finite number, got nan"),
    (["train", "--config", CIFAR, "--lr", "inf"], "--lr", "must be a finite number, got inf"),
    (["train", "--config", CIFAR, "--workers", "-1"], "--workers", "must be at least 0, got -1"),
    (["train", "--config", CIFAR, "--checkpoint-steps", "0"], "--checkpoint-steps", "must be at least 1"),
    (["train", "--config", CIFAR, "--keep", "0"], "--keep", "must be at least 1, got 0"),
    (["train", "--config", CIFAR, "--limit-train", "0"], "--limit-train", "must be at least 1, got 0"),
    (["train", "--config", CIFAR, "--num-classes", "0"], "--num-classes", "must be at least 1, got 0"),
    (["train", "--config", CIFAR, "--drop-path-rate", "-0.1"], "--drop-path-rate", "must be at least 0"),
    (["train", "--config", CIFAR, "--epochs", "2.5"], "--epochs", "expected a positive integer, got '2.5'"),
    (["eval", "--model", CIFAR, "--batch-size", "0"], "--batch-size", "must be at least 1, got 0"),
    (["eval", "--model", CIFAR, "--limit", "0"], "--limit", "must be at least 1, got 0"),
    (["predict", CIFAR, "x.png", "--topk", "0"], "--topk", "must be at least 1, got 0"),
    (["predict", CIFAR, "x.png", "--batch-size", "-1"], "--batch-size", "must be at least 1, got -1"),
])
def test_bad_numbers_are_one_line_naming_the_flag(capsys, argv, flag, message):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: argument {flag}: {message}") and f"resnet-hub {argv[0]} --help" in err


def test_trainer_numbers_not_given_are_none():
    """--epochs/--batch-size not given: None, so the plan takes the recipe's; 0 no longer stands for "not given"."""
    args = _parser("train").parse_args(["--config", CIFAR])
    for dest in ("epochs", "batch_size", "lr", "num_classes", "limit_train", "limit_eval", "eval_batch_size",
                 "steps_per_epoch", "checkpoint_steps", "drop_path_rate"):
        assert getattr(args, dest) is None, dest
