"""A fast training input pipeline: encoded images in an HF dataset -> uint8 batches -> normalize on the device.

The plain way, ``Image()`` + ``with_transform`` + torchvision on PIL images, decodes with PIL,
augments, converts to float and normalizes every sample on the CPU. Here the image column stays
encoded (``Image(decode=False)``), bytes are decoded by ``torchvision.io``, crops are taken
before resizing, resizing runs on channels_last uint8 (torch's vectorized uint8 path), and the
batch leaves the worker as uint8: a quarter of the bytes, normalized where the model runs by
:func:`normalize`. ``scripts/benchmark.py`` measures it against the plain way (row ``pipeline``).

>>> transform = train_transform(load_config("resnet50_8xb32_in1k"))
>>> ds = prepare_dataset(hf_dataset, transform)          # ds[i:j]["image"]: uint8 (B, 3, 224, 224)
>>> for batch in batch_loader(ds, batch_size=256, shuffle=True, num_workers=8, pin_memory=True):
...     x = normalize(batch["image"].to("cuda", non_blocking=True), cfg.eval.mean, cfg.eval.std)
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import torch
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

from resnet_hub.numerics import normalize
from resnet_hub.train.augment import interpolation_mode, pad, pair, param, refuse_unsupported
from resnet_hub.zoo.configs import Augmentation, HubConfig

__all__ = ["TrainTransform", "EncodedImageTransform", "train_transform", "prepare_dataset", "batch_loader", "decode",
           "encoded_bytes", "normalize"]


def encoded_bytes(image: Any) -> torch.Tensor:
    """An encoded image as a flat uint8 tensor of its file bytes: an ``Image(decode=False)`` value
    (``{"bytes", "path"}``), raw bytes, a path, or a uint8 tensor/array of bytes."""
    import numpy as np

    if isinstance(image, Mapping):
        if image.get("bytes") is not None:
            image = image["bytes"]
        elif image.get("path"):
            image = image["path"]
        else:
            raise ValueError("an image entry with neither bytes nor a path")
    if isinstance(image, torch.Tensor):
        return image.to(torch.uint8).reshape(-1)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return torch.frombuffer(bytearray(image), dtype=torch.uint8)
    if isinstance(image, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.uint8).reshape(-1))
    if isinstance(image, (str, os.PathLike)):
        return read_file(str(image))
    raise ValueError(f"expected an encoded image (bytes, path or Image(decode=False) value), "
                     f"got {type(image).__name__}")


def decode(image: Any) -> torch.Tensor:
    """An encoded image (see :func:`encoded_bytes`) -> uint8 RGB tensor (3, H, W). JPEG, PNG, GIF
    and WebP; gray and CMYK become RGB."""
    data = encoded_bytes(image)
    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError as e:
        path = image.get("path") if isinstance(image, Mapping) else image if isinstance(image, str) else None
        raise ValueError(f"cannot decode image{' ' + str(path) if path else ''}: {e}") from None


class TrainTransform:
    """A batch transform for ``Dataset.with_transform``: encoded images -> augmented uint8 batch.

    ``ops`` are hub_configs training augmentations, in order (those ``augment.SUPPORT`` gives "uint8"). Returns
    ``{image_column: uint8 (B, 3, S, S), label_column: int64 (B,)}``. Random numbers come from
    torch's global generator, as torchvision's transforms (seed it per worker as usual).
    """

    def __init__(self, ops: Sequence[Augmentation], image_column: str = "image", label_column: Optional[str] = "label"):
        refuse_unsupported(ops, "uint8")
        self.ops = tuple(ops)
        # ops up to the first random_crop run per image (decoded sizes differ); from it on, on the batch
        self._first_batch_op = next((i for i, op in enumerate(self.ops) if op.type == "random_crop"), len(self.ops))
        self.image_column, self.label_column = image_column, label_column

    # -- per image, on a (1, 3, H, W) uint8 tensor; resizing is fastest on channels_last
    def _random_resized_crop(self, x: torch.Tensor, op: Augmentation) -> torch.Tensor:
        top, left, h, w = RandomResizedCrop.get_params(x, list(param(op, "scale")), list(param(op, "ratio")))
        crop = x[..., top:top + h, left:left + w].contiguous(memory_format=torch.channels_last)
        return TF.resize(crop, list(pair(op.size)), interpolation=interpolation_mode(op), antialias=True)

    def _resize(self, x: torch.Tensor, op: Augmentation) -> torch.Tensor:
        return TF.resize(x, list(pair(op.size)), interpolation=interpolation_mode(op), antialias=True)

    def _image(self, encoded: Any) -> torch.Tensor:
        x = decode(encoded).unsqueeze(0)
        for op in self.ops[:self._first_batch_op]:
            if op.type == "random_resized_crop":
                x = self._random_resized_crop(x, op)
            elif op.type == "resize":
                x = self._resize(x, op)
            elif op.type == "horizontal_flip" and torch.rand(()) < param(op, "prob"):
                x = x.flip(-1)
        return x[0]

    # -- per batch: padding crops and flips, vectorized over the stacked batch
    def _random_crop(self, batch: torch.Tensor, op: Augmentation) -> torch.Tensor:
        size = pair(op.size)
        batch = pad(batch, param(op, "padding"), param(op, "pad_mode"), param(op, "fill"))
        n, _, height, width = batch.shape
        if height < size[0] or width < size[1]:
            raise ValueError(f"random_crop {size} is larger than the padded image {(height, width)}")
        tops = torch.randint(0, height - size[0] + 1, (n,))
        lefts = torch.randint(0, width - size[1] + 1, (n,))
        rows = (tops[:, None] + torch.arange(size[0]))[:, None, :, None]
        cols = (lefts[:, None] + torch.arange(size[1]))[:, None, None, :]
        images, channels = torch.arange(n)[:, None, None, None], torch.arange(batch.shape[1])[None, :, None, None]
        return batch[images, channels, rows, cols]

    def _flip(self, batch: torch.Tensor, op: Augmentation) -> torch.Tensor:
        flip = torch.rand(batch.shape[0]) < param(op, "prob")
        return torch.where(flip[:, None, None, None], batch.flip(-1), batch)

    def __call__(self, examples: Mapping[str, list]) -> dict[str, torch.Tensor]:
        images = [self._image(e) for e in examples[self.image_column]]
        shapes = {tuple(x.shape) for x in images}
        if len(shapes) > 1:
            raise ValueError(f"images of different sizes {sorted(shapes)} cannot form a batch; "
                             "add a random_resized_crop or resize op")
        if self._first_batch_op == len(self.ops):  # resized on channels_last: stack as channels_last (a memcpy each)
            batch = torch.empty((len(images), *images[0].shape), dtype=torch.uint8).contiguous(
                memory_format=torch.channels_last)
            for i, x in enumerate(images):
                batch[i] = x
        else:
            batch = torch.stack(images)
        for op in self.ops[self._first_batch_op:]:
            if op.type == "random_crop":
                batch = self._random_crop(batch, op)
            elif op.type == "horizontal_flip":
                batch = self._flip(batch, op)
            elif op.type == "resize":
                batch = self._resize(batch, op)
            elif op.type == "random_resized_crop":  # each image its own crop; all come out one size
                batch = torch.cat([self._random_resized_crop(x[None], op) for x in batch])
        out = {self.image_column: batch}
        if self.label_column is not None:
            out[self.label_column] = torch.as_tensor(examples[self.label_column], dtype=torch.int64)
        return out


class EncodedImageTransform:
    """The fast pipeline for one encoded image, as the trainer's per-sample transform.

    Takes what an ``Image(decode=False)`` column holds and returns the augmented uint8
    ``(3, S, S)`` tensor; ``takes_encoded`` tells ``resnet_hub.train.data`` to skip its PIL decode.
    Random numbers come from torch's global generator, which the trainer seeds per sample.
    """

    takes_encoded = True

    def __init__(self, ops: Sequence[Augmentation]):
        self.batch = TrainTransform(ops, image_column="image", label_column=None)

    def __call__(self, encoded: Any) -> torch.Tensor:
        return self.batch({"image": [encoded]})["image"][0]


def train_transform(cfg: HubConfig, image_column: Optional[str] = None,
                    label_column: Optional[str] = None) -> TrainTransform:
    """The fast pipeline for a config's training augmentation (ValueError naming an op it lacks)."""
    ds = cfg.training.dataset
    return TrainTransform(cfg.training.augmentation, image_column or ds.image_column,
                          label_column or ds.label_column)


def batch_loader(dataset, batch_size: int, shuffle: bool = False, drop_last: bool = False, **kwargs):
    """A DataLoader that reads whole batches from a :func:`prepare_dataset` dataset.

    Each step asks the dataset for a list of indices, so the transform's stacked batch is
    used as is (a default DataLoader would split it into samples and stack them again).
    ``kwargs`` go to ``DataLoader`` (``num_workers``, ``pin_memory``, ``generator``, ...).
    """
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    sampler = RandomSampler(dataset, generator=kwargs.pop("generator", None)) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last), **kwargs)


def prepare_dataset(dataset, transform: TrainTransform):
    """``dataset`` with its image column left encoded and ``transform`` applied on access."""
    from datasets import Image

    for column in (transform.image_column, transform.label_column):
        if column is not None and column not in dataset.column_names:
            raise ValueError(f"the dataset has no column {column!r}; its columns: {', '.join(dataset.column_names)}")
    return dataset.cast_column(transform.image_column, Image(decode=False)).with_transform(transform)
