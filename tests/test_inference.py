"""resnet_hub.inference_model / get_model: results, equivalence to the plain model, every kind of input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_python
from hub_server import fill_hf_cache
from inference_helpers import CIFAR, photos, random_model, save
from PIL import Image
from safetensors.torch import save as save_safetensors
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config

import resnet_hub
from resnet_hub import get_model, inference_model
from resnet_hub.inference import ImageClassificationInferencer, load_image


@pytest.fixture(scope="module")
def model():
    return random_model()


def _plain_probs(model, images):
    """What the unmodified model gives on timm's own eval transform, one image at a time.

    Probabilities are compared at rtol 1e-4, atol 1e-6; measured at most 7.5e-9 apart (e.g. batches of 1 vs 3;
    AMD EPYC Zen 4, 1 and 2 threads)."""
    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        return torch.cat([model(transform(load_image(i))[None]).softmax(-1) for i in images])


def test_results_per_image_with_label_names_and_topk(model):
    images = photos(3)
    results = inference_model(model, images, topk=4, batch_size=2)
    assert isinstance(results, list) and len(results) == 3
    expected = _plain_probs(model, images)
    names = model.pretrained_cfg["label_names"]
    for result, probs in zip(results, expected, strict=True):
        assert set(result) == {"pred_label", "pred_score", "pred_class", "pred_scores", "topk", "precision",
                               "backend"}
        assert result["precision"] == "fp32" and result["backend"] == "eager"
        torch.testing.assert_close(torch.from_numpy(result["pred_scores"]), probs, rtol=1e-4, atol=1e-6)
        assert result["pred_label"] == int(probs.argmax())
        assert result["pred_score"] == pytest.approx(float(probs.max()), rel=1e-4)
        assert result["pred_class"] == names[result["pred_label"]]
        assert [t["label"] for t in result["topk"]] == probs.topk(4).indices.tolist()
        assert [t["class"] for t in result["topk"]] == [names[t["label"]] for t in result["topk"]]
        scores = [t["score"] for t in result["topk"]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 4


def test_one_image_gives_one_dict_and_batching_does_not_mix_images(model, tmp_path):
    images = photos(5, seed=1)
    one = inference_model(model, images[2])
    assert isinstance(one, dict)
    by_one = inference_model(model, images, batch_size=1)
    by_three = inference_model(model, images, batch_size=3)
    for a, b in zip(by_one, by_three, strict=True):
        np.testing.assert_allclose(a["pred_scores"], b["pred_scores"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(one["pred_scores"], by_one[2]["pred_scores"], rtol=1e-4, atol=1e-6)


def test_paths_pil_arrays_and_directories_agree(model, tmp_path):
    array = photos(1, size=(32, 32))[0]
    path = save(array, tmp_path / "dir" / "a.png") if (tmp_path / "dir").mkdir() is None else None
    save(array, tmp_path / "dir" / "b.png")
    from_array = inference_model(model, array)["pred_scores"]
    for image in (path, str(path), Image.fromarray(array), array.astype(np.float32) / 255):
        np.testing.assert_allclose(inference_model(model, image)["pred_scores"], from_array, rtol=1e-4, atol=1e-6)
    folder = inference_model(model, tmp_path / "dir")
    assert len(folder) == 2 and all(np.allclose(r["pred_scores"], from_array, atol=1e-6) for r in folder)


def test_the_model_given_is_left_as_it_was(model):
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inference_model(model, photos(1))
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert not model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    model.eval()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "CMYK", "P", "I;16"])
def test_alpha_gray_cmyk_palette_and_16_bit_images_are_converted(model, tmp_path, mode):
    array = photos(1, size=(32, 32))[0]
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    src = Image.fromarray(array)
    if mode == "I;16":  # a real 16-bit image: values span 0..65535
        img = Image.fromarray(np.asarray(src.convert("L")).astype(np.uint16) * 257)
    else:
        img = src.convert(mode)
    path = tmp_path / f"x.{fmt.lower()}"
    img.save(path, format=fmt)
    rgb = load_image(path)
    assert rgb.mode == "RGB" and rgb.size == (32, 32)
    result = inference_model(model, path)
    assert 0 <= result["pred_label"] < 10
    if mode == "RGBA":  # alpha dropped, colours kept (as OpenCV reads them for mmpretrain)
        np.testing.assert_array_equal(np.asarray(rgb), array)
    if mode == "P":  # the palette's colours
        np.testing.assert_array_equal(np.asarray(rgb), np.asarray(img.convert("RGB")))
    if mode in ("L", "LA", "I;16"):  # gray repeated over three channels, 16-bit scaled to 8
        a = np.asarray(rgb, dtype=int)
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
        assert np.abs(a[..., 0] - np.asarray(src.convert("L"), dtype=int)).max() <= 1


def test_rgba_array_drops_alpha(model):
    array = photos(1, size=(32, 32))[0]
    rgba = np.dstack([array, np.full(array.shape[:2], 9, np.uint8)])
    np.testing.assert_allclose(inference_model(model, rgba)["pred_scores"],
                               inference_model(model, array)["pred_scores"], rtol=1e-5, atol=1e-7)


def test_bad_images_are_clear_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such image file"):
        inference_model(model, tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("not a picture")
    with pytest.raises(ValueError, match="notes.txt is not an image"):
        inference_model(model, tmp_path / "notes.txt")
    (tmp_path / "cut.jpg").write_bytes(save(photos(1)[0], tmp_path / "whole.jpg").read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.jpg is not an image"):
        inference_model(model, tmp_path / "cut.jpg")
    with pytest.raises(ValueError, match="HxW or HxWxC"):
        inference_model(model, np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="uint8, or float in"):
        inference_model(model, np.full((4, 4, 3), 300.0))
    with pytest.raises(ValueError, match="cannot read an image from int"):
        inference_model(model, 3)
    with pytest.raises(ValueError, match="no images"):
        inference_model(model, [])
    with pytest.raises(ValueError, match="topk"):
        inference_model(model, photos(1), topk=0)
    with pytest.raises(ValueError, match="batch_size"):
        inference_model(model, photos(1), batch_size=0)


def test_unknown_model_names_the_closest(tmp_path):
    with pytest.raises(ValueError, match="closest: resnet18_8xb16_cifar10"):
        get_model("resnet18_8xb16_cifar1O")
    with pytest.raises(ValueError, match="closest: resnet50_8xb32_in1k"):
        inference_model("hub:resnet50_8xb32_inlk", photos(1))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        get_model(f"local-dir:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        get_model(CIFAR, pretrained=tmp_path / "nope.safetensors")


def test_get_model_loads_a_weights_file_and_a_local_dir_bundle(model, tmp_path):
    from resnet_hub.hub.bundle import write_bundle
    from resnet_hub.zoo.configs import load_config

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    loaded = get_model(CIFAR, pretrained=tmp_path / "w.safetensors")
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    bundle = write_bundle(model, load_config(CIFAR), tmp_path / "bundle")
    image = photos(1)[0]
    from_dir = inference_model(f"local-dir:{bundle}", image)
    np.testing.assert_allclose(from_dir["pred_scores"], inference_model(model, image)["pred_scores"], atol=1e-6)
    assert from_dir["pred_class"] == model.pretrained_cfg["label_names"][from_dir["pred_label"]]


def test_hub_name_predicts_with_the_hub_weights_offline(model, tmp_path):
    data = save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()})
    fill_hf_cache(tmp_path / "hub", f"someone/{CIFAR}", {"model.safetensors": data})
    image = save(photos(1)[0], tmp_path / "x.png")
    code = (f"import json, resnet_hub; r = resnet_hub.inference_model('hub:{CIFAR}', {str(image)!r}); "
            "print(json.dumps(dict(label=r['pred_label'], cls=r['pred_class'], scores=r['pred_scores'].tolist())))")
    proc = run_python(code, env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1",
                                 "RESNET_HUB_NAMESPACE": "someone"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = inference_model(model, image)
    assert out["label"] == expected["pred_label"] and out["cls"] == expected["pred_class"]
    np.testing.assert_allclose(out["scores"], expected["pred_scores"], atol=1e-6)


def test_a_changed_model_is_prepared_afresh(model):
    """Repeated calls reuse the prepared copy, but never a stale one."""
    image = photos(1)[0]
    before = inference_model(model, image)["pred_scores"]
    with torch.no_grad():
        model.fc.bias[3] += 5.0  # in place: the same tensor object, a new version
    try:
        after = inference_model(model, image)["pred_scores"]
        np.testing.assert_allclose(after, _plain_probs(model, [image])[0].numpy(), rtol=1e-4, atol=1e-6)
        assert after[3] > before[3]
    finally:
        with torch.no_grad():
            model.fc.bias[3] -= 5.0


def test_inferencer_is_reusable_and_exported():
    assert resnet_hub.inference_model is inference_model and resnet_hub.get_model is get_model
    inferencer = ImageClassificationInferencer(random_model(), device="cpu")
    first = inferencer(photos(2))
    np.testing.assert_array_equal(first[0]["pred_scores"], inferencer(photos(2))[0]["pred_scores"])
