"""``resnet-hub export``: every config's ONNX and .pt2 give timm's logits, loaded where resnet_hub is not.

Exports cost seconds each (ResNet-50: 10 s of CPU, 6 of them in the ONNX exporter; ResNet-152 about twice that),
so they are made once per architecture (depth, stem, classes: configs that share one share a graph), at a small
input size (32 for CIFAR stems, 64 for ImageNet stems; the batch stays dynamic), and each file is deleted once
checked. The files of one architecture per stem also run in a process that never imports resnet_hub.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch
from conftest import REPO, run_command
from inference_helpers import CIFAR, random_model

from resnet_hub.export import MODEL_FILES, TOLERANCE, ExportMismatchError, export_model, preprocessing_spec
from resnet_hub.zoo.configs import all_configs

CONFIGS = sorted(all_configs())


def architecture(name: str) -> tuple:
    cfg = all_configs()[name]
    return cfg.architecture.depth, cfg.architecture.stem, cfg.num_classes


def input_size(name: str) -> tuple[int, int, int]:
    return (3, 32, 32) if all_configs()[name].architecture.stem == "cifar" else (3, 64, 64)


@pytest.fixture(scope="module")
def deployer():
    """One process, for the whole module, that runs exported files without resnet_hub."""
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "exported_runner.py")], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, cwd="/")

    def run(model, images, tmp_path):
        np.save(tmp_path / "input.npy", images)
        request = dict(model=str(model), input=str(tmp_path / "input.npy"), output=str(tmp_path / "output.npy"))
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        answer = json.loads(process.stdout.readline())
        assert answer["resnet_hub_modules"] == []
        return np.load(tmp_path / "output.npy")

    yield run
    process.stdin.close()
    assert process.wait(timeout=60) == 0


def _representatives() -> set[tuple]:
    """The smallest architecture of each stem: these are also run where resnet_hub is never imported."""
    smallest = {}
    for name in CONFIGS:
        key = architecture(name)
        if key[1] not in smallest or key < smallest[key[1]]:
            smallest[key[1]] = key
    return set(smallest.values())


@pytest.fixture(scope="module")
def deployed(deployer, tmp_path_factory):
    """architecture -> {format: logits of the exported file}, for one fixed input; exported on first use.

    Files are run here (ONNX Runtime, torch.export.load) and, for one architecture per stem, also in the
    deployer process that never imports resnet_hub, which must give the same logits."""
    from resnet_hub.export import run_exported

    cache: dict[tuple, tuple] = {}

    def get(name: str):
        key = architecture(name)
        if key not in cache:
            folder = tmp_path_factory.mktemp("export")
            images = np.random.default_rng(1).standard_normal((3, *input_size(name)), dtype=np.float32)
            files = export_model(random_model(name), folder, ("onnx", "pt2"), input_size=input_size(name))
            outputs = {fmt: run_exported(f.path, images) for fmt, f in files.items()}
            if key in _representatives():
                for fmt, f in files.items():  # 1 thread there, this process's threads here: rounding differs
                    got = deployer(f.path, images, folder)
                    assert np.abs(got - outputs[fmt]).max() / max(1.0, np.abs(outputs[fmt]).max()) <= TOLERANCE
            for f in files.values():
                f.path.unlink()
            cache[key] = images, outputs
        return cache[key]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_exports_to_files_that_give_timms_logits(name, deployed):
    images, outputs = deployed(name)  # configs of one architecture share one export (same seed, same weights)
    with torch.no_grad():
        expected = random_model(name)(torch.from_numpy(images)).double().numpy()
    scale = max(1.0, float(np.abs(expected).max()))
    for fmt, got in outputs.items():
        assert got.shape == expected.shape, fmt
        # TOLERANCE (1e-5 relative, resnet_hub/export.py) was set from these comparisons: at most 1.5e-7 measured
        assert np.abs(got - expected).max() / scale <= TOLERANCE, fmt


def test_export_refuses_a_file_whose_logits_differ_and_leaves_nothing(tmp_path):
    # a tolerance below float32's rounding: the check itself must refuse, and say by how much
    with pytest.raises(ExportMismatchError, match=r"differ from the timm model's by up to .*nothing written"):
        export_model(random_model(CIFAR), tmp_path, "pt2", tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_preprocessing_json_is_the_transform_predict_runs():
    spec = preprocessing_spec(timm.create_model("resnet50_8xb32_in1k"))
    assert spec["resize"] == dict(size=256, edge="shorter (aspect kept)", interpolation="bilinear", antialias=True)
    assert spec["center_crop"] == [224, 224] and spec["input"]["size"] == [224, 224]
    assert spec["mean"] == [0.485, 0.456, 0.406] and spec["std"] == [0.229, 0.224, 0.225]
    assert len(spec["labels"]) == 1000
    cub = preprocessing_spec(timm.create_model("resnet50_8xb8_cub"))
    assert cub["resize"]["size"] == [600, 600] and cub["center_crop"] == [448, 448]


def test_export_command_writes_files_and_their_preprocessing(tmp_path):
    out = tmp_path / "deploy"
    result = run_command(["-m", "resnet_hub.cli", "export", CIFAR, "--random-init", "--format", "onnx", "pt2",
                          "--output", out])
    assert result.returncode == 0, result.stderr
    assert "model.onnx (ONNX opset" in result.stdout and "model.pt2 (torch.export program" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([*MODEL_FILES.values(), "preprocessing.json"])
    spec = json.loads((out / "preprocessing.json").read_text())
    assert spec["files"]["onnx"]["opset"] >= 18 and spec["labels"][0] == "airplane"


@pytest.mark.parametrize("argv, message", [
    (["no_such_model", "--output", "x"], "error: "),
    ([CIFAR, "--random-init", "--format", "tflite", "--output", "x"], "invalid choice: 'tflite'"),
    ([CIFAR, "--random-init", "--weights", "w.safetensors", "--output", "x"], "exclude each other"),
])
def test_export_command_bad_input_is_one_line(argv, message, tmp_path):
    result = run_command(["-m", "resnet_hub.cli", "export", *argv], cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("argv, message", [
    ([CIFAR, "a.jpg", "--random-init", "--output", "e.txt"], "--output must end in .safetensors or .npy"),
    ([CIFAR, "missing.jpg", "--random-init", "--output", "e.npy"], "no such image file: missing.jpg"),
])
def test_embed_command_bad_input_is_one_line(argv, message, tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    result = run_command(["-m", "resnet_hub.cli", "embed", *argv], cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# ----------------------------------------------------------------------------- push --with-onnx, the card's snippets


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    return text[start:text.index("\n## ", start + 1)]


def _blocks(section: str, lang: str) -> list[str]:
    import re

    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A CIFAR bundle pushed with --with-onnx to a LocalHub: (hub, repo id, bundle, the push's output)."""
    from hub_server import LocalHub
    from publish_helpers import make_bundle

    from resnet_hub.zoo.configs import hub_repo_id

    bundle = make_bundle(CIFAR, tmp_path_factory.mktemp("bundle") / CIFAR)
    with LocalHub(token="hf_test_deploy") as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_deploy", "HF_HUB_DISABLE_XET": "1"}
        result = run_command(["-m", "resnet_hub.cli", "push", bundle, "--repo-id", hub_repo_id(CIFAR),
                              "--with-onnx"], env=env)
        yield hub, hub_repo_id(CIFAR), bundle, result


@pytest.mark.slow
def test_push_with_onnx_adds_the_export_in_the_same_single_commit(pushed, tmp_path):
    hub, repo, bundle, result = pushed
    assert result.returncode == 0, result.stderr
    ours, created = hub.log(repo)
    assert created.message == "initial commit" and ours.parent == created.sha
    files = {k: v for k, v in hub.files(repo).items() if k != ".gitattributes"}
    assert sorted(files) == ["README.md", "config.json", "model.safetensors", "onnx/model.onnx",
                             "onnx/preprocessing.json"]
    (tmp_path / "model.onnx").write_bytes(files["onnx/model.onnx"])
    images = np.random.default_rng(2).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()(torch.from_numpy(images))
    from resnet_hub.export import run_exported

    got = run_exported(tmp_path / "model.onnx", images)
    assert np.abs(got - expected.numpy()).max() / max(1.0, float(expected.abs().max())) <= TOLERANCE
    assert json.loads(files["onnx/preprocessing.json"])["files"]["onnx"]["file"] == "model.onnx"


def _card_env(hub, tmp_path):
    from inference_helpers import photos
    from PIL import Image

    for i, photo in enumerate(photos(2, size=(50, 41)), 1):
        Image.fromarray(photo).save(tmp_path / f"image{i}.jpg", quality=95)
    return {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}


def _run_bash(block: str, env, cwd):
    for line in block.strip().splitlines():
        if line.startswith("pip install"):
            continue
        assert line.startswith("resnet-hub "), line
        result = run_command(["-m", "resnet_hub.cli", *line.split()[1:]], env=env, cwd=cwd)
        assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_the_cards_deployment_snippets_run_and_give_timms_logits(pushed, tmp_path):
    """"Export and deployment": the export command, then the ONNX Runtime snippet with NumPy and Pillow
    alone, whose logits are timm's (resnet_hub's eval transform) on the same JPEG."""
    from conftest import run_python

    from resnet_hub.inference import preprocess

    hub, repo, bundle, _ = pushed
    env = _card_env(hub, tmp_path)
    section = _section((bundle / "README.md").read_text(), "Export and deployment")
    [bash] = _blocks(section, "bash")
    _run_bash(bash, env, tmp_path)
    [code] = _blocks(section, "python")
    proc = run_python(code + "\nnp.save('logits.npy', logits)\n", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()
    with torch.no_grad():
        expected = model(preprocess([tmp_path / "image1.jpg"], model)).numpy()
    got = np.load(tmp_path / "logits.npy")
    assert np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())) <= TOLERANCE
    assert proc.stdout.strip() == model.pretrained_cfg["label_names"][int(expected[0].argmax())]


@pytest.mark.slow
def test_the_cards_feature_map_and_embedding_snippets_run(pushed, tmp_path):
    from conftest import run_python
    from safetensors.numpy import load_file

    from resnet_hub.embed import embed_images

    hub, repo, bundle, _ = pushed
    env = _card_env(hub, tmp_path)
    text = (bundle / "README.md").read_text()
    [features] = _blocks(_section(text, "Feature Map Extraction"), "python")
    proc = run_python(features, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shapes = [line[2:] for line in features.splitlines() if line.startswith("# (")]
    assert proc.stdout.split("\n")[:-1] == shapes and len(shapes) == 5
    section = _section(text, "Image Embeddings")
    timm_code, ours = _blocks(section, "python")
    proc = run_python(timm_code + ours + "\nimport numpy as np\nnp.save('a.npy', embedding.detach().numpy())\n"
                      "np.save('b.npy', embeddings)\n", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [bash] = _blocks(section, "bash")
    _run_bash(bash, env, tmp_path)
    expected = embed_images(f"local-dir:{bundle}", [tmp_path / "image1.jpg", tmp_path / "image2.jpg"])
    assert expected.shape == (2, 512)
    # float32, BatchNorm folded (ours) or not (timm's): measured max relative difference 3e-7
    for got in (np.load(tmp_path / "a.npy")[0], np.load(tmp_path / "b.npy")[0],
                load_file(tmp_path / "embeddings.safetensors")["embeddings"][0]):
        np.testing.assert_allclose(got, expected[0], rtol=1e-4, atol=1e-4 * np.abs(expected).max())
