"""top-1/top-5 of a model on a dataset split, with its config's eval transform, on many devices.

    accelerate launch scripts/eval.py --model hub:resnet50_8xb32_in1k
    python scripts/eval.py --model local-dir:runs/resnet18_8xb16_cifar10/final --dataset digits --json out.json
    resnet-hub eval local-dir:BUNDLE --dataset uoft-cs/cifar10 --update-card BUNDLE

The model is a config name or a ``hub:``/``hf-hub:``/``local-dir:`` name (created with
``pretrained=True``). The transform is timm's ``resolve_data_config`` + ``create_transform`` of
the model, which reproduces the config's mmpretrain test pipeline; images reach the device as
uint8 and are normalized there. Processes split the data and ``gather_for_metrics`` counts every
image once. The result is one JSON object on stdout (and in ``--json``); ``--update-card BUNDLE``
also adds it to that bundle's model card (:func:`resnet_hub.hub.card.update_card`), once the
evaluated weights are found to be the bundle's own. Before anything is scored the model's classes
must be the dataset's (:func:`check_label_space`): as many, and the same names in the same order
where both sides name them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

from resnet_hub.backends import BACKENDS, prepare_forward, resolve_backend
from resnet_hub.commands import non_negative_int, positive_int
from resnet_hub.train.plan import ACCELERATE_PRECISION

__all__ = ["add_arguments", "run", "config_of_model", "evaluate_model", "measured_result", "evaluate_loop",
           "eval_collate", "check_label_space"]


def config_of_model(name: str):
    """The hub config a model name refers to, when it says: ``CONFIG``, ``hub:CONFIG[@rev]`` or a
    ``local-dir:`` bundle written by resnet_hub (its weights' metadata names the config)."""
    from resnet_hub.zoo.configs import all_configs
    from resnet_hub.zoo.names import parse_model_name

    parsed = parse_model_name(name)
    if parsed.config is not None:
        return all_configs()[parsed.config]
    if parsed.kind == "local-dir" and (parsed.path / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(parsed.path / "model.safetensors"), "pt") as f:
            return all_configs().get((f.metadata() or {}).get("config", ""))
    return None


def check_model_name(name: str) -> None:
    """A clear error for a model name that cannot work, before anything is loaded."""
    import resnet_hub  # noqa: F401  (registers the zoo and the hub: prefix)
    from resnet_hub.zoo.names import parse_model_name

    parsed = parse_model_name(name)
    if parsed.kind == "local-dir":  # a tampered or broken bundle, before anything reads its metadata
        from resnet_hub.hub.bundle import check_loadable

        check_loadable(parsed.path)


def create_pretrained(name: str):
    """The model ``name`` with its weights, loaded as ``predict`` loads it: a ``local-dir:`` bundle is checked
    first (:func:`resnet_hub.hub.bundle.check_loadable`), every failure is one clear error."""
    from resnet_hub.inference import get_model

    check_model_name(name)
    return get_model(name, pretrained=True)


def evaluate_model(model, images, accelerator, *, batch_size: int = 64, workers: int = 0,
                   progress: bool = True, backend: str = "eager") -> dict:
    """top-1/top-5 of ``model`` over ``images`` (a :class:`resnet_hub.train.data.LabeledImages`), run by
    ``backend`` (resolved, see :mod:`resnet_hub.backends`); a non-eager backend adds ``prepare_seconds``."""
    import torch
    from timm.data import resolve_data_config

    from .data import DeviceNormalize

    data_cfg = resolve_data_config({}, model=model)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=eval_collate(data_cfg["input_size"]),
                                         pin_memory=accelerator.device.type == "cuda")
    if backend == "eager":
        model, loader = accelerator.prepare(model, loader)
    else:  # one CPU process in fp32 (checked in run): the prepared forward replaces the module
        model, loader = BackendModel(model, backend), accelerator.prepare(loader)
    normalize = DeviceNormalize(data_cfg["mean"], data_cfg["std"]).to(accelerator.device)
    start = time.perf_counter()
    metrics = evaluate_loop(model, loader, accelerator, normalize, progress=progress)
    seconds = time.perf_counter() - start
    # the export or compile, reported apart from the throughput (a compile runs in the first batch)
    extra = {"prepare_seconds": round(model.prepare_seconds, 3)} if backend != "eager" else {}
    return dict(metrics, seconds=round(seconds, 3), images_per_s=round(metrics["images"] / seconds, 1), **extra)


class BackendModel:
    """The BN-folded ``model`` run by a non-eager backend of :mod:`resnet_hub.backends` (``compile`` or
    ``onnxruntime``), with the module interface :func:`evaluate_loop` uses."""

    def __init__(self, model, backend: str):
        from resnet_hub.inference import fold_batchnorm

        start = time.perf_counter()
        self._forward, _ = prepare_forward(model, fold_batchnorm(model), backend)
        self._seconds = time.perf_counter() - start

    @property
    def prepare_seconds(self) -> float:
        """The export (onnxruntime) or the first batch's compile beyond its forward (compile)."""
        return self._seconds + (getattr(self._forward, "compile_seconds", None) or 0.0)

    def __call__(self, x):
        return self._forward(x)

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


def measured_result(dataset: str, split_data, split: str, metrics: Mapping, *, dataset_name: Optional[str] = None,
                    num_classes: Optional[int] = None):
    """What a model card records of an evaluation of ``split`` of ``dataset`` (``split_data``, the
    ``datasets`` split it read): ``metrics`` of :func:`evaluate_model`, or a trainer epoch record
    (whose image count is ``eval_images``). A local folder is named ``dataset_name`` (``--dataset-name``),
    else by its own name, never by its path; a model of ``num_classes`` <= 5 has no top-5."""
    from resnet_hub.hub.card import TOP5_MIN_CLASSES, MeasuredResult

    images = metrics["images"] if "images" in metrics else metrics["eval_images"]
    config = getattr(getattr(split_data, "info", None), "config_name", None)
    if Path(dataset).is_absolute() or Path(dataset).is_dir():  # a path means nothing on a Hub card, may say too much
        dataset, config = dataset_name or Path(dataset).resolve().name, None  # a folder's builder config says nothing
    top5 = metrics.get("top5")
    if num_classes is not None and num_classes < TOP5_MIN_CLASSES:
        top5 = None
    return MeasuredResult(dataset=dataset, split=split, images=int(images), top1=float(metrics["top1"]),
                          top5=None if top5 is None else float(top5), name=dataset_name, dataset_config=config)


def _comparable(name: str) -> str:
    """A class name as two sources may spell it: no case, no leading ``NNN.`` index, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", re.sub(r"^\d+\.", "", name.strip().lower()))


def _named_classes(split, label_column: str) -> Optional[tuple[str, ...]]:
    """The dataset's class names when it has them (a ``ClassLabel`` column: image folders, most Hub datasets)."""
    import datasets

    feature = (getattr(split, "features", None) or {}).get(label_column)
    return tuple(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def check_label_space(model, num_classes: int, names: Optional[Sequence[str]], dataset: str) -> None:
    """The model's classes must be the dataset's: as many (where the dataset's count is known), and the same
    names in the same order where both have names, so that label i means one class to both."""
    ours = list(model.pretrained_cfg.get("label_names") or ())
    what = f"dataset {dataset}"
    if num_classes and num_classes != model.num_classes:
        raise ValueError(f"label space mismatch: the model has {model.num_classes} classes{_first(ours)}, {what} has "
                         f"{num_classes}{_first(names or ())}; evaluate a model trained for this dataset's classes")
    if names and len(ours) == model.num_classes == len(names):
        differ = [i for i, (a, b) in enumerate(zip(ours, names, strict=True)) if _comparable(a) != _comparable(b)]
        if differ:
            i = differ[0]
            raise ValueError(f"label space mismatch: {len(differ)} of {len(names)} class names differ; label {i} is "
                             f"{ours[i]!r} for the model but {names[i]!r} in {what}{_first(names, differ)}")


def _first(names: Sequence[str], where: Optional[Sequence[int]] = None, n: int = 4) -> str:
    if not names:
        return ""
    picked = [names[i] for i in (where if where is not None else range(len(names)))][:n]
    more = (len(where) if where is not None else len(names)) - len(picked)
    return f" ({', '.join(map(repr, picked))}{f' and {more} more' if more > 0 else ''})"


def _model_name(args: argparse.Namespace) -> str:
    if bool(args.model) == bool(args.model_name):
        raise ValueError("give the model once: resnet-hub eval MODEL, or --model MODEL")
    return args.model or args.model_name


def _check_same_weights(model, bundle: Path) -> None:
    """--update-card records results of the weights evaluated: they must be the bundle's."""
    from safetensors import safe_open

    with safe_open(str(bundle / "model.safetensors"), "pt") as f:
        same = set(f.keys()) == set(model.state_dict()) and all(
            f.get_tensor(k).shape == v.shape and bool((f.get_tensor(k) == v.detach().cpu()).all())
            for k, v in model.state_dict().items())
    if not same:
        raise ValueError(f"--update-card {bundle}: the evaluated model's weights are not this bundle's; "
                         f"evaluate it with --model local-dir:{bundle}")


def evaluate_loop(model, loader, accelerator, normalize, *, progress: bool = True, desc: str = "eval") -> dict:
    """top-1/top-5 (percent) over ``loader`` (prepared by ``accelerator``), every sample counted once.

    Batches are ``{"images", "labels", "valid"}``; unreadable images arrive as ``valid=False``
    placeholders so every process gathers equal shapes, and are counted in ``skipped``.
    """
    import torch
    from tqdm.auto import tqdm

    model.eval()
    correct1 = correct5 = seen = skipped = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and accelerator.is_local_main_process))
    with torch.inference_mode():
        for batch in bar:
            logits = model(normalize(batch["images"]))
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            labels = batch["labels"].to(top.device)
            valid = batch["valid"].to(top.device)
            top, labels, valid = accelerator.gather_for_metrics((top, labels, valid))
            hits = top == labels[:, None]
            correct1 += int((hits[:, 0] & valid).sum())
            correct5 += int((hits.any(dim=1) & valid).sum())
            seen += int(valid.sum())
            skipped += int((~valid).sum())
    model.train()
    if seen == 0:
        raise ValueError("no readable image in the evaluation split")
    return {"top1": 100.0 * correct1 / seen, "top5": 100.0 * correct5 / seen, "images": seen, "skipped": skipped}


def eval_collate(shape):
    """Collate for evaluation: unreadable images become zero placeholders with ``valid=False``."""
    import torch

    def collate(samples):
        images = [x if err is None else torch.zeros(shape, dtype=torch.uint8) for x, _, err in samples]
        return {"images": torch.stack(images), "labels": torch.tensor([int(y) for _, y, _ in samples]),
                "valid": torch.tensor([err is None for _, _, err in samples]),
                "bad": [err for _, _, err in samples if err is not None]}
    return collate


def run(args: argparse.Namespace) -> int:
    from accelerate import Accelerator

    from resnet_hub.hub.card import TOP5_MIN_CLASSES
    from resnet_hub.zoo.configs import load_config

    from . import data as D
    from .recipe import eval_transform

    model_name = _model_name(args)
    check_model_name(model_name)
    card_bundle = Path(args.update_card) if args.update_card else None
    if card_bundle is not None:
        from resnet_hub.hub.bundle import validate_bundle

        validate_bundle(card_bundle)  # a bundle that cannot be published fails before the evaluation
    cfg = load_config(args.config) if args.config else config_of_model(model_name)
    if cfg is None and not args.dataset:
        raise ValueError(f"--model {model_name} does not name its config: give --dataset (and columns) or --config")
    accelerator = Accelerator(mixed_precision=ACCELERATE_PRECISION[eval_precision(args.precision, args.cpu)],
                              cpu=args.cpu)
    model = create_pretrained(model_name)
    if card_bundle is not None:
        _check_same_weights(model, card_bundle)
    spec = _spec(args, cfg)
    with accelerator.main_process_first():
        splits = D.load_splits(spec, model.pretrained_cfg["input_size"][-1])
    split = splits.eval if args.split in (None, splits.spec.eval_split) else None
    if split is None:
        if args.split != splits.spec.train_split:
            raise ValueError(f"--split {args.split!r}: this dataset has {splits.spec.train_split!r} and "
                             f"{splits.spec.eval_split!r}")
        split = splits.train
    check_label_space(model, splits.num_classes, _named_classes(split, spec.label_column),
                      args.dataset_name or spec.path)
    backend = _backend(args.backend, accelerator)
    if args.limit is not None:
        split = split.select(range(min(args.limit, len(split))))
    images = D.LabeledImages(split, eval_transform(model), spec.image_column, spec.label_column)
    metrics = evaluate_model(model, images, accelerator, batch_size=args.batch_size, workers=args.workers,
                             progress=not args.no_progress, backend=backend)
    if model.num_classes < TOP5_MIN_CLASSES:  # every label is in the top 5: the figure would say nothing
        metrics["top5"] = None
    if args.bad_images == "error" and metrics["skipped"]:
        raise D.BadImages(f"{metrics['skipped']} unreadable image(s) in {spec.path}; pass --bad-images skip to "
                          "drop and count them")
    result = {"model": model_name, "config": cfg.name if cfg else None, "dataset": spec.path,
              "split": args.split or splits.spec.eval_split, "processes": accelerator.num_processes,
              "precision": _our_word(accelerator.mixed_precision), "backend": backend, **metrics}
    if accelerator.is_main_process:
        text = json.dumps(result, indent=2)
        print(text)
        if card_bundle is not None:
            from resnet_hub.hub.card import update_card

            update_card(card_bundle, measured_result(spec.path, split, result["split"], metrics,
                                                     dataset_name=args.dataset_name, num_classes=model.num_classes))
        if args.json:
            from resnet_hub.atomic import write_text

            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            write_text(out, text + "\n")
    return 0


# --precision: fp32 (as before: Accelerate's "no", also accepted), bf16/fp16 autocast through Accelerate, or
# auto = bf16 where the device runs it natively (resnet_hub.train.plan.native_bf16), else fp32
EVAL_PRECISIONS = ("fp32", "bf16", "auto", "fp16", "no")


def eval_precision(precision: str, cpu: bool = False) -> str:
    """``--precision`` resolved for the device this process evaluates on: ``fp32``, ``bf16`` or ``fp16``."""
    from accelerate import PartialState

    from .plan import native_bf16

    if precision not in EVAL_PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(EVAL_PRECISIONS)}; got {precision!r}")
    if precision == "no":
        return "fp32"
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(PartialState(cpu=cpu).device) else "fp32"


def _backend(backend: str, accelerator) -> str:
    """``--backend`` resolved (``auto`` as predict resolves it); a non-eager one evaluates one process in fp32."""
    precision = _our_word(accelerator.mixed_precision)
    resolved = resolve_backend(backend, accelerator.device, precision)
    if resolved != "eager" and (accelerator.num_processes > 1 or precision != "fp32"):
        if backend == "auto":
            return "eager"
        raise ValueError(f"--backend {resolved} evaluates in one process in fp32; got {accelerator.num_processes} "
                         f"process(es) in {precision}: use --backend eager")
    return resolved


def _our_word(mixed_precision: str) -> str:
    return {v: k for k, v in ACCELERATE_PRECISION.items()}[mixed_precision]


def _spec(args, cfg) -> "object":
    from . import data as D

    if cfg is None:  # only --dataset: columns default to the common image/label names
        from types import SimpleNamespace

        d = SimpleNamespace(hf_id=args.dataset, train_split="train", eval_split="validation", image_column="image",
                            label_column="label")
        cfg = SimpleNamespace(training=SimpleNamespace(dataset=d))
    return D.resolve_dataset(args.dataset, cfg, eval_split=args.split, image_column=args.image_column,
                             label_column=args.label_column)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    p = parser
    p.add_argument("model_name", nargs="?", metavar="MODEL", help="the model to evaluate (or --model)")
    p.add_argument("--model", default=None,
                   help="config name (pretrained from the Hub), hub:NAME[@REV], hf-hub:REPO or local-dir:PATH")
    p.add_argument("--config", default=None,
                   help="config whose dataset and columns to use (default: the one --model names)")
    p.add_argument("--dataset", default=None,
                   help="'digits', a local image folder, or a Hub dataset id (default: the config's)")
    p.add_argument("--dataset-name", default=None,
                   help="what the model card's model-index calls the dataset (a local folder's default: its name, "
                        "never its path)")
    p.add_argument("--split", default=None, help="split to evaluate (default: the config's evaluation split)")
    p.add_argument("--image-column", default=None, help="image column (default: the config's)")
    p.add_argument("--label-column", default=None, help="label column (default: the config's)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per device per batch")
    p.add_argument("--workers", type=non_negative_int, default=min(8, os.cpu_count() or 1),
                   help="data loading workers per device")
    p.add_argument("--precision", default="fp32", choices=EVAL_PRECISIONS,
                   help="bf16 (autocast) pays only where the device runs it natively (a CPU with AVX512-BF16 or "
                        "AMX, a GPU with bf16); auto picks it there, else fp32; the result says which ran")
    p.add_argument("--backend", choices=BACKENDS, default="eager",
                   help="what runs the BN-folded model (as predict): eager, compile (inductor, freezing), onnxruntime "
                        "(one process, CPU, fp32; the export extra) or auto; the result says which ran")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N images of the split")
    p.add_argument("--bad-images", default="skip", choices=["skip", "error"],
                   help="unreadable images: count them as skipped, or fail")
    p.add_argument("--json", default=None, help="also write the JSON result to this file")
    p.add_argument("--update-card", default=None, metavar="BUNDLE",
                   help="add the measured top-1/top-5 to this bundle's README.md (model-index), replacing only "
                        "resnet_hub's earlier result for the same dataset split; the model must be this bundle")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cpu", action="store_true", help="evaluate on the CPU even when an accelerator is present")


def main(argv: Optional[list] = None) -> int:
    from resnet_hub.commands import main as command_main

    return command_main(add_arguments, run, __doc__.split("\n\n")[0], argv)
