"""Image classification data through Hugging Face ``datasets``, as uint8 batches.

Where the data comes from (:func:`resolve_dataset`):
- ``None``: the config's own Hub dataset (``cfg.training.dataset``: id, splits, columns);
- ``"digits"``: scikit-learn's bundled handwritten digits, offline, upscaled to RGB at the
  config's input size, with a fixed stratified 1,437 / 360 train/validation split;
- a local folder: ``datasets``' ``imagefolder`` (one sub-folder per class, optionally under
  ``train/`` and ``validation/`` or ``test/``);
- anything else: a Hub dataset id, whose splits and columns default to the config's.

Every image is decoded here, not by ``datasets``: converted to RGB (grayscale, CMYK, palette,
alpha dropped as OpenCV's ``imread`` does for mmpretrain) or, when it cannot be read, dropped from
its batch and counted (``bad_images="skip"``) or reported in the main process as one clear
error (``"error"``); never an exception deep inside a worker.

Batches are ``(uint8 NCHW images, int64 labels)``; :class:`DeviceNormalize` turns them into
normalized floats on the accelerator. Training batches come from :class:`TrainBatchSampler`,
which makes the epoch a pure function of (seed, epoch, global batch), so that N processes x
accumulation A sees the same micro-batches as any other split of the same N*A, and a resumed
run continues mid-epoch exactly. Each batch's augmentation is seeded from its first key (its place
in the epoch), so it does not depend on worker count or process count either.

A streaming split is read by :class:`resnet_hub.train.streaming.StreamBatches` (decoded in
DataLoader workers, split over processes and workers). A device-resident loader
(``resnet_hub.train.device_data``) plugs in at :class:`TrainBatches`: any
object with ``steps_per_epoch`` and ``batches(epoch, start_step)`` yielding uint8 images and
labels (on any device) replaces the DataLoader path in the trainer.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .augment import sample_seed

__all__ = [
    "DatasetSpec", "resolve_dataset", "ImageSplits", "load_splits", "digits_splits", "LabeledImages",
    "TrainBatchSampler", "TrainBatches", "LoaderBatches", "collate_images", "DeviceNormalize", "BadImages",
    "to_rgb", "DIGITS",
]

DIGITS = "digits"
BAD_IMAGE_POLICIES = ("skip", "error")
_EVAL_SPLIT_NAMES = ("validation", "valid", "val", "test")


# ----------------------------------------------------------------------------- which data


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and how to read it."""
    kind: str  # "digits" | "hub" | "imagefolder"
    path: str  # Hub id or local folder ("digits" for the embedded one)
    train_split: str
    eval_split: str
    image_column: str
    label_column: str
    streaming: bool = False

    def describe(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def resolve_dataset(dataset: Optional[str], cfg, *, train_split: Optional[str] = None,
                    eval_split: Optional[str] = None, image_column: Optional[str] = None,
                    label_column: Optional[str] = None, streaming: bool = False) -> DatasetSpec:
    """The dataset of ``--dataset`` (default: the config's own), with column/split overrides."""
    d = cfg.training.dataset
    if dataset in (None, ""):
        spec = DatasetSpec("hub", d.hf_id, d.train_split, d.eval_split, d.image_column, d.label_column)
    elif dataset == DIGITS:
        spec = DatasetSpec("digits", DIGITS, "train", "validation", "image", "label")
    elif os.path.isdir(dataset):
        spec = DatasetSpec("imagefolder", str(Path(dataset).resolve()), "train", "", "image", "label")
    elif os.path.exists(dataset) or dataset.startswith((".", "/")):
        raise FileNotFoundError(f"--dataset {dataset}: not a folder (a local dataset is an image folder with "
                                "one sub-folder per class)")
    else:
        spec = DatasetSpec("hub", dataset, d.train_split, d.eval_split, d.image_column, d.label_column)
    spec = replace(spec, **{k: v for k, v in dict(train_split=train_split, eval_split=eval_split,
                                                   image_column=image_column, label_column=label_column).items()
                            if v})
    if streaming and spec.kind == "digits":
        raise ValueError("--streaming is for Hub or folder datasets; the digits are in memory")
    return replace(spec, streaming=streaming)


@dataclass
class ImageSplits:
    """The two splits of one dataset, with what the model head needs to know."""
    train: Any  # datasets.Dataset or IterableDataset, image column not decoded
    eval: Any
    num_classes: int
    label_names: tuple[str, ...]
    spec: DatasetSpec


def digits_splits(input_size: int) -> ImageSplits:
    """scikit-learn's 1,797 8x8 handwritten digits as RGB images of ``input_size``, fixed split."""
    import datasets
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, eval_idx = train_test_split(np.arange(len(digits.target)), test_size=0.2, random_state=0,
                                           stratify=digits.target)
    names = tuple(str(i) for i in range(10))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})

    def split(idx) -> "datasets.Dataset":
        images = []
        for i in idx:
            gray = Image.fromarray((digits.images[i] * (255.0 / 16.0)).round().astype(np.uint8), mode="L")
            images.append(gray.resize((input_size, input_size), Image.BICUBIC).convert("RGB"))
        ds = datasets.Dataset.from_dict({"image": images, "label": digits.target[idx].tolist()}, features=features)
        return ds.cast_column("image", datasets.Image(decode=False))

    spec = DatasetSpec("digits", DIGITS, "train", "validation", "image", "label")
    return ImageSplits(split(train_idx), split(eval_idx), 10, names, spec)


def _pick_eval_split(available: Sequence[str], spec: DatasetSpec) -> str:
    for name in (spec.eval_split, *_EVAL_SPLIT_NAMES):
        if name and name in available:
            return name
    raise ValueError(f"dataset {spec.path} has no evaluation split {spec.eval_split or ''!r}; "
                     f"splits: {', '.join(available)} (choose one with --eval-split)")


def _label_info(ds, spec: DatasetSpec) -> tuple[int, tuple[str, ...]]:
    import datasets

    features = ds.features
    if features is None:
        raise ValueError(f"dataset {spec.path}: cannot read its columns (no features); give --image-column "
                         "and --label-column")
    for kind, column in (("image", spec.image_column), ("label", spec.label_column)):
        if column not in features:
            raise ValueError(f"dataset {spec.path} has no {kind} column {column!r}; columns: "
                             f"{', '.join(features)} (choose one with --{kind}-column)")
    if not isinstance(features[spec.image_column], datasets.Image):
        raise ValueError(f"dataset {spec.path}: column {spec.image_column!r} holds {features[spec.image_column]}, "
                         "not images (choose one with --image-column)")
    label = features[spec.label_column]
    if isinstance(label, datasets.ClassLabel):
        return label.num_classes, tuple(label.names)
    if not (isinstance(label, datasets.Value) and label.dtype.startswith(("int", "uint"))):
        raise ValueError(f"dataset {spec.path}: label column {spec.label_column!r} holds {label}, not class "
                         "indices (choose one with --label-column)")
    if spec.streaming:
        return 0, ()  # unknown without a pass over the data; labels are checked per batch
    labels = np.asarray(ds[spec.label_column])
    if labels.size and labels.min() < 0:
        raise ValueError(f"dataset {spec.path}: negative labels in column {spec.label_column!r}")
    n = int(labels.max()) + 1 if labels.size else 0
    return n, tuple(str(i) for i in range(n))


def load_splits(spec: DatasetSpec, input_size: int) -> ImageSplits:
    """Both splits of ``spec``, image column left undecoded (decoded by :class:`LabeledImages`)."""
    if spec.kind == "digits":
        splits = digits_splits(input_size)
        _label_info(splits.train, spec)  # column overrides name columns the digits do not have
        return splits
    import datasets

    if spec.kind == "imagefolder":
        check_image_folder(Path(spec.path), spec.train_split)
        builder = dict(path="imagefolder", data_dir=spec.path)
    else:
        builder = dict(path=spec.path)
    try:
        dsd = datasets.load_dataset(**builder, streaming=spec.streaming)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"dataset {spec.path}: {e}") from None
    except ConnectionError as e:
        raise ConnectionError(f"dataset {spec.path} could not be fetched ({e}); set HF_HUB_OFFLINE=1 to use "
                              "the local cache, or pass --dataset digits or a local image folder") from None
    available = list(dsd.keys())
    if spec.train_split not in available:
        raise ValueError(f"dataset {spec.path} has no split {spec.train_split!r}; splits: {', '.join(available)} "
                         "(choose one with --train-split)")
    if spec.kind == "imagefolder" and len(available) == 1:
        raise ValueError(f"image folder {spec.path} has only a {available[0]!r} split; put the images under "
                         "train/<class>/ and validation/<class>/ (or test/<class>/)")
    eval_split = _pick_eval_split([s for s in available if s != spec.train_split], spec)
    spec = replace(spec, eval_split=eval_split)
    train, evals = dsd[spec.train_split], dsd[eval_split]
    num_classes, names = _label_info(train, spec)
    if not spec.streaming:
        _check_eval_classes(train, evals, spec, names)
    train = train.cast_column(spec.image_column, datasets.Image(decode=False))
    evals = evals.cast_column(spec.image_column, datasets.Image(decode=False))
    keep = [spec.image_column, spec.label_column]
    if spec.streaming:
        evals = _stored_eval_split(evals.select_columns(keep))
    else:
        train = train.select_columns(keep)
    return ImageSplits(train, evals.select_columns(keep), num_classes, names, spec)


def _has_file(folder: Path) -> bool:
    return any(f.is_file() and not f.name.startswith(".") for f in folder.rglob("*"))


def check_image_folder(root: Path, train_split: str) -> None:
    """Refuse, in one line, an image folder a classifier cannot learn from: a class folder under the training
    split with no images, fewer than two classes there, or a class in another split (validation, test) that has
    no training images, which the model could never predict. (datasets' imagefolder would drop the label
    column of a one-class folder and ignore an empty class.) Images straight under a split are left to it."""
    splits = {d.name: d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    if train_split not in splits:
        return  # load_splits names the splits there are
    train = {c.name: _has_file(c) for c in splits[train_split].iterdir() if c.is_dir() and not c.name.startswith(".")}
    if not train:
        return
    empty = sorted(c for c, has in train.items() if not has)
    if empty:
        raise ValueError(f"image folder {root}: class {', '.join(empty)} has no training images "
                         f"({train_split}/{empty[0]}/ holds none); add images or remove the folder")
    if len(train) < 2:
        raise ValueError(f"image folder {root} has one class ({next(iter(train))}) under {train_split}/; a "
                         "classifier needs at least two, one sub-folder of images each")
    for name, folder in sorted(splits.items()):
        unknown = sorted(c.name for c in folder.iterdir() if c.is_dir() and c.name not in train and _has_file(c))
        if name != train_split and unknown:
            raise ValueError(f"image folder {root}: {name}/ has class {', '.join(unknown)} with no training images "
                             f"under {train_split}/; the model could never predict it")


def _check_eval_classes(train, evals, spec: DatasetSpec, names: Sequence[str]) -> None:
    """Refuse an evaluation split holding a class the training split has no image of."""
    try:
        unknown = sorted(set(np.unique(evals[spec.label_column]).tolist())
                         - set(np.unique(train[spec.label_column]).tolist()))
    except (KeyError, ValueError, TypeError):  # no such column there: _label_info or the loader says so
        return
    if unknown:
        shown = ", ".join(names[i] if 0 <= i < len(names) else str(i) for i in unknown[:5])
        raise ValueError(f"dataset {spec.path}: the {spec.eval_split!r} split has {len(unknown)} class(es) with "
                         f"no training images ({shown}); the model could never predict them")


def _stream_rows(stream) -> Iterator[dict]:
    yield from stream


def _stored_eval_split(stream):
    """A streamed evaluation split read once into datasets' cache (encoded bytes), as a map-style split.

    Evaluation is in order and sharded by ``Accelerator.prepare`` for ``gather_for_metrics``, which
    needs a length; an evaluation split (ImageNet's 50,000 images) fits on disk where training does not.
    """
    import datasets

    return datasets.Dataset.from_generator(_stream_rows, gen_kwargs={"stream": stream}, features=stream.features)


# ----------------------------------------------------------------------------- decoding


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as RGB; alpha is dropped (as OpenCV's ``imread`` does for mmpretrain)."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _encoded(value: Any) -> Any:
    """An ``Image(decode=False)`` value's bytes, else its path; a PIL image as is."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes") is not None:
        return value["bytes"]
    if isinstance(value, dict) and value.get("path"):
        return value["path"]
    raise ValueError(f"no image data in {type(value).__name__}")


def _decode(value: Any) -> Image.Image:
    """An image entry as an RGB PIL image (the eval transform's input)."""
    data = _encoded(value)
    image = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    image.load()
    return to_rgb(image)


def decode_rgb(value: Any) -> np.ndarray:
    """An image entry as an RGB uint8 ``(H, W, 3)`` array (the train transform's input).

    JPEGs in YCbCr or grayscale, nearly every training image, are decoded by simplejpeg (libjpeg-turbo,
    pixels equal to PIL's, tests/test_data.py), straight into the array; anything else by PIL, as
    :func:`to_rgb`. Chosen by measurement on the benchmark's ~500x375 JPEGs (64, one core, median of 7
    interleaved rounds, 2-core AVX2 EPYC under load): decode to an array at 836 images/s, against
    torchvision.io 1,076 (deprecated since torchvision 0.29), TorchCodec 759 (a binary tied to one torch
    release) and PIL 754; on the trainer's per-image path (decode to an array, crop, resize) 5.0 ms against
    7.0 with PIL (measured at another load; PIL's array costs a second copy); the benchmark's ``decode`` row
    measures it against PIL in every run. PyTurboJPEG needs a system libturbojpeg, which the image lacks.
    Reduced-scale decoding (half scale on the same JPEGs: PIL's ``draft`` 1,057 images/s, simplejpeg's
    ``min_factor=2`` 1,587) is not used: it changes pixels unless the crop that follows is at least twice
    the output size, which no RandomResizedCrop 224 of an image under 448 px (ImageNet's typical 500x375)
    ever is.
    """
    data = _encoded(value)
    if isinstance(data, str):
        with open(data, "rb") as f:  # an unreadable file: OSError, counted by --bad-images skip
            data = f.read()
    if isinstance(data, bytes):
        import simplejpeg

        if simplejpeg.is_jpeg(data):
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
            if height * width > 2 * (Image.MAX_IMAGE_PIXELS or float("inf")):  # PIL's decompression-bomb bound
                raise Image.DecompressionBombError(f"{width}x{height} JPEG exceeds PIL's limit of "
                                                   f"{2 * Image.MAX_IMAGE_PIXELS} pixels")
            if colorspace in ("YCbCr", "Gray"):
                return simplejpeg.decode_jpeg(data, colorspace="RGB")
    return np.array(_decode(value))


class BadImages(ValueError):
    """Images that could not be read, with the first reason."""


class LabeledImages(torch.utils.data.Dataset):
    """A map-style HF split as ``(uint8 CHW tensor or None, label, error or None)`` samples.

    A key is an index, or ``(index, epoch, slot)`` from :class:`TrainBatchSampler`, in which case
    the batch is augmented together by the train transform, its draws seeded from ``(seed, epoch, slot)``
    of its first key: a function of the batch's place in the epoch, whatever the worker or process.
    """

    def __init__(self, ds, transform: Callable, image_column: str, label_column: str, seed: int = 0):
        self.ds, self.transform, self.seed = ds, transform, seed
        self.image_column, self.label_column = image_column, label_column

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list) -> list:
        """Samples of one batch from one read of the split (the DataLoader calls this with a batch's keys).
        Keyed ``(index, epoch, slot)``, the batch is augmented together, seeded from its first key."""
        indices = [int(k[0]) if isinstance(k, tuple) else int(k) for k in keys]
        batch = self.ds[indices]
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        if isinstance(keys[0], tuple):
            _, epoch, slot = keys[0]
            return samples_from_rows(rows, self.transform, self.image_column, self.label_column, indices,
                                     sample_seed(self.seed, epoch, slot))
        return [sample_from_row(row, self.transform, self.image_column, self.label_column, index)
                for row, index in zip(rows, indices, strict=True)]


_UNREADABLE = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError)


def sample_from_row(row: dict, transform: Callable, image_column: str, label_column: str, index):
    """``(image, label, error)`` of one row through ``transform`` (the eval transform); an unreadable image
    is an error string, not an exception."""
    label = row[label_column]
    try:
        out = transform(_decode(row[image_column]))
    except _UNREADABLE as e:
        return None, label, f"row {index}: {type(e).__name__}: {e}"
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    return out, label, None


def samples_from_rows(rows: Sequence[dict], transform, image_column: str, label_column: str, indices: Sequence,
                      seed: int) -> list:
    """``(image, label, error)`` per row: each image decoded (:func:`decode_rgb`; an unreadable one is an error
    string), then the readable ones augmented together by ``transform``
    (:class:`~resnet_hub.train.augment.TrainTransform`), its draws seeded by ``seed``."""
    decoded, errors = [], []
    for row, index in zip(rows, indices, strict=True):
        try:
            decoded.append(decode_rgb(row[image_column]))
            errors.append(None)
        except _UNREADABLE as e:
            decoded.append(None)
            errors.append(f"row {index}: {type(e).__name__}: {e}")
    good = [image for image in decoded if image is not None]
    try:
        augmented = iter(transform.batch(good, seed, stack=False) if good else ())  # collate_images stacks
    except ValueError as e:  # the recipe cannot take these images (e.g. smaller than its crop)
        augmented = iter(())
        errors = [err or f"row {index}: ValueError: {e}" for err, index in zip(errors, indices, strict=True)]
    return [(None if err else next(augmented), row[label_column], err)
            for row, err in zip(rows, errors, strict=True)]


def collate_images(samples: list) -> dict:
    """Stack readable samples; unreadable ones are dropped and listed in ``bad``."""
    good = [(x, y) for x, y, err in samples if err is None]
    bad = [err for _, _, err in samples if err is not None]
    if good:
        images = torch.stack([x for x, _ in good])
        labels = torch.tensor([int(y) for _, y in good], dtype=torch.int64)
    else:
        images, labels = torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return {"images": images, "labels": labels, "bad": bad}


# ----------------------------------------------------------------------------- training order


class TrainBatchSampler(torch.utils.data.Sampler):
    """This process's micro-batches of one epoch, keyed ``(index, epoch, slot)``.

    The epoch is split over ``V = world_size * accumulation`` virtual ranks by torch's
    ``DistributedSampler`` (or timm's ``RepeatAugSampler`` for repeated augmentation), both
    seeded by (seed, epoch). Optimizer step ``s`` consumes batch ``s`` of every virtual rank;
    micro-batch ``a`` of process ``r`` is virtual rank ``a * world_size + r``. So the data of a
    step depends on V and the per-device batch only: 1 process with accumulation 2 sees exactly
    the micro-batches of 2 processes. Incomplete last batches are dropped. ``start_step`` skips
    whole steps without loading them (resume mid-epoch).
    """

    def __init__(self, num_samples: int, batch_size: int, *, world_size: int = 1, rank: int = 0,
                 accumulation: int = 1, seed: int = 0, repeats: Optional[int] = None):
        self.num_samples, self.batch_size = num_samples, batch_size
        self.world_size, self.rank, self.accumulation = world_size, rank, accumulation
        self.seed, self.repeats = seed, repeats
        self.virtual = world_size * accumulation
        self.epoch, self.start_step = 0, 0
        self.steps_per_epoch = len(self._order(0)) // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{num_samples} training images are too few for one step of {self.virtual} x "
                             f"{batch_size} images; lower --batch-size")

    def _order(self, v: int) -> list[int]:
        from torch.utils.data import DistributedSampler

        if self.repeats:
            from timm.data.distributed_sampler import RepeatAugSampler

            sampler = RepeatAugSampler(range(self.num_samples), num_replicas=self.virtual, rank=v,
                                       shuffle=True, num_repeats=self.repeats)
            sampler.set_epoch(self.seed * 100_003 + self.epoch)  # timm seeds by epoch alone
        else:
            sampler = DistributedSampler(range(self.num_samples), num_replicas=self.virtual, rank=v, shuffle=True,
                                         seed=self.seed)
            sampler.set_epoch(self.epoch)
        return list(sampler)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accumulation

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        B, V = self.batch_size, self.virtual
        mine = [a * self.world_size + self.rank for a in range(self.accumulation)]
        orders = {v: self._order(v) for v in mine}
        for s in range(self.start_step, self.steps_per_epoch):
            for v in mine:
                yield [(orders[v][k], self.epoch, k * V + v) for k in range(s * B, (s + 1) * B)]


class TrainBatches(Protocol):
    """What the trainer needs from training data: uint8 NCHW images and int64 labels, per step.

    ``batches(epoch, start_step)`` yields ``steps_per_epoch - start_step`` x ``accumulation``
    dicts ``{"images", "labels", "bad"}``; images may already be on the device.
    """
    steps_per_epoch: int

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[dict]: ...


class LoaderBatches:
    """:class:`TrainBatches` from a map-style split through a torch DataLoader."""

    def __init__(self, images: LabeledImages, sampler: TrainBatchSampler, *, workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool = True):
        self.sampler = sampler
        self.steps_per_epoch = sampler.steps_per_epoch
        self.loader = torch.utils.data.DataLoader(
            images, batch_sampler=sampler, num_workers=workers, collate_fn=collate_images, pin_memory=pin_memory,
            persistent_workers=persistent_workers and workers > 0,
            # the loader's own seed draw must not consume the global RNG the training step uses
            generator=torch.Generator().manual_seed(0),
        )

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[dict]:
        self.sampler.set_epoch(epoch, start_step)
        return iter(self.loader)




# ----------------------------------------------------------------------------- on the device


class DeviceNormalize(torch.nn.Module):
    """uint8 NCHW -> normalized float on the device (:func:`resnet_hub.numerics.normalize`).

    The uint8 batch is copied to the device without blocking (4x fewer bytes than floats) and
    normalized there; ``.to(device)`` on the module picks the device.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels_last: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from resnet_hub.numerics import normalize

        images = images.to(self.mean.device, non_blocking=True)
        return normalize(images, self.mean, self.std, channels_last=self.channels_last)


def check_labels(labels: torch.Tensor, num_classes: int, where: str) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.max()) if int(labels.max()) >= num_classes else int(labels.min())
        raise ValueError(f"{where}: label {bad} is outside the model's {num_classes} classes "
                         "(set --num-classes to the dataset's)")
