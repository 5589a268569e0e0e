"""Streaming training data: decoded and augmented in DataLoader workers, split over processes and workers.

The stream is a ``datasets.IterableDataset`` shuffled by (seed, epoch) (shard order plus a
shuffle buffer), split over processes by ``datasets.distributed.split_dataset_by_node`` (whole
shards when the shard count divides the world size, else every ``world_size``-th example) and over
the DataLoader workers of each process by ``datasets`` itself (worker ``w`` of ``W`` reads shards
``w, w + W, ...`` of its process's share). So each image is read by one worker of one process per
epoch. Each worker decodes, augments and collates its own micro-batches; the DataLoader hands them
out round-robin over the workers that still have data, which makes the order a pure function of
(seed, epoch, processes, workers, data files).

Resume mid-epoch is exact for the same layout (processes, ``--grad-accum``, ``--workers``, seed and
files): the epoch is replayed from its start. Its first micro-batches are read but not decoded
(each worker skips, undecoded, a lower bound of the batches it delivered before the resume point;
the main process drops the exact count), because ``IterableDataset.state_dict()`` does not keep
the shuffle buffer and would resume into another order. Each micro-batch's augmentation is seeded
from (seed, epoch, process, worker, its position in the worker's stream).
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterator, Optional

import torch

from .augment import sample_seed
from .data import collate_images, samples_from_rows

__all__ = ["StreamBatches", "stream_layout"]

_SKIPPED = "skipped"


def stream_layout(num_shards: int, world_size: int, workers: int) -> dict:
    """How ``datasets`` splits ``num_shards`` shards: per-process shards, strategy and busy workers.

    ``split_dataset_by_node`` gives each process whole shards only when ``num_shards % world_size
    == 0``; otherwise every process reads all shards and keeps one example in ``world_size``.
    ``datasets`` stops workers beyond the process's shard count, so only ``busy`` are started.
    """
    by_shards = num_shards % world_size == 0
    per_process = num_shards // world_size if by_shards else num_shards
    return {"strategy": "shards" if by_shards else "examples", "shards_per_process": per_process,
            "workers": max(1, min(workers, per_process)) if workers > 0 else 0}


class _WorkerBatches(torch.utils.data.IterableDataset):
    """One process's stream as micro-batches, decoded in whichever worker reads the rows."""

    def __init__(self, ds, transform: Callable, columns: tuple[str, str], *, batch_size: int, seed: int,
                 epoch: int, rank: int, skip_batches_per_worker: int):
        super().__init__()
        self.ds, self.transform, self.columns = ds, transform, columns
        self.batch_size, self.seed, self.epoch, self.rank = batch_size, seed, epoch, rank
        self.skip = skip_batches_per_worker

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        image_column, label_column = self.columns
        rows = iter(self.ds)  # in a worker, datasets iterates only this worker's shards
        for b in itertools.count():
            chunk = list(itertools.islice(rows, self.batch_size))
            if len(chunk) < self.batch_size:
                return  # this worker's remainder: less than a micro-batch
            if b < self.skip:
                yield {_SKIPPED: True}  # read, not decoded: already trained on
                continue
            indices = range(b * self.batch_size, (b + 1) * self.batch_size)
            yield collate_images(samples_from_rows(chunk, self.transform, image_column, label_column, indices,
                                                   sample_seed(self.seed, self.epoch, self.rank, worker, b)))


class StreamBatches:
    """:class:`resnet_hub.train.data.TrainBatches` from a streaming split, decoded in DataLoader workers.

    ``steps_per_epoch`` defaults to ``n // world`` images less a partial micro-batch per worker,
    over ``accumulation * batch_size``: a sure bound for the every-``world``-th split, an estimate
    when whole shards of unequal size go to processes. A process whose share runs out before the
    epoch's steps stops with an error naming the steps it had.
    """

    def __init__(self, ds, transform, image_column, label_column, *, batch_size, world_size=1, rank=0,
                 accumulation=1, seed=0, steps_per_epoch: Optional[int] = None, workers=0, pin_memory=False,
                 shuffle_buffer=10_000):
        from datasets.distributed import split_dataset_by_node

        self.layout = stream_layout(ds.num_shards, world_size, workers)
        self.ds = split_dataset_by_node(ds.shuffle(seed=seed, buffer_size=shuffle_buffer), rank=rank,
                                        world_size=world_size)
        self.transform, self.columns = transform, (image_column, label_column)
        self.batch_size, self.accumulation, self.seed, self.rank = batch_size, accumulation, seed, rank
        self.pin_memory = pin_memory
        if steps_per_epoch is None:
            steps_per_epoch = self._steps_from_size(ds, world_size)
        self.steps_per_epoch = steps_per_epoch

    def _steps_from_size(self, ds, world_size: int) -> int:
        splits = getattr(getattr(ds, "info", None), "splits", None)
        n = None
        if splits and ds.split is not None and str(ds.split) in splits:
            n = splits[str(ds.split)].num_examples
        if not n:
            raise ValueError("a streaming dataset without a known size needs --steps-per-epoch")
        sure = n // world_size - max(1, self.layout["workers"]) * (self.batch_size - 1)
        steps = max(0, sure) // (self.accumulation * self.batch_size)
        if steps == 0:
            raise ValueError(f"{n} streamed images are too few for one step of {world_size} x {self.accumulation} x "
                             f"{self.batch_size} images with {self.layout['workers']} worker(s); lower --batch-size")
        return steps

    def _loader(self, epoch: int, skip_per_worker: int) -> torch.utils.data.DataLoader:
        batches = _WorkerBatches(self.ds, self.transform, self.columns, batch_size=self.batch_size, seed=self.seed,
                                 epoch=epoch, rank=self.rank, skip_batches_per_worker=skip_per_worker)
        # a fresh loader per epoch: its workers copy the epoch and skip count when they start
        return torch.utils.data.DataLoader(batches, batch_size=None, num_workers=self.layout["workers"],
                                           pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(0))

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
        self.ds.set_epoch(epoch)
        done = start_step * self.accumulation  # micro-batches already trained on
        workers = max(1, self.layout["workers"])
        # round-robin over the workers: each delivered at least done // workers of the first `done`
        stream = iter(self._loader(epoch, done // workers))
        wanted = (self.steps_per_epoch - start_step) * self.accumulation
        dropped = sum(1 for _ in itertools.islice(stream, done))
        if dropped < done:
            raise self._short(done, dropped)
        got = 0
        for batch in itertools.islice(stream, wanted):
            if _SKIPPED in batch:
                raise RuntimeError("an undecoded batch reached training: the DataLoader did not hand out "
                                   "batches round-robin over its workers")
            got += 1
            yield batch
        if got < wanted:
            raise self._short(done + wanted, done + got)

    def _short(self, needed: int, had: int) -> ValueError:
        steps = had // self.accumulation
        return ValueError(f"process {self.rank}: its share of the stream ended after {had} of {needed} micro-batches "
                          f"({steps} steps; shards of unequal size give processes unequal shares); pass "
                          f"--steps-per-epoch {steps} or fewer")

