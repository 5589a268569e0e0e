"""resnet_hub.train.streaming on a local sharded Arrow stream: once per epoch over processes x workers, resume."""
from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_hub import load_config
from resnet_hub.train.augment import TrainTransform
from resnet_hub.train.streaming import StreamBatches, stream_layout

CIFAR = load_config("resnet18_8xb16_cifar10")
PER_SHARD = 12


def _arrow_stream(root, n_shards: int):
    """``n_shards`` Arrow files of 32x32 digits, PNG and JPEG alternating, label = image id.

    Arrow, not parquet: datasets' parquet reader sleeps 5 s whenever a stream ends (an Arrow thread
    shutdown workaround), which would make these tests wait more than they work.
    """
    import datasets
    import pyarrow as pa
    from sklearn.datasets import load_digits

    digits = load_digits().images
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    files = []
    for s in range(n_shards):
        ids = range(s * PER_SHARD, (s + 1) * PER_SHARD)
        images = []
        for i in ids:
            gray = Image.fromarray((digits[i] * (255 / 16)).astype(np.uint8), mode="L").resize((32, 32))
            buf = io.BytesIO()
            gray.convert("RGB").save(buf, "JPEG" if i % 2 else "PNG")
            images.append({"bytes": buf.getvalue(), "path": None})
        table = datasets.Dataset.from_dict({"image": images, "label": list(ids)}, features=features).data.table
        path = root / f"train-{s:03d}.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        files.append(str(path))
    ds = datasets.load_dataset("arrow", data_files={"train": files}, split="train", streaming=True)
    return ds.cast_column("image", datasets.Image(decode=False))


def _stream(ds, **kwargs) -> StreamBatches:
    return StreamBatches(ds, TrainTransform(CIFAR.training.augmentation), "image", "label",
                         **dict(dict(batch_size=3, world_size=2, rank=0, seed=5, workers=2), **kwargs))


@pytest.fixture(scope="module", params=[4, 5], ids=["4-shards", "5-shards"])
def shards(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"shards{request.param}")
    return request.param, _arrow_stream(root, request.param)


def test_layout_follows_datasets_split_rules():
    assert stream_layout(4, 2, 8) == {"strategy": "shards", "shards_per_process": 2, "workers": 2}
    assert stream_layout(5, 2, 2) == {"strategy": "examples", "shards_per_process": 5, "workers": 2}
    assert stream_layout(5, 1, 0)["workers"] == 0


@pytest.mark.slow
def test_each_image_once_per_epoch_over_two_processes_and_two_workers(shards):
    """4 shards: whole shards per process, one per worker; 5 shards: every 2nd example per process, and the
    workers hold 3 and 2 shards (unequal). Both ways every image comes exactly once; the next epoch reshuffles."""
    n_shards, ds = shards
    steps = n_shards * PER_SHARD // (2 * 3)  # these shares divide into micro-batches: nothing left over
    epochs = []
    for epoch in (0, 1):
        labels = []
        for rank in (0, 1):
            batches = list(_stream(ds, rank=rank, steps_per_epoch=steps).batches(epoch))
            assert len(batches) == steps and all(b["images"].shape == (3, 3, 32, 32) for b in batches)
            labels += [int(y) for b in batches for y in b["labels"]]
        assert Counter(labels) == Counter(range(n_shards * PER_SHARD))
        epochs.append(labels)
    assert epochs[0] != epochs[1]


@pytest.mark.slow
@pytest.mark.parametrize("when", ["early", "last-step"])
def test_resume_mid_epoch_gives_exactly_the_rest_of_the_epoch(shards, when):
    """Same layout, resumed at a step: the same images with the same augmentation as the uninterrupted epoch.
    At the last step of 5 shards one worker has already run out (3 vs 2 shards): the round-robin is uneven."""
    n_shards, ds = shards
    steps = n_shards * PER_SHARD // (2 * 3)
    start_step = 2 if when == "early" else steps - 1
    full = list(_stream(ds, steps_per_epoch=steps).batches(1))
    rest = list(_stream(ds, steps_per_epoch=steps).batches(1, start_step=start_step))
    assert len(rest) == steps - start_step
    for a, b in zip(full[start_step:], rest, strict=True):
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["images"], b["images"])


@pytest.mark.slow
def test_resume_with_accumulation_and_one_worker(shards):
    n_shards, ds = shards
    micro = n_shards * PER_SHARD // (2 * 3)
    full = list(_stream(ds, workers=1, accumulation=2, steps_per_epoch=micro // 2).batches(0))
    rest = list(_stream(ds, workers=1, accumulation=2, steps_per_epoch=micro // 2).batches(0, start_step=1))
    assert len(full) == 2 * (micro // 2) and len(rest) == len(full) - 2
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(full[2:], rest, strict=True))


def test_a_share_that_runs_out_names_the_steps_it_has(shards):
    n_shards, ds = shards
    have = n_shards * PER_SHARD // (2 * 3)
    with pytest.raises(ValueError, match=f"process 0: .* pass --steps-per-epoch {have} or fewer"):
        list(_stream(ds, steps_per_epoch=have + 1).batches(0))
    with pytest.raises(ValueError, match="needs --steps-per-epoch"):
        _stream(ds)  # data files alone carry no split size
