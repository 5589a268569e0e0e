"""Device-side data: same distributions as torchvision's CPU transforms, same pixels for the same draws.

Everything runs on the CPU device here; the CUDA tests at the end run where a GPU is present.
"""
from __future__ import annotations

from unittest import mock

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
import torchvision.transforms.v2.functional as v2F
from scipy import stats
from torch.utils.data import DistributedSampler

from resnet_hub import load_config
from resnet_hub.numerics import normalize
from resnet_hub.train.augment import (
    TrainAugmentation,
    UnsupportedOnDevice,
    flip_params,
    random_crop_params,
    random_resized_crop_params,
    seeded_generator,
)
from resnet_hub.train.device_data import DeviceDataLoader, load_image_tensor
from resnet_hub.zoo.configs import Augmentation


def _device_augmentation(cfg) -> TrainAugmentation:
    return TrainAugmentation.from_recipe(cfg.training.augmentation, on_device=True)

CIFAR = load_config("resnet18_8xb16_cifar10")
IN1K = load_config("resnet50_8xb32_in1k")
P_MIN = 1e-3  # seeded draws: a fixed p-value, not a flaky one


def _images(n, h=32, w=32, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _smooth_image(h, w, seed):
    """Photo-like content (smooth gradients + noise) so JPEG and resampling behave as on photos."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)
    img = img + 0.03 * torch.randn(1, 3, h, w, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)[0]


# ----------------------------------------------------------------------------- distributions


def test_random_crop_offsets_have_torchvision_distribution():
    ours_top, ours_left = random_crop_params(20_000, 40, 40, (32, 32), seeded_generator("cpu", 1))
    torch.manual_seed(1)
    padded = torch.zeros(3, 40, 40)
    theirs = torch.tensor([T.RandomCrop.get_params(padded, (32, 32))[:2] for _ in range(4_000)])
    for ours, ref in ((ours_top, theirs[:, 0]), (ours_left, theirs[:, 1])):
        assert ours.min() == ref.min() == 0 and ours.max() == ref.max() == 8  # same range, 9 offsets
        counts = torch.stack([torch.bincount(ours, minlength=9), torch.bincount(ref, minlength=9)])
        assert stats.chi2_contingency(counts.numpy()).pvalue > P_MIN
        assert stats.chisquare(counts[0].numpy()).pvalue > P_MIN  # uniform
    joint = torch.bincount(ours_top * 9 + ours_left, minlength=81)  # top and left independent
    assert stats.chisquare(joint.numpy()).pvalue > P_MIN


def test_cifar_pipeline_draws_offsets_and_flips_like_torchvision():
    aug = _device_augmentation(CIFAR)
    _, (crop, flip) = aug(_images(6_000), seeded_generator("cpu", 2), return_params=True)
    for offsets in (crop["top"], crop["left"]):
        assert set(offsets.tolist()) == set(range(9))
        assert stats.chisquare(torch.bincount(offsets, minlength=9).numpy()).pvalue > P_MIN
    assert stats.binomtest(int(flip["flip"].sum()), 6_000, 0.5).pvalue > P_MIN


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_flip_frequency(prob):
    flips = flip_params(50_000, prob, seeded_generator("cpu", 3))
    if prob in (0.0, 1.0):
        assert flips.all() if prob else not flips.any()
    else:
        assert stats.binomtest(int(flips.sum()), 50_000, prob).pvalue > P_MIN


@pytest.mark.parametrize("height,width", [(37, 50), (375, 500)])
def test_random_resized_crop_params_have_torchvision_distribution(height, width):
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    n = 20_000
    ours = random_resized_crop_params(torch.full((n,), height), torch.full((n,), width), scale, ratio,
                                      seeded_generator("cpu", 4))
    torch.manual_seed(4)
    img = torch.zeros(1, height, width)
    theirs = torch.tensor([T.RandomResizedCrop.get_params(img, scale, ratio) for _ in range(3_000)]).T
    for mine, ref in zip(ours, theirs, strict=True):  # top, left, height, width
        assert stats.ks_2samp(mine.numpy(), ref.numpy()).pvalue > P_MIN
    top, left, h, w = ours
    assert (h >= 1).all() and (w >= 1).all() and (top + h <= height).all() and (left + w <= width).all()


def test_random_resized_crop_sizes_on_a_tiny_image_have_torchvision_frequencies():
    # a 5x6 image makes every rounding choice visible in the (height, width) frequencies
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    _, _, h, w = random_resized_crop_params(torch.full((30_000,), 5), torch.full((30_000,), 6), scale, ratio,
                                            seeded_generator("cpu", 8))
    torch.manual_seed(8)
    theirs = torch.tensor([T.RandomResizedCrop.get_params(torch.zeros(1, 5, 6), scale, ratio)[2:]
                           for _ in range(10_000)])
    ours_cells = torch.bincount(h * 7 + w, minlength=42)
    ref_cells = torch.bincount(theirs[:, 0] * 7 + theirs[:, 1], minlength=42)
    assert torch.equal(ours_cells > 0, ref_cells > 0)  # the same (height, width) pairs occur
    seen = (ours_cells + ref_cells) >= 20
    table = torch.stack([ours_cells[seen], ref_cells[seen]]).numpy()
    assert stats.chi2_contingency(table).pvalue > P_MIN


def test_random_resized_crop_fallback_is_torchvisions_central_crop():
    # no draw fits a 10x100 strip with scale >= 0.9: torchvision's central crop, every time
    scale, ratio = (0.9, 1.0), (3 / 4, 4 / 3)
    ours = random_resized_crop_params(torch.full((50,), 10), torch.full((50,), 100), scale, ratio,
                                      seeded_generator("cpu", 5))
    expected = T.RandomResizedCrop.get_params(torch.zeros(1, 10, 100), scale, ratio)
    assert expected == (0, 43, 10, 13)
    for value, col in zip(expected, ours, strict=True):
        assert (col == value).all()


# ----------------------------------------------------------------------------- pixels


@pytest.mark.parametrize("fill", [0, (124, 116, 104)])
def test_crop_and_flip_pixels_equal_torchvision(fill):
    op = Augmentation(type="random_crop", size=32, padding=4, fill=fill)
    aug = TrainAugmentation((op, Augmentation(type="horizontal_flip", prob=0.5)))
    images = _images(24, seed=6)
    out, (crop, flip) = aug(images, seeded_generator("cpu", 6), return_params=True)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    tv_fill = list(fill) if isinstance(fill, tuple) else fill
    crop_t = T.RandomCrop(32, padding=4, fill=tv_fill)
    for i in range(len(images)):
        pil = TF.to_pil_image(images[i])  # the CPU path's PIL images
        with mock.patch.object(T.RandomCrop, "get_params", return_value=(int(crop["top"][i]), int(crop["left"][i]),
                                                                         32, 32)):
            ref = crop_t(pil)
        if flip["flip"][i]:
            ref = TF.hflip(ref)
        assert torch.equal(out[i], TF.pil_to_tensor(ref)), i
    assert flip["flip"].any() and not flip["flip"].all()


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_resized_crop_pixels_equal_torchvision(interpolation):
    rrc_op = Augmentation(type="random_resized_crop", size=24, scale=(0.08, 1.0), ratio=(0.75, 4 / 3),
                          interpolation=interpolation)
    aug = TrainAugmentation((rrc_op, Augmentation(type="horizontal_flip", prob=0.5)))
    images = [_smooth_image(30 + 7 * i, 45 - 3 * i, seed=i) for i in range(8)]
    out, (rrc, flip) = aug(images, seeded_generator("cpu", 7), return_params=True)
    assert out.shape == (8, 3, 24, 24) and out.dtype == torch.uint8
    mode = TF.InterpolationMode(interpolation)
    for i, img in enumerate(images):
        top, left, h, w = (int(rrc[k][i]) for k in ("top", "left", "height", "width"))
        crop = img[None, :, top:top + h, left:left + w].contiguous(memory_format=torch.channels_last)
        # torchvision.transforms.v2 on the crop in the same memory layout (channels_last: torch's vectorized
        # uint8 kernel); on the contiguous image torch's other kernel rounds some pixels the other way, by 1
        ref = v2F.resize(crop, [24, 24], mode, antialias=True)[0]
        contiguous = v2F.resized_crop(img, top, left, h, w, [24, 24], mode, antialias=True)
        if flip["flip"][i]:
            ref, contiguous = v2F.horizontal_flip(ref), v2F.horizontal_flip(contiguous)
        assert torch.equal(out[i], ref), i
        assert (out[i].int() - contiguous.int()).abs().max() <= 1, i


def test_normalize_is_to_tensor_then_normalize():
    images = _images(4)
    ref = torch.stack([T.Normalize(CIFAR.eval.mean, CIFAR.eval.std)(T.ToTensor()(TF.to_pil_image(im)))
                       for im in images])
    out = normalize(images, CIFAR.eval.mean, CIFAR.eval.std)
    assert torch.equal(out, ref) and out.is_contiguous(memory_format=torch.channels_last)
    bf16 = normalize(images, CIFAR.eval.mean, CIFAR.eval.std, dtype=torch.bfloat16, channels_last=False)
    assert bf16.dtype == torch.bfloat16 and bf16.is_contiguous()
    torch.testing.assert_close(bf16.float(), ref, atol=0.02, rtol=0.01)  # measured 7.8e-3: bf16's own rounding
    with pytest.raises(ValueError, match="uint8"):
        normalize(out, CIFAR.eval.mean, CIFAR.eval.std)


# ----------------------------------------------------------------------------- recipes


# ----------------------------------------------------------------------------- the loader


def _loader(n=40, batch_size=6, **kw):
    kw.setdefault("augmentation", _device_augmentation(CIFAR))
    return DeviceDataLoader(_images(n, seed=9), torch.arange(n), batch_size, **kw)


@pytest.mark.parametrize("num_replicas,shuffle,drop_last", [(1, True, False), (3, True, True), (3, False, False)])
def test_order_and_sharding_equal_distributed_sampler(num_replicas, shuffle, drop_last):
    n, bs = 23, 4
    images = _images(n, seed=10)
    for rank in range(num_replicas):
        loader = DeviceDataLoader(images, torch.arange(n), bs, shuffle=shuffle, drop_last=drop_last, seed=5,
                                  num_replicas=num_replicas, rank=rank)
        sampler = DistributedSampler(range(n), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=5)
        sampler.set_epoch(2)
        loader.set_epoch(2)
        expected = list(sampler)
        if drop_last:
            expected = expected[:len(expected) // bs * bs]
        batches = list(loader)
        assert len(batches) == len(loader)
        assert torch.cat([y for _, y in batches]).tolist() == expected
        assert torch.equal(torch.cat([x for x, _ in batches]), images[expected])  # no augmentation: raw pixels
        assert batches[0][0].is_contiguous(memory_format=torch.channels_last)


def test_deterministic_per_seed_and_epoch():
    a, b, c = _loader(seed=1), _loader(seed=1), _loader(seed=2)
    first = list(a)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(first, b, strict=True))
    assert not torch.equal(first[0][0], next(iter(c))[0])
    a.set_epoch(1)
    assert not torch.equal(first[0][1], next(iter(a))[1])  # reshuffled each epoch


def test_resume_mid_epoch_gives_the_uninterrupted_batches():
    kw = dict(mean=CIFAR.eval.mean, std=CIFAR.eval.std, seed=3)
    full = _loader(**kw)
    full.set_epoch(1)
    expected = list(full)
    full.set_epoch(2)
    expected_next = list(full)

    interrupted = _loader(**kw)
    interrupted.set_epoch(1)
    it = iter(interrupted)
    for _ in range(3):
        next(it)
    state = interrupted.state_dict()
    assert state["epoch"] == 1 and state["batches_done"] == 3

    resumed = _loader(**kw)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # the trainer's usual call keeps the position
    rest = list(resumed)
    assert len(rest) == len(expected) - 3
    for (x, y), (xe, ye) in zip(rest, expected[3:], strict=True):
        assert torch.equal(x, xe) and torch.equal(y, ye)
    resumed.set_epoch(2)
    for (x, y), (xe, ye) in zip(resumed, expected_next, strict=True):
        assert torch.equal(x, xe) and torch.equal(y, ye)

    skipped = _loader(**kw)
    skipped.set_epoch(1)
    skipped.skip(5)
    assert torch.equal(next(iter(skipped))[0], expected[5][0])


def test_resume_refuses_a_different_setup():
    state = _loader(seed=1).state_dict()
    for change in (dict(seed=2), dict(batch_size=5), dict(num_replicas=2), dict(n=41)):
        with pytest.raises(ValueError, match="cannot resume exactly"):
            _loader(**dict(dict(seed=1), **change)).load_state_dict(state)
    with pytest.raises(ValueError, match="lacks"):
        _loader().load_state_dict({"epoch": 0})


def test_bad_loader_input():
    with pytest.raises(ValueError, match="uint8"):
        DeviceDataLoader(torch.zeros(4, 3, 8, 8), torch.arange(4), 2)
    with pytest.raises(ValueError, match="labels"):
        DeviceDataLoader(_images(4), torch.arange(3), 2)
    with pytest.raises(ValueError, match="rank"):
        DeviceDataLoader(_images(4), torch.arange(4), 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceDataLoader(_images(4), torch.arange(4), 0)
    with pytest.raises(ValueError, match="mean and std"):
        DeviceDataLoader(_images(4), torch.arange(4), 2, mean=(0.5, 0.5, 0.5))


def _hf_dataset(pil_images, labels, column="img"):
    import datasets

    features = datasets.Features({column: datasets.Image(), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({column: pil_images, "label": labels}, features=features)


def test_load_image_tensor_loads_rgb_and_labels():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(5)]
    pils = [PIL.Image.fromarray(a) for a in arrays] + [PIL.Image.fromarray(arrays[0][..., 0])]  # one grayscale
    ds = _hf_dataset(pils, [3, 1, 4, 1, 5, 9])
    images, labels = load_image_tensor(ds, "img", "label", TrainAugmentation(()), "cpu", chunk_size=4)
    expected = torch.stack([TF.pil_to_tensor(p.convert("RGB")) for p in pils])
    assert torch.equal(images, expected) and labels.tolist() == [3, 1, 4, 1, 5, 9]
    loader = DeviceDataLoader(images, labels, 2, augmentation=_device_augmentation(CIFAR))
    with pytest.raises(ValueError, match="32x32 from a .padded. 16x16"):
        next(iter(loader))  # 8x8 images, 32x32 crops


def test_load_image_tensor_needs_one_size_unless_the_recipe_resizes_first():
    rng = np.random.default_rng(2)
    pils = [PIL.Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)) for i in range(3)]
    ds = _hf_dataset(pils, [0, 1, 2])
    with pytest.raises(ValueError, match="differ in size"):
        load_image_tensor(ds, "img", "label", TrainAugmentation(()), "cpu")
    aug = TrainAugmentation((Augmentation(type="resize", size=(16, 16), interpolation="bilinear"),
                             Augmentation(type="random_crop", size=12, padding=None, pad_mode="constant", fill=0)))
    load_ops, batch_ops = aug.split_leading_resize()
    images, _ = load_image_tensor(ds, "img", "label", load_ops, "cpu")
    assert images.shape == (3, 3, 16, 16)  # resized once, at load
    assert [op.type for op in batch_ops.ops] == ["random_crop"]
    assert next(iter(DeviceDataLoader(images, torch.arange(3), 2, augmentation=batch_ops)))[0].shape == (2, 3, 12, 12)
    with pytest.raises(ValueError, match="no column 'image'"):
        load_image_tensor(ds, "image", "label", load_ops, "cpu")


# ----------------------------------------------------------------------------- on a GPU, where there is one

@pytest.mark.cuda
def test_cuda_loader_matches_cpu_order_and_ranges():
    cpu = _loader(seed=4, augmentation=None)
    cuda = _loader(seed=4, augmentation=None, device="cuda")
    for (xc, yc), (xg, yg) in zip(cpu, cuda, strict=True):
        assert torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())
    aug = _device_augmentation(CIFAR)
    _, (crop, flip) = aug(_images(4_000).cuda(), seeded_generator("cuda", 1), return_params=True)
    assert set(crop["top"].tolist()) == set(range(9))
    assert stats.binomtest(int(flip["flip"].sum()), 4_000, 0.5).pvalue > P_MIN


def test_train_batches_split_virtual_ranks_like_the_cpu_sampler():
    """DeviceTrainBatches (the trainer's device path): micro-batch a of process r is virtual rank
    a * world + r, so 1 process x accumulation 2 sees the micro-batches of 2 processes; a resumed
    epoch continues with the same batches."""
    import datasets

    from resnet_hub.train.device_data import DeviceTrainBatches

    cfg = load_config("resnet18_8xb16_cifar10")
    images = _images(40)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict({"img": [im.permute(1, 2, 0).numpy() for im in images],
                                     "label": list(range(40))}, features=features)
    kw = dict(batch_size=4, image_column="img", label_column="label", device="cpu", seed=5)
    ops = cfg.training.augmentation
    one = DeviceTrainBatches(ops, ds, accumulation=2, **kw)
    two = [DeviceTrainBatches(ops, ds, world_size=2, rank=r, **kw) for r in (0, 1)]
    assert one.steps_per_epoch == two[0].steps_per_epoch == 5
    a = list(one.batches(epoch=1))
    b0, b1 = list(two[0].batches(epoch=1)), list(two[1].batches(epoch=1))
    assert len(a) == 10 and len(b0) == 5
    for step in range(5):
        for got, want in ((a[2 * step], b0[step]), (a[2 * step + 1], b1[step])):
            assert torch.equal(got["labels"], want["labels"]) and got["images"].dtype == torch.uint8
            assert got["images"].shape == (4, 3, 32, 32)
    assert torch.cat([x["labels"] for x in a]).unique().numel() == 40  # every image once per epoch
    tail = list(one.batches(epoch=1, start_step=3))
    assert len(tail) == 4 and all(torch.equal(x["images"], y["images"]) for x, y in zip(tail, a[6:], strict=True))
    with pytest.raises(UnsupportedOnDevice):
        DeviceTrainBatches(load_config("resnet50_8xb256-rsb-a1-600e_in1k").training.augmentation, ds, **kw)
