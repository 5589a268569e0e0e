"""A Hub bundle: the folder that becomes one Hub model repo.

``model.safetensors`` (weights, with provenance in its metadata), ``config.json`` in timm's Hub
format, and ``README.md`` (the model card). Stock-architecture configs name timm's own
architecture (``resnet50``, ``resnet101d``, ...), so plain timm loads them with ``hf-hub:`` or
``local-dir:`` without this package; CIFAR configs name ``resnetN_cifar`` from this package.

The folder appears whole or not at all: every file's content is made first, then written into a
temporary sibling folder that takes the bundle folder's place in one swap
(:func:`resnet_hub.atomic.replacing_dir`); a bundle of another config or other weights is replaced
only when asked (``overwrite``), and a folder holding anything else never.
:func:`validate_bundle` checks a folder is exactly such a bundle, and a sound one, before
anything uploads it.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from safetensors.torch import save
from timm.models._hub import save_config_for_hf

from resnet_hub import __version__
from resnet_hub.atomic import recover_dir, replacing_dir, write_bytes
from resnet_hub.hashing import sha256_file
from resnet_hub.zoo.configs import HubConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
BUNDLE_FILES = (WEIGHTS, CONFIG, CARD)
# weights formats that are pickles (or may hold one): never part of a bundle, never uploaded
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".pkl", ".pickle", ".ckpt", ".tar", ".joblib", ".npz", ".npy", ".h5")


# keyword arguments transformers' TimmWrapper passes to timm.create_model itself, beside **model_args
TRANSFORMERS_ARGS = ("pretrained", "num_classes")


def hub_config(model: torch.nn.Module, cfg: HubConfig, *, model_args: Mapping[str, Any] | None = None,
               description: str | None = None, from_release: bool = True) -> dict:
    """config.json's content for ``model`` built from ``cfg``: timm's Hub format, which
    transformers' TimmWrapper (``AutoModel``, ``pipeline``) reads too.

    timm's ``save_config_for_hf`` writes it, told the architecture, the labels and any
    ``model_args`` beyond the config's (e.g. the trainer's ``--model-kwargs``) through its
    parameters. Two things it cannot be told: timm 1.0.31 records ``num_classes`` in
    ``model_args`` whatever it is given, and TimmWrapper passes ``num_classes=`` beside
    ``**model_args`` (a TypeError); both timm and transformers read the root ``num_classes``, so
    that copy goes. And the labels stay once, at the root, where timm's loader reads them.
    ``description`` says what these weights are (:meth:`resnet_hub.hub.card.CardFacts.description`);
    weights not ``from_release`` do not name mmpretrain's config as their ``origin_url``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / CONFIG
        save_config_for_hf(
            model, str(path),
            model_config={
                "pretrained_cfg": {"architecture": cfg.architecture_name,
                                   **({"description": description} if description else {})},
                "label_names": list(model.pretrained_cfg.get("label_names") or ()),
            },
            model_args=dict(model_args or {}),
        )
        data = json.loads(path.read_text())
    for key in TRANSFORMERS_ARGS:
        data.get("model_args", {}).pop(key, None)
    data["pretrained_cfg"].pop("label_names", None)
    if not from_release:
        data["pretrained_cfg"].pop("origin_url", None)
    return data


def weights_metadata(cfg: HubConfig, provenance: Mapping[str, object]) -> dict[str, str]:
    """safetensors metadata (strings only): what these weights are and where they came from."""
    meta = {"format": "pt", "config": cfg.name, "resnet_hub_version": __version__}
    meta.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in provenance.items()})
    return meta


def safetensors_bytes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """safetensors serialisation with a canonical header, so equal inputs give equal bytes.

    safetensors keeps metadata in a hash map, whose order changes from run to run; the header is
    rewritten with sorted metadata keys, to the same length, padding included.
    """
    data = save(dict(state), metadata=dict(metadata))
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode().ljust(n)
    if len(text) != n:
        raise RuntimeError("safetensors header changed length when made canonical")
    return data[:8] + text + data[8 + n:]


def write_bundle(model: torch.nn.Module, cfg: HubConfig, output_dir: str | os.PathLike, *,
                 provenance: Mapping[str, object] | None = None, card: str | None = None,
                 model_args: Mapping[str, Any] | None = None, measured: Sequence[Any] = (),
                 overwrite: bool = False) -> Path:
    """Write ``model`` as a Hub bundle into ``output_dir`` and return it.

    An existing bundle there is replaced, whole, when it holds the same config and weights or when
    ``overwrite``; a folder holding files that are not a bundle's is refused (``FileExistsError``).

    ``provenance`` goes into the weights' metadata (e.g. ``source_url``, ``source_sha256``,
    ``parity``); ``model_args`` are architecture arguments beyond the config's, for config.json
    (see :func:`hub_config`); ``card`` is the README.md text, rendered by
    :func:`resnet_hub.hub.card.render_card` from the provenance and the ``measured`` results
    (:class:`resnet_hub.hub.card.MeasuredResult`) when not given.
    """
    from .card import card_facts, public_provenance, render_card

    provenance = public_provenance(provenance or {})  # no local path reaches the Hub, in the card or the weights
    facts = card_facts(cfg, provenance, model.num_classes)
    if card is None:
        card = render_card(cfg, model, provenance, measured=measured)
    output_dir = recover_dir(output_dir)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    check_replaceable(output_dir, cfg.name, state, overwrite=overwrite)
    # everything made before anything is written: a failure here leaves the folder as it was
    contents = {WEIGHTS: safetensors_bytes(state, weights_metadata(cfg, provenance)),
                CONFIG: (json.dumps(hub_config(model, cfg, model_args=model_args, description=facts.description(cfg),
                                                   from_release=facts.kind == "release"), indent=2) + "\n").encode(),
                CARD: card.encode("utf-8")}
    with replacing_dir(output_dir) as tmp:
        for name in BUNDLE_FILES:
            write_bytes(tmp / name, contents[name])
    return output_dir


def check_replaceable(folder: Path, config_name: str, state: Mapping[str, torch.Tensor], *, overwrite: bool) -> None:
    """Refuse to replace ``folder`` when it holds files that are not a bundle's, or, unless ``overwrite``,
    a bundle of another config or other weights than ``state``."""
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if not entries:
        if folder.exists() and not folder.is_dir():
            raise FileExistsError(f"{folder} is a file, not a bundle folder")
        return
    extra = [n for n in entries if n not in BUNDLE_FILES]
    if extra:
        raise FileExistsError(f"{folder} holds {_names(extra)}, which is not part of a bundle; a bundle folder is "
                              "replaced whole: move them away or choose another --output-dir")
    if overwrite:
        return
    try:
        old, metadata = _read_weights(folder / WEIGHTS)
    except ValueError:
        old, metadata = None, {}
    what = (f"the config {metadata.get('config')!r}" if metadata.get("config") != config_name else
            "other weights" if old is not None else "weights that cannot be read")
    same = old is not None and metadata.get("config") == config_name and old.keys() == state.keys() and all(
        old[k].dtype == v.dtype and torch.equal(old[k], v) for k, v in state.items())
    if not same:
        raise FileExistsError(f"{folder} holds a bundle of {what}, not of these {config_name} weights; pass "
                              "--overwrite to replace it")


# ----------------------------------------------------------------------------- checking a bundle


@dataclass(frozen=True)
class BundleFile:
    name: str
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class Bundle:
    """A folder that :func:`validate_bundle` found to be a complete, sound Hub bundle."""
    path: Path
    architecture: str
    num_classes: int
    config_name: str | None  # the hub_configs name recorded in the weights' metadata
    files: tuple[BundleFile, ...]  # in BUNDLE_FILES order

    @property
    def card_text(self) -> str:
        return (self.path / CARD).read_text(encoding="utf-8")


def _names(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _check_files(d: Path) -> None:
    entries = sorted(p.name for p in d.iterdir())
    pickles = [n for n in entries if n.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ValueError(f"{d}: {_names(pickles)}: pickle-format files never go to the Hub; a bundle holds exactly "
                         f"{', '.join(BUNDLE_FILES)}")
    missing = [n for n in BUNDLE_FILES if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: not a complete bundle, missing {', '.join(missing)} "
                                "(write bundles with scripts/convert_weights.py or resnet_hub.hub.bundle.write_bundle)")
    extra = sorted(set(entries) - set(BUNDLE_FILES))
    if extra:
        raise ValueError(f"{d}: {_names(extra)} is not part of a bundle, which holds exactly {', '.join(BUNDLE_FILES)}")


def _read_config(path: Path, *, strict: bool = True) -> dict[str, Any]:
    """config.json as a dict; ``strict``: with every field our bundles write (``model_args``, ``label_names``),
    else with what timm's loader needs (a bundle saved by plain timm may lack those two)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    kinds = {"architecture": str, "num_classes": int, "pretrained_cfg": dict, "model_args": dict, "label_names": list}
    for key, kind in kinds.items():
        if not isinstance(config, dict) or not isinstance(config.get(key, None if strict else kind()), kind):
            raise ValueError(f"{path}: field {key!r} is missing or not a {kind.__name__}; not timm's Hub config format")
    return config


# the largest eval input side a bundle may ask for: 2048x2048 RGB is 48 MiB a float32 image (mmpretrain's
# ResNets use 224-384); a tampered 6000 would make predict allocate tens of GB
MAX_INPUT_SIDE = 2048
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


def check_preprocessing(path: Path, config: Mapping[str, Any]) -> None:
    """The eval preprocessing config.json asks for is one a model can run: ``num_classes`` >= 1, label names one
    per class (or none), ``input_size`` [C, H, W] within :data:`MAX_INPUT_SIDE`, finite mean and std > 0 per
    channel, ``crop_pct`` in (0, 1], a known interpolation. Raises ``ValueError`` naming the field."""
    import math

    def bad(field: str, value: Any, want: str) -> ValueError:
        return ValueError(f"{path}: {field} {value!r} is not {want}")

    n, labels, cfg = config["num_classes"], config.get("label_names") or [], config["pretrained_cfg"]
    if n < 1:
        raise bad("num_classes", n, "a positive number of classes")
    if len(labels) not in (0, n) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{path}: label_names holds {len(labels)} names for {n} classes (one string a class)")
    for key in ("input_size", "test_input_size"):
        size = cfg.get(key)
        if key in cfg and not (isinstance(size, list) and len(size) == 3 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in size) and 1 <= size[0] <= 4
                and all(8 <= v <= MAX_INPUT_SIDE for v in size[1:])):
            raise bad(f"pretrained_cfg.{key}", size, f"[C, H, W] with C in 1..4 and H, W in 8..{MAX_INPUT_SIDE}")
    channels = cfg.get("input_size", [3])[0]
    for key in ("mean", "std"):
        v = cfg.get(key)
        if not (isinstance(v, list) and len(v) == channels and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                and (key == "mean" or all(x > 0 for x in v))):
            raise bad(f"pretrained_cfg.{key}", v, f"{channels} finite numbers" + (" above 0" if key == "std" else ""))
    crop = cfg.get("crop_pct", 1.0)
    if not (isinstance(crop, (int, float)) and 0 < crop <= 1):
        raise bad("pretrained_cfg.crop_pct", crop, "a fraction in (0, 1]")
    if cfg.get("interpolation", "bilinear") not in INTERPOLATIONS:
        raise bad("pretrained_cfg.interpolation", cfg.get("interpolation"), f"one of {', '.join(INTERPOLATIONS)}")


def check_loadable(bundle_dir: str | os.PathLike) -> dict[str, Any]:
    """What loading a bundle folder needs, checked before timm loads it (``predict``, ``eval``, ``export``):
    config.json in timm's format with sane preprocessing (:func:`check_preprocessing`), and
    model.safetensors readable, finite and loading strictly into the architecture it names. Returns the
    config; raises ``FileNotFoundError``/``ValueError`` naming the file. :func:`validate_bundle` checks these
    and more (exact files, transformers, the card) before a push."""
    d = Path(bundle_dir)
    config = _read_config(d / CONFIG, strict=False)
    check_preprocessing(d / CONFIG, config)
    if not (d / WEIGHTS).is_file():
        raise FileNotFoundError(f"{d}: no {WEIGHTS} (a bundle holds {', '.join(BUNDLE_FILES)})")
    state, _ = _read_weights(d / WEIGHTS)
    _check_weights_fit(d, config, state)
    return config


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())})") from None


def _check_weights_fit(d: Path, config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> None:
    """The weights load strictly into the architecture config.json describes (built on the meta device)."""
    import timm

    args = dict(config.get("model_args") or {})
    if args.get("num_classes", config["num_classes"]) != config["num_classes"]:
        raise ValueError(f"{d / CONFIG}: num_classes {config['num_classes']} but model_args.num_classes "
                         f"{args['num_classes']}")
    args["num_classes"] = config["num_classes"]
    try:
        with torch.device("meta"):
            model = timm.create_model(config["architecture"], pretrained=False, **args)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{d / CONFIG}: timm cannot build architecture {config['architecture']!r} with "
                         f"model_args {config.get('model_args') or {}} ({' '.join(str(e).split())})") from None
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
              for k in sorted(set(expected) & set(state)) if state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        problems = ([f"missing {_names(missing)}"] if missing else []) + (
            [f"unexpected {_names(unexpected)}"] if unexpected else []) + (
            [f"shape mismatch {_names(shapes, 3)}"] if shapes else [])
        raise ValueError(f"{d / WEIGHTS} does not match {CONFIG} ({config['architecture']}, "
                         f"{config['num_classes']} classes): {'; '.join(problems)}")
    model.load_state_dict(state, strict=True, assign=True)
    # min and max propagate NaN and show inf, at a third of the cost of isfinite(v).all()
    bad = [k for k, v in state.items()
           if v.is_floating_point() and v.numel() and not all(bool(torch.isfinite(x)) for x in torch.aminmax(v))]
    if bad:
        raise ValueError(f"{d / WEIGHTS}: non-finite values in {_names(bad)}")


def transformers_problems(config: Mapping[str, Any]) -> list[str]:
    """Why transformers' TimmWrapper (``AutoModelForImageClassification``, ``pipeline``) could not
    load a bundle with this config.json the way timm does; empty when it could."""
    problems = []
    clash = [k for k in TRANSFORMERS_ARGS if k in (config.get("model_args") or {})]
    if clash:
        problems.append(f"model_args holds {', '.join(clash)}, which TimmWrapper passes to timm.create_model itself "
                        "(TypeError: got multiple values); the root num_classes is the one both read")
    if config.get("model_type", "timm_wrapper") != "timm_wrapper":
        problems.append(f"model_type {config['model_type']!r} is not transformers' 'timm_wrapper'")
    labels = config.get("label_names") or []
    if len(labels) != config.get("num_classes") or not all(isinstance(x, str) for x in labels):
        problems.append(f"label_names holds {len(labels)} names for {config.get('num_classes')} classes; "
                        "transformers' id2label (the pipeline's class names) is made from them, one string a class")
    return problems


def _check_transformers(path: Path, config: Mapping[str, Any]) -> None:
    problems = transformers_problems(config)
    if problems:
        raise ValueError(f"{path}: transformers could not load this bundle: {'; '.join(problems)}")


def _check_card(path: Path) -> None:
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise ValueError(f"{path}: the model card has no YAML metadata block")
    try:
        data = ModelCard(text).data.to_dict()
        if "model-index" in data:
            model_index_to_eval_results(data["model-index"])
    except Exception as e:  # yaml and huggingface_hub raise many types for a malformed card
        raise ValueError(f"{path}: the model card's metadata does not parse ({' '.join(str(e).split())})") from None
    if data.get("library_name") != "timm":
        raise ValueError(f"{path}: the model card's library_name is {data.get('library_name')!r}, not 'timm'")


def validate_bundle(bundle_dir: str | os.PathLike) -> Bundle:
    """Check that ``bundle_dir`` is exactly a Hub bundle and a sound one; return what it holds.

    Exactly :data:`BUNDLE_FILES` (no pickle, nothing else); config.json in timm's Hub format;
    model.safetensors readable, finite, and loading strictly into the architecture config.json
    names, built on the meta device with its ``model_args`` and ``num_classes``; config.json that
    transformers' TimmWrapper loads too (:func:`transformers_problems`); preprocessing a model can
    run (:func:`check_preprocessing`); README.md with metadata huggingface_hub parses. Raises
    ``FileNotFoundError``/``ValueError`` naming the file.
    """
    d = Path(bundle_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"no bundle folder {d}")
    _check_files(d)
    config = _read_config(d / CONFIG)
    state, metadata = _read_weights(d / WEIGHTS)
    _check_weights_fit(d, config, state)
    del state
    _check_transformers(d / CONFIG, config)
    check_preprocessing(d / CONFIG, config)
    _check_card(d / CARD)
    files = tuple(BundleFile(n, d / n, (d / n).stat().st_size, sha256_file(d / n)) for n in BUNDLE_FILES)
    return Bundle(path=d, architecture=config["architecture"], num_classes=config["num_classes"],
                  config_name=metadata.get("config"), files=files)
