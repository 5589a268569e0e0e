"""The model card: a bundle's README.md, rendered from the ``MODEL_CARD.md`` template.

What a card says about its weights is decided once, by :func:`card_facts`, from the config and
the provenance the bundle's writer recorded: weights converted from mmpretrain's release
(``release``), converted from some other checkpoint of a zoo architecture (``checkpoint``), or
trained / fine-tuned by resnet_hub (``trained``). Metadata goes through huggingface_hub's
``ModelCardData`` (so the Hub and ``ModelCard.load`` read it back), the body through
``ModelCard.from_template`` (Jinja). The results table has one renderer,
:func:`results_markdown`, drawn from the card's own ``model-index``: the writer and
``resnet-hub eval --update-card`` both call it. Every figure on the card comes from the config,
the provenance, or a measurement of the model itself: parameters are counted and FLOPs are
counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

import torch

from resnet_hub import __version__
from resnet_hub.zoo.configs import HubConfig, hub_repo_id

__all__ = ["Complexity", "MeasuredResult", "CardFacts", "card_facts", "public_provenance", "measure_complexity",
           "card_data", "render_card", "template_path", "measured_results", "results_markdown", "update_card",
           "from_release", "TOP5_MIN_CLASSES"]

TEMPLATE = "MODEL_CARD.md"

LOSSES = {"cross_entropy": "cross-entropy", "bce": "binary cross-entropy"}
TAGS = ["image-classification", "timm", "transformers", "resnet", "mmpretrain", "resnet_hub"]
# model-index results whose source name starts so are resnet_hub's measurements (others: mmpretrain's, anyone's)
MEASURED_SOURCE = "resnet_hub"
PROJECT_URL = "https://pypi.org/project/resnet_hub/"  # the source of measured results: this package
RESULTS_BEGIN = "<!-- resnet_hub results: drawn from model-index, rewritten by resnet-hub eval --update-card -->"
RESULTS_END = "<!-- end of resnet_hub results -->"
# the block cards written before the one results table had: replaced by it on the next --update-card
OLD_MARKERS = ("<!-- resnet_hub measured results: rewritten by resnet-hub eval --update-card -->",
               "<!-- end of resnet_hub measured results -->")
# top-5 accuracy says something only when there are more classes than guesses: with 5 or fewer it is 100%
TOP5_MIN_CLASSES = 6

Kind = Literal["release", "checkpoint", "trained"]


@dataclass(frozen=True)
class Complexity:
    """What one forward pass of a model costs at one input size, as measured."""
    params: int
    flops: int  # FlopCounterMode's count: 2 per multiply-accumulate
    input_size: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates: the unit of mmpretrain's "Flops" column."""
        return self.flops // 2


@dataclass(frozen=True)
class MeasuredResult:
    """top-1/top-5 (percent) that resnet_hub measured for a bundle's weights on one dataset split."""
    dataset: str  # Hub dataset id, or the name given to a local folder (never its path), or "digits"
    split: str
    images: int  # images counted (unreadable ones skipped)
    top1: float
    top5: float | None = None  # None where the model has too few classes for top-5 to mean anything
    dataset_config: str | None = None  # the ``datasets`` config it was loaded with, when there is one
    version: str = __version__  # resnet_hub's, recorded as the result's source
    name: str | None = None  # what the card calls the dataset (``--dataset-name``); default ``dataset``

    def eval_results(self, model_name: str) -> list:
        from huggingface_hub import EvalResult

        common = dict(task_type="image-classification", task_name="Image Classification", dataset_type=self.dataset,
                      dataset_name=self.name or self.dataset, dataset_config=self.dataset_config,
                      dataset_split=self.split,
                      dataset_args={"images": self.images}, source_name=f"{MEASURED_SOURCE} {self.version}",
                      source_url=PROJECT_URL)
        out = [EvalResult(metric_type="accuracy", metric_name="Top-1 accuracy (%)", metric_value=round(self.top1, 4),
                          **common)]
        if self.top5 is not None:
            out.append(EvalResult(metric_type="top_5_accuracy", metric_name="Top-5 accuracy (%)",
                                  metric_value=round(self.top5, 4), **common))
        return out


# ----------------------------------------------------------------------------- what the weights are


@dataclass(frozen=True)
class CardFacts:
    """What a card and config.json say these weights are; :func:`card_facts` derives it once."""
    kind: Kind
    name: str  # the bundle's own name: the card's title, the local-dir: folder of the snippets
    repo_id: str  # the Hub repo every usage snippet loads
    zoo: bool  # ``name`` is a registered config whose weights these are, so ``hub:NAME`` loads them
    num_classes: int
    base_model: Optional[str] = None  # Hub repo id of the starting weights
    pretrained: Optional[str] = None  # what the starting weights were, in words (trained bundles)
    datasets: tuple[str, ...] = ()  # Hub dataset ids, or the name a user gave a local folder
    plan: Optional[Mapping[str, Any]] = None  # the settings a trained bundle's run actually used
    ema: bool = False  # the weights are the run's exponential moving average
    sha256: Optional[str] = None  # of the source checkpoint (release and checkpoint)

    @property
    def top5(self) -> bool:
        return self.num_classes >= TOP5_MIN_CLASSES

    def description(self, cfg: HubConfig) -> str:
        """One line for config.json's ``description``: true of these weights."""
        arch = f"ResNet-{cfg.architecture.depth} ({cfg.architecture_name})"
        if self.kind == "release":
            return f"mmpretrain {cfg.name}, converted from {cfg.checkpoint.url}"
        if self.kind == "checkpoint":
            return (f"{self.name}: {arch} of mmpretrain's {cfg.name} architecture, converted from a checkpoint that "
                    f"is not mmpretrain's release (sha256 {self.sha256 or 'not recorded'})")
        start = f"fine-tuned from {self.pretrained}" if self.pretrained else "trained from scratch"
        data = f" on {', '.join(self.datasets)}" if self.datasets else ""
        return f"{self.name}: {arch}, {start}{data} by resnet_hub's trainer{' (EMA weights)' if self.ema else ''}"


def from_release(cfg: HubConfig, provenance: Mapping[str, Any]) -> bool:
    """Whether the provenance names the config's released checkpoint: its sha256 is the release's
    (the full hash where ``hub_configs`` records it, else the file name's 8-hex prefix); without a
    recorded sha256, its URL is the release's."""
    ck = cfg.checkpoint
    if ck is None or not any(provenance.get(k) for k in SOURCE_KEYS):
        return False
    sha = str(provenance.get("source_sha256") or "").lower()
    if sha:
        released = ck.sha256 or ck.sha256_prefix
        return bool(released) and sha.startswith(released)
    return provenance.get("source_url") == ck.url


def card_facts(cfg: HubConfig, provenance: Mapping[str, Any], num_classes: int) -> CardFacts:
    """What the bundle of ``cfg``'s architecture with ``provenance`` is (see :class:`CardFacts`).

    A trained bundle's provenance names it (``model_name``, ``repo_id``), its start (``base_model``,
    ``pretrained``), its data (``dataset_name``), its settings (``plan``) and ``ema``; a name
    not given is the config's, and a repo id not given is that name in the namespace.
    """
    from resnet_hub.zoo.configs import all_configs

    p = public_provenance(provenance)
    if from_release(cfg, p):
        return CardFacts("release", cfg.name, hub_repo_id(cfg.name), zoo=all_configs().get(cfg.name) == cfg,
                         num_classes=num_classes, base_model=base_model(cfg), datasets=(cfg.training.dataset.hf_id,),
                         sha256=p.get("source_sha256"))
    name = str(p.get("model_name") or cfg.name)
    common = dict(name=name, repo_id=str(p.get("repo_id") or hub_repo_id(name)), zoo=False, num_classes=num_classes)
    if is_converted(p):
        return CardFacts("checkpoint", **common, sha256=p.get("source_sha256"))
    dataset = p.get("dataset_name")
    return CardFacts("trained", **common, base_model=p.get("base_model") or None,
                     pretrained=p.get("pretrained") or None, datasets=(str(dataset),) if dataset else (),
                     plan=p.get("plan") or None, ema=bool(p.get("ema")))


def _is_local_path(text: str) -> bool:
    return text.startswith(("/", "~", "file:")) or bool(re.match(r"[A-Za-z]:[\\/]", text))


def public_provenance(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """``provenance`` fit for a public card and the weights' metadata: a local path (anywhere, also
    inside a ``plan``) becomes its last component, which names the folder or file without saying
    where on someone's disk it was."""
    def public(value: Any) -> Any:
        if isinstance(value, str):
            return re.split(r"[\\/]", value.rstrip("/\\"))[-1] if _is_local_path(value) else value
        if isinstance(value, Mapping):
            return {k: public(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [public(v) for v in value]
        return value

    return {k: public(v) for k, v in provenance.items()}


def measure_complexity(model: torch.nn.Module, input_size: int) -> Complexity:
    """Parameters and FLOPs of ``model`` for one ``input_size`` x ``input_size`` RGB image.

    The forward runs through ``torch.func.functional_call`` with meta-device copies of the
    parameters and buffers, so nothing is computed and the model itself is left untouched.
    FlopCounterMode counts convolutions and matrix products (the linear head); BatchNorm, ReLU,
    pooling and the residual additions are not counted.
    """
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    meta = {name: torch.empty_like(t, device="meta") for name, t in (*model.named_parameters(),
                                                                     *model.named_buffers())}
    image = torch.empty(1, 3, input_size, input_size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        functional_call(model, meta, (image,))
    return Complexity(params=sum(p.numel() for p in model.parameters()), flops=int(counter.get_total_flops()),
                      input_size=input_size)


def template_path() -> Path:
    """MODEL_CARD.md, package data (:func:`resnet_hub.package_data.package_path`)."""
    from resnet_hub.package_data import package_path

    return package_path(TEMPLATE)


def base_model(cfg: HubConfig) -> str | None:
    """The Hub repo a config was fine-tuned from, when its starting checkpoint is one.

    The card's ``base_model`` must name a Hub model; a checkpoint that only exists as a file on
    download.openmmlab.com (CUB's ImageNet-21k start) is named in the card's text instead.
    """
    init = cfg.training.init_from
    if init is None:
        return None
    m = re.fullmatch(r"(?:hf-hub:|https://huggingface\.co/)([\w.-]+/[\w.-]+)(?:/.*)?", init.url)
    return m.group(1) if m else None


SOURCE_KEYS = ("source_url", "source_file", "source_sha256")


def is_converted(provenance: Mapping[str, Any]) -> bool:
    """Whether the provenance names a checkpoint these weights were converted from (any, released or not)."""
    return any(provenance.get(k) for k in SOURCE_KEYS)


# ----------------------------------------------------------------------------- metadata and the results table


def _published(cfg: HubConfig) -> list:
    """mmpretrain's published results for its released weights of ``cfg``, as model-index entries."""
    from huggingface_hub import EvalResult

    d, r = cfg.training.dataset, cfg.results
    if r is None:
        return []
    common = dict(task_type="image-classification", task_name="Image Classification", dataset_type=d.hf_id,
                  dataset_name=r.dataset, dataset_split=d.eval_split, source_name="mmpretrain model zoo",
                  source_url=_origin_url(cfg))
    out = [EvalResult(metric_type="accuracy", metric_name="Top-1 accuracy (%)", metric_value=r.top1, **common)]
    if r.top5 is not None and cfg.num_classes >= TOP5_MIN_CLASSES:
        out.append(EvalResult(metric_type="top_5_accuracy", metric_name="Top-5 accuracy (%)", metric_value=r.top5,
                              **common))
    return out


def card_data(cfg: HubConfig, facts: CardFacts, measured: Sequence[MeasuredResult] = ()):
    """The card's YAML metadata: library, license, tags, base model, datasets, task, and ``model-index``.

    mmpretrain's published results and its training data describe its released weights, so only a
    ``release`` card carries them; ``measured`` results (resnet_hub's own evaluation of these weights,
    its version as the source) go beside them on any card.
    """
    from huggingface_hub import ModelCardData

    results = _published(cfg) if facts.kind == "release" else []
    results = _with_measured(results, measured, facts.num_classes)
    relation = {"base_model_relation": "finetune"} if facts.base_model and facts.kind == "trained" else {}
    return ModelCardData(
        library_name="timm", license=cfg.source.license if cfg.source else None, tags=list(TAGS),
        base_model=facts.base_model, datasets=list(facts.datasets) or None, pipeline_tag="image-classification",
        metrics=["accuracy"] if results else None,
        # model_name is model-index's name: without results it would be a top-level key the Hub does not define
        model_name=facts.name if results else None, eval_results=results or None, **relation,
    )


def _is_measured(result) -> bool:
    return (result.source_name or "").split(" ")[0] == MEASURED_SOURCE


def _with_measured(results: list, measured: Sequence[MeasuredResult], num_classes: int) -> list:
    """``results`` with each of ``measured`` in place of resnet_hub's earlier one for its dataset split;
    top-5 only for a model of more than 5 classes."""
    for m in measured:
        if num_classes < TOP5_MIN_CLASSES:
            m = dataclasses.replace(m, top5=None)
        new = m.eval_results("")
        same = {new[0].unique_identifier}
        results = [e for e in results if not (_is_measured(e) and e.unique_identifier in same)]
        clash = [e for e in results if e.unique_identifier in same]
        if clash:  # huggingface_hub would merge them into one entry under the other's source
            raise ValueError(f"the card already has results from {clash[0].source_name!r} for dataset "
                             f"{m.dataset!r} split {m.split!r} with the same config ({m.dataset_config}); "
                             "measured results need a distinct dataset config")
        results = [*results, *new]
    return results


def measured_results(card_data) -> list[MeasuredResult]:
    """resnet_hub's measured results in a card's metadata, one per dataset split."""
    out = {}
    for e in card_data.eval_results or ():
        if not _is_measured(e):
            continue
        m = out.get(e.unique_identifier) or MeasuredResult(
            e.dataset_type, e.dataset_split, int((e.dataset_args or {}).get("images", 0)), float("nan"),
            dataset_config=e.dataset_config, version=e.source_name.partition(" ")[2],
            name=e.dataset_name if e.dataset_name != e.dataset_type else None)
        field = {"accuracy": "top1", "top_5_accuracy": "top5"}.get(e.metric_type)
        out[e.unique_identifier] = dataclasses.replace(m, **{field: e.metric_value}) if field else m
    return list(out.values())


def _percent(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def results_markdown(eval_results: Sequence[Any], num_classes: int) -> str:
    """The card's results table, drawn from its ``model-index`` entries (``EvalResult``), one row per
    source, dataset and split: published ones and resnet_hub's measurements alike. The one renderer of
    it, used when a bundle is written and by ``resnet-hub eval --update-card``."""
    rows: dict[Any, dict] = {}
    for e in eval_results or ():
        key = (e.source_name, e.dataset_type, e.dataset_config, e.dataset_split)
        row = rows.setdefault(key, {"e": e})
        row[e.metric_type] = e.metric_value
    top5 = num_classes >= TOP5_MIN_CLASSES
    lines = [RESULTS_BEGIN, ""]
    if rows:
        lines += ["| dataset | split | images | top-1 (%) |" + (" top-5 (%) |" if top5 else "") + " source |",
                  "| --- | --- | --- | --- |" + (" --- |" if top5 else "") + " --- |"]
        for row in rows.values():
            e = row["e"]
            images = (e.dataset_args or {}).get("images", "not published")
            source = (f"measured by {e.source_name}" if _is_measured(e) else
                      f"published by [{e.source_name}]({e.source_url})" if e.source_url else e.source_name)
            dataset = f"{e.dataset_name}{f' ({e.dataset_config})' if e.dataset_config else ''}"
            lines.append(f"| {dataset} | {e.dataset_split} | {images} | {_percent(row.get('accuracy'))} |"
                         + (f" {_percent(row.get('top_5_accuracy'))} |" if top5 else "") + f" {source} |")
    else:
        lines += ["None yet. `resnet-hub eval local-dir:BUNDLE --dataset DATASET --update-card BUNDLE` measures "
                  "top-1" + ("/top-5" if top5 else "") + " and adds it here and to the metadata."]
    return "\n".join([*lines, "", RESULTS_END])


def _replace_block(body: str, block: str) -> str:
    for begin, end in ((RESULTS_BEGIN, RESULTS_END), OLD_MARKERS):
        if begin in body and end in body:
            head, rest = body.split(begin, 1)
            return head + block + rest.split(end, 1)[1]
    return body.rstrip("\n") + "\n\n" + block + "\n"


def update_card(bundle_dir: str | os.PathLike, result: MeasuredResult) -> Path:
    """Add ``result`` to the README.md of the bundle in ``bundle_dir``, in place of resnet_hub's earlier
    measurement of the same dataset split; published and anyone else's results stay. The results
    table is redrawn from the metadata by :func:`results_markdown`. Written atomically."""
    from huggingface_hub import ModelCard

    from resnet_hub.atomic import write_text

    path = Path(bundle_dir) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"no model card {path} (give a bundle folder: model.safetensors, config.json, "
                                "README.md)")
    num_classes = int(json.loads((Path(bundle_dir) / "config.json").read_text(encoding="utf-8"))["num_classes"])
    card = ModelCard(path.read_text(encoding="utf-8"))
    card.data.eval_results = _with_measured(list(card.data.eval_results or ()), [result], num_classes)
    card.data.model_name = card.data.model_name or Path(bundle_dir).resolve().name
    card.data.metrics = sorted({*(card.data.metrics or ()), "accuracy"})
    card.text = _replace_block(card.text, results_markdown(card.data.eval_results, num_classes))
    text = str(card)
    ModelCard(text)  # what is written parses back
    return write_text(path, text)


def render_card(cfg: HubConfig, model: torch.nn.Module, provenance: Mapping[str, Any] | None = None,
                measured: Sequence[MeasuredResult] = ()) -> str:
    """README.md for the bundle of ``model`` (built from ``cfg``), as text.

    ``provenance`` is what the bundle's writer recorded (see :func:`card_facts` for what it decides):
    the converter's ``source_url`` or ``source_file``, ``source_sha256`` and ``parity`` (the figures
    it measured against mmpretrain, or ``{"measured": False, "reason": ...}``); the trainer's run,
    name, start, data and plan. Whatever is missing is stated as not recorded, never filled in;
    local paths never reach the card. ``measured`` are resnet_hub's own evaluations of these weights
    (e.g. the trainer's best epoch), in the results table beside any published ones.
    """
    from huggingface_hub import ModelCard

    try:
        import jinja2  # noqa: F401  (ModelCard.from_template renders with it)
    except ImportError:
        raise ImportError("the model card needs jinja2, a resnet_hub dependency: pip install jinja2") from None

    provenance = public_provenance(provenance or {})
    facts = card_facts(cfg, provenance, int(getattr(model, "num_classes", cfg.num_classes)))
    data = card_data(cfg, facts, measured)
    card = ModelCard.from_template(data, template_path=str(template_path()),
                                   **_template_vars(cfg, model, facts, provenance),
                                   **deploy_template_vars(cfg, facts.kind == "release"),
                                   results_table=results_markdown(data.eval_results, facts.num_classes))
    return str(card)


# ----------------------------------------------------------------------------- template values


def _origin_url(cfg: HubConfig) -> str | None:
    if cfg.source is None:
        return None
    return f"https://github.com/open-mmlab/mmpretrain/blob/v{cfg.source.mmpretrain_version}/{cfg.source.config}"


def _number(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return x if isinstance(x, str) else json.dumps(x, sort_keys=True)
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _fields(obj: Any, skip: tuple[str, ...] = ("type",)) -> str:
    """``a=1, b=(0.08, 1.0)`` for the fields of a config dataclass that are set."""
    items = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.name not in skip]
    return ", ".join(f"{k}={v}" for k, v in items if v is not None and v != ())


def _parity(provenance: Mapping[str, Any]) -> dict[str, Any]:
    parity = provenance.get("parity")
    if isinstance(parity, str):  # as stored in safetensors metadata
        try:
            parity = json.loads(parity)
        except json.JSONDecodeError:
            return {"measured": False, "reason": f"the recorded parity is not readable: {parity!r}"}
    if not parity:
        return {"measured": False, "reason": "the conversion recorded no parity figure"}
    if not isinstance(parity, Mapping):
        return {"measured": False, "reason": f"the recorded parity is not a mapping: {parity!r}"}
    if parity.get("measured", True) is False:
        return {"measured": False, "reason": str(parity.get("reason") or "no reason was recorded")}
    return {"measured": True, "figures": [(k, _number(v)) for k, v in parity.items() if k != "measured"]}


def _schedule(cfg: HubConfig) -> list[str]:
    out = []
    for p in cfg.training.lr_schedule:
        unit = "per iteration" if p.per_iteration else "per epoch"
        if p.type == "linear":
            out.append(f"linear warm-up, epochs {p.begin}-{p.end}, factor {p.start_factor} to {p.end_factor} ({unit})")
        elif p.type == "cosine":
            out.append(f"cosine annealing, epochs {p.begin}-{p.end}, to {p.eta_min} ({unit})")
        else:
            out.append(f"multiply by {p.gamma} at epochs {', '.join(map(str, p.milestones or ()))}")
    return out


def _training(cfg: HubConfig) -> dict[str, Any]:
    """The config's (mmpretrain's) recipe, for the card of its released weights."""
    t = cfg.training
    o = t.optimizer
    loss = LOSSES[t.loss.type] + (f", label smoothing {t.loss.label_smoothing}" if t.loss.label_smoothing else "")
    return {
        "dataset": t.dataset,
        "epochs": t.epochs,
        "batch": f"{t.total_batch_size} ({t.devices} GPUs x {t.batch_size_per_device})",
        "optimizer": f"{o.type.upper()}, " + _fields(o, skip=("type",)),
        "lr_base_batch_size": t.lr_base_batch_size,
        "schedule": _schedule(cfg),
        "loss": loss,
        "batch_augments": [f"{b.type} (alpha {b.alpha})" for b in t.batch_augments],
        "augmentation": [f"{a.type}({_fields(a)})" for a in t.augmentation],
        "sampler": t.sampler.type + (f" ({t.sampler.num_repeats} repeats)" if t.sampler.num_repeats else ""),
        "precision": t.precision.type + (f", loss scale {t.precision.loss_scale}" if t.precision.loss_scale else ""),
        "drop_path_rate": t.drop_path_rate,
        "init_from": t.init_from.url if t.init_from else None,
        "base_model": base_model(cfg),
    }


def _source(cfg: HubConfig, provenance: Mapping[str, Any]) -> dict[str, Any]:
    ck = cfg.checkpoint
    return {
        "url": provenance.get("source_url") or (ck.url if ck else None),
        "file": provenance.get("source_file"),
        "released_url": ck.url if ck else None,
        "sha256": provenance.get("source_sha256") or (ck.sha256 if ck else None),
        "sha256_prefix": ck.sha256_prefix if ck else None,
    }


def _data_config(cfg: HubConfig, model: torch.nn.Module) -> dict[str, Any]:
    """The eval preprocessing in timm's terms, as the model's pretrained cfg (config.json) has it."""
    pc = dict(getattr(model, "pretrained_cfg", None) or {})
    e = cfg.eval
    size = int((pc.get("input_size") or (3, e.input_size, e.input_size))[-1])
    return {"input_size": size, "crop_pct": round(float(pc.get("crop_pct", cfg.crop_pct)), 4),
            "crop_mode": pc.get("crop_mode", cfg.crop_mode),
            "interpolation": pc.get("interpolation", e.resize.interpolation if e.resize else "bilinear"),
            "mean": list(pc.get("mean", e.mean)), "std": list(pc.get("std", e.std)),
            # the mmpretrain test pipeline describes this model's preprocessing only when nothing was changed
            "mmpretrain_pipeline": size == e.input_size}


# provenance keys the card shows in sections of their own
_SHOWN_ELSEWHERE = ("plan", "model_name", "repo_id")


def _template_vars(cfg: HubConfig, model: torch.nn.Module, facts: CardFacts,
                   provenance: Mapping[str, Any]) -> dict[str, Any]:
    data = _data_config(cfg, model)
    complexity = measure_complexity(model, data["input_size"])
    return {
        "kind": facts.kind,
        "converted": facts.kind == "release",
        "facts": facts,
        "provenance": [(k, _number(v)) for k, v in sorted(provenance.items())
                       if k not in _SHOWN_ELSEWHERE and (facts.top5 or k != "top5")],
        "plan": [(k, _number(v)) for k, v in (facts.plan or {}).items() if v is not None],  # settings not in play: none
        "name": facts.name,
        "repo_id": facts.repo_id,
        "zoo": facts.zoo,
        "config_name": cfg.name,
        "architecture": cfg.architecture_name,
        "stock": cfg.is_stock_timm,
        "depth": cfg.architecture.depth,
        "stem": cfg.stem.card,
        "num_classes": facts.num_classes,
        "top5": facts.top5,
        "num_features": getattr(model, "num_features", None),
        "labels": cfg.labels,
        "results": cfg.results,
        "eval_split": cfg.training.dataset.eval_split,
        "source_info": cfg.source,
        "paper": cfg.source.paper if cfg.source else None,
        "license": cfg.source.license if cfg.source else None,
        "mmpretrain_version": cfg.source.mmpretrain_version if cfg.source else None,
        "origin_url": _origin_url(cfg),
        "eval": cfg.eval,
        "data": data,
        "crop_pct": data["crop_pct"],
        "crop_mode": data["crop_mode"],
        "interpolation": data["interpolation"],
        "params_m": f"{complexity.params / 1e6:.2f}",
        "params": f"{complexity.params:,}",
        "gmacs": f"{complexity.macs / 1e9:.3f}",
        "gflops": f"{complexity.flops / 1e9:.3f}",
        "training": _training(cfg),
        "source": _source(cfg, provenance),
        "parity": _parity(provenance),
    }


# ----------------------------------------------------------------------------- deployment sections


def deploy_template_vars(cfg: HubConfig, release: bool) -> dict[str, Any]:
    """The values of the card's "Export and deployment", "Feature Map Extraction", "Image Embeddings" and
    "Model Comparison" sections: feature map shapes measured on the meta device, the zoo's table (with
    mmpretrain's published results only on the card of mmpretrain's released weights)."""
    import timm

    size = cfg.eval.input_size
    with torch.device("meta"):
        feature_model = timm.create_model(cfg.architecture_name, features_only=True)  # a user's YAML config too
        shapes = [tuple(f.shape) for f in feature_model(torch.empty(1, 3, size, size))]
    from resnet_hub.zoo.configs import list_configs

    return {"feature_shapes": shapes, "unpooled_shape": shapes[-1], "in_zoo": cfg.name in list_configs(),
            "zoo_table": zoo_table(highlight=cfg.name, results=release)}


def zoo_table(highlight: str | None = None, results: bool = True) -> str:
    """The zoo as a markdown table (config, dataset, input, params, GMACs and, with ``results``, mmpretrain's
    published top-1/top-5), in mmpretrain's order, as ``resnet-hub list`` prints it; ``highlight`` in bold."""
    from resnet_hub.cli import list_rows, select_configs

    header = ["config", "dataset", "input", "params (M)", "GMACs", *(["top-1 (%)", "top-5 (%)"] if results else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in list_rows(select_configs()):
        row = [f"**{r['name']}**" if r["name"] == highlight else r["name"], r["dataset"], str(r["input_size"]),
               f"{r['params_m']:.2f}", f"{r['gmacs']:.2f}"]
        if results:
            row += [f"{r['top1']:.2f}", "-" if r["top5"] is None else f"{r['top5']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
