"""Classify images with a zoo model, as mmpretrain's ``get_model`` / ``inference_model`` do.

>>> import resnet_hub
>>> result = resnet_hub.inference_model("hub:resnet50_8xb32_in1k", "cat.jpg")
>>> result["pred_class"], result["pred_score"]

The eval transform is the model's own: timm's ``resolve_data_config`` + ``create_transform``
on its pretrained cfg, which reproduce mmpretrain's test pipeline for each config (resize edge,
crop, interpolation, mean/std). What makes it fast on a CPU, each measured by
``scripts/benchmark.py``: the model is prepared once, on a copy (BatchNorm folded into the
convolutions, channels_last; kept for the next call while the weights are unchanged), images
are preprocessed to uint8 and normalized as one batch, and the forward runs under
``torch.inference_mode``. ``precision="bf16"`` runs that copy in bfloat16, which pays only where
the device runs bf16 natively (``"auto"`` picks it there, see :func:`resolve_precision`).

``predict`` (``add_arguments`` / ``run``) is the ``resnet-hub predict`` command.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import sys
import warnings
import weakref
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import timm
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from timm.data import create_transform, resolve_data_config

from .backends import BACKENDS, cpu_channels_last, prepare_forward, resolve_backend
from .commands import positive_int
from .numerics import native_bf16, normalize
from .zoo.names import parse_model_name

__all__ = ["get_model", "inference_model", "ImageClassificationInferencer", "load_image", "check_weights_file",
           "check_device", "eval_transform", "preprocess", "resolve_precision", "PRECISIONS", "fold_batchnorm",
           "expand_images", "add_model_arguments", "model_from_args", "add_arguments", "run"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]
PRECISIONS = ("fp32", "bf16", "auto")


def get_model(name: str, pretrained: Union[bool, str, os.PathLike] = False,
              device: Union[str, torch.device, None] = None, **kwargs: Any) -> torch.nn.Module:
    """A zoo model by name, in eval mode, as mmpretrain's ``get_model``.

    ``name`` is a config name (``resnet50_8xb32_in1k``), ``hub:NAME[@REV]``, ``hf-hub:REPO`` or
    ``local-dir:PATH`` (a folder with ``config.json`` + ``model.safetensors``); any other timm
    model name works too. ``pretrained`` is ``False`` (random init), ``True`` (the published
    weights) or the path of a weights file (``.safetensors``, or a ``.pth`` read with
    ``weights_only=True``). ``kwargs`` go to ``timm.create_model`` (``num_classes=``, ...).
    """
    parsed = parse_model_name(name)  # unknown names, and local-dir: folders that are not bundles, fail here
    name = parsed.text
    if parsed.kind == "local-dir" and pretrained is True:
        from .hub.bundle import check_loadable

        check_loadable(parsed.path)  # a tampered or broken bundle: one clear error, before timm reads it
    if isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no weights file {path}")
        check_weights_file(path)
        kwargs["pretrained_cfg_overlay"] = dict(kwargs.get("pretrained_cfg_overlay") or {}, file=str(path))
        pretrained = True
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        model = timm.create_model(name, pretrained=bool(pretrained), **kwargs)
    except RuntimeError as e:  # an unregistered architecture, or weights that do not fit it
        from .hub.checkpoint_io import torch_load_reason

        raise ValueError(f"{name}: {torch_load_reason(e)}") from None
    except (EntryNotFoundError, HfHubHTTPError) as e:  # offline, no such repo or file: say which model
        raise ConnectionError(f"cannot get the weights of {name} from the Hugging Face Hub "
                              f"({type(e).__name__}): {e}") from None
    if device is not None:
        model.to(device)
    return model.eval()


def check_weights_file(path: Path) -> None:
    """``path`` is a weights file timm can read safely: safetensors, or a torch checkpoint of tensors only
    (read by :mod:`resnet_hub.hub.checkpoint_io`, ``weights_only=True``); else one ``ValueError`` naming it."""
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or head[8:9] == b"{":  # safetensors: 8-byte header length, then JSON
        from safetensors import SafetensorError, safe_open

        if path.suffix != ".safetensors":  # timm goes by the name, and would unpickle it
            raise ValueError(f"{path} holds safetensors data: name it .safetensors to load it")

        try:
            with safe_open(str(path), "pt") as weights:
                weights.keys()
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())})") from None
        return
    from .hub.checkpoint_io import load_checkpoint

    load_checkpoint(path, verify=False)  # the user's own file: no hash to check, but never unpickled unsafely


def check_device(text: Optional[str]) -> Optional[torch.device]:
    """The torch device ``--device`` names, present on this machine; ``ValueError`` with the choices otherwise."""
    if text is None:
        return None
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {text} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None)
    count = backend.device_count() if backend is not None and hasattr(backend, "device_count") else 0
    if device.type == "mps" and torch.backends.mps.is_available():
        count = 1
    if count == 0 or (device.index or 0) >= count:
        raise ValueError(f"--device {text}: this machine has {count or 'no'} {device.type} device(s)"
                         + ("; use --device cpu" if count == 0 else ""))
    return device


def load_image(image: ImageInput) -> Image.Image:
    """An RGB PIL image from a path, a PIL image or an array, whatever its mode.

    Alpha is dropped (as OpenCV's ``imread`` does for mmpretrain), grayscale is repeated over
    three channels, CMYK, palette and 16-bit images are converted, and EXIF orientation is
    applied. Arrays are HxW or HxWxC (C = 1, 3 or 4) in **RGB** order, uint8 or float in [0, 1].
    """
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}" + (" (a directory)" if path.is_dir() else ""))
        try:
            with warnings.catch_warnings():
                # PIL warns past Image.MAX_IMAGE_PIXELS (89 M pixels, 268 MB as RGB) and refuses past twice that:
                # both are refused here, before the pixels are decoded
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as opened:
                    opened.load()
                    img = ImageOps.exif_transpose(opened)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise ValueError(f"{path} is too large to decode ({' '.join(str(e).split())}; the limit is PIL's "
                             "Image.MAX_IMAGE_PIXELS)") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ValueError(f"{path} is not an image that can be read: {e}") from None
    elif isinstance(image, Image.Image):
        img = image
    elif isinstance(image, np.ndarray):
        img = _array_to_image(image)
    elif isinstance(image, torch.Tensor):
        raise ValueError("pass images as paths, PIL images or HxWxC numpy arrays; for an already "
                         "preprocessed tensor call the model directly")
    else:
        raise ValueError(f"cannot read an image from {type(image).__name__}: pass a path, a PIL image or a numpy array")
    return _to_rgb(img)


def _array_to_image(array: np.ndarray) -> Image.Image:
    a = array
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or min(a.shape[:2]) == 0:
        raise ValueError(f"an image array is HxW or HxWxC with C in (1, 3, 4); got shape {array.shape}")
    if a.dtype != np.uint8:
        if a.dtype.kind == "f" and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1:
            a = np.round(a * 255).astype(np.uint8)
        else:
            raise ValueError(f"an image array is uint8, or float in [0, 1]; got {a.dtype} "
                             f"with values in [{a.min()}, {a.max()}]")
    return Image.fromarray(np.ascontiguousarray(a))


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale, don't clip
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.round(a / top * 255).clip(0, 255).astype(np.uint8))
    elif img.mode == "P":  # palette with transparency: via RGBA, so PIL does not warn
        img = img.convert("RGBA")
    return img.convert("RGB")


def eval_transform(model: torch.nn.Module):
    """The model's eval transform, PIL image -> uint8 CxHxW tensor (normalized later, in batch).

    timm's ``create_transform`` on the model's pretrained cfg, without its ToTensor/Normalize;
    ``model`` may live on the meta device, only its pretrained cfg is read.
    """
    return create_transform(**resolve_data_config({}, model=model), use_prefetcher=True)


def preprocess(images: Sequence[ImageInput], model: torch.nn.Module, device: Union[str, torch.device] = "cpu",
               dtype: torch.dtype = torch.float32, channels_last: bool = False) -> torch.Tensor:
    """Images -> the normalized float batch ``model`` is evaluated on (its eval transform)."""
    data_cfg = resolve_data_config({}, model=model)
    return _preprocess(images, eval_transform(model), data_cfg["mean"], data_cfg["std"], torch.device(device), dtype,
                       channels_last)


def _preprocess(images, transform, mean, std, device, dtype, channels_last) -> torch.Tensor:
    batch = torch.stack([transform(load_image(img)) for img in images]).to(device, non_blocking=True)
    return normalize(batch, mean, std, dtype=dtype, channels_last=channels_last)


def resolve_precision(precision: str, device: Union[str, torch.device, None] = None) -> str:
    """``"fp32"`` or ``"bf16"``: the precision asked for, with ``"auto"`` resolved for ``device``.

    ``auto`` is bf16 only where the device runs it natively (:func:`resnet_hub.numerics.native_bf16`:
    a CPU with AVX512-BF16 or AMX, a CUDA GPU with bf16), else fp32; emulated bf16 is slower than fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(torch.device(device or "cpu")) else "fp32"


def _classifier_name(model: torch.nn.Module) -> Optional[str]:
    """The name of ``model``'s classifier submodule (timm's ``get_classifier``), if it has one with weights."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(head, torch.nn.Module) or not any(True for _ in head.parameters()):
        return None
    return next((name for name, m in model.named_modules() if m is head), None)


def _to_bf16(model: torch.nn.Module, classifier: Optional[str]) -> torch.nn.Module:
    """``model`` (the prepared copy) with bf16 weights and an fp32 classifier, whose input is cast up.

    bf16 weights rather than fp32 weights under ``torch.autocast``: on an AMD EPYC Zen 4 with AVX512-BF16
    the BN-folded channels_last ResNet-50 at batch 16 ran 2.56x fp32 this way, against 2.35x for timm's
    ResNet-50 under autocast (issue 14; not in one process); autocast also re-casts every weight each call.
    On an AVX2-only EPYC, where both emulate bf16, autocast measured 0.28 and bf16 weights 0.20 images/s
    against fp32's 1.33 (interleaved, 3 rounds, loaded machine): neither pays there, which is why ``auto``
    says fp32. The classifier stays fp32 (0.05% of ResNet-50's MACs) so that logits, and the
    probabilities made from them, keep fp32's resolution.
    """
    model.to(torch.bfloat16)
    if classifier is not None:  # the copy is a torch.fx GraphModule: found by name, its hooks still run
        head = model.get_submodule(classifier).float()
        head.register_forward_pre_hook(lambda _, args: tuple(a.float() if torch.is_tensor(a) else a for a in args))
    return model


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` (in eval mode) with every conv -> BatchNorm pair folded into one conv: the eval
    numerics up to float rounding, fewer ops. What inference runs and what ``resnet-hub export`` writes."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)  # fuse() works on a deep copy
    except Exception:  # a model torch.fx cannot trace runs unfused: slower, same results
        return copy.deepcopy(model)


_fold = fold_batchnorm  # the inferencer's flag of that name hides the function inside __init__


class ImageClassificationInferencer:
    """A model prepared once for fast inference; call it on images, as mmpretrain's class of this name.

    The model given is not modified: a copy is made with BatchNorm folded, in the memory layout this CPU
    runs fastest (``channels_last=None``: :func:`resnet_hub.backends.cpu_channels_last`; always on a GPU), in
    ``precision`` (``"fp32"``, ``"bf16"`` or ``"auto"``, see :func:`resolve_precision`), run by ``backend``
    (``"eager"``, ``"compile"``, ``"onnxruntime"`` or ``"auto"``, see :mod:`resnet_hub.backends`). The ones
    chosen are ``self.precision`` / ``self.backend`` and each result's ``precision`` / ``backend``;
    ``self.prepare_seconds`` is what preparing the backend cost (the ONNX export; for ``compile``, known after
    the first batch: the compile), never counted in a throughput.
    """

    def __init__(self, model: Union[str, torch.nn.Module], pretrained: Union[bool, str, os.PathLike] = True,
                 device: Union[str, torch.device, None] = None, fold_batchnorm: bool = True,
                 channels_last: Optional[bool] = None, precision: str = "fp32", backend: str = "eager"):
        resolve_precision(precision)  # a bad value fails before any download
        if isinstance(model, str):
            model = get_model(model, pretrained=pretrained)
        elif not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a name or a torch.nn.Module, got {type(model).__name__}")
        if device is None:
            device = next(model.parameters()).device
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)
        self.backend = resolve_backend(backend, self.device, self.precision)
        self.transform = eval_transform(model)
        data_cfg = resolve_data_config({}, model=model)
        self.mean, self.std = data_cfg["mean"], data_cfg["std"]
        names = model.pretrained_cfg.get("label_names") if hasattr(model, "pretrained_cfg") else None
        num_classes = getattr(model, "num_classes", None)
        self.classes = tuple(names) if names and (num_classes is None or len(names) == num_classes) else None
        was_training = model.training
        model.eval()
        prepared = _fold(model) if fold_batchnorm else copy.deepcopy(model)
        model.train(was_training)
        if channels_last is None:
            channels_last = cpu_channels_last() if self.device.type == "cpu" else True
        self.channels_last = channels_last and self.backend != "onnxruntime"  # ONNX Runtime takes NCHW
        self.model = prepared.eval().to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.precision == "bf16":
            _to_bf16(self.model, _classifier_name(model))
        self.dtype = next(self.model.parameters()).dtype  # the input's: the first conv's
        self._forward, self._prepare_seconds = prepare_forward(model, self.model, self.backend)

    @property
    def prepare_seconds(self) -> Optional[float]:
        """Seconds spent preparing the backend: the ONNX export, the compile (None before the first batch), 0."""
        return getattr(self._forward, "compile_seconds", self._prepare_seconds)

    def preprocess(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Images -> one normalized float batch on the device, as the model sees it."""
        return _preprocess(images, self.transform, self.mean, self.std, self.device, self.dtype, self.channels_last)

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """Class probabilities, (N, num_classes), for up to a batch of images."""
        return self._forward(self.preprocess(images)).float().softmax(dim=-1)

    def __call__(self, images: Union[ImageInput, Sequence[ImageInput]], topk: int = 5,
                 batch_size: int = 16) -> Union[dict, list[dict]]:
        """One result dict per image (a list for a list or a directory, else one dict)."""
        single = not isinstance(images, (list, tuple)) and not _is_dir(images)
        items = _expand(images)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
        results = []
        for start in range(0, len(items), batch_size):
            probs = self.predict_batch(items[start:start + batch_size]).cpu()
            results.extend(self._result(p, topk) for p in probs)
        return results[0] if single else results

    def _result(self, probs: torch.Tensor, topk: int) -> dict:
        scores, labels = probs.topk(min(topk, probs.numel()))
        top = [{"label": int(i), "score": float(s), "class": self._name(int(i))}
               for s, i in zip(scores, labels, strict=True)]
        return dict(pred_label=top[0]["label"], pred_score=top[0]["score"], pred_class=top[0]["class"],
                    pred_scores=probs.numpy(), topk=top, precision=self.precision, backend=self.backend)

    def _name(self, label: int) -> str | None:
        return self.classes[label] if self.classes is not None else None


def _is_dir(images: Any) -> bool:
    return isinstance(images, (str, os.PathLike)) and Path(images).is_dir()


def _expand(images: Union[ImageInput, Sequence[ImageInput]]) -> list[ImageInput]:
    if _is_dir(images):  # a folder: its files, sorted, as mmpretrain's inferencer does
        files = sorted(p for p in Path(images).iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"no files in directory {images}")
        return list(files)
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise ValueError("no images given")
    return items


def inference_model(model: Union[str, torch.nn.Module], images: Union[ImageInput, Sequence[ImageInput]],
                    topk: int = 5, batch_size: int = 16, pretrained: Union[bool, str, os.PathLike] = True,
                    device: Union[str, torch.device, None] = None,
                    precision: str = "fp32", backend: str = "eager") -> Union[dict, list[dict]]:
    """Classify ``images`` with ``model`` (a name as for :func:`get_model`, or a model).

    ``images`` is a path, a PIL image, an HxWxC RGB numpy array, a list of them, or a directory.
    Returns, per image, a dict: ``pred_label``, ``pred_score``, ``pred_class`` (the label name,
    None if the model has none), ``pred_scores`` (all class probabilities, numpy), ``topk``
    (``[{"label", "score", "class"}, ...]``, best first) and ``precision`` (the one it ran in). One
    image gives one dict; a list or a directory gives a list. ``pretrained`` applies when ``model``
    is a name (default: the published weights, as mmpretrain's ``inference_model``). ``precision``
    is ``"fp32"`` (default: mmpretrain's numerics), ``"bf16"`` or ``"auto"`` (bf16 where the device
    runs it natively, else fp32; see :func:`resolve_precision`). ``backend`` is ``"eager"`` (default),
    ``"compile"`` (inductor; minutes of compile on the first batch), ``"onnxruntime"`` or ``"auto"``
    (see :mod:`resnet_hub.backends`); each result's ``backend`` says which ran. A model's prepared copy is kept
    between calls while its weights stay unchanged, so calling this per image is cheap.
    """
    if isinstance(model, torch.nn.Module):
        inferencer = _cached_inferencer(model, device, precision, backend)
    else:
        inferencer = ImageClassificationInferencer(model, pretrained=pretrained, device=device, precision=precision,
                                                   backend=backend)
    return inferencer(images, topk=topk, batch_size=batch_size)


# model -> (its weights' identity, the inferencer prepared from them); weak, so it dies with the model
_PREPARED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, ImageClassificationInferencer]]" = \
    weakref.WeakKeyDictionary()


def _cached_inferencer(model: torch.nn.Module, device, precision: str,
                       backend: str = "eager") -> ImageClassificationInferencer:
    """The prepared copy of ``model`` from an earlier call, unless any of its tensors changed since.

    Calling ``inference_model(model, image)`` in a loop then folds BatchNorm once, not per image;
    a training step, ``load_state_dict``, ``.to()`` or any in-place edit bumps a tensor's
    version counter or replaces it, and the next call prepares afresh.
    """
    weights = tuple((id(t), t.data_ptr(), t._version) for t in itertools.chain(model.parameters(), model.buffers()))
    key = (str(device), resolve_precision(precision, device or _device_of(model)), backend, weights)
    cached = _PREPARED.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    inferencer = ImageClassificationInferencer(model, device=device, precision=precision, backend=backend)
    _PREPARED[model] = (key, inferencer)
    return inferencer


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(itertools.chain(model.parameters(), [torch.empty(0)])).device


# ----------------------------------------------------------------------------- resnet-hub predict


def expand_images(images: Sequence[Union[str, os.PathLike]]) -> list[ImageInput]:
    """Image files and the files of image folders, as the commands take them; a missing file fails here,
    before any model is downloaded."""
    paths: list[ImageInput] = []
    for image in images:
        paths.extend(_expand(image))
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"no such image file: {', '.join(missing)}")
    return paths


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL, --weights, --random-init: how predict, export and embed name the model they load."""
    parser.add_argument("model", metavar="MODEL",
                        help="config name (resnet50_8xb32_in1k), hub:NAME[@REV], hf-hub:REPO or local-dir:PATH")
    parser.add_argument("--weights", metavar="FILE",
                        help="weights file (.safetensors) to load instead of the published weights")
    parser.add_argument("--random-init", action="store_true",
                        help="no weights at all: random initialisation (to try the command offline)")


def model_from_args(args: argparse.Namespace) -> torch.nn.Module:
    """The model :func:`add_model_arguments`' flags name, loaded by :func:`get_model` (eval mode, CPU)."""
    if args.weights and args.random_init:
        raise ValueError("--weights and --random-init exclude each other")
    return get_model(args.model, pretrained=args.weights or not args.random_init)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files or directories of images")
    parser.add_argument("--topk", type=positive_int, default=5, help="how many classes to show per image")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass")
    parser.add_argument("--device", help="torch device, e.g. cuda; without it, cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16 pays only where the device runs it natively (a CPU with AVX512-BF16 or AMX, "
                             "a GPU with bf16); auto picks it there, else fp32")
    parser.add_argument("--backend", choices=BACKENDS, default="eager",
                        help="what runs the model: eager PyTorch, compile (inductor; minutes of compile first, "
                             "cached across processes), onnxruntime (export extra), or auto: onnxruntime where "
                             "installed on a CPU in fp32, else eager (resnet_hub/backends.py has the figures)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")


def run(args: argparse.Namespace) -> int:
    if args.weights and args.random_init:  # before anything is read
        raise ValueError("--weights and --random-init exclude each other")
    paths = expand_images(args.images)
    device = check_device(args.device)
    inferencer = ImageClassificationInferencer(model_from_args(args), device=device,
                                               precision=args.precision, backend=args.backend)
    if args.backend == "auto":
        print(f"backend auto -> {inferencer.backend}", file=sys.stderr)
    if args.precision == "auto":  # what auto chose and why, on stderr: stdout stays one line (or JSON) per image
        why = native_bf16(inferencer.device)
        print(f"precision auto -> {inferencer.precision}: " +
              (f"native bf16 ({why})" if why else f"this {inferencer.device.type} has no native bf16"), file=sys.stderr)
    failed = 0
    for start in range(0, len(paths), args.batch_size):
        # each image read on its own: one that cannot be read is one line, the others still get their result
        batch = []
        for path in paths[start:start + args.batch_size]:
            try:
                batch.append((path, load_image(path)))
            except ValueError as e:
                failed += 1
                print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        if batch:
            results = inferencer([img for _, img in batch], topk=args.topk, batch_size=args.batch_size)
            for (path, _), result in zip(batch, results, strict=True):
                _print_result(path, result, args.json)
    if inferencer.backend != "eager" and inferencer.prepare_seconds is not None:  # the one-off cost, apart
        print(f"backend {inferencer.backend}: prepared in {inferencer.prepare_seconds:.1f} s "
              f"({'ONNX export' if inferencer.backend == 'onnxruntime' else 'compile, first batch'})", file=sys.stderr)
    if failed and len(paths) > 1:
        print(f"error: {failed} of {len(paths)} image(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def _print_result(path, result: dict, as_json: bool) -> None:
    result.pop("pred_scores")
    if as_json:
        print(json.dumps(dict(image=str(path), **result)), flush=True)
        return
    print(f"{path}: {_label_text(result)}  {result['pred_score']:.4f}", flush=True)
    for entry in result["topk"][1:]:
        print(f"    {entry['score']:.4f}  {_label_text(entry)}")


def _label_text(entry: dict) -> str:
    label = entry.get("pred_label", entry.get("label"))
    name = entry.get("pred_class", entry.get("class"))
    return f"{name} ({label})" if name is not None else f"class {label}"

