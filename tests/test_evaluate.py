"""scripts/eval.py: the eval transform against mmpretrain's test pipeline, many processes, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import requires_mmpretrain
from PIL import Image
from train_helpers import script

import resnet_hub  # noqa: F401
from resnet_hub import load_config
from resnet_hub.train.data import DeviceNormalize
from resnet_hub.train.recipe import eval_transform

# One config per distinct test pipeline, with the bound on the mean absolute difference of normalized
# tensors. Measured on the 4 photographs: shorter edge 256 bilinear in OpenCV (no antialiasing) vs PIL
# 0.014-0.034; shorter edge 236 bicubic in pillow on both sides 0.0 exactly; square 600 bilinear OpenCV
# + crop 448 0.0014-0.0047; CIFAR (no resize, 32x32) 0.0 exactly.
PIPELINES = {"resnet50_8xb32_in1k": 0.04, "resnet50_8xb256-rsb-a1-600e_in1k": 1e-6, "resnet50_8xb8_cub": 0.01,
             "resnet18_8xb16_cifar10": 1e-6}


def _photographs(name: str) -> list[np.ndarray]:
    """scikit-image's bundled photographs (RGB uint8); CIFAR configs take 32x32 images, as CIFAR is."""
    from skimage import data

    images = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    if load_config(name).eval.resize is None:
        images = [np.asarray(Image.fromarray(im).resize((32, 32), Image.BICUBIC)) for im in images]
    return images


def _mmpretrain_test_pipeline(name: str, rgb: np.ndarray) -> torch.Tensor:
    """mmpretrain's own test pipeline and data preprocessor: BGR in (as LoadImageFromFile), normalized RGB out."""
    from mmcv.transforms import Compose
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import TRANSFORMS

    from resnet_hub.reference import load_mmpretrain_config

    init_default_scope("mmpretrain")
    cfg = load_mmpretrain_config(name)
    pipeline = Compose([TRANSFORMS.build(t) for t in cfg.test_pipeline
                        if t["type"] not in ("LoadImageFromFile", "PackInputs")])
    out = pipeline({"img": np.ascontiguousarray(rgb[..., ::-1])})["img"][..., ::-1]  # to_rgb in the preprocessor
    x = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).float()
    pre = cfg.data_preprocessor
    return (x - torch.tensor(pre["mean"]).view(3, 1, 1)) / torch.tensor(pre["std"]).view(3, 1, 1)


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("name", list(PIPELINES))
def test_eval_transform_reproduces_mmpretrains_test_pipeline(name):
    """Same shape; mean absolute difference of normalized tensors under the bound measured for the
    resize back-ends (PIL here, OpenCV or PIL there)."""
    import timm

    model = timm.create_model(name)
    transform = eval_transform(model)
    normalize = DeviceNormalize(model.pretrained_cfg["mean"], model.pretrained_cfg["std"])
    for rgb in _photographs(name):
        ours = normalize(transform(Image.fromarray(rgb))[None])[0]
        theirs = _mmpretrain_test_pipeline(name, rgb)
        assert ours.shape == theirs.shape
        mad = (ours - theirs).abs().mean().item()
        assert mad <= PIPELINES[name], mad


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A random-weight resnet18_8xb16_cifar10 as a Hub bundle (only agreement between runs is tested)."""
    import timm

    from resnet_hub.hub.bundle import write_bundle

    torch.manual_seed(0)
    model = timm.create_model("resnet18_8xb16_cifar10")
    model.pretrained_cfg = dict(model.pretrained_cfg, label_names=[str(i) for i in range(10)])
    return write_bundle(model, load_config("resnet18_8xb16_cifar10"), tmp_path_factory.mktemp("bundle"))


@pytest.mark.slow
def test_two_processes_count_every_image_once_and_agree_with_one(bundle, tmp_path):
    args = ["--model", f"local-dir:{bundle}", "--dataset", "digits", "--limit", "37", "--batch-size", "8",
            "--workers", "0", "--no-progress"]
    one = script("eval", [*args, "--json", str(tmp_path / "one.json")])
    assert one.returncode == 0, one.stderr[-2000:]
    two = script("eval", [*args, "--json", str(tmp_path / "two.json")], processes=2)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert a["images"] == b["images"] == 37 and (a["processes"], b["processes"]) == (1, 2)
    assert (a["top1"], a["top5"]) == (b["top1"], b["top5"])
    assert a["config"] == "resnet18_8xb16_cifar10" and json.loads(one.stdout)["top1"] == a["top1"]


@pytest.mark.parametrize("argv, needle", [
    (["--model", "resnet18_8xb16_cifar1"], "unknown model 'resnet18_8xb16_cifar1'"),
    (["--model", "local-dir:/no/such/bundle"], "no such folder"),
    (["--model", "hf-hub:someone/model"], "give --dataset"),
    (["--model", "resnet18_8xb16_cifar10", "--dataset", "digits", "--split", "holdout"], "--split 'holdout'"),
])
def test_bad_input_is_one_clear_line(argv, needle, capsys, monkeypatch):
    from resnet_hub import commands
    from resnet_hub.train import evaluate

    monkeypatch.setattr("timm.create_model", _offline_create_model)
    code = commands.main(evaluate.add_arguments, evaluate.run, "eval", [*argv, "--no-progress", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 1 and needle in err, err
    assert len(err.strip().splitlines()) == 1


def _offline_create_model(name, pretrained=False, **kwargs):
    """timm.create_model without downloads: these tests are about arguments, not weights."""
    import timm.models

    return timm.models.create_model(name.split(":", 1)[-1] if name.startswith("hub:") else name, pretrained=False,
                                    **kwargs)


def test_update_card_adds_what_eval_measured_beside_the_published_results(tmp_path, capsys):
    from huggingface_hub import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results
    from publish_helpers import make_bundle

    from resnet_hub import commands
    from resnet_hub.hub.bundle import validate_bundle
    from resnet_hub.train import evaluate

    # converted: mmpretrain's results on its card; classes named as the digits', so eval scores it on them
    card_bundle = make_bundle("resnet18_8xb16_cifar10", tmp_path / "b", label_names=[str(i) for i in range(10)])
    argv = [f"local-dir:{card_bundle}", "--dataset", "digits", "--limit", "24", "--batch-size", "8", "--workers", "0",
            "--no-progress", "--cpu", "--update-card", str(card_bundle)]
    for _ in range(2):  # the second run replaces the first one's entry
        assert commands.main(evaluate.add_arguments, evaluate.run, "eval", argv) == 0
    result = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    _, results = model_index_to_eval_results(metadata_load(card_bundle / "README.md")["model-index"])
    assert [(r.source_name, r.metric_value) for r in results[:1]] == [("mmpretrain model zoo", 94.82)]
    ours = results[1:]
    assert [(r.dataset_type, r.dataset_split, r.dataset_args, r.metric_type, r.metric_value) for r in ours] == [
        ("digits", "validation", {"images": 24}, "accuracy", round(result["top1"], 4)),  # once, not twice
        ("digits", "validation", {"images": 24}, "top_5_accuracy", round(result["top5"], 4))]
    validate_bundle(card_bundle)


def test_update_card_refuses_a_bundle_other_than_the_model(bundle, tmp_path, capsys):
    import timm

    from resnet_hub import commands
    from resnet_hub.hub.bundle import write_bundle
    from resnet_hub.train import evaluate

    torch.manual_seed(1)
    model = timm.create_model("resnet18_8xb16_cifar10")
    model.pretrained_cfg = dict(model.pretrained_cfg, label_names=[str(i) for i in range(10)])
    other = write_bundle(model, load_config("resnet18_8xb16_cifar10"), tmp_path / "other")
    before = (other / "README.md").read_bytes()
    argv = ["--model", f"local-dir:{bundle}", "--dataset", "digits", "--cpu", "--update-card", str(other)]
    assert commands.main(evaluate.add_arguments, evaluate.run, "eval", argv) == 1
    err = capsys.readouterr().err
    assert "the evaluated model's weights are not this bundle's" in err and len(err.strip().splitlines()) == 1
    assert (other / "README.md").read_bytes() == before


def test_measured_result_names_a_local_folder_by_its_name_only(tmp_path):
    from types import SimpleNamespace

    from resnet_hub.train.evaluate import measured_result

    split = SimpleNamespace(info=SimpleNamespace(config_name="default"))  # a datasets split's info
    m = measured_result(str(tmp_path / "my-images"), split, "validation", {"images": 8, "top1": 50.0, "top5": 100.0})
    assert (m.dataset, m.dataset_config, m.split, m.images, m.top1) == ("my-images", None, "validation", 8, 50.0)
    m = measured_result("uoft-cs/cifar10", None, "test", {"eval_images": 3, "top1": 1.0, "top5": 2.0})  # trainer's
    assert (m.dataset, m.dataset_config, m.images, m.top5) == ("uoft-cs/cifar10", None, 3, 2.0)


@pytest.mark.parametrize("precision, native, ran", [("auto", None, "fp32"), ("auto", "avx512_bf16", "bf16"),
                                                     ("no", None, "fp32")])
def test_precision_is_resolved_and_reported(bundle, capsys, monkeypatch, precision, native, ran):
    """auto is bf16 only with native bf16 (detection monkeypatched), run under Accelerate's bf16 autocast (emulated
    if this CPU lacks it: slow but correct, hence 8 images); "no" (Accelerate's word) is fp32; the result says."""
    from accelerate.state import AcceleratorState

    from resnet_hub import commands
    from resnet_hub.train import evaluate

    monkeypatch.setattr("resnet_hub.train.plan.native_bf16", lambda device: native)
    argv = [f"local-dir:{bundle}", "--dataset", "digits", "--limit", "8", "--batch-size", "8", "--workers", "0",
            "--no-progress", "--cpu", "--precision", precision]
    AcceleratorState._reset_state(reset_partial_state=True)  # a new mixed precision in this process
    try:
        assert commands.main(evaluate.add_arguments, evaluate.run, "eval", argv) == 0
        assert AcceleratorState().mixed_precision == ("no" if ran == "fp32" else ran)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    result = json.loads(capsys.readouterr().out)
    assert result["precision"] == ran and result["images"] == 8


def test_onnxruntime_backend_scores_as_eager_and_says_which_ran(bundle, capsys):
    """--backend onnxruntime evaluates the BN-folded ONNX export: the same top-1/top-5 over the same 16 images
    as eager (their logits agree to about 1e-7 relative, resnet_hub.export.TOLERANCE's measurement, far below
    any gap between a random model's top classes here), the export's cost apart, and the result names it."""
    from resnet_hub import commands
    from resnet_hub.train import evaluate

    argv = [f"local-dir:{bundle}", "--dataset", "digits", "--limit", "16", "--batch-size", "8", "--workers", "0",
            "--no-progress", "--cpu"]
    results = {}
    for backend in ("eager", "onnxruntime"):
        assert commands.main(evaluate.add_arguments, evaluate.run, "eval", [*argv, "--backend", backend]) == 0
        results[backend] = json.loads(capsys.readouterr().out)
    eager, ort = results["eager"], results["onnxruntime"]
    assert (eager["backend"], ort["backend"]) == ("eager", "onnxruntime")
    assert ort["prepare_seconds"] > 0 and "prepare_seconds" not in eager
    assert (ort["top1"], ort["top5"], ort["images"]) == (eager["top1"], eager["top5"], eager["images"]) == (
        eager["top1"], eager["top5"], 16)


def test_onnxruntime_backend_outside_fp32_is_one_line(bundle, capsys):
    from accelerate.state import AcceleratorState

    from resnet_hub import commands
    from resnet_hub.train import evaluate

    argv = [f"local-dir:{bundle}", "--dataset", "digits", "--limit", "8", "--workers", "0", "--no-progress", "--cpu",
            "--precision", "bf16", "--backend", "onnxruntime"]
    AcceleratorState._reset_state(reset_partial_state=True)  # a new mixed precision in this process
    try:
        code = commands.main(evaluate.add_arguments, evaluate.run, "eval", argv)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    err = capsys.readouterr().err
    assert code == 1 and "fp32" in err and len(err.strip().splitlines()) == 1, err


def test_bad_precision_is_one_line(capsys):
    from resnet_hub import commands
    from resnet_hub.train import evaluate

    with pytest.raises(SystemExit) as exit_:
        commands.main(evaluate.add_arguments, evaluate.run, "eval", ["--model", "x", "--precision", "half"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "choose from 'fp32', 'bf16', 'auto', 'fp16', 'no'" in err, err
    assert evaluate.eval_precision("bf16") == "bf16" and evaluate.eval_precision("no") == "fp32"
    with pytest.raises(ValueError, match="one of fp32, bf16, auto, fp16, no; got 'half'"):
        evaluate.eval_precision("half")


# ----------------------------------------------------------------------------- the label space


def _image_folder(root, classes, per_class=2):
    """An image folder (train/ and validation/, one sub-folder per class) of 32x32 photographs' crops."""
    from skimage import data

    photo = data.astronaut()
    for split in ("train", "validation"):
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                crop = photo[40 * c + 7 * i:][:200, :200]
                Image.fromarray(crop).resize((32, 32), Image.BICUBIC).save(root / split / name / f"{i}.png")
    return root


SHAPES = ("circle", "square", "star", "triangle")


def _bundle(tmp_path, name, num_classes, labels):
    import timm

    from resnet_hub.hub.bundle import write_bundle

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=num_classes, pretrained_cfg_overlay={"label_names": list(labels)})
    provenance = {"trained_with": "resnet_hub.train", "model_name": "shapes-r18", "dataset_name": "shapes"}
    return write_bundle(model, load_config(name), tmp_path / f"{name}-{num_classes}", provenance=provenance)


def _eval(argv, capsys):
    import datasets

    from resnet_hub import commands
    from resnet_hub.train import evaluate

    datasets.disable_progress_bars()  # the image folder's first reading draws one on stderr
    try:
        code = commands.main(evaluate.add_arguments, evaluate.run, "eval",
                             [*argv, "--no-progress", "--workers", "0", "--cpu", "--batch-size", "8"])
    finally:
        datasets.enable_progress_bars()
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("model, folder, needle", [
    (("resnet18_8xb32_in1k", 1000, None), SHAPES, "the model has 1000 classes ('tench, Tinca tinca'"),
    (("resnet18_8xb16_cifar10", 10, None), SHAPES[:3], "the model has 10 classes ('airplane'"),
    (("resnet18_8xb16_cifar10", 4, SHAPES), ("circle", "square", "star", "triangel"),
     "1 of 4 class names differ; label 3 is 'triangle' for the model but 'triangel' in dataset"),
], ids=["1000-on-4", "10-on-3", "renamed-folder"])
def test_a_model_of_other_classes_is_refused_before_scoring_and_the_card_untouched(tmp_path, capsys, model, folder,
                                                                                   needle):
    name, num_classes, labels = model
    from resnet_hub.zoo.labels import label_names

    labels = labels or label_names(load_config(name).labels)
    bundle = _bundle(tmp_path, name, num_classes, labels)
    data = _image_folder(tmp_path / "data", folder, per_class=1)
    before = (bundle / "README.md").read_bytes()
    code, out, err = _eval([f"local-dir:{bundle}", "--dataset", str(data), "--update-card", str(bundle)], capsys)
    assert code == 1 and needle in err and "label space mismatch" in err, err
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert (bundle / "README.md").read_bytes() == before


def test_matching_classes_are_scored_and_named_as_given_without_top5(tmp_path, capsys):
    from huggingface_hub import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    bundle = _bundle(tmp_path, "resnet18_8xb16_cifar10", 4, [s.upper() for s in SHAPES])  # case is not a difference
    data = _image_folder(tmp_path / "private" / "shapes-v2", SHAPES)
    code, out, err = _eval([f"local-dir:{bundle}", "--dataset", str(data), "--dataset-name", "my-shapes",
                            "--update-card", str(bundle)], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["images"] == 8 and result["top5"] is None
    meta = metadata_load(bundle / "README.md")
    _, results = model_index_to_eval_results(meta["model-index"])
    assert [(r.dataset_type, r.dataset_name, r.metric_type) for r in results] == [("my-shapes", "my-shapes",
                                                                                   "accuracy")]
    text = (bundle / "README.md").read_text()
    assert "private" not in text and "top-5" not in text.lower() and "| my-shapes | validation | 8 |" in text
