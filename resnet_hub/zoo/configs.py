"""hub_configs/*.yaml: one file per mmpretrain config, the single source of truth.

Each file is parsed into the frozen dataclasses below; the dataclasses are the schema (the stems
are :data:`resnet_hub.zoo.stems.STEMS`). A config of one's own (a YAML file given by path) needs
no ``source``, ``checkpoint``, ``results`` or ``labels`` (mmpretrain's release, its figures and
label set) and may name itself as it likes; the zoo's own files carry all of them, named as their
files (:func:`all_configs`). The zoo's files are package data
(:func:`resnet_hub.package_data.package_path`). A file with a missing, unknown or mistyped field raises
:class:`HubConfigError` naming the file, the dotted field and what is wrong, never the file's
values, so a bad edit fails on load rather than deep inside a training run, and a file given by
mistake is not quoted back. What a name given to :func:`load_config` means is
:func:`resnet_hub.zoo.names.parse_model_name`'s answer.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import yaml

from .stems import STEMS, Stem, StemName

__all__ = [
    "HubConfig", "HubConfigError", "config_dir", "all_configs", "list_configs", "load_config", "load_config_file",
    "hub_namespace", "hub_repo_id", "closest_names", "zoo_order", "DEFAULT_NAMESPACE",
]

DEFAULT_NAMESPACE = "resnet-hub"
NAMESPACE_ENV = "RESNET_HUB_NAMESPACE"


class HubConfigError(ValueError):
    """A hub_configs file that does not match the schema."""


# ----------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Paper:
    title: str
    url: str
    arxiv: str


@dataclass(frozen=True)
class Source:
    mmpretrain_version: str
    config: str
    paper: Paper
    license: str


@dataclass(frozen=True)
class Architecture:
    depth: Literal[18, 34, 50, 101, 152]
    stem: StemName


@dataclass(frozen=True)
class Resize:
    mode: Literal["shorter_edge", "square"]
    size: int
    interpolation: Literal["bilinear", "bicubic", "nearest"]
    backend: Literal["cv2", "pillow"]


@dataclass(frozen=True)
class EvalPreprocessing:
    input_size: int
    resize: Optional[Resize]
    center_crop: Optional[int]
    channel_order: Literal["RGB"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class Checkpoint:
    url: str
    sha256_prefix: Optional[str]
    sha256: Optional[str]

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Results:
    dataset: str
    top1: float
    top5: Optional[float]


@dataclass(frozen=True)
class Dataset:
    name: str
    hf_id: str
    train_split: str
    eval_split: str
    image_column: str
    label_column: str


@dataclass(frozen=True)
class Optimizer:
    type: Literal["sgd", "adamw", "lamb"]  # adamw: the trainer's --opt, not an mmpretrain ResNet recipe
    lr: float
    weight_decay: float
    no_weight_decay: tuple[Literal["bias", "norm"], ...]
    momentum: Optional[float] = None
    nesterov: Optional[bool] = None
    betas: Optional[tuple[float, float]] = None
    eps: Optional[float] = None
    max_grad_norm: Optional[float] = None


@dataclass(frozen=True)
class LrPhase:
    """One mmengine param scheduler, in epochs; ``per_iteration`` updates it every step."""
    type: Literal["linear", "cosine", "multistep"]
    begin: int
    end: int
    start_factor: Optional[float] = None
    end_factor: Optional[float] = None
    t_max: Optional[int] = None
    eta_min: Optional[float] = None
    milestones: Optional[tuple[int, ...]] = None
    gamma: Optional[float] = None
    per_iteration: bool = False


@dataclass(frozen=True)
class Loss:
    type: Literal["cross_entropy", "bce"]
    label_smoothing: float
    smoothing_mode: Optional[Literal["original", "classy_vision", "multi_label"]]


@dataclass(frozen=True)
class BatchAugment:
    type: Literal["mixup", "cutmix"]
    alpha: float


@dataclass(frozen=True)
class Augmentation:
    """One training transform, in pipeline order; fields are those of its ``type``."""
    type: Literal["random_resized_crop", "horizontal_flip", "rand_augment", "random_crop", "resize"]
    size: Optional[Union[int, tuple[int, int]]] = None
    scale: Optional[tuple[float, float]] = None
    ratio: Optional[tuple[float, float]] = None
    interpolation: Optional[str] = None
    backend: Optional[str] = None
    prob: Optional[float] = None
    policies: Optional[str] = None
    num_policies: Optional[int] = None
    total_level: Optional[int] = None
    magnitude_level: Optional[float] = None
    magnitude_std: Optional[float] = None
    fill: Optional[Union[int, tuple[int, int, int]]] = None
    padding: Optional[int] = None
    pad_mode: Optional[str] = None


@dataclass(frozen=True)
class Sampler:
    type: Literal["default", "repeat_aug"]
    num_repeats: Optional[int] = None


@dataclass(frozen=True)
class Precision:
    type: Literal["fp32", "fp16"]
    loss_scale: Optional[Union[float, Literal["dynamic"]]]


@dataclass(frozen=True)
class InitFrom:
    url: str
    prefix: Optional[str]


@dataclass(frozen=True)
class Training:
    dataset: Dataset
    epochs: int
    devices: int
    batch_size_per_device: int
    lr_base_batch_size: int
    optimizer: Optimizer
    lr_schedule: tuple[LrPhase, ...]
    loss: Loss
    batch_augments: tuple[BatchAugment, ...]
    augmentation: tuple[Augmentation, ...]
    sampler: Sampler
    drop_path_rate: float
    sync_bn: bool
    precision: Precision
    init_from: Optional[InitFrom]

    @property
    def total_batch_size(self) -> int:
        return self.devices * self.batch_size_per_device


@dataclass(frozen=True)
class HubConfig:
    name: str
    architecture: Architecture
    num_classes: int
    eval: EvalPreprocessing
    training: Training
    # mmpretrain's release of this config: where it is published, the weights, their published figures and
    # class names; every zoo config has them, a config of one's own need not
    source: Optional[Source] = None
    checkpoint: Optional[Checkpoint] = None
    results: Optional[Results] = None
    labels: Optional[Literal["imagenet-1k", "cifar10", "cifar100", "cub-200-2011"]] = None
    path: Optional[Path] = field(default=None, compare=False, repr=False)

    @property
    def stem(self) -> Stem:
        """This config's row of :data:`resnet_hub.zoo.stems.STEMS`."""
        return STEMS[self.architecture.stem]

    @property
    def architecture_name(self) -> str:
        """The timm architecture this config builds: a stock one, or this plugin's CIFAR one."""
        return self.stem.architecture(self.architecture.depth)

    @property
    def is_stock_timm(self) -> bool:
        return self.stem.stock_timm

    @property
    def crop_pct(self) -> float:
        e = self.eval
        return 1.0 if e.resize is None else e.input_size / e.resize.size

    @property
    def crop_mode(self) -> str:
        e = self.eval
        return "squash" if e.resize is not None and e.resize.mode == "square" else "center"


# ----------------------------------------------------------------------------- validation


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# Errors name the file, the dotted field and the value's type, never the value: a file given by
# mistake (a path that is not a config at all) is not quoted back to whoever reads the error.
def _a(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _field(prefix: str, key: str) -> str:
    """A file's key as an error shows it: when it looks like a schema field, else only where it is."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,39}", key):
        return f"'{prefix}{key}'"
    return f"(not shown) in '{prefix.rstrip('.') or '<root>'}'"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp``, or HubConfigError naming the dotted field ``where``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        if len(args) == 1:  # Optional[X]: X's own error is the precise one
            return _coerce(value, args[0], where)
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except HubConfigError:
                pass
        raise HubConfigError(f"field '{where}': {_a(value)} is none of {' | '.join(map(_type_name, args))}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise HubConfigError(f"field '{where}': {_a(value)} that is not one of {list(typing.get_args(tp))}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise HubConfigError(f"field '{where}': expected a list, got {_a(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise HubConfigError(f"field '{where}': expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HubConfigError(f"field '{where}': expected a number, got {_a(value)}")
        return float(value)
    if tp is int or tp is bool or tp is str:
        if type(value) is not tp:
            raise HubConfigError(f"field '{where}': expected {tp.__name__}, got {_a(value)}")
        return value
    raise TypeError(f"schema type {tp} at {where} is not supported")  # a bug in this file


def _from_dict(cls, data: Any, where: str = ""):
    prefix = f"{where}." if where else ""
    if not isinstance(data, dict):
        raise HubConfigError(f"field '{where or '<root>'}': expected a mapping, got {_a(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "path"}
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        raise HubConfigError(f"unknown field {_field(prefix, unknown[0])} (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise HubConfigError(f"missing field '{prefix}{name}'")
            continue
        kwargs[name] = _coerce(data[name], hints[name], prefix + name)
    return cls(**kwargs)


# ----------------------------------------------------------------------------- loading


def config_dir() -> Path:
    """Where the zoo's YAML files are: package data (``resnet_hub/hub_configs`` in the wheel, ``hub_configs/``
    at the top of a source checkout)."""
    from resnet_hub.package_data import package_path

    return package_path("hub_configs")


def load_config_file(path: Union[str, os.PathLike]) -> HubConfig:
    """Parse and validate one hub_configs YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise HubConfigError(f"{path}: not a YAML file (not UTF-8 text)") from None
    except yaml.YAMLError as e:  # its own message quotes the offending line: say where, not what
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise HubConfigError(f"{path}: not valid YAML{where}") from None
    try:
        cfg = _from_dict(HubConfig, data)
    except HubConfigError as e:
        raise HubConfigError(f"{path}: {e}") from None
    # the name is a timm model name and a Hub repo name: the Hub's rule for one (and never quoted back)
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?", cfg.name) or ".." in cfg.name \
            or "--" in cfg.name:
        raise HubConfigError(f"{path}: field 'name' is not a model name (letters, digits, '-', '_', '.', "
                             "at most 96, no leading or trailing '-' or '.')")
    return dataclasses.replace(cfg, path=path)


ZOO_FIELDS = ("source", "checkpoint", "results", "labels")


def _zoo_config(path: Path) -> HubConfig:
    """A file of the zoo: named as its file, with mmpretrain's release (:data:`ZOO_FIELDS`) recorded."""
    cfg = load_config_file(path)
    if cfg.name != path.stem:
        raise HubConfigError(f"{path}: field 'name' must be the file's name without .yaml, {path.stem!r}")
    missing = [f for f in ZOO_FIELDS if getattr(cfg, f) is None]
    if missing:
        raise HubConfigError(f"{path}: a zoo config records mmpretrain's release; missing field "
                             f"{', '.join(repr(f) for f in missing)}")
    return cfg


@lru_cache(maxsize=None)
def all_configs() -> dict[str, HubConfig]:
    """Every registered config, by name (the files of :func:`config_dir`, parsed once)."""
    return {p.stem: _zoo_config(p) for p in sorted(config_dir().glob("*.yaml"))}


def list_configs(pattern: str = "*") -> list[str]:
    """Config names, optionally filtered by a shell-style pattern."""
    import fnmatch

    return [n for n in all_configs() if fnmatch.fnmatchcase(n, pattern)]


def _recipe(cfg: HubConfig) -> tuple:
    t = cfg.training
    return (t.epochs, t.optimizer.type, t.precision.type, t.total_batch_size, t.loss.type, len(t.batch_augments))


def zoo_order(names: Iterable[str]) -> list[str]:
    """``names`` in the order of mmpretrain's ResNet tables, derived from the configs' fields.

    Datasets with more configs first (ImageNet-1k, then CIFAR-10, ...; ties: fewer classes
    first); in a dataset, the configs of its most common training recipe first, then the recipe
    variants, those that keep its optimizer first (fp16 before ResNet strikes back's LAMB);
    then stem (v1, v1c, v1d, cifar), depth (18 to 152) and name.
    """
    configs = [load_config(n) for n in names]

    def dataset(c: HubConfig) -> str:
        return c.training.dataset.name

    counts = Counter(dataset(c) for c in all_configs().values())
    common = {d: Counter(_recipe(c) for c in all_configs().values() if dataset(c) == d).most_common(1)[0][0]
              for d in counts}
    stems = list(STEMS)

    def key(c: HubConfig) -> tuple:
        recipe, usual = _recipe(c), common[dataset(c)]
        return (-counts[dataset(c)], c.num_classes, dataset(c), recipe != usual, recipe[1] != usual[1],
                stems.index(c.architecture.stem), c.architecture.depth, c.name)

    return [c.name for c in sorted(configs, key=key)]


def closest_names(name: str, n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(all_configs()), n=n, cutoff=0.4)


def load_config(name_or_path: Union[str, os.PathLike]) -> HubConfig:
    """A config by name (``resnet50_8xb32_in1k``) or by path to a YAML file; other names are a
    ``ValueError`` naming the closest configs (:func:`resnet_hub.zoo.names.parse_model_name`)."""
    from .names import CONFIG_KINDS, parse_model_name  # names reads this module's registry

    parsed = parse_model_name(name_or_path, allow=CONFIG_KINDS)
    return all_configs()[parsed.config] if parsed.kind == "config" else load_config_file(parsed.path)


def hub_namespace() -> str:
    """The Hub user or organisation the converted weights live under (``RESNET_HUB_NAMESPACE``)."""
    ns = os.environ.get(NAMESPACE_ENV, DEFAULT_NAMESPACE).strip()
    # the Hub's own rule for a namespace: letters, digits, '-', '_', '.', no leading/trailing '-' or '.'
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?", ns) or ".." in ns or "--" in ns:
        raise ValueError(f"{NAMESPACE_ENV}={ns!r} is not a valid Hugging Face namespace "
                         "(letters, digits, '-', '_', '.'; no '/', no leading or trailing '-' or '.')")
    return ns


def hub_repo_id(name: str) -> str:
    """``{namespace}/{config}``, validated by huggingface_hub's own repo id rules."""
    from huggingface_hub.utils import validate_repo_id

    repo_id = f"{hub_namespace()}/{name}"
    validate_repo_id(repo_id)
    return repo_id
