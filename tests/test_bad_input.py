"""No input ends in a traceback (issue 22, cases 6, 7, 9, 10): tampered bundles, huge or unreadable images,
bad devices and weights files each give one line and exit 1, through predict and eval in process.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from resnet_hub import commands, inference
from resnet_hub.hub.bundle import write_bundle
from resnet_hub.train import evaluate
from resnet_hub.zoo.configs import load_config

CIFAR = "resnet18_8xb16_cifar10"
TINY = {"channels": [8, 16, 32, 64], "stem_width": 8}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    model = timm.create_model(CIFAR, **{k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()})
    return write_bundle(model, load_config(CIFAR), tmp_path_factory.mktemp("bundle") / "b", model_args=TINY)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("a.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name)
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def huge_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A few bytes that announce a ``width`` x ``height`` image: PIL sizes it from the header, before decoding."""
    Image.new("1", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height, then its CRC
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _cli(module, argv, capsys) -> tuple[int, str, str]:
    code = commands.main(module.add_arguments, module.run, "cmd", [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(code: int, err: str, needle: str) -> None:
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err[-2000:]
    assert "weights_only=False" not in err and "Traceback" not in err


def _tamper(bundle: Path, tmp_path: Path, config=None, weights=None) -> Path:
    out = tmp_path / "tampered"
    out.mkdir()
    for f in bundle.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    if config is not None:
        data = json.loads((out / "config.json").read_text())
        config(data)
        (out / "config.json").write_text(json.dumps(data))
    if weights is not None:
        weights(out / "model.safetensors")
    return out


def _set(*path_value):
    *path, value = path_value

    def edit(data):
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value
    return edit


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[:1000])


def _nan(path: Path):
    state = load_file(str(path))
    state["fc.weight"][0, 0] = float("nan")
    save_file(state, str(path), metadata={"format": "pt"})


TAMPERED = {
    "input_size": (dict(config=_set("pretrained_cfg", "input_size", [3, 6000, 6000])), "input_size [3, 6000, 6000]"),
    "std": (dict(config=_set("pretrained_cfg", "std", [0, 0, 0])), "pretrained_cfg.std [0, 0, 0] is not 3 finite"),
    "labels": (dict(config=_set("label_names", ["a", "b", "c"])), "label_names holds 3 names for 10 classes"),
    "architecture": (dict(config=_set("architecture", "resnet50")), "does not match config.json (resnet50, 10"),
    "num_classes": (dict(config=lambda d: d.update(num_classes=5, label_names=list("abcde"))),
                    "does not match config.json (resnet18_cifar, 5 classes)"),
    "unknown architecture": (dict(config=_set("architecture", "no_such_net")), "cannot build architecture"),
    "truncated weights": (dict(weights=_truncate), "not a readable safetensors file"),
    "empty weights": (dict(weights=lambda p: p.write_bytes(b"")), "not a readable safetensors file"),
    "huge header": (dict(weights=lambda p: p.write_bytes(struct.pack("<Q", 2**40) + b"{}")),
                    "not a readable safetensors file"),
    "nan weights": (dict(weights=_nan), "non-finite values in fc.weight"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_bundles_are_one_line_in_predict_and_eval(bundle, images, tmp_path, capsys, case):
    """Case 7: what validate_bundle refuses before a push is refused where predict and eval read a bundle."""
    edits, needle = TAMPERED[case]
    tampered = _tamper(bundle, tmp_path, **edits)
    code, out, err = _cli(inference, [f"local-dir:{tampered}", images / "a.png"], capsys)
    _one_error(code, err, needle)
    assert out == ""
    code, out, err = _cli(evaluate, [f"local-dir:{tampered}", "--dataset", "digits", "--limit", "4", "--workers", "0",
                                     "--cpu", "--no-progress"], capsys)
    _one_error(code, err, needle)


def test_predict_dir_reports_every_image(bundle, images, tmp_path, capsys):
    """Cases 9: a folder with an unreadable and a decompression-bomb image among good ones: a result for each
    good one, one line for each bad one, exit 1 at the end."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in images.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    huge_png(folder / "big.png")
    code, out, err = _cli(inference, [f"local-dir:{bundle}", folder, "--json"], capsys)
    assert code == 1 and [Path(json.loads(line)["image"]).name for line in out.splitlines()] == ["a.png", "c.png"]
    errors = err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors), err
    assert f"{folder / 'b.jpg'} is not an image that can be read" in errors[0]
    assert f"{folder / 'big.png'} is too large to decode" in errors[1] and "MAX_IMAGE_PIXELS" in errors[1]
    assert errors[2] == "error: 2 of 4 image(s) could not be read"
    code, out, err = _cli(inference, [f"local-dir:{bundle}", folder / "big.png"], capsys)
    assert code == 1 and out == "" and "Traceback" not in err


def test_bad_devices_and_weights_files_are_one_line(bundle, images, tmp_path, capsys):
    """Case 9: --device that does not exist here, --weights naming an image, a pickle, a pickle that runs code."""
    devices = ["bogus", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        code, _, err = _cli(inference, [CIFAR, images / "a.png", "--random-init", "--device", device], capsys)
        _one_error(code, err, f"--device {device}")
    weights = tmp_path / "w.pth"
    weights.write_bytes((images / "a.png").read_bytes())
    # pickles written by hand (pickle itself is banned here): a dict in protocol 4, as pickle.dump writes it,
    # and protocol 0's os.system("echo hi"), which only an unsafe load would run
    (tmp_path / "plain.pkl").write_bytes(b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00}\x94.")
    (tmp_path / "code.pth").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    for path, needle in ((images / "a.png", "a.png is not a torch checkpoint of tensors"),
                         (weights, "w.pth is not a torch checkpoint of tensors"),
                         (tmp_path / "plain.pkl", "plain.pkl is not a torch checkpoint of tensors"),
                         (tmp_path / "code.pth", "loading them would run code")):
        code, _, err = _cli(inference, [CIFAR, images / "a.png", "--weights", path], capsys)
        _one_error(code, err, needle)
    renamed = tmp_path / "renamed.pth"  # safetensors under a .pth name: read as what it is
    renamed.write_bytes((bundle / "model.safetensors").read_bytes())
    code, _, err = _cli(inference, [CIFAR, images / "a.png", "--weights", renamed], capsys)
    _one_error(code, err, "renamed.pth holds safetensors data: name it .safetensors")


def test_unreadable_training_image_is_counted_by_the_trainers_loader(tmp_path):
    """Case 6: an image file that cannot be opened (permissions 000, or gone) reaches the trainer's loader
    (``train_batches``' LabeledImages + TrainTransform, keyed as its sampler keys) as a counted bad image, and
    as one for evaluation; never a traceback."""
    import datasets

    from resnet_hub.train import data as D
    from resnet_hub.train.augment import TrainTransform
    from resnet_hub.train.recipe import eval_transform

    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(good)
    locked = tmp_path / "locked.png"
    locked.write_bytes(good.read_bytes())
    locked.chmod(0)
    gone = tmp_path / "gone.png"  # root reads through permissions 000: a file removed after listing fails alike
    ds = datasets.Dataset.from_dict({"image": [str(good), str(locked), str(gone)], "label": [0, 1, 1]},
                                    features=datasets.Features({"image": datasets.Image(decode=False),
                                                                "label": datasets.Value("int64")}))
    locked_readable = os.access(locked, os.R_OK)  # as root, permissions 000 do not stop a read
    model = timm.create_model(CIFAR)
    for transform, keys in ((TrainTransform(load_config(CIFAR).training.augmentation), [(i, 0, i) for i in range(3)]),
                            (eval_transform(model), list(range(3)))):
        images = D.LabeledImages(ds, transform, "image", "label")
        batch = D.collate_images(images.__getitems__(keys))
        assert batch["labels"].tolist() == ([0, 1] if locked_readable else [0]), batch["bad"]
        assert len(batch["bad"]) == 3 - len(batch["labels"]) and "row 2: " in batch["bad"][-1]
        assert "gone.png" in batch["bad"][-1] and (locked_readable or "locked.png" in batch["bad"][0])


def _folder(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    rng = np.random.default_rng(0)
    for split, classes in layout.items():
        for cls, n in classes.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("layout, needle", [
    ({"train": {"a": 3}, "validation": {"a": 2}}, "has one class (a) under train/; a classifier needs at least two"),
    ({"train": {"a": 3, "b": 0, "c": 2}, "validation": {"a": 1}}, "class b has no training images (train/b/ holds"),
    ({"train": {"a": 3, "b": 2}, "validation": {"a": 1, "d": 1}},
     "validation/ has class d with no training images under train/; the model could never predict it"),
])
def test_data_a_classifier_cannot_learn_from_is_one_line(tmp_path, capsys, monkeypatch, layout, needle):
    """Case 10: a one-class folder ("has no label column 'label'" before), a class without training images, a
    validation class unknown to training (it trained silently before): refused, one line each."""
    from resnet_hub.train import trainer

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    root = _folder(tmp_path / "images", layout)
    code, _, err = _cli(trainer, ["--config", CIFAR, "--dataset", root, "--output-dir", tmp_path / "run",
                                  "--workers", "0", "--tracker", "none"], capsys)
    _one_error(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_a_hub_style_eval_split_with_an_unknown_class_is_refused():
    import datasets

    from resnet_hub.train import data as D

    features = datasets.Features({"label": datasets.ClassLabel(names=["cat", "dog", "eel"])})
    train = datasets.Dataset.from_dict({"label": [0, 1, 0]}, features=features)
    evals = datasets.Dataset.from_dict({"label": [0, 2]}, features=features)
    spec = D.DatasetSpec("hub", "someone/pets", "train", "test", "image", "label")
    with pytest.raises(ValueError, match=r"the 'test' split has 1 class\(es\) with no training images \(eel\)"):
        D._check_eval_classes(train, evals, spec, features["label"].names)


@pytest.mark.parametrize("case", ["std", "nan weights", "labels"])
def test_tampered_bundles_are_refused_where_the_trainer_starts_from_them(bundle, tmp_path, case):
    """Case 7 for the trainer: --pretrained local-dir: checks the bundle as predict and eval do."""
    from resnet_hub.train import trainer
    from resnet_hub.train.pretrained import load_pretrained, parse_pretrained

    edits, needle = TAMPERED[case]
    tampered = _tamper(bundle, tmp_path, **edits)
    cfg = load_config(CIFAR)

    def create(**kwargs):
        return trainer.create_model(cfg, num_classes=10, **{k: tuple(v) for k, v in TINY.items()}, **kwargs)

    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_pretrained(create, parse_pretrained(f"local-dir:{tampered}"), cfg=cfg, num_classes=10)


@pytest.mark.parametrize("case", ["input_size", "truncated weights"])
def test_tampered_bundles_are_refused_where_export_reads_them(bundle, tmp_path, capsys, case):
    """Case 7 for export, which loads a bundle through predict's get_model: the same one line, nothing written."""
    from resnet_hub import export

    edits, needle = TAMPERED[case]
    tampered = _tamper(bundle, tmp_path, **edits)
    code, out, err = _cli(export, [f"local-dir:{tampered}", "--format", "pt2", "--output", tmp_path / "deploy"], capsys)
    _one_error(code, err, needle)
    assert not (tmp_path / "deploy").exists()
