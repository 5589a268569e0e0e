"""resnet_hub.train.data: datasets, decoding of awkward images, the training order, device normalization."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_hub import load_config
from resnet_hub.train import data as D
from resnet_hub.train.augment import TrainTransform

CIFAR = load_config("resnet18_8xb16_cifar10")


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def test_digits_are_real_rgb_at_the_input_size_with_a_fixed_split():
    a, b = D.digits_splits(32), D.digits_splits(32)
    assert (len(a.train), len(a.eval), a.num_classes) == (1437, 360, 10)
    assert a.train["label"] == b.train["label"] and a.eval["label"] == b.eval["label"]
    counts = np.bincount(a.eval["label"], minlength=10)
    assert counts.min() >= 35  # stratified: every digit in the validation split
    image = Image.open(io.BytesIO(a.train[0]["image"]["bytes"]))
    assert image.mode == "RGB" and image.size == (32, 32)
    pixels = np.asarray(image)
    assert pixels.max() > 200 and pixels.min() == 0  # real strokes, not noise or constants


def _awkward_images() -> list[tuple[str, bytes]]:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    return [
        ("grayscale", _png(rgb.convert("L"))),
        ("cmyk", _png(rgb.convert("CMYK"), "JPEG")),
        ("rgba", _png(rgb.convert("RGBA"))),
        ("palette", _png(palette)),
        ("16-bit", _png(Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)))),
        ("corrupt", b"\x89PNG\r\n\x1a\n" + b"not really a png"),
        ("truncated", _png(rgb, "JPEG")[:200]),
    ]


def _hf_dataset(images):
    import datasets

    features = datasets.Features({"image": datasets.Image(decode=False), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for _, b in images],
                                       "label": list(range(len(images)))}, features=features)


def test_grayscale_cmyk_alpha_palette_become_rgb_and_corrupt_images_are_reported_not_raised():
    images = _awkward_images()
    ds = D.LabeledImages(_hf_dataset(images), TrainTransform(CIFAR.training.augmentation), "image", "label")
    results = {name: ds[i] for i, (name, _) in enumerate(images)}
    for name in ("grayscale", "cmyk", "rgba", "palette", "16-bit"):
        x, _, err = results[name]
        assert err is None and x.dtype == torch.uint8 and tuple(x.shape) == (3, 32, 32), name
    for name in ("corrupt", "truncated"):
        x, label, err = results[name]
        assert x is None and err.startswith(f"row {label}:"), name
    batch = D.collate_images([results[n] for n in ("grayscale", "corrupt", "cmyk")])
    assert batch["images"].shape == (2, 3, 32, 32) and batch["labels"].tolist() == [0, 1]
    assert len(batch["bad"]) == 1 and "row 5" in batch["bad"][0]


def test_to_rgb_drops_alpha_like_opencv():
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    assert D.to_rgb(rgba).getpixel((0, 0)) == (10, 20, 30)


def _image_folder(root, splits=("train", "validation")):
    rng = np.random.default_rng(0)
    for split in splits:
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    Image.new("CMYK", (30, 30), (0, 50, 100, 0)).save(root / "train" / "cat" / "cmyk.jpg")
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    return root


def test_local_image_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    root = _image_folder(tmp_path / "pets")
    spec = D.resolve_dataset(str(root), CIFAR)
    splits = D.load_splits(spec, 32)
    assert (splits.num_classes, splits.label_names, len(splits.train), len(splits.eval)) == (2, ("cat", "dog"), 8, 6)
    assert splits.spec.eval_split == "validation"
    ds = D.LabeledImages(splits.train, TrainTransform(CIFAR.training.augmentation), "image", "label")
    errors = [ds[i][2] for i in range(len(ds))]
    assert sum(e is not None for e in errors) == 1  # the broken JPEG, reported; the CMYK one decoded

    only_train = _image_folder(tmp_path / "flat", splits=("train",))
    with pytest.raises(ValueError, match="only a 'train' split"):
        D.load_splits(D.resolve_dataset(str(only_train), CIFAR), 32)
    with pytest.raises(ValueError, match="no label column 'species'; columns: image, label"):
        D.load_splits(D.resolve_dataset(str(root), CIFAR, label_column="species"), 32)


def test_label_and_column_errors_name_the_choices():
    import datasets

    spec = D.DatasetSpec("hub", "someone/pets", "train", "test", "img", "label")
    no_label = datasets.Dataset.from_dict({"img": [], "fine": []}, features=datasets.Features(
        {"img": datasets.Image(), "fine": datasets.Value("int64")}))
    with pytest.raises(ValueError, match="no label column 'label'; columns: img, fine"):
        D._label_info(no_label, spec)
    text = datasets.Dataset.from_dict({"img": [], "label": []}, features=datasets.Features(
        {"img": datasets.Value("string"), "label": datasets.Value("int64")}))
    with pytest.raises(ValueError, match="not images"):
        D._label_info(text, spec)
    with pytest.raises(ValueError, match="label 12 is outside the model's 10 classes"):
        D.check_labels(torch.tensor([1, 12]), 10, "dataset x")


def _steps(sampler, epoch, start=0):
    sampler.set_epoch(epoch, start)
    return list(sampler)


def test_one_process_with_accumulation_sees_the_micro_batches_of_two_processes():
    one = D.TrainBatchSampler(50, 4, world_size=1, rank=0, accumulation=2, seed=5)
    ranks = [D.TrainBatchSampler(50, 4, world_size=2, rank=r, accumulation=1, seed=5) for r in range(2)]
    assert one.steps_per_epoch == ranks[0].steps_per_epoch == 6  # 25 per virtual rank // 4
    a = _steps(one, 3)
    r0, r1 = _steps(ranks[0], 3), _steps(ranks[1], 3)
    assert a[0::2] == r0 and a[1::2] == r1
    flat = [i for batch in a for i, _, _ in batch]
    assert len(set(flat)) == len(flat) == 48  # no sample twice in an epoch
    assert _steps(one, 4) != a and _steps(D.TrainBatchSampler(50, 4, accumulation=2, seed=6), 3) != a
    assert _steps(one, 3, start=4) == a[8:]  # resume mid-epoch: the same remaining micro-batches
    slots = {slot for batch in a for _, _, slot in batch}
    assert len(slots) == 48


def test_repeated_augmentation_sends_each_copy_to_another_rank():
    ranks = [D.TrainBatchSampler(40, 2, world_size=3, rank=r, seed=1, repeats=3) for r in range(3)]
    first = [_steps(s, 0)[0] for s in ranks]
    indices = [[i for i, _, _ in b] for b in first]
    assert indices[0] == indices[1] == indices[2]  # each image of a batch, once per rank
    slots = [s for b in first for _, _, s in b]
    assert len(set(slots)) == len(slots)  # ... with its own augmentation seed


def test_augmentation_depends_on_the_sample_key_not_on_workers_or_global_rng():
    splits = D.digits_splits(32)
    images = D.LabeledImages(splits.train.select(range(24)), TrainTransform(CIFAR.training.augmentation), "image",
                             "label", seed=7)
    sampler = D.TrainBatchSampler(24, 4, seed=7)
    runs = []
    for workers in (0, 2):
        torch.manual_seed(workers)
        batches = D.LoaderBatches(images, sampler, workers=workers, persistent_workers=False)
        runs.append([b["images"] for b in batches.batches(epoch=2)])
    assert all(torch.equal(x, y) for x, y in zip(runs[0], runs[1], strict=True))
    batches = D.LoaderBatches(images, sampler)
    other_epoch = [b["images"] for b in batches.batches(epoch=3)]
    assert not all(torch.equal(x, y) for x, y in zip(runs[0], other_epoch, strict=True))
    key = (0, 2, 17)
    state = torch.get_rng_state()
    assert torch.equal(images[key][0], images[key][0]) and torch.equal(torch.get_rng_state(), state)


def test_device_normalize_equals_float_normalize():
    from torchvision.transforms import functional as F

    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    norm = D.DeviceNormalize(CIFAR.eval.mean, CIFAR.eval.std, channels_last=True)
    out = norm(x)
    torch.testing.assert_close(out, F.normalize(x.float() / 255, CIFAR.eval.mean, CIFAR.eval.std))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_streaming_shards_are_disjoint_and_resume_skips(tmp_path, monkeypatch):
    from resnet_hub.train.streaming import StreamBatches

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    root = _image_folder(tmp_path / "pets")
    (root / "train" / "dog" / "broken.jpg").unlink()
    Image.new("L", (32, 32), 90).save(root / "train" / "dog" / "gray.png")
    splits = D.load_splits(D.resolve_dataset(str(root), CIFAR, streaming=True), 32)
    transform = TrainTransform(CIFAR.training.augmentation)

    def stream(rank, start=0):
        s = StreamBatches(splits.train, transform, "image", "label", batch_size=2, world_size=2, rank=rank,
                          seed=0, steps_per_epoch=2)
        return list(s.batches(epoch=1, start_step=start))

    shards = [stream(0), stream(1)]
    pixels = [b["images"][i] for shard in shards for b in shard for i in range(len(b["images"]))]
    assert len(pixels) == 8 and all(len(shard) == 2 for shard in shards)
    assert torch.equal(stream(0, start=1)[0]["images"], shards[0][1]["images"])


def test_train_decode_is_pils_pixels_and_the_batch_is_seeded_by_its_key():
    """decode_rgb: JPEGs through simplejpeg give PIL's pixels exactly (same libjpeg-turbo decode), other images
    and CMYK JPEGs go through PIL; a batch's augmentation is a function of its first key; a broken file is
    reported, the rest of its batch kept."""
    import io as _io

    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)).resize((106, 74))

    def encoded(image, fmt="JPEG"):
        buf = _io.BytesIO()
        image.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        return {"bytes": buf.getvalue(), "path": None}

    for image, fmt in ((photo, "JPEG"), (photo.convert("L"), "JPEG"), (photo.convert("CMYK"), "JPEG"),
                       (photo, "PNG"), (photo.convert("RGBA"), "PNG")):
        value = encoded(image, fmt)
        ours = D.decode_rgb(value)
        assert ours.dtype == np.uint8 and ours.shape == (74, 106, 3), (image.mode, fmt)
        assert np.array_equal(ours, np.asarray(D._decode(value))), (image.mode, fmt)

    rows = [{"image": encoded(photo.resize((32, 32)), "PNG"), "label": 3},
            {"image": {"bytes": b"\xff\xd8\xff\xe0 broken", "path": None}, "label": 4},
            {"image": encoded(photo.resize((32, 32))), "label": 5}]
    transform = TrainTransform(CIFAR.training.augmentation)
    a = D.samples_from_rows(rows, transform, "image", "label", [10, 11, 12], seed=11)
    b = D.samples_from_rows(rows, transform, "image", "label", [10, 11, 12], seed=11)
    assert [label for _, label, _ in a] == [3, 4, 5] and a[1][0] is None and a[1][2].startswith("row 11: ")
    assert all(torch.equal(x[0], y[0]) and x[0].shape == (3, 32, 32) for x, y in zip(a[::2], b[::2], strict=True))
    assert any(not torch.equal(a[0][0], D.samples_from_rows(rows, transform, "image", "label", [10, 11, 12],
                                                            seed=s)[0][0]) for s in range(5))
    padded = torch.nn.functional.pad(torch.from_numpy(D.decode_rgb(rows[0]["image"])).permute(2, 0, 1), (4,) * 4)
    windows = [padded[:, t:t + 32, left:left + 32] for t in range(9) for left in range(9)]
    assert any(torch.equal(a[0][0], w) or torch.equal(a[0][0], w.flip(-1)) for w in windows)  # a real crop (+ flip)
