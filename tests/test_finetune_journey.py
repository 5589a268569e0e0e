"""The fine-tuning journey of a new user (issue 18), on CPU, in one process: a folder of 4 classes of
photographs (scikit-image's) -> convert an mmpretrain ResNet-18 -> fine-tune from local-dir:, from the
.safetensors and from hub: (HF cache filled offline) -> predict and transformers' pipeline name the
folder's classes -> push to the local Hub server -> the card is this model's; eval of the 1000-class
model on the 4-class folder is refused.

Tiny on purpose: 12 training and 8 evaluation images of 72 px, --img-size 64, 1 epoch."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml
from convert_helpers import checkpoint_dict, reference_model, save_as_released
from hub_server import LocalHub, fill_hf_cache
from PIL import Image

from resnet_hub import commands
from resnet_hub.train import trainer

CONFIG = "resnet18_8xb32_in1k"
PHOTOS = {"astronaut": "astronaut", "cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}  # class: skimage name
TOKEN = "hf_journey_token"


def _crops(photo: np.ndarray, n: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    side = min(h, w) * 3 // 4
    out = []
    for _ in range(n):
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        out.append(Image.fromarray(photo[y:y + side, x:x + side]).resize((72, 72), Image.BILINEAR))
    return out


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    """The user's folder of photographs and an mmpretrain checkpoint converted into a bundle."""
    import skimage.data

    from resnet_hub.hub import convert

    root = tmp_path_factory.mktemp("journey")
    photos = root / "photos"
    for label, name in PHOTOS.items():
        crops = _crops(getattr(skimage.data, name)(), 5, seed=len(label))
        for split, images in (("train", crops[:3]), ("validation", crops[3:])):
            (photos / split / label).mkdir(parents=True)
            for i, im in enumerate(images):
                im.save(photos / split / label / f"{i}.jpg", quality=90)
    reference = reference_model(CONFIG, seed=2)
    checkpoint = save_as_released(checkpoint_dict(reference, CONFIG, "mmpretrain-1.x"), root / "mm", CONFIG)
    assert commands.main(convert.add_arguments, convert.run, "convert", [
        "--config", CONFIG, "--checkpoint", str(checkpoint), "--output-dir", str(root / "bundle")]) == 0
    return root, photos


def _train(capsys, out, pretrained, photos, *extra):
    from resnet_hub import train

    rc = commands.main(train.add_arguments, train.run, "train", [
        "--config", CONFIG, "--dataset", str(photos), "--num-classes", "4", "--img-size", "64", "--epochs", "1",
        "--batch-size", "4", "--workers", "0", "--tracker", "none", "--output-dir", str(out),
        "--pretrained", pretrained, *extra])
    printed, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    return printed, err


def _card(folder):
    text = (folder / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    return text, meta


def test_fine_tune_predict_push_and_the_card(journey, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    root, photos = journey
    monkeypatch.setenv("RESNET_HUB_NAMESPACE", "me")
    bundle = root / "bundle"

    # 1. from local-dir: the converted bundle, into a new 4-class head
    out = tmp_path / "photos_r18"
    printed, err = _train(capsys, out, f"local-dir:{bundle}", photos, "--dataset-name", "me/photos")
    first = printed.splitlines()[:2]
    assert first[0].startswith("pretrained: local folder bundle") and "head: 1000 -> 4 classes, new" in first[1]
    assert "fine-tune default" in printed and "input 64 px" in printed
    final = out / "final"
    run = json.loads((out / "run.json").read_text())
    assert run["plan"]["sched"] == "cosine" and run["plan"]["img_size"] == 64 and run["start"]["dataset_name"] \
        == "me/photos"
    assert str(tmp_path) not in json.dumps(run["plan"]) + json.dumps(run["start"])

    # 2. predict and transformers' pipeline name the folder's classes
    import transformers

    from resnet_hub import inference

    image = photos / "validation" / "cat" / "0.jpg"
    assert commands.main(inference.add_arguments, inference.run, "predict",
                         [f"local-dir:{final}", str(image), "--topk", "4"]) == 0
    said = capsys.readouterr().out
    assert all(label in said for label in PHOTOS)
    classifier = transformers.pipeline("image-classification", model=str(final), device="cpu")
    assert {p["label"] for p in classifier(Image.open(image), top_k=4)} == set(PHOTOS)

    # 3. from the bundle's .safetensors, and from hub: through an HF cache filled offline
    one_step = ("--limit-train", "4", "--limit-eval", "4")  # these two only need to start and finish
    _train(capsys, tmp_path / "from_file", str(bundle / "model.safetensors"), photos, *one_step)
    fill_hf_cache(tmp_path / "hub", f"me/{CONFIG}", {"model.safetensors": (bundle / "model.safetensors").read_bytes(),
                                                     "config.json": (bundle / "config.json").read_bytes()})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    printed, err = _train(capsys, tmp_path / "from_hub", f"hub:{CONFIG}", photos, *one_step, "--model-ema")
    assert printed.startswith(f"pretrained: hub:{CONFIG}") and "dataset name: 'photos'" in err
    hub_card, hub_meta = _card(tmp_path / "from_hub" / "final")
    assert hub_meta["base_model"] == f"me/{CONFIG}" and hub_meta["datasets"] == ["photos"]
    config = json.loads((tmp_path / "from_hub" / "final" / "config.json").read_text())
    assert "(EMA weights)" in config["pretrained_cfg"]["description"]  # the bundle is the average, and says so
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    # 4. push to the local Hub: the card is this model's, with no local path
    from resnet_hub.hub import push

    with LocalHub(token=TOKEN) as server:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        assert commands.main(push.add_arguments, push.run, "push", [str(final), "--repo-id", "me/photos_r18"]) == 0
        capsys.readouterr()
        pushed = server.files("me/photos_r18")["README.md"].decode()
    meta = yaml.safe_load(pushed.split("---")[1])
    # a checkpoint converted from no Hub repo: no base_model; the dataset by the name given, not the folder
    assert meta["datasets"] == ["me/photos"] and "base_model" not in meta
    assert str(tmp_path) not in pushed and str(root) not in pushed
    loaded = [a or b for a, b in re.findall(r'(?:create_model|from_pretrained|get_model)\("([^"]+)"|model="([^"]+)"',
                                              pushed)]
    assert len(loaded) >= 5 and set(loaded) <= {"hf-hub:me/photos_r18", "me/photos_r18", "local-dir:photos_r18"}
    assert f"resnet-hub/{CONFIG}" not in pushed and f"hub:{CONFIG}" not in pushed


def test_eval_of_the_1000_class_model_on_the_4_class_folder_is_refused(journey, capsys):
    from resnet_hub.train import evaluate

    root, photos = journey
    rc = commands.main(evaluate.add_arguments, evaluate.run, "eval",
                       ["--model", f"local-dir:{root / 'bundle'}", "--dataset", str(photos), "--workers", "0"])
    err = capsys.readouterr().err
    assert rc != 0 and "1000" in err and "4" in err and err.count("\n") == 1, err


def test_the_image_size_line_for_photographs_under_the_cifar_recipe(journey):
    """The 72 px photographs under a 32 px CIFAR crop: one line says what the recipe does to them."""
    import datasets

    from resnet_hub import load_config
    from resnet_hub.train.imagesize import describe_image_fit, sample_image_sizes

    _, photos = journey
    train = datasets.load_dataset("imagefolder", data_dir=str(photos))["train"]
    train = train.cast_column("image", datasets.Image(decode=False))
    line = describe_image_fit(load_config("resnet18_8xb16_cifar10"), sample_image_sizes(train, "image"))
    assert line.startswith("note: training takes random 32x32 patches of 72x72 images")
    assert trainer is not None and torch is not None
