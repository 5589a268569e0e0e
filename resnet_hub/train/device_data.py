"""Training data that lives on the accelerator: augmentation in batch, on the device.

Two fast paths for the trainer's input pipeline, both seeded and both running unchanged on
the CPU (which is how they are tested):

- :class:`DeviceDataLoader`: a small dataset (CIFAR, digits, CUB after its resize) held whole
  as one uint8 tensor on the device, shuffled and sharded like
  :class:`torch.utils.data.DistributedSampler`, augmented in batch on the device and normalized
  there. No worker processes, no host-to-device copies per step.
- :class:`JpegBatchDecoder`: encoded JPEG bytes (an HF ``Image(decode=False)`` column) decoded in
  one batch with :func:`torchvision.io.decode_jpeg` on the device (nvJPEG on CUDA), then
  augmented there to a uint8 batch.

Both apply a :class:`DeviceAugmentation`, built from a recipe's ``training.augmentation`` list;
``resnet_hub.train.augment.SUPPORT`` says which ops and parameter values run on the device
(``rand_augment``, the RSB recipes', does not: :meth:`DeviceAugmentation.from_recipe` raises
:class:`UnsupportedOnDevice` and the trainer keeps timm's CPU transforms for those recipes).
Random parameters follow torchvision's ``RandomCrop``/``RandomResizedCrop``/``RandomHorizontalFlip``
exactly in distribution, and for given parameters the pixels equal torchvision's
(tests/test_device_data.py proves both).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torchvision.transforms.functional as TF
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from resnet_hub.train.augment import interpolation_mode, pad, pair, param, refuse_unsupported
from resnet_hub.zoo.configs import Augmentation, HubConfig

from .pipeline import encoded_bytes, normalize  # normalize re-exported: the one uint8 -> float normalization

__all__ = [
    "DeviceAugmentation", "DeviceDataLoader", "DeviceTrainBatches", "JpegBatchDecoder", "UnsupportedOnDevice",
    "encoded_image_collate",
    "flip_params", "normalize", "random_crop_params", "random_resized_crop_params", "seeded_generator",
]

ImageBatch = Union[torch.Tensor, list]  # (B, C, H, W) uint8, or a list of (C, H_i, W_i) uint8


class UnsupportedOnDevice(ValueError):
    """A recipe transform that has no device implementation: use the CPU (timm) pipeline."""


# ----------------------------------------------------------------------------- randomness


def seeded_generator(device: Union[str, torch.device], *key: int) -> torch.Generator:
    """A generator on ``device`` seeded from integers, e.g. ``(seed, epoch, rank, batch)``.

    Each batch gets its own stream, so resuming at batch ``b`` needs no replay of earlier draws.
    """
    digest = hashlib.blake2b(",".join(str(int(k)) for k in key).encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "little") >> 1)


def _rand(n: int, generator: torch.Generator, *shape: int, dtype=torch.float64) -> torch.Tensor:
    return torch.rand((n, *shape), generator=generator, device=generator.device, dtype=dtype)


def random_crop_params(n: int, height: int, width: int, size: tuple[int, int],
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Top and left offsets of ``n`` crops, each uniform as in ``torchvision RandomCrop.get_params``."""
    th, tw = size
    if height < th or width < tw:
        raise ValueError(f"random_crop of {th}x{tw} from a (padded) {height}x{width} image; "
                         "add padding or a resize before it")
    top = torch.randint(0, height - th + 1, (n,), generator=generator, device=generator.device)
    left = torch.randint(0, width - tw + 1, (n,), generator=generator, device=generator.device)
    return top, left


def flip_params(n: int, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Which of ``n`` images to flip: ``rand < prob``, as ``RandomHorizontalFlip`` decides."""
    return _rand(n, generator, dtype=torch.float32) < prob


def random_resized_crop_params(heights: torch.Tensor, widths: torch.Tensor, scale: Sequence[float],
                               ratio: Sequence[float], generator: torch.Generator,
                               attempts: int = 10) -> tuple[torch.Tensor, ...]:
    """``(top, left, height, width)`` per image, ``torchvision RandomResizedCrop.get_params`` in batch.

    torchvision tries up to 10 (area, log-aspect) draws in turn and takes the first that fits,
    else a central crop; taking the first fitting one of 10 independent draws per image is the
    same distribution, computed without a Python loop.
    """
    dev = generator.device
    heights = heights.to(dev, torch.float64)
    widths = widths.to(dev, torch.float64)
    n = heights.numel()
    area = (heights * widths)[:, None]
    target_area = area * (scale[0] + (scale[1] - scale[0]) * _rand(n, generator, attempts))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * _rand(n, generator, attempts))
    w = torch.round(torch.sqrt(target_area * aspect))  # round half to even, as Python's round()
    h = torch.round(torch.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= widths[:, None]) & (h > 0) & (h <= heights[:, None])
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)

    in_ratio = widths / heights
    lo, hi = min(ratio), max(ratio)
    fallback_w = torch.where(in_ratio > hi, torch.round(heights * hi), widths)
    fallback_h = torch.where(in_ratio < lo, torch.round(widths / lo), heights)
    h = torch.where(found, h.gather(1, first)[:, 0], fallback_h)
    w = torch.where(found, w.gather(1, first)[:, 0], fallback_w)
    u_top, u_left = _rand(n, generator), _rand(n, generator)
    top = torch.where(found, torch.floor(u_top * (heights - h + 1)), torch.div(heights - h, 2, rounding_mode="floor"))
    left = torch.where(found, torch.floor(u_left * (widths - w + 1)), torch.div(widths - w, 2, rounding_mode="floor"))
    return top.long(), left.long(), h.long(), w.long()


# ----------------------------------------------------------------------------- augmentation


def _sizes(images: ImageBatch) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(images, torch.Tensor):
        n, _, h, w = images.shape
        return torch.full((n,), h), torch.full((n,), w)
    return torch.tensor([im.shape[-2] for im in images]), torch.tensor([im.shape[-1] for im in images])


def _gather_crops(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop every image of a batch at its own offset in one gather (output channels_last)."""
    th, tw = size
    dev = images.device
    top, left = torch.as_tensor(top), torch.as_tensor(left)
    rows = top.to(dev)[:, None] + torch.arange(th, device=dev)
    cols = left.to(dev)[:, None] + torch.arange(tw, device=dev)
    batch = torch.arange(images.shape[0], device=dev)[:, None, None]
    nhwc = images.permute(0, 2, 3, 1)
    return nhwc[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


@dataclass(frozen=True)
class DeviceAugmentation:
    """A recipe's training transforms, run in batch on whatever device the images are on.

    ``aug(images, generator)`` takes a uint8 ``(B, C, H, W)`` batch or a list of uint8
    ``(C, H_i, W_i)`` images (decoded JPEGs of different sizes) and returns a uint8 batch.
    """

    ops: tuple[Augmentation, ...]

    @classmethod
    def from_recipe(cls, augmentation: Sequence[Augmentation]) -> DeviceAugmentation:
        """From ``cfg.training.augmentation``; :class:`UnsupportedOnDevice` names what cannot run."""
        refuse_unsupported(augmentation, "device", UnsupportedOnDevice)
        return cls(tuple(augmentation))

    @classmethod
    def from_config(cls, cfg: HubConfig) -> DeviceAugmentation:
        return cls.from_recipe(cfg.training.augmentation)

    def split_leading_resize(self) -> tuple[DeviceAugmentation, DeviceAugmentation]:
        """``(resize ops at the start, the rest)``: deterministic resizes can be done once at load."""
        k = 0
        while k < len(self.ops) and self.ops[k].type == "resize":
            k += 1
        return DeviceAugmentation(self.ops[:k]), DeviceAugmentation(self.ops[k:])

    def __call__(self, images: ImageBatch, generator: torch.Generator, return_params: bool = False):
        params = []
        for op in self.ops:
            images, p = getattr(self, f"_{op.type}")(op, images, generator)
            params.append(p)
        if isinstance(images, list):
            if len({tuple(im.shape) for im in images}) > 1:
                raise ValueError("images of different sizes and no crop or resize to one size in the augmentation")
            images = torch.stack(images).contiguous(memory_format=torch.channels_last)
        return (images, params) if return_params else images

    # one method per augmentation type: (op, images, generator) -> (images, params)

    def _resize(self, op, images, generator):
        size, mode = list(pair(op.size)), interpolation_mode(op)
        if isinstance(images, torch.Tensor):
            return TF.resize(images, size, mode, antialias=True), {}
        return [TF.resize(im, size, mode, antialias=True) for im in images], {}

    def _random_crop(self, op, images, generator):
        size = pair(op.size)
        padding, pad_mode, fill = param(op, "padding"), param(op, "pad_mode"), param(op, "fill")
        if isinstance(images, list):
            n = len(images)
            hs, ws = _sizes(images)
            if len(set(zip(hs.tolist(), ws.tolist(), strict=True))) == 1:
                images = torch.stack(images)
            else:  # sizes differ: the same uniform offsets, drawn per image's own range
                hs, ws = (hs + 2 * padding).to(generator.device), (ws + 2 * padding).to(generator.device)
                if (hs < size[0]).any() or (ws < size[1]).any():
                    raise ValueError(f"random_crop of {size[0]}x{size[1]} from a smaller (padded) image")
                top = torch.floor(_rand(n, generator) * (hs - size[0] + 1)).long()
                left = torch.floor(_rand(n, generator) * (ws - size[1] + 1)).long()
                out = [_gather_crops(pad(im[None], padding, pad_mode, fill), [t], [le], size)[0]
                       for im, t, le in zip(images, top.tolist(), left.tolist(), strict=True)]
                return out, {"top": top, "left": left}
        images = pad(images, padding, pad_mode, fill)
        top, left = random_crop_params(images.shape[0], images.shape[2], images.shape[3], size, generator)
        return _gather_crops(images, top, left, size), {"top": top, "left": left}

    def _random_resized_crop(self, op, images, generator):
        hs, ws = _sizes(images)
        top, left, h, w = random_resized_crop_params(hs, ws, param(op, "scale"), param(op, "ratio"), generator)
        size, mode = list(pair(op.size)), interpolation_mode(op)
        out = [TF.resized_crop(im, t, le, hh, ww, size, mode, antialias=True)
               for im, t, le, hh, ww in zip(images, top.tolist(), left.tolist(), h.tolist(), w.tolist(), strict=True)]
        return torch.stack(out).contiguous(memory_format=torch.channels_last), {"top": top, "left": left, "height": h,
                                                                               "width": w}

    def _horizontal_flip(self, op, images, generator):
        n = images.shape[0] if isinstance(images, torch.Tensor) else len(images)
        flip = flip_params(n, param(op, "prob"), generator)
        if isinstance(images, list):
            return [im.flip(-1) if f else im for im, f in zip(images, flip.tolist(), strict=True)], {"flip": flip}
        flip = flip.to(images.device)
        return torch.where(flip[:, None, None, None], images.flip(-1), images), {"flip": flip}


# ----------------------------------------------------------------------------- GPU-resident datasets


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
                 augmentation: Optional[DeviceAugmentation] = None, mean: Optional[Sequence[float]] = None,
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

    @classmethod
    def from_hf_dataset(cls, dataset, batch_size: int, *, image_column: str = "image", label_column: str = "label",
                        augmentation: Optional[DeviceAugmentation] = None, device: Union[str, torch.device] = "cpu",
                        chunk_size: int = 1024, **kwargs) -> DeviceDataLoader:
        """Load an HF ``datasets.Dataset`` split onto ``device`` (RGB uint8; grayscale converted).

        Leading ``resize`` ops of ``augmentation`` run once here (CUB's 600x600), so every image
        has one size; the rest runs per batch.
        """
        load_ops, batch_ops = (augmentation.split_leading_resize() if augmentation is not None
                               else (DeviceAugmentation(()), None))
        images, labels = load_image_tensor(dataset, image_column, label_column, load_ops, device, chunk_size)
        return cls(images, labels, batch_size, augmentation=batch_ops, device=device, **kwargs)

    @classmethod
    def from_config(cls, cfg: HubConfig, dataset, batch_size: int, *, device: Union[str, torch.device] = "cpu",
                    image_column: Optional[str] = None, label_column: Optional[str] = None,
                    **kwargs) -> DeviceDataLoader:
        """The recipe's train augmentation and normalization, columns from ``cfg.training.dataset``."""
        ds = cfg.training.dataset
        kwargs.setdefault("mean", cfg.eval.mean)
        kwargs.setdefault("std", cfg.eval.std)
        return cls.from_hf_dataset(dataset, batch_size, image_column=image_column or ds.image_column,
                                   label_column=label_column or ds.label_column,
                                   augmentation=DeviceAugmentation.from_config(cfg), device=device, **kwargs)

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
    device; the trainer's ``DeviceNormalize`` does the rest. Raises :class:`UnsupportedOnDevice`
    for a recipe with augmentations that only the CPU path has (RandAugment).
    """

    def __init__(self, cfg: HubConfig, dataset, *, batch_size: int, image_column: str, label_column: str,
                 device: Union[str, torch.device], world_size: int = 1, rank: int = 0, accumulation: int = 1,
                 seed: int = 0):
        load_ops, batch_ops = DeviceAugmentation.from_config(cfg).split_leading_resize()
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


def load_image_tensor(dataset, image_column: str, label_column: str, load_ops: DeviceAugmentation,
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
                t = load_ops(list(t), generator=None)
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


# ----------------------------------------------------------------------------- JPEG decoding on the device


def encoded_image_collate(image_column: str = "image", label_column: str = "label"):
    """A DataLoader ``collate_fn`` for an ``Image(decode=False)`` dataset: ``(list of uint8 byte tensors, labels)``.

    Workers only slice bytes; decoding happens in the main process on the device.
    """

    def collate(examples):
        encoded = [encoded_bytes(e[image_column]) for e in examples]
        return encoded, torch.tensor([int(e[label_column]) for e in examples], dtype=torch.long)

    return collate


class JpegBatchDecoder:
    """Decode a batch of encoded images on ``device`` and augment it there to one uint8 batch.

    JPEGs are decoded together by ``torchvision.io.decode_jpeg(list, device=...)`` (nvJPEG on
    CUDA); an image that batch decoding rejects (PNG, CMYK, ...) is decoded alone, on the CPU if
    need be, and converted to RGB. An undecodable one raises ValueError naming its position.
    """

    def __init__(self, augmentation: DeviceAugmentation, device: Union[str, torch.device] = "cuda"):
        self.augmentation = augmentation
        self.device = torch.device(device)

    @classmethod
    def from_config(cls, cfg: HubConfig, device: Union[str, torch.device] = "cuda") -> JpegBatchDecoder:
        return cls(DeviceAugmentation.from_config(cfg), device)

    def decode(self, encoded: Sequence) -> list:
        """RGB uint8 ``(3, H_i, W_i)`` images on the device."""
        data = [encoded_bytes(e) for e in encoded]
        try:
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:
            return [self._decode_one(i, d) for i, d in enumerate(data)]

    def _decode_one(self, index: int, data: torch.Tensor) -> torch.Tensor:
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            pass
        try:
            return decode_image(data, mode=ImageReadMode.RGB).to(self.device)
        except RuntimeError as e:
            raise ValueError(f"image {index} of the batch is not a decodable image ({len(data)} bytes): {e}") from None

    def __call__(self, encoded: Sequence, generator: torch.Generator, return_params: bool = False):
        return self.augmentation(self.decode(encoded), generator, return_params=return_params)
