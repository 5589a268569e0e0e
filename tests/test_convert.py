"""Converting mmpretrain checkpoints: equal to mmpretrain itself, and safe against bad input.

Every reference here is mmpretrain's own model (random weights and BatchNorm statistics), saved
the way mmcls v0 and mmpretrain 1.x publish checkpoints, under a name with its real sha256 prefix.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import REPO, numerics_threads, requires_mmpretrain
from convert_helpers import (
    FORMATS,
    FileServer,
    checkpoint_dict,
    reference_model,
    save_as_released,
    sha256_of,
    tree_digest,
)
from safetensors import safe_open
from safetensors.torch import load_file

from resnet_hub import commands, list_configs, load_config
from resnet_hub.hub import convert
from resnet_hub.hub.checkpoint_io import expected_hashes, load_checkpoint
from resnet_hub.hub.convert import PARITY_TOLERANCE, convert_checkpoint, load_pretrained_backbone, mmpretrain_to_timm

pytestmark = requires_mmpretrain

SMALL = "resnet18_8xb16_cifar10"
# converted through the real command line in a fresh interpreter, parity measured by the converter
THROUGH_SUBPROCESS = {"resnet18_8xb16_cifar10", "resnet18_8xb32_in1k"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small inputs make these forwards overhead-bound: one thread is as fast, and immune to OpenMP
    spin-waiting when the cores are shared (measured: 0.1 s vs 2-7 s per ResNet-152 forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(numerics_threads(1))
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(capsys):
    """Run the converter's command line in-process: (exit code, stdout, stderr)."""
    def run(*argv):
        code = commands.main(convert.add_arguments, convert.run, "convert", [str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def _metadata(bundle: Path) -> dict:
    with safe_open(str(bundle / "model.safetensors"), "pt") as f:
        return f.metadata()


def _timm_from_bundle(name: str, bundle: Path) -> torch.nn.Module:
    """The registered timm model, loaded strictly from the bundle's safetensors."""
    with torch.device("meta"):
        model = timm.create_model(name)
    model.load_state_dict(load_file(str(bundle / "model.safetensors")), strict=True, assign=True)
    return model.eval()


def _assert_same_as_mmpretrain(reference, model, name: str) -> None:
    """Logits within PARITY_TOLERANCE of mmpretrain's, and the four stage outputs equal to its backbone's."""
    size = 32 if load_config(name).architecture.stem == "cifar" else 64
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    stages = []
    reference.backbone.out_indices = (0, 1, 2, 3)  # the head still classifies the last one
    hook = reference.backbone.register_forward_hook(lambda module, args, out: stages.extend(out))
    try:
        with torch.no_grad():
            want = reference(x, mode="tensor")
            final, got_stages = model.forward_intermediates(x, indices=[1, 2, 3, 4])
            got = model.forward_head(final)
    finally:
        hook.remove()
    scale = want.abs().max().item()
    assert scale > 0.1 and want.shape == got.shape == (2, load_config(name).num_classes)
    assert (got - want).abs().max().item() <= PARITY_TOLERANCE * scale
    assert len(stages) == len(got_stages) == 4
    for i, (w, g) in enumerate(zip(stages, got_stages, strict=True)):  # bit for bit: same ops and kernels, one process
        assert w.shape == g.shape, f"stage {i}"
        assert w.abs().max() > 0 and torch.equal(w, g), f"stage {i}: max diff {(w - g).abs().max().item()}"


# ----------------------------------------------------------------------------- every config


@pytest.mark.mmpretrain
@pytest.mark.slow
@pytest.mark.parametrize("index, name", list(enumerate(list_configs())), ids=list_configs())
def test_conversion_equals_mmpretrain(tmp_path, cli, index, name):
    fmt = FORMATS[index % len(FORMATS)]
    reference = reference_model(name, seed=index)
    path = save_as_released(checkpoint_dict(reference, name, fmt), tmp_path / "downloads", name)
    out = tmp_path / "bundle"
    if name in THROUGH_SUBPROCESS:
        proc = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "convert_weights.py"), "--config", name,
             "--checkpoint", str(path), "--output-dir", str(out)],
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(numerics_threads(1))},
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        import mmpretrain

        parity = json.loads(_metadata(out)["parity"])
        size = load_config(name).eval.input_size
        assert parity["measured"] is True and parity["mmpretrain_version"] == mmpretrain.__version__
        assert parity["inputs"]["shape"] == [2, 3, size, size] and parity["logit_scale"] > 0.1
        assert parity["max_abs_logit_diff"] <= PARITY_TOLERANCE * parity["logit_scale"]
    else:
        code, stdout, stderr = cli("--config", name, "--checkpoint", path, "--output-dir", out, "--no-parity")
        assert code == 0, stderr
        assert name in stdout and stderr == ""
        assert json.loads(_metadata(out)["parity"]) == {"measured": False, "reason": "not requested (--no-parity)"}

    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    meta = _metadata(out)
    assert meta["config"] == name and meta["source_file"] == path.name and meta["source_sha256"] == sha256_of(path)
    assert json.loads((out / "config.json").read_text())["architecture"] == load_config(name).architecture_name
    _assert_same_as_mmpretrain(reference, _timm_from_bundle(name, out), name)


# ----------------------------------------------------------------------------- one small checkpoint, many ways


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """mmpretrain's ResNet-18 CIFAR model with random weights, and its mmcls v0 checkpoint file."""
    reference = reference_model(SMALL, seed=7)
    folder = tmp_path_factory.mktemp("small")
    content = checkpoint_dict(reference, SMALL, "mmcls-v0")
    return reference, content, save_as_released(content, folder, SMALL)


def test_converting_twice_gives_identical_bytes(tmp_path, cli, small):
    _, _, path = small
    # same-named folders: random weights are not the release, so the bundle is named after its folder
    a, b = tmp_path / "a" / "bundle", tmp_path / "b" / "bundle"
    for out in (a, b, a):
        code, _, stderr = cli("--config", SMALL, "--checkpoint", path, "--output-dir", out)
        assert code == 0, stderr
    assert tree_digest(a) == tree_digest(b) and len(tree_digest(a)) == 3
    parity = json.loads(_metadata(a)["parity"])
    assert parity["measured"] and parity["max_abs_logit_diff"] <= PARITY_TOLERANCE * parity["logit_scale"]


def test_legacy_serialization_converts(tmp_path, small):
    reference, content, _ = small
    path = save_as_released(content, tmp_path, SMALL, _use_new_zipfile_serialization=False)
    out = convert_checkpoint(SMALL, path, tmp_path / "out", measure_parity=False)
    _assert_same_as_mmpretrain(reference, _timm_from_bundle(SMALL, out), SMALL)


class RunsCode:
    """Unpickling this runs ``exec``: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickle_that_runs_code_is_refused(tmp_path, cli, small, zip_format):
    _, content, _ = small
    marker = tmp_path / "side-effect"
    evil = {**content, "meta": {**content["meta"], "hook": RunsCode(marker)}}
    path = save_as_released(evil, tmp_path / "ckpt", SMALL, _use_new_zipfile_serialization=zip_format)
    out = tmp_path / "out"
    for extra in ([], ["--allow-numpy"], ["--no-verify"]):
        code, stdout, stderr = cli("--config", SMALL, "--checkpoint", path, "--output-dir", out, *extra)
        assert code == 1 and stderr.count("\n") == 1 and "Traceback" not in stderr
        assert "exec" in stderr and "would run code" in stderr
    assert not marker.exists() and not out.exists()


def test_numpy_in_meta_needs_the_opt_in_flag(tmp_path, cli, small):
    reference, content, _ = small
    content = {**content, "meta": {**content["meta"], "best_accuracy": np.float64(93.5), "seed": np.int64(3)}}
    path = save_as_released(content, tmp_path / "ckpt", SMALL)
    code, _, stderr = cli("--config", SMALL, "--checkpoint", path, "--output-dir", tmp_path / "out")
    assert code == 1 and "numpy._core.multiarray.scalar" in stderr and "numpy.dtype" in stderr
    assert "--allow-numpy" in stderr and not (tmp_path / "out").exists()
    code, _, stderr = cli("--config", SMALL, "--checkpoint", path, "--output-dir", tmp_path / "out", "--allow-numpy")
    assert code == 0, stderr
    _assert_same_as_mmpretrain(reference, _timm_from_bundle(SMALL, tmp_path / "out"), SMALL)


def test_numpy_flag_allows_nothing_broader(tmp_path, small):
    from mmengine.logging import HistoryBuffer

    _, content, _ = small
    buffer = HistoryBuffer()
    buffer.update(0.5)
    content = {**content, "message_hub": {"log_scalars": {"train/loss": buffer}}}
    path = save_as_released(content, tmp_path, SMALL)
    with pytest.raises(ValueError, match="mmengine.logging.history_buffer.HistoryBuffer") as info:
        load_checkpoint(path, allow_numpy=True)
    assert "only allow-lists numpy scalar and dtype types" in str(info.value)


def test_truncated_file_is_refused(tmp_path, cli, small):
    _, _, path = small
    data = path.read_bytes()
    # named after its own (truncated) content, so it passes the hash check and fails to load
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    renamed = tmp_path / path.name.replace(path.name[-12:-4], sha256_of(truncated)[:8])
    truncated.rename(renamed)
    code, _, stderr = cli("--config", SMALL, "--checkpoint", renamed, "--output-dir", tmp_path / "out")
    assert code == 1 and "not a readable torch checkpoint" in stderr and "Traceback" not in stderr
    # the same bytes under the original name fail the hash check first
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / path.name).write_bytes(data[: len(data) // 2])
    code, _, stderr = cli("--config", SMALL, "--checkpoint", tmp_path / "orig" / path.name,
                          "--output-dir", tmp_path / "out")
    assert code == 1 and f"the file name {path.name} says {path.name[-12:-4]}" in stderr
    assert not (tmp_path / "out").exists()


def test_hashes_are_checked(tmp_path, cli, small):
    _, _, path = small
    sha = sha256_of(path)
    wrong_name = tmp_path / path.name.replace(sha[:8], "0badc0de")
    wrong_name.write_bytes(path.read_bytes())
    code, _, stderr = cli("--config", SMALL, "--checkpoint", wrong_name, "--output-dir", tmp_path / "out")
    assert code == 1 and sha in stderr and "0badc0de" in stderr and "refusing" in stderr

    no_hash = tmp_path / "my_run_epoch_200.pth"
    no_hash.write_bytes(path.read_bytes())
    code, _, stderr = cli("--config", SMALL, "--checkpoint", no_hash, "--output-dir", tmp_path / "out")
    assert code == 1 and "--sha256" in stderr and "--no-verify" in stderr
    code, _, stderr = cli("--config", SMALL, "--checkpoint", no_hash, "--output-dir", tmp_path / "out",
                          "--sha256", "ab" * 32)
    assert code == 1 and "--sha256 says " + "ab" * 32 in stderr
    code, _, stderr = cli("--config", SMALL, "--checkpoint", no_hash, "--output-dir", tmp_path / "out",
                          "--sha256", "12")
    assert code == 1 and "not a sha256" in stderr
    assert not (tmp_path / "out").exists()

    code, _, stderr = cli("--config", SMALL, "--checkpoint", no_hash, "--output-dir", tmp_path / "out",
                          "--sha256", sha.upper(), "--no-parity")
    assert code == 0, stderr
    assert _metadata(tmp_path / "out")["source_file"] == no_hash.name
    # the same bundle unverified (named as its folder, as the first one, since it is not mmpretrain's release)
    code, _, stderr = cli("--config", SMALL, "--checkpoint", no_hash, "--output-dir", tmp_path / "again" / "out",
                          "--no-verify", "--no-parity")
    assert code == 0, stderr
    assert tree_digest(tmp_path / "out") == tree_digest(tmp_path / "again" / "out")


def test_full_sha256_from_hub_configs(tmp_path, small):
    _, _, path = small
    sha = sha256_of(path)
    cfg = load_config(SMALL)

    def with_recorded(value):
        url = f"https://download.example/{path.name}"
        return dataclasses.replace(cfg, checkpoint=dataclasses.replace(cfg.checkpoint, url=url, sha256=value))

    wrong = sha[:8] + "0" * 56  # the name's prefix is right, the rest is not
    with pytest.raises(ValueError, match=f"hub_configs/{SMALL}.yaml says {wrong}"):
        convert_checkpoint(with_recorded(wrong), path, tmp_path / "out", measure_parity=False)
    assert not (tmp_path / "out").exists()
    out = convert_checkpoint(with_recorded(sha), path, tmp_path / "out", measure_parity=False)
    # a verified local copy of the released file also names where that file is published
    assert _metadata(out)["source_url"] == f"https://download.example/{path.name}"
    assert _metadata(out)["source_file"] == path.name
    # a full hash that contradicts the name is refused before anything is read or downloaded
    with pytest.raises(ValueError, match="disagree"):
        expected_hashes(str(path), cfg=with_recorded("f" * 64))
    # the recorded hash is that of the released file, not of a user's own checkpoint
    assert expected_hashes("/data/mine-0123abcd.pth", cfg=with_recorded(sha)) == {
        "the file name mine-0123abcd.pth": "0123abcd"}


def test_missing_unexpected_and_misshaped_keys_are_all_named(tmp_path, cli, small):
    _, content, _ = small
    state = dict(content["state_dict"])
    del state["backbone.layer1.0.bn1.running_var"]
    state["backbone.layer9.0.conv1.weight"] = torch.zeros(3)
    state["neck.pool.weight"] = torch.zeros(3)
    state["head.fc.weight"] = torch.zeros(7, 512)
    state["backbone.layer4.1.bn2.bias"] = torch.zeros(5)
    with pytest.raises(ValueError) as info:
        mmpretrain_to_timm({"meta": content["meta"], "state_dict": state}, load_config(SMALL))
    message = str(info.value)
    for expected in ("missing (1): layer1.0.bn1.running_var",
                     "unexpected (2): neck.pool.weight, backbone.layer9.0.conv1.weight",
                     "head.fc.weight -> fc.weight: checkpoint (7, 512) vs model (10, 512)",
                     "backbone.layer4.1.bn2.bias -> layer4.1.bn2.bias: checkpoint (5,) vs model (512,)"):
        assert expected in message
    path = save_as_released({"state_dict": state}, tmp_path, SMALL)
    code, _, stderr = cli("--config", SMALL, "--checkpoint", path, "--output-dir", tmp_path / "out")
    assert code == 1 and stderr.count("\n") == 1 and "missing (1)" in stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("source, target, fits", [
    ("resnet34_8xb16_cifar10", SMALL, "it fits resnet34_8xb16_cifar10"),
    ("resnetv1c50_8xb32_in1k", "resnetv1d50_8xb32_in1k", "it fits resnetv1c50_8xb32_in1k"),
    ("resnetv1d50_8xb32_in1k", "resnetv1c50_8xb32_in1k", "it fits resnetv1d50_8xb32_in1k"),
    ("resnet50_8xb16_cifar100", "resnet50_8xb16_cifar10", "it fits resnet50_8xb16_cifar100"),
    ("resnet50_8xb8_cub", "resnet101_8xb32_in1k", "it fits resnet50_8xb8_cub"),
])
def test_checkpoint_of_another_architecture_names_the_config_it_fits(source, target, fits):
    from resnet_hub.reference import build_mmpretrain_model

    state = build_mmpretrain_model(source).state_dict()
    with pytest.raises(ValueError, match=f"is not a .*{fits}") as info:
        mmpretrain_to_timm({"state_dict": state}, load_config(target))
    assert "Keys: " in str(info.value)


def test_resnet50_in1k_checkpoint_fits_every_resnet50_in1k_config():
    from resnet_hub.reference import build_mmpretrain_model

    state = build_mmpretrain_model("resnet50_8xb32_in1k").state_dict()
    with pytest.raises(ValueError) as info:
        mmpretrain_to_timm(state, load_config("resnet50_8xb8_cub"))
    fits = str(info.value).split("it fits ", 1)[1].split(".", 1)[0].split(", ")
    assert sorted(fits) == sorted(list_configs("resnet50_8xb*in1k"))
    assert "head.fc.weight -> fc.weight: checkpoint (1000, 2048) vs model (200, 2048)" in str(info.value)


def test_checkpoint_meta_must_agree_with_the_config(small):
    reference, content, _ = small
    cfg = load_config(SMALL)
    v1 = checkpoint_dict(reference, SMALL, "mmpretrain-1.x")
    assert mmpretrain_to_timm(v1, cfg).keys() == mmpretrain_to_timm(content, cfg).keys()
    imagenet_mean = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
    v1["state_dict"] = {**v1["state_dict"], "data_preprocessor.mean": imagenet_mean}
    with pytest.raises(ValueError, match=r"data_preprocessor.mean is \[123.675, 116.28, 103.53\]"):
        mmpretrain_to_timm(v1, cfg)
    with pytest.raises(ValueError, match="names 3 classes, but resnet18_8xb16_cifar10 has 10"):
        mmpretrain_to_timm({**content, "meta": {"CLASSES": ["a", "b", "c"]}}, cfg)
    with pytest.raises(ValueError, match="not tensors"):
        mmpretrain_to_timm({"model": content["state_dict"], "epoch": 3}, cfg)



@pytest.mark.parametrize("fmt, field", [("mmcls-v0", "meta.CLASSES"), ("mmpretrain-1.x", "meta.dataset_meta.classes")])
def test_class_names_in_meta_are_checked_alike_in_both_formats(small, fmt, field):
    """An empty list (or tuple) records no class names in either format; a non-empty one must fit."""
    reference, _, _ = small
    cfg = load_config(SMALL)

    def with_classes(classes):
        content = checkpoint_dict(reference, SMALL, fmt)
        holder = content["meta"]["dataset_meta"] if fmt == "mmpretrain-1.x" else content["meta"]
        holder["classes" if fmt == "mmpretrain-1.x" else "CLASSES"] = classes
        return content

    want = mmpretrain_to_timm(checkpoint_dict(reference, SMALL, "bare"), cfg)
    for empty in ([], ()):
        got = mmpretrain_to_timm(with_classes(empty), cfg)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    mmpretrain_to_timm(with_classes(tuple(str(i) for i in range(cfg.num_classes))), cfg)
    for wrong in (["a", "b", "c"], tuple(str(i) for i in range(cfg.num_classes + 1))):
        with pytest.raises(ValueError, match=rf"{field} names {len(wrong)} classes, but {SMALL} has 10"):
            mmpretrain_to_timm(with_classes(wrong), cfg)
    with pytest.raises(ValueError, match=rf"{field} is a str, not a list of class names"):
        mmpretrain_to_timm(with_classes("airplane"), cfg)

def test_failing_conversion_leaves_the_output_dir_as_it_was(tmp_path, cli, small, monkeypatch):
    _, content, path = small
    out = tmp_path / "out"
    assert cli("--config", SMALL, "--checkpoint", path, "--output-dir", out, "--no-parity")[0] == 0
    (out / "notes.txt").write_text("mine")
    before = tree_digest(out)
    other = dict(content["state_dict"])
    other["head.fc.bias"] = other["head.fc.bias"] + 1.0
    other_path = save_as_released({"state_dict": other}, tmp_path / "other", SMALL)

    # a converted model that does not reproduce mmpretrain is never written
    real = convert._timm_model

    def off_by_a_little(cfg, state):
        model = real(cfg, state)
        with torch.no_grad():
            model.fc.bias.add_(1e-3)
        return model

    monkeypatch.setattr(convert, "_timm_model", off_by_a_little)
    code, _, stderr = cli("--config", SMALL, "--checkpoint", other_path, "--output-dir", out)
    assert code == 1 and "differ from mmpretrain's" in stderr and "nothing written" in stderr
    monkeypatch.undo()
    bad = tmp_path / "bad" / path.name
    bad.parent.mkdir()
    bad.write_bytes(path.read_bytes()[:1000])
    code, _, stderr = cli("--config", SMALL, "--checkpoint", bad, "--output-dir", out)
    assert code == 1 and "sha256" in stderr
    assert tree_digest(out) == before


def test_parity_is_recorded_as_not_measured_without_mmpretrain(tmp_path, small, monkeypatch):
    _, _, path = small
    monkeypatch.setitem(sys.modules, "mmpretrain", None)  # `import mmpretrain` now raises ImportError
    out = convert_checkpoint(SMALL, path, tmp_path / "out")
    parity = json.loads(_metadata(out)["parity"])
    assert parity["measured"] is False and "mmpretrain is not installed" in parity["reason"]


def test_command_line_argument_errors(tmp_path, cli, small):
    _, _, path = small
    for argv, expected in [
        (["--config", SMALL, "--output-dir", tmp_path], "--config takes --checkpoint"),
        (["--all", "--checkpoint", path, "--output-dir", tmp_path], "--all takes --checkpoint-dir"),
        (["--config", "resnet50_8xb32_in1K", "--checkpoint", path, "--output-dir", tmp_path],
         "closest: resnet50_8xb32_in1k"),
        (["--config", SMALL, "--checkpoint", tmp_path / "nope-0123abcd.pth", "--output-dir", tmp_path],
         "no checkpoint file"),
    ]:
        code, _, stderr = cli(*argv)
        assert code == 1 and stderr.startswith("error: ") and expected in stderr, stderr


def test_convert_all_released_files_in_a_folder(tmp_path, cli, small):
    from resnet_hub.reference import build_mmpretrain_model

    _, content, _ = small
    folder = tmp_path / "downloads"
    folder.mkdir()
    names = [SMALL, "resnet34_8xb16_cifar10"]
    torch.save(content, folder / load_config(SMALL).checkpoint.file_name)
    torch.save(build_mmpretrain_model(names[1]).state_dict(), folder / load_config(names[1]).checkpoint.file_name)
    torch.save(content, folder / "unrelated-0123abcd.pth")
    out = tmp_path / "out"
    # the released names carry the released files' hashes, which random weights do not have
    code, _, stderr = cli("--all", "--checkpoint-dir", folder, "--output-dir", out)
    assert code == 1 and "2 of 2 conversions failed" in stderr and not out.exists()
    for name in names:
        assert f"the file name {load_config(name).checkpoint.file_name} says" in stderr
    code, stdout, stderr = cli("--all", "--checkpoint-dir", folder, "--output-dir", out, "--no-verify", "--no-parity")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    # unverified, a file is only known by its name
    assert "source_url" not in _metadata(out / SMALL) and _metadata(out / SMALL)["source_file"].endswith(".pth")
    assert all(f"{name}: wrote" in stdout for name in names)
    code, _, stderr = cli("--all", "--checkpoint-dir", tmp_path / "out", "--output-dir", tmp_path / "x")
    assert code == 1 and f"holds none of the {len(list_configs())} released checkpoint files" in stderr


# ----------------------------------------------------------------------------- URLs


def test_url_download_is_verified_and_cached(tmp_path, monkeypatch, small):
    reference, _, path = small
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET_HUB_CACHE", str(cache))
    data = path.read_bytes()
    with FileServer() as server:
        server.files[path.name] = data
        url = server.url(path.name)
        out = convert_checkpoint(SMALL, url, tmp_path / "a", measure_parity=False, model_name="small")
        assert _metadata(out)["source_url"] == url and _metadata(out)["source_sha256"] == sha256_of(path)
        assert sorted(p.name for p in cache.iterdir()) == [path.name] and server.gets == [path.name]
        _assert_same_as_mmpretrain(reference, _timm_from_bundle(SMALL, out), SMALL)

        # the cached file is re-hashed before use: intact, it is used as it is
        convert_checkpoint(SMALL, url, tmp_path / "b", measure_parity=False, model_name="small")
        assert server.gets == [path.name] and tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")

        # corrupted, it is detected and fetched again
        (cache / path.name).write_bytes(data[:-10] + b"0123456789")
        with pytest.warns(UserWarning, match="downloading it again"):
            convert_checkpoint(SMALL, url, tmp_path / "c", measure_parity=False, model_name="small")
        assert server.gets == [path.name] * 2 and sha256_of(cache / path.name) == sha256_of(path)


@pytest.mark.parametrize("failure", ["wrong-content", "truncated", "missing"])
def test_failed_download_leaves_no_file(tmp_path, monkeypatch, cli, small, failure):
    _, _, path = small
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNET_HUB_CACHE", str(cache))
    with FileServer() as server:
        if failure == "wrong-content":
            server.files[path.name] = path.read_bytes()[::-1]
        elif failure == "truncated":
            server.files[path.name] = path.read_bytes()
            server.truncated.add(path.name)
        url = server.url(path.name)
        code, _, stderr = cli("--config", SMALL, "--checkpoint", url, "--output-dir", tmp_path / "out")
    assert code == 1 and stderr.count("\n") == 1, stderr
    expected = {"wrong-content": "does not match its expected sha256",
                "truncated": "does not match its expected sha256", "missing": "could not download"}[failure]
    assert expected in stderr
    assert not (tmp_path / "out").exists()
    assert list(cache.iterdir()) == []  # no final file, no .partial file


# ----------------------------------------------------------------------------- fine-tuning initialisation


def test_load_pretrained_backbone_keeps_the_head(tmp_path):
    cub = load_config("resnet50_8xb8_cub")
    reference = reference_model("resnet50_8xb32_in1k", seed=11)
    content = checkpoint_dict(reference, "resnet50_8xb32_in1k", "mmpretrain-1.x")
    # an ImageNet-21k head, as in mmpretrain's resnet50_3rdparty-mill_in21k checkpoint
    content["state_dict"]["head.fc.weight"] = torch.randn(21, 2048)
    content["state_dict"]["head.fc.bias"] = torch.randn(21)
    content["meta"]["dataset_meta"]["classes"] = [str(i) for i in range(21)]
    path = save_as_released(content, tmp_path, "resnet50_8xb32_in1k")

    model = timm.create_model(cub.name).eval()
    head = {k: v.clone() for k, v in model.fc.state_dict().items()}
    load_pretrained_backbone(model, path, cfg=cub)
    assert all(torch.equal(v, model.fc.state_dict()[k]) for k, v in head.items())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    reference.backbone.out_indices = (0, 1, 2, 3)
    with torch.no_grad():
        got = model.forward_intermediates(x, [1, 2, 3, 4], intermediates_only=True)
        for want, have in zip(reference.backbone(x), got, strict=True):
            assert torch.equal(want, have)

    with pytest.raises(ValueError, match="no weights under 'model'; its top-level names are"):
        load_pretrained_backbone(model, path, cfg=cub, prefix="model")
    small = checkpoint_dict(reference_model(SMALL), SMALL, "bare")
    with pytest.raises(ValueError, match="is not a resnet50 backbone: missing"):
        load_pretrained_backbone(model, save_as_released(small, tmp_path / "s", SMALL), cfg=cub)
    with pytest.raises(ValueError, match="has no sha256 in its name"):
        load_pretrained_backbone(model, tmp_path / "s" / "x.pth", cfg=cub)


# ----------------------------------------------------------------------------- checkpoints that are not the release


def test_a_checkpoint_that_is_not_the_release_claims_none_of_it(tmp_path, cli, small):
    """The small fixture is mmpretrain's architecture with random weights: a file of the released name's form
    whose sha256 is not the release's. Its card says so and carries no published figure or recipe."""
    from huggingface_hub import ModelCard

    import resnet_hub

    _, _, path = small
    cfg = load_config(SMALL)
    mine = tmp_path / "my_run_epoch_200.pth"
    mine.write_bytes(path.read_bytes())
    for source, flags, folder in ((path, (), "cifar-r18-mine"), (mine, ("--no-verify",), "cifar-r18-noverify")):
        out = tmp_path / folder
        code, stdout, stderr = cli("--config", SMALL, "--checkpoint", source, "--output-dir", out, "--no-parity",
                                   *flags)
        assert code == 0, stderr
        assert f"not mmpretrain's release: named {folder}" in stdout
        card = ModelCard((out / "README.md").read_text())
        text = card.text
        assert "**not** mmpretrain's release" in text and "nothing was retrained" not in text
        assert "`, a local copy of <" not in text and str(cfg.results.top1) not in text and "Training recipe" in text
        assert "mmpretrain's, in brief" not in text and "ILSVRC" not in text
        data = card.data.to_dict()
        assert "model-index" not in data and "datasets" not in data and "base_model" not in data
        assert text.lstrip().startswith(f"# {folder}\n")
        assert f"hf-hub:{resnet_hub.hub_repo_id(folder)}" in text and f"hub:{SMALL}" not in text
        assert resnet_hub.hub_repo_id(SMALL) not in text
        description = json.loads((out / "config.json").read_text())["pretrained_cfg"]["description"]
        assert "not mmpretrain's release" in description and cfg.checkpoint.url not in description
        assert str(tmp_path) not in (out / "README.md").read_text()


def _own_fine_tune(tmp_path, name, classes, seed=3, fmt="mmpretrain-1.x"):
    """A user's fine-tune of ``name`` with a head of ``len(classes)``: mmpretrain's own model built with that head
    by mmpretrain's builder, random weights, saved as mmpretrain saves (its meta naming its classes)."""
    reference = reference_model(name, seed=seed, num_classes=len(classes))
    path = tmp_path / "work_dirs" / "epoch_12.pth"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint_dict(reference, name, fmt, classes=classes), path)
    return reference, path


def _logits_match(reference, bundle: Path, name: str, num_classes: int) -> None:
    model = timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()
    size = 32 if load_config(name).architecture.stem == "cifar" else 64
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = reference(x, mode="tensor"), model(x)
    scale = want.abs().max().item()
    assert got.shape == want.shape == (2, num_classes) and scale > 0.1
    assert (got - want).abs().max().item() <= PARITY_TOLERANCE * scale


@pytest.mark.mmpretrain
@pytest.mark.parametrize("name", [SMALL, "resnetv1d50_8xb32_in1k"])  # the CIFAR stem; the deep stem with avg-pool
def test_own_fine_tune_with_its_own_head_converts_equal_to_mmpretrain(tmp_path, cli, name):
    classes = ["circle", "square", "star", "triangle"]
    reference, path = _own_fine_tune(tmp_path, name, classes)
    out = tmp_path / "shapes-bundle"
    code, _, stderr = cli("--config", name, "--checkpoint", path, "--output-dir", out, "--no-verify")
    assert code == 1 and "a 4-class head" in stderr and "--num-classes 4" in stderr, stderr
    assert not out.exists()
    code, stdout, stderr = cli("--config", name, "--checkpoint", path, "--output-dir", out, "--no-verify",
                               "--num-classes", "4", "--model-name", "shapes-r", "--repo-id", "alice/shapes-r")
    assert code == 0, stderr
    parity = json.loads(_metadata(out)["parity"])  # the converter's own check against mmpretrain, 4-class head
    assert parity["measured"] is True and parity["relative_diff"] <= PARITY_TOLERANCE
    config = json.loads((out / "config.json").read_text())
    assert config["num_classes"] == 4 and config["label_names"] == classes  # the checkpoint's own names
    _logits_match(reference, out, name, 4)
    text = (out / "README.md").read_text()
    assert "# shapes-r\n" in text and "hf-hub:alice/shapes-r" in text and "top-5" not in text.lower()
    from resnet_hub.hub.bundle import validate_bundle

    assert validate_bundle(out).num_classes == 4


def test_labels_file_names_the_classes_and_is_checked(tmp_path, cli):
    classes = [f"c{i}" for i in range(3)]
    reference, path = _own_fine_tune(tmp_path, SMALL, classes, fmt="bare")  # a bare state dict names no class
    names = tmp_path / "labels.txt"
    names.write_text("cat\ndog\n\nbird\n")
    out = tmp_path / "pets"
    code, _, stderr = cli("--config", SMALL, "--checkpoint", path, "--output-dir", out, "--no-verify",
                          "--labels", names)
    assert code == 0, stderr
    assert json.loads((out / "config.json").read_text())["label_names"] == ["cat", "dog", "bird"]
    _logits_match(reference, out, SMALL, 3)
    for argv, needle in ((("--labels", names, "--num-classes", "4"), "--labels names 3 classes, --num-classes says 4"),
                         (("--labels", tmp_path / "none.txt"), "no such file"),
                         (("--num-classes", "5"), "mis-shaped")):
        code, _, stderr = cli("--config", SMALL, "--checkpoint", path, "--output-dir", tmp_path / "x", "--no-verify",
                              *argv)
        assert code == 1 and needle in stderr and len(stderr.strip().splitlines()) == 1, stderr
    unnamed = tmp_path / "unnamed"
    assert cli("--config", SMALL, "--checkpoint", path, "--output-dir", unnamed, "--no-verify", "--num-classes",
               "3")[0] == 0
    assert json.loads((unnamed / "config.json").read_text())["label_names"] == ["0", "1", "2"]
