"""mmpretrain/mmcls ResNet checkpoints as timm Hub bundles, checked against mmpretrain itself.

:func:`mmpretrain_to_timm` is the one key remapping, a pure function followed by a strict
comparison with the registered timm model; :func:`convert_checkpoint` loads a checkpoint safely
(:mod:`resnet_hub.hub.checkpoint_io`), remaps it, measures the converted model against mmpretrain's
on fixed random inputs when mmpretrain is installed, and writes the bundle.

mmpretrain's keys and timm's differ in two places only:

- the head: ``head.fc.*`` is timm's ``fc.*``, and everything else drops ``backbone.``;
- the stem: each stem's backbone module renames (``Stem.renames`` in
  :data:`resnet_hub.zoo.stems.STEMS`): ``v1c``/``v1d``'s deep stem, ``v1d``'s first
  average-pool shortcut.

A user's own mmpretrain fine-tune of a zoo architecture, with a head of its own, converts with
``num_classes`` (``--num-classes``) and class names (``--labels``, else the checkpoint's own); its
card says it is not mmpretrain's release and carries none of mmpretrain's results.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from resnet_hub.commands import CommandError, positive_int
from resnet_hub.zoo.configs import HubConfig, list_configs, load_config
from resnet_hub.zoo.labels import label_names
from resnet_hub.zoo.stems import STEMS

from .checkpoint_io import ALLOW_NUMPY_FLAG, load_checkpoint

__all__ = [
    "PARITY_TOLERANCE", "mmpretrain_to_timm", "convert_checkpoint", "mmpretrain_parity", "load_pretrained_backbone",
    "add_arguments", "run",
]

# largest |timm logit - mmpretrain logit| allowed, relative to the largest |mmpretrain logit|; measured 0 for all
# 22 configs (both models run the same torch kernels in one process; AMD EPYC Zen 4, 1 and 2 threads)
PARITY_TOLERANCE = 1e-5
PARITY_SEED = 0
PARITY_BATCH = 2

_PREPROCESSOR = "data_preprocessor."


# ----------------------------------------------------------------------------- mapping


def _split_checkpoint(checkpoint: Any) -> tuple[dict[str, torch.Tensor], dict]:
    """(weights, meta) of an mmcls v0 / mmpretrain 1.x checkpoint, or of a bare state dict."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"a checkpoint is a dict, this is a {type(checkpoint).__name__}")
    if "state_dict" in checkpoint:
        weights, meta = checkpoint["state_dict"], checkpoint.get("meta") or {}
    else:
        weights, meta = checkpoint, {}
    if not isinstance(weights, Mapping) or not isinstance(meta, Mapping):
        raise ValueError("the checkpoint's 'state_dict' and 'meta' must be dicts")
    others = [str(k) for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise ValueError(f"neither an mmpretrain checkpoint (with 'state_dict') nor a state dict: "
                         f"{', '.join(others[:10])} {'are' if len(others) > 1 else 'is'} not tensors")
    return dict(weights), dict(meta)


def _backbone_key(key: str, stem: str) -> str:
    module, _, param = key.rpartition(".")
    return f"{STEMS[stem].renames.get(module, module)}.{param}"


def _map(weights: Mapping[str, torch.Tensor], stem: str) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """timm key -> tensor, timm key -> checkpoint key, and checkpoint keys with no timm counterpart."""
    mapped, origin, unknown = {}, {}, []
    for key, value in weights.items():
        if key.startswith(_PREPROCESSOR):
            continue  # checked against the config's normalisation, not weights
        if key.startswith("backbone."):
            new = _backbone_key(key[len("backbone."):], stem)
        elif key.startswith("head.fc."):
            new = "fc." + key[len("head.fc."):]
        else:
            unknown.append(key)
            continue
        mapped[new], origin[new] = value, key
    return mapped, origin, unknown


def _differences(mapped: Mapping[str, torch.Tensor], origin: Mapping[str, str], unknown: list[str],
                 expected: Mapping[str, tuple[int, ...]]) -> list[str]:
    missing = [k for k in expected if k not in mapped]
    unexpected = unknown + [origin[k] for k in mapped if k not in expected]
    misshaped = [f"{origin[k]} -> {k}: checkpoint {tuple(mapped[k].shape)} vs model {expected[k]}"
                 for k in mapped if k in expected and tuple(mapped[k].shape) != expected[k]]
    problems = []
    if missing:
        problems.append(f"missing ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected ({len(unexpected)}): {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped ({len(misshaped)}): {'; '.join(misshaped)}")
    return problems


@lru_cache(maxsize=None)
def _expected_shapes(name: str, num_classes: Optional[int] = None) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the registered timm model ``name`` (with a head of ``num_classes``, when
    given) and its shape (built on the meta device)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, **({"num_classes": num_classes} if num_classes is not None else {}))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _fitting_configs(weights: Mapping[str, torch.Tensor], cfg: HubConfig) -> list[str]:
    """The configs, other than ``cfg``'s architecture, whose model these weights fit exactly."""
    groups: dict[tuple[str, int], list[HubConfig]] = {}
    for name in list_configs():
        other = load_config(name)
        groups.setdefault((other.architecture_name, other.num_classes), []).append(other)
    fits = []
    for (arch, num_classes), members in groups.items():
        if (arch, num_classes) == (cfg.architecture_name, cfg.num_classes):
            continue
        mapped, origin, unknown = _map(weights, members[0].architecture.stem)
        if not _differences(mapped, origin, unknown, _expected_shapes(members[0].name)):
            fits += [m.name for m in members]
    return fits


def _own_head(mapped, origin, unknown, cfg: HubConfig) -> Optional[int]:
    """The class count of a checkpoint that is ``cfg``'s architecture in all but its head's size, else None."""
    fc = mapped.get("fc.weight")
    if fc is None or fc.ndim != 2 or fc.shape[0] == cfg.num_classes:
        return None
    fits = not _differences(mapped, origin, unknown, _expected_shapes(cfg.name, int(fc.shape[0])))
    return int(fc.shape[0]) if fits else None


def _check_preprocessing(weights: Mapping[str, torch.Tensor], cfg: HubConfig) -> None:
    """mmpretrain 1.x checkpoints may carry the normalisation they were trained with: it must be the config's."""
    for field, want in (("mean", cfg.eval.mean), ("std", cfg.eval.std)):
        value = weights.get(_PREPROCESSOR + field)
        if value is None:
            continue
        got = [round(float(v) / 255.0, 6) for v in value.flatten()]
        if len(got) != len(want) or any(abs(g - w) > 1e-4 for g, w in zip(got, want, strict=True)):
            raise ValueError(
                f"the checkpoint's {_PREPROCESSOR}{field} is {[round(g * 255, 4) for g in got]} (0-255 scale), but "
                f"{cfg.name} normalises with {[round(w * 255, 4) for w in want]}: these weights were trained for "
                "other inputs and would be served with the wrong preprocessing"
            )


def _check_classes(meta: Mapping, cfg: HubConfig) -> None:
    """Class names the checkpoint records (mmcls 0.x ``meta.CLASSES``, mmpretrain 1.x
    ``meta.dataset_meta.classes``) must be as many as the config's; an empty or absent list records none."""
    dataset_meta = meta.get("dataset_meta")
    recorded = {"meta.CLASSES": meta.get("CLASSES"),
                "meta.dataset_meta.classes": dataset_meta.get("classes") if isinstance(dataset_meta, Mapping) else None}
    for field, classes in recorded.items():
        if classes is None or (isinstance(classes, (list, tuple)) and not classes):
            continue
        if not isinstance(classes, (list, tuple)):
            raise ValueError(f"the checkpoint's {field} is a {type(classes).__name__}, not a list of class names")
        if len(classes) != cfg.num_classes:
            raise ValueError(f"the checkpoint's {field} names {len(classes)} classes, but {cfg.name} has "
                             f"{cfg.num_classes}: these weights were trained for another label set")


def mmpretrain_to_timm(state_dict: Mapping[str, Any], cfg: HubConfig) -> dict[str, torch.Tensor]:
    """The timm state dict of an mmpretrain/mmcls ResNet checkpoint for config ``cfg``.

    ``state_dict`` is a loaded checkpoint: mmcls v0 (``meta.CLASSES``), mmpretrain 1.x
    (``data_preprocessor.*`` buffers, ``meta.dataset_meta``) or a bare state dict. Strict: every
    missing, unexpected or mis-shaped key is named in one ``ValueError``, together with the configs
    the checkpoint does fit when it belongs to another depth or variant.
    """
    weights, meta = _split_checkpoint(state_dict)
    mapped, origin, unknown = _map(weights, cfg.architecture.stem)
    problems = _differences(mapped, origin, unknown, _expected_shapes(cfg.name, cfg.num_classes))
    if problems:
        fits = _fitting_configs(weights, cfg)
        lead = (f"this checkpoint is not a {cfg.architecture_name} with {cfg.num_classes} classes ({cfg.name}); "
                f"it fits {', '.join(fits)}" if fits else
                f"this checkpoint does not fit {cfg.name} ({cfg.architecture_name}, {cfg.num_classes} classes)")
        head = _own_head(mapped, origin, unknown, cfg)
        hint = (f". It is {cfg.name}'s architecture with a {head}-class head: a fine-tune of it converts with "
                f"--num-classes {head}" if head else "")
        raise ValueError(f"{lead}. Keys: {'; '.join(problems)}{hint}")
    _check_preprocessing(weights, cfg)
    _check_classes(meta, cfg)
    return mapped


# ----------------------------------------------------------------------------- models


def _timm_model(cfg: HubConfig, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """The registered timm model of ``cfg`` holding exactly ``state`` (no random init on the way)."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(cfg.name, num_classes=cfg.num_classes)
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    # copies: the model must not share storage with the checkpoint it is measured against
    model.load_state_dict({k: v.to(dtypes[k], copy=True).contiguous() for k, v in state.items()},
                          strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"tensors not set by the checkpoint: {left}")  # a bug here, not in the input
    return model.eval()


def _mmpretrain_model(cfg: HubConfig, weights: Mapping[str, torch.Tensor]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mmcv-lite warns about ops this model does not use
        from resnet_hub.reference import build_mmpretrain_model

        model = build_mmpretrain_model(cfg.name, num_classes=cfg.num_classes)
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith(_PREPROCESSOR)}, strict=True)
    return model.eval()


def parity_inputs(cfg: HubConfig) -> torch.Tensor:
    """The fixed random inputs parity is measured on: normalised images at the config's eval size."""
    generator = torch.Generator().manual_seed(PARITY_SEED)
    return torch.randn(PARITY_BATCH, 3, cfg.eval.input_size, cfg.eval.input_size, generator=generator)


def mmpretrain_parity(cfg: HubConfig, checkpoint: Mapping[str, Any], model: torch.nn.Module) -> dict:
    """How far ``model``'s logits are from mmpretrain's own model holding the same checkpoint."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mmpretrain
    except ImportError:
        return {"measured": False, "reason": "mmpretrain is not installed (pip install 'resnet_hub[test]')"}
    weights, _ = _split_checkpoint(checkpoint)
    reference = _mmpretrain_model(cfg, weights)
    x = parity_inputs(cfg)
    with torch.no_grad():
        want = reference(x, mode="tensor")
        got = model(x)
    diff = (got - want).abs().max().item()
    scale = want.abs().max().item()
    return {
        "measured": True,
        "max_abs_logit_diff": diff,
        "logit_scale": scale,
        "relative_diff": diff / scale if scale else diff,
        "tolerance": PARITY_TOLERANCE,
        "inputs": {"seed": PARITY_SEED, "shape": list(x.shape), "distribution": "standard normal"},
        "mmpretrain_version": mmpretrain.__version__,
    }


def convert_checkpoint(config: Union[str, HubConfig], checkpoint: Union[str, os.PathLike],
                       output_dir: Union[str, os.PathLike], *, sha256: Optional[str] = None, verify: bool = True,
                       allow_numpy: bool = False, measure_parity: bool = True, overwrite: bool = False,
                       num_classes: Optional[int] = None, labels: Optional[Sequence[str]] = None,
                       model_name: Optional[str] = None, repo_id: Optional[str] = None) -> Path:
    """Convert one mmpretrain checkpoint (file or URL) into a Hub bundle in ``output_dir``.

    Nothing is written unless every check passes: the file's sha256, safe loading, the strict key
    mapping, and (when mmpretrain is installed and ``measure_parity``) logits within
    :data:`PARITY_TOLERANCE` of mmpretrain's. The folder appears whole; a bundle of another config or
    other weights already there is replaced only with ``overwrite`` (:func:`~resnet_hub.hub.bundle.write_bundle`).
    ``num_classes`` and ``labels`` (class names, as many) convert a fine-tune of ``config``'s architecture
    with a head of its own. Weights that are not the config's release are named ``model_name`` (default:
    the output folder's name), for ``repo_id``.
    """
    from .bundle import write_bundle
    from .card import from_release

    cfg = config if isinstance(config, HubConfig) else load_config(config)
    zoo_classes = cfg.num_classes
    cfg, labels = _own_classes(cfg, num_classes, labels)
    loaded = load_checkpoint(checkpoint, sha256=sha256, verify=verify, allow_numpy=allow_numpy, cfg=cfg)
    model = _timm_model(cfg, mmpretrain_to_timm(loaded.content, cfg))
    if cfg.num_classes == zoo_classes:  # the config's own label set, unless named otherwise
        labels = labels or list(label_names(cfg.labels))
    else:  # a head of its own: the names given, else those the checkpoint records, else the label numbers
        labels = labels or _checkpoint_classes(loaded.content) or [str(i) for i in range(cfg.num_classes)]
    model.pretrained_cfg = dict(model.pretrained_cfg, label_names=list(labels))
    if measure_parity:
        parity = mmpretrain_parity(cfg, loaded.content, model)
    else:
        parity = {"measured": False, "reason": "not requested (--no-parity)"}
    if parity["measured"] and not parity["relative_diff"] <= PARITY_TOLERANCE:
        raise ValueError(f"{cfg.name}: converted logits differ from mmpretrain's by {parity['max_abs_logit_diff']:.3g} "
                         f"({parity['relative_diff']:.3g} of the logit scale, tolerance {PARITY_TOLERANCE}); "
                         "nothing written")
    provenance = dict(loaded.provenance)
    if from_release(cfg, provenance):
        if verify and loaded.url is None and loaded.path.name == cfg.checkpoint.file_name:
            # a local copy of the released file, vouched for by the released hash: say where it is published
            provenance["source_url"] = cfg.checkpoint.url
    else:  # someone's own checkpoint: a bundle of its own name, never the release's
        provenance["model_name"] = model_name or Path(output_dir).resolve().name
        if repo_id:
            provenance["repo_id"] = repo_id
    return write_bundle(model, cfg, output_dir, provenance={**provenance, "parity": parity}, overwrite=overwrite)


def _own_classes(cfg: HubConfig, num_classes: Optional[int],
                 labels: Optional[Sequence[str]]) -> tuple[HubConfig, Optional[list[str]]]:
    """``cfg`` with a head of ``num_classes`` (or as many as ``labels``), and the labels checked against it."""
    labels = list(labels) if labels is not None else None
    if labels is not None:
        if not labels or any(not isinstance(x, str) or not x.strip() for x in labels):
            raise ValueError("--labels: one class name per line, none empty")
        if len(set(labels)) != len(labels):
            raise ValueError("--labels: class names must be distinct")
        if num_classes is not None and num_classes != len(labels):
            raise ValueError(f"--labels names {len(labels)} classes, --num-classes says {num_classes}")
        num_classes = len(labels)
    if num_classes is None or num_classes == cfg.num_classes:
        return cfg, labels
    if num_classes < 1:
        raise ValueError(f"--num-classes must be at least 1, got {num_classes}")
    return dataclasses.replace(cfg, num_classes=num_classes), labels


def _checkpoint_classes(checkpoint: Any) -> Optional[list[str]]:
    """The class names an mmcls/mmpretrain checkpoint records (already checked to be as many as the head's)."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    dataset_meta = meta.get("dataset_meta")
    for classes in (meta.get("CLASSES"), dataset_meta.get("classes") if isinstance(dataset_meta, Mapping) else None):
        if isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes):
            return list(classes)
    return None


def load_pretrained_backbone(model: torch.nn.Module, checkpoint: Union[str, os.PathLike], *, cfg: HubConfig,
                             prefix: Optional[str] = "backbone", sha256: Optional[str] = None, verify: bool = True,
                             allow_numpy: bool = False) -> None:
    """Load the backbone of an mmpretrain checkpoint (file or URL) into timm ``model``, leaving its classifier.

    mmpretrain's ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone')``: the keys under
    ``prefix`` (all keys when ``prefix`` is empty) must match every non-classifier key of ``model``.
    """
    loaded = load_checkpoint(checkpoint, sha256=sha256, verify=verify, allow_numpy=allow_numpy)
    weights, _ = _split_checkpoint(loaded.content)
    lead = f"{prefix}." if prefix else ""
    backbone = {"backbone." + k[len(lead):]: v for k, v in weights.items() if k.startswith(lead)}
    if not backbone:
        roots = sorted({k.split(".", 1)[0] for k in weights})
        raise ValueError(f"{loaded.path.name} has no weights under {prefix!r}; its top-level names are {roots}")
    mapped, origin, unknown = _map(backbone, cfg.architecture.stem)
    origin = {k: lead + v[len("backbone."):] for k, v in origin.items()}
    classifier = model.pretrained_cfg.get("classifier", "fc") + "."
    current = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in current.items() if not k.startswith(classifier)}
    problems = _differences(mapped, origin, unknown, expected)
    if problems:
        raise ValueError(f"{loaded.path.name} is not a {cfg.architecture_name} backbone: {'; '.join(problems)}")
    head = {k: v for k, v in current.items() if k.startswith(classifier)}
    model.load_state_dict({**mapped, **head}, strict=True)


# ----------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="hub_configs name, e.g. resnet50_8xb32_in1k")
    what.add_argument("--all", action="store_true",
                      help="convert every config whose released checkpoint file is in --checkpoint-dir")
    parser.add_argument("--checkpoint", help="mmpretrain/mmcls .pth file or URL (with --config)")
    parser.add_argument("--checkpoint-dir", help="folder of released .pth files (with --all)")
    parser.add_argument("--output-dir", required=True,
                        help="bundle folder (with --all: one sub-folder per config)")
    parser.add_argument("--sha256", help="expected sha256 of a checkpoint whose name does not end in -<8 hex>.pth")
    parser.add_argument("--no-verify", action="store_true", help="load a checkpoint without checking its sha256")
    parser.add_argument(ALLOW_NUMPY_FLAG, dest="allow_numpy", action="store_true",
                        help="allow numpy scalar and dtype objects (old mmcls meta data) in the checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a bundle of another config or other weights in --output-dir (a bundle of the "
                             "same weights is replaced without it)")
    parser.add_argument("--no-parity", action="store_true",
                        help="do not measure the converted model against mmpretrain")
    own = parser.add_argument_group("a checkpoint of one's own (with --config): a fine-tune of its architecture")
    own.add_argument("--num-classes", type=positive_int, default=None,
                     help="classes of the checkpoint's head, when not the config's (e.g. 4 for a 4-class fine-tune)")
    own.add_argument("--labels", default=None, metavar="FILE",
                     help="class names, one a line, in label order (default: the checkpoint's meta, else 0..N-1)")
    own.add_argument("--model-name", default=None,
                     help="the bundle's name on its card, for weights that are not mmpretrain's release "
                          "(default: the output folder's name)")
    own.add_argument("--repo-id", default=None,
                     help="the Hub repo its card's snippets load (default: NAMESPACE/MODEL_NAME)")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return dict(verify=not args.no_verify, allow_numpy=args.allow_numpy, measure_parity=not args.no_parity,
                overwrite=args.overwrite)


def _read_labels(path: Optional[str]) -> Optional[list[str]]:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--labels {path}: no such file (one class name a line)")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"--labels {path}: not UTF-8 text (one class name a line)") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _report(cfg_name: str, out: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    own = f"; not mmpretrain's release: named {meta['model_name']}" if "model_name" in meta else ""
    return f"{cfg_name}: wrote {out} (source sha256 {meta['source_sha256'][:16]}..., parity {meta['parity']}{own})"


def run(args: argparse.Namespace) -> int:
    output_dir = Path(args.output_dir)
    if not args.all:
        if not args.checkpoint or args.checkpoint_dir:
            raise ValueError("--config takes --checkpoint PATH_OR_URL (--checkpoint-dir goes with --all)")
        cfg = load_config(args.config)
        out = convert_checkpoint(cfg, args.checkpoint, output_dir, sha256=args.sha256, num_classes=args.num_classes,
                                 labels=_read_labels(args.labels), model_name=args.model_name, repo_id=args.repo_id,
                                 **_options(args))
        print(_report(cfg.name, out))
        return 0

    if not args.checkpoint_dir or args.checkpoint or args.sha256:
        raise ValueError("--all takes --checkpoint-dir DIR (not --checkpoint or --sha256)")
    if args.num_classes or args.labels or args.model_name or args.repo_id:
        raise ValueError("--all converts the released checkpoints; --num-classes, --labels, --model-name and "
                         "--repo-id go with --config")
    folder = Path(args.checkpoint_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"no checkpoint folder {folder}")
    todo = [(name, folder / load_config(name).checkpoint.file_name) for name in list_configs()]
    todo = [(name, path) for name, path in todo if path.is_file()]
    if not todo:
        example = load_config(list_configs()[0]).checkpoint.file_name
        raise FileNotFoundError(f"{folder} holds none of the {len(list_configs())} released checkpoint files "
                                f"(named as released, e.g. {example})")
    failed = []
    for name, path in todo:
        try:
            out = convert_checkpoint(name, path, output_dir / name, **_options(args))
        except (ValueError, FileNotFoundError, FileExistsError, ConnectionError, ImportError) as e:
            failed.append(f"{name}: {' '.join(str(e).split())}")
            continue
        print(_report(name, out), flush=True)
    if failed:
        raise CommandError(f"{len(failed)} of {len(todo)} conversions failed, the others were written: "
                           + " | ".join(failed))
    return 0

