"""Training data that lives on the accelerator: the whole split as one uint8 tensor, augmented there in batch.

For small images (CIFAR, digits; CUB after its resize) the trainer can hold the training split on the
device (``--data-on-device``, see :func:`resnet_hub.train.augment.choose_backend`): no worker processes,
no host-to-device copies per step. :class:`DeviceDataLoader` shuffles and shards it like
:class:`torch.utils.data.DistributedSampler` and augments each batch with the same
:class:`~resnet_hub.train.augment.TrainAugmentation` the CPU path runs per image, drawing from a
generator on the device seeded per batch; :class:`DeviceTrainBatches` is the trainer's view of it.
Everything runs unchanged on the CPU device, which is how it is tested.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Optional, Union

import torch

from resnet_hub.numerics import normalize

from .augment import TrainAugmentation, seeded_generator

__all__ = ["DeviceDataLoader", "DeviceTrainBatches", "load_image_tensor"]


class DeviceDataLoader:
    """A whole dataset split on one device, iterated in augmented, normalized batches.

    ``images`` is uint8 ``(N, C, H, W)`` (any strides; stored channels_last), ``labels`` ``(N,)``.
    Order: exactly ``DistributedSampler(num_replicas, rank, shuffle, seed)`` after
    ``set_epoch(epoch)`` (shards padded to equal length by wrapping around, as it does), cut into
    batches of ``batch_size`` (``drop_last`` drops a short last batch). Augmentation draws come
    from a generator on the device seeded by ``(seed, epoch, rank, batch index)``.

    Resume: ``state_dict()`` after a batch records the epoch and how many batches were handed
    out; ``load_state_dict(state)`` makes the next iteration continue right after them, so a
    resumed run sees the same batches, augmented the same way, as an uninterrupted one.

    Yields ``(inputs, labels)`` on the device: inputs normalized to ``dtype`` (channels_last if
    asked) when ``mean``/``std`` are given, else the augmented uint8 batch.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 augmentation: Optional[TrainAugmentation] = None, mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None, dtype: torch.dtype = torch.float32, channels_last: bool = True,
                 shuffle: bool = True, drop_last: bool = False, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 device: Union[str, torch.device, None] = None):
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got "
                             f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}")
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        if images.shape[0] == 0:
            raise ValueError("the dataset is empty")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas - 1}] for num_replicas={num_replicas}, got {rank}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std (to normalize on the device) or neither (uint8 out)")
        self.device = torch.device(device) if device is not None else images.device
        # NHWC storage: a row gather of it is a channels_last NCHW batch
        self._nhwc = images.permute(0, 2, 3, 1).to(self.device).contiguous()
        self.labels = labels.to(self.device, torch.long)
        self.batch_size, self.drop_last, self.shuffle, self.seed = batch_size, drop_last, shuffle, int(seed)
        self.num_replicas, self.rank = num_replicas, rank
        self.augmentation = augmentation
        self.mean, self.std, self.dtype, self.channels_last = mean, std, dtype, channels_last
        self.epoch = 0
        self._batches_done = 0  # handed out in the current epoch
        self._resume_at = 0  # where the next __iter__ starts

    @property
    def images(self) -> torch.Tensor:
        """The stored split as uint8 ``(N, C, H, W)`` (channels_last memory)."""
        return self._nhwc.permute(0, 3, 1, 2)

    @property
    def num_samples(self) -> int:
        """Samples of this rank per epoch (shards padded to equal length)."""
        return math.ceil(self._nhwc.shape[0] / self.num_replicas)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Like ``DistributedSampler.set_epoch``; a pending resume position is kept for its own epoch only."""
        if epoch != self.epoch:
            self._resume_at = 0
            self._batches_done = 0
        self.epoch = int(epoch)

    def skip(self, num_batches: int) -> None:
        """Start the next iteration of the current epoch after ``num_batches`` batches."""
        if not 0 <= num_batches <= len(self):
            raise ValueError(f"cannot skip {num_batches} batches of an epoch of {len(self)}")
        self._resume_at = self._batches_done = num_batches

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches_done": self._batches_done, "seed": self.seed,
                "num_replicas": self.num_replicas, "rank": self.rank, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last, "num_images": int(self._nhwc.shape[0])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.state_dict()
        missing = sorted(set(mine) - set(state))
        if missing:
            raise ValueError(f"data loader state lacks {', '.join(missing)}")
        for key in ("seed", "num_replicas", "rank", "batch_size", "shuffle", "drop_last", "num_images"):
            if state[key] != mine[key]:
                raise ValueError(f"cannot resume exactly: the checkpoint's data loader had {key}={state[key]!r}, "
                                 f"this one has {key}={mine[key]!r}")
        self.epoch = int(state["epoch"])
        self.skip(int(state["batches_done"]))

    def epoch_indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, as DistributedSampler gives them."""
        n = self._nhwc.shape[0]
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=g)
        else:
            indices = torch.arange(n)
        total = self.num_samples * self.num_replicas
        if total > n:  # pad by wrapping around, repeated if needed
            indices = torch.cat([indices] + [indices] * ((total - n) // n) + [indices[:(total - n) % n]])
        return indices[self.rank:total:self.num_replicas]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self.epoch_indices().to(self.device)
        start, self._resume_at = self._resume_at, 0
        bs = self.batch_size
        for b in range(start, len(self)):
            idx = indices[b * bs:(b + 1) * bs]
            x = self._nhwc[idx].permute(0, 3, 1, 2)
            if self.augmentation is not None and self.augmentation.ops:
                x = self.augmentation(x, seeded_generator(self.device, self.seed, self.epoch, self.rank, b))
            if self.mean is not None:
                x = normalize(x, self.mean, self.std, self.dtype, self.channels_last)
            self._batches_done = b + 1
            yield x, self.labels[idx]


class DeviceTrainBatches:
    """The trainer's ``TrainBatches`` (resnet_hub.train.data) with the whole training split on the device.

    As in ``data.TrainBatchSampler``, micro-batch ``a`` of process ``r`` is virtual rank
    ``a * world_size + r`` of ``world_size * accumulation``: one process with accumulation 2
    sees the micro-batches of two processes. Yields uint8 batches, already augmented on the
    device by ``ops`` (the plan's recipe ops); the trainer's ``DeviceNormalize`` does the rest. Raises
    :class:`~resnet_hub.train.augment.UnsupportedOnDevice` for a recipe op that runs on the CPU only (RandAugment).
    """

    def __init__(self, ops: Sequence, dataset, *, batch_size: int, image_column: str, label_column: str,
                 device: Union[str, torch.device], world_size: int = 1, rank: int = 0, accumulation: int = 1,
                 seed: int = 0):
        load_ops, batch_ops = TrainAugmentation.from_recipe(ops, on_device=True).split_leading_resize()
        images, labels = load_image_tensor(dataset, image_column, label_column, load_ops, device)
        virtual = world_size * accumulation
        self.loaders = [DeviceDataLoader(images, labels, batch_size, augmentation=batch_ops, drop_last=True,
                                         seed=seed, num_replicas=virtual, rank=a * world_size + rank, device=device)
                        for a in range(accumulation)]
        self.steps_per_epoch = min(len(loader) for loader in self.loaders)
        if self.steps_per_epoch == 0:
            raise ValueError(f"{images.shape[0]} training images are too few for one step of {virtual} x "
                             f"{batch_size} images; lower --batch-size")

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
        iterators = []
        for loader in self.loaders:
            loader.set_epoch(epoch)
            loader.skip(start_step)
            iterators.append(iter(loader))
        for _ in range(start_step, self.steps_per_epoch):
            for it in iterators:
                images, labels = next(it)
                yield {"images": images, "labels": labels, "bad": []}


def load_image_tensor(dataset, image_column: str, label_column: str, load_ops: TrainAugmentation,
                      device: Union[str, torch.device], chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """An HF dataset's images as one uint8 ``(N, 3, H, W)`` tensor on ``device``, and its labels."""
    import datasets
    import numpy as np

    for col in (image_column, label_column):
        if col not in dataset.column_names:
            raise ValueError(f"dataset has no column {col!r} (columns: {', '.join(dataset.column_names)})")
    if isinstance(dataset.features[image_column], datasets.Image):
        dataset = dataset.cast_column(image_column, datasets.Image(mode="RGB"))
    images, labels, first_shape = [], [], None
    for chunk in dataset.select_columns([image_column, label_column]).with_format("numpy").iter(chunk_size):
        arrays = chunk[image_column]
        # one (B, H, W[, C]) array when a chunk's images share a size, else an object array of images
        for arr in ([np.asarray(a)[None] for a in arrays] if arrays.dtype == object else [arrays]):
            t = torch.tensor(arr)  # a copy: arrow-backed arrays are read-only
            if t.ndim == 3:  # grayscale arrays (N, H, W)
                t = t[..., None]
            if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] not in (1, 3):
                raise ValueError(f"column {image_column!r} holds {t.dtype} arrays of shape {tuple(t.shape[1:])}; "
                                 "expected images or uint8 (H, W[, 1 or 3]) arrays")
            t = t.expand(*t.shape[:3], 3).permute(0, 3, 1, 2).to(device)
            if load_ops.ops:
                t = load_ops(list(t))
            if first_shape is None:
                first_shape = tuple(t.shape[1:])
            elif tuple(t.shape[1:]) != first_shape:
                raise ValueError(f"images differ in size ({first_shape[1]}x{first_shape[2]} and "
                                 f"{t.shape[2]}x{t.shape[3]}): GPU-resident data needs one size; put a resize first "
                                 "in the recipe or use the CPU data pipeline")
            images.append(t.contiguous(memory_format=torch.channels_last))
        labels.append(torch.from_numpy(np.asarray(chunk[label_column], dtype=np.int64)))
    if not images:
        raise ValueError("the dataset is empty")
    return torch.cat(images), torch.cat(labels)
