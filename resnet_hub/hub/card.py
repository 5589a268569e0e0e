"""The model card: a bundle's README.md, rendered from the top-level ``MODEL_CARD.md`` template.

Metadata goes through huggingface_hub's ``ModelCardData`` (so the Hub and ``ModelCard.load`` read
it back), the body through ``ModelCard.from_template`` (Jinja). Every figure on the card comes from
the config, the provenance the converter recorded, or a measurement of the model itself:
parameters are counted and FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on
the meta device, so even ResNet-152 at 224 px costs no arithmetic.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from resnet_hub import __version__
from resnet_hub.zoo.configs import HubConfig, hub_repo_id

__all__ = ["Complexity", "MeasuredResult", "measure_complexity", "card_data", "render_card", "template_path",
           "measured_results", "update_card"]

TEMPLATE = "MODEL_CARD.md"

LOSSES = {"cross_entropy": "cross-entropy", "bce": "binary cross-entropy"}
TAGS = ["image-classification", "timm", "transformers", "resnet", "mmpretrain", "resnet_hub"]
# model-index results whose source name starts so are resnet_hub's measurements (others: mmpretrain's, anyone's)
MEASURED_SOURCE = "resnet_hub"
PROJECT_URL = "https://pypi.org/project/resnet_hub/"  # the source of measured results: this package
MEASURED_BEGIN = "<!-- resnet_hub measured results: rewritten by resnet-hub eval --update-card -->"
MEASURED_END = "<!-- end of resnet_hub measured results -->"


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
    dataset: str  # Hub dataset id, local folder or "digits": what ``--dataset`` named
    split: str
    images: int  # images counted (unreadable ones skipped)
    top1: float
    top5: float | None = None
    dataset_config: str | None = None  # the ``datasets`` config it was loaded with, when there is one
    version: str = __version__  # resnet_hub's, recorded as the result's source

    def eval_results(self, model_name: str) -> list:
        from huggingface_hub import EvalResult

        common = dict(task_type="image-classification", task_name="Image Classification", dataset_type=self.dataset,
                      dataset_name=self.dataset, dataset_config=self.dataset_config, dataset_split=self.split,
                      dataset_args={"images": self.images}, source_name=f"{MEASURED_SOURCE} {self.version}",
                      source_url=PROJECT_URL)
        out = [EvalResult(metric_type="accuracy", metric_name="Top-1 accuracy (%)", metric_value=round(self.top1, 4),
                          **common)]
        if self.top5 is not None:
            out.append(EvalResult(metric_type="top_5_accuracy", metric_name="Top-5 accuracy (%)",
                                  metric_value=round(self.top5, 4), **common))
        return out


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
    """MODEL_CARD.md: inside the installed wheel, else at the top of the source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / TEMPLATE, package.parent / TEMPLATE):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{TEMPLATE} not found in {package} or beside it; is the package installed whole?")


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
    """Whether the provenance names a released checkpoint these weights were converted from."""
    return any(provenance.get(k) for k in SOURCE_KEYS)


def card_data(cfg: HubConfig, converted: bool = True, measured: Sequence[MeasuredResult] = ()):
    """The card's YAML metadata: library, license, tags, dataset, task, and results in ``model-index``.

    mmpretrain's published results and its training data describe its released weights, so only a
    card for weights converted from that release carries them; ``measured`` results (resnet_hub's
    own evaluation of these weights, its version as the source) go beside them on any card.
    """
    from huggingface_hub import EvalResult, ModelCardData

    d, r = cfg.training.dataset, cfg.results
    results = []
    if converted:
        common = dict(task_type="image-classification", task_name="Image Classification", dataset_type=d.hf_id,
                      dataset_name=r.dataset, dataset_split=d.eval_split, source_name="mmpretrain model zoo",
                      source_url=_origin_url(cfg))
        results.append(EvalResult(metric_type="accuracy", metric_name="Top-1 accuracy (%)", metric_value=r.top1,
                                  **common))
        if r.top5 is not None:
            results.append(EvalResult(metric_type="top_5_accuracy", metric_name="Top-5 accuracy (%)",
                                      metric_value=r.top5, **common))
    results = _with_measured(results, measured, cfg.name)
    return ModelCardData(
        library_name="timm", license=cfg.source.license, tags=list(TAGS),
        datasets=[d.hf_id] if converted else None, pipeline_tag="image-classification",
        base_model=base_model(cfg) if converted else None, metrics=["accuracy"] if results else None,
        # model_name is model-index's name: without results it would be a top-level key the Hub does not define
        model_name=cfg.name if results else None, eval_results=results or None,
    )


def _is_measured(result) -> bool:
    return (result.source_name or "").split(" ")[0] == MEASURED_SOURCE


def _with_measured(results: list, measured: Sequence[MeasuredResult], model_name: str) -> list:
    """``results`` with each of ``measured`` in place of resnet_hub's earlier one for its dataset split."""
    for m in measured:
        new = m.eval_results(model_name)
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
            dataset_config=e.dataset_config, version=e.source_name.partition(" ")[2])
        field = {"accuracy": "top1", "top_5_accuracy": "top5"}.get(e.metric_type)
        out[e.unique_identifier] = dataclasses.replace(m, **{field: e.metric_value}) if field else m
    return list(out.values())


def measured_markdown(results: Sequence[MeasuredResult]) -> str:
    """The card's block of resnet_hub's measured results (between :data:`MEASURED_BEGIN` and ``END``)."""
    lines = [MEASURED_BEGIN, "", "### Measured by resnet_hub", ""]
    if results:
        lines += ["These weights, evaluated by `resnet-hub eval` (or the trainer) with the config's eval transform:",
                  "", "| dataset | split | images | top-1 (%) | top-5 (%) | measured with |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {m.dataset}{f' ({m.dataset_config})' if m.dataset_config else ''} | {m.split} | {m.images} | "
                  f"{m.top1:.2f} | {'-' if m.top5 is None else f'{m.top5:.2f}'} | resnet_hub {m.version} |"
                  for m in results]
    else:
        lines += ["Not measured yet: `resnet-hub eval --model local-dir:BUNDLE --dataset DATASET --update-card BUNDLE`"
                  " adds the top-1/top-5 it measures here and to the metadata, beside any published results."]
    return "\n".join([*lines, "", MEASURED_END])


def update_card(bundle_dir: str | os.PathLike, result: MeasuredResult) -> Path:
    """Add ``result`` to the README.md of the bundle in ``bundle_dir``, in place of resnet_hub's earlier
    measurement of the same dataset split; published and anyone else's results stay. Written atomically."""
    from huggingface_hub import ModelCard

    path = Path(bundle_dir) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"no model card {path} (give a bundle folder: model.safetensors, config.json, "
                                "README.md)")
    card = ModelCard(path.read_text(encoding="utf-8"))
    name = card.data.model_name or Path(bundle_dir).resolve().name
    card.data.eval_results = _with_measured(list(card.data.eval_results or ()), [result], name)
    card.data.model_name = name
    card.data.metrics = sorted({*(card.data.metrics or ()), "accuracy"})
    block = measured_markdown(measured_results(card.data))
    body = card.text
    if MEASURED_BEGIN in body and MEASURED_END in body:
        head, rest = body.split(MEASURED_BEGIN, 1)
        body = head + block + rest.split(MEASURED_END, 1)[1]
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    card.text = body
    text = str(card)
    ModelCard(text)  # what is written parses back
    from resnet_hub.atomic import write_text

    return write_text(path, text)


def render_card(cfg: HubConfig, model: torch.nn.Module, provenance: Mapping[str, Any] | None = None,
                measured: Sequence[MeasuredResult] = ()) -> str:
    """README.md for the bundle of ``model`` (built from ``cfg``), as text.

    ``provenance`` is what the converter recorded: ``source_url`` or ``source_file``,
    ``source_sha256`` and ``parity``, a dict of the figures it measured against mmpretrain
    (e.g. ``max_abs_logit_diff``, ``relative``, ``inputs``), or ``{"measured": False,
    "reason": ...}``. Whatever is missing is stated as not recorded, never filled in. Without a
    source checkpoint (e.g. a bundle from the trainer) the card does not claim mmpretrain's
    weights or results, and lists the provenance it was given. ``measured`` are resnet_hub's own
    evaluations of these weights (e.g. the trainer's final top-1/top-5), shown beside mmpretrain's.
    """
    from huggingface_hub import ModelCard

    try:
        import jinja2  # noqa: F401  (ModelCard.from_template renders with it)
    except ImportError:
        raise ImportError("the model card needs jinja2, a resnet_hub dependency: pip install jinja2") from None

    provenance = dict(provenance or {})
    converted = is_converted(provenance)
    complexity = measure_complexity(model, cfg.eval.input_size)
    data = card_data(cfg, converted, measured)
    card = ModelCard.from_template(data, template_path=str(template_path()), **_template_vars(
        cfg, model, complexity, provenance, converted), **deploy_template_vars(cfg),
        measured=measured_markdown(measured_results(data)))
    return str(card)


# ----------------------------------------------------------------------------- template values


def _origin_url(cfg: HubConfig) -> str:
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
    sha = provenance.get("source_sha256") or cfg.checkpoint.sha256
    return {
        "url": provenance.get("source_url") or cfg.checkpoint.url,
        "file": provenance.get("source_file"),
        "released_url": cfg.checkpoint.url,
        "sha256": sha,
        "sha256_prefix": cfg.checkpoint.sha256_prefix,
    }


def _template_vars(cfg: HubConfig, model: torch.nn.Module, complexity: Complexity, provenance: Mapping[str, Any],
                   converted: bool) -> dict[str, Any]:
    e = cfg.eval
    return {
        "converted": converted,
        "provenance": [(k, _number(v)) for k, v in sorted(provenance.items())],
        "name": cfg.name,
        "repo_id": hub_repo_id(cfg.name),
        "architecture": cfg.architecture_name,
        "stock": cfg.is_stock_timm,
        "depth": cfg.architecture.depth,
        "stem": cfg.stem.card,
        "num_classes": getattr(model, "num_classes", cfg.num_classes),
        "num_features": getattr(model, "num_features", None),
        "labels": cfg.labels,
        "results": cfg.results,
        "eval_split": cfg.training.dataset.eval_split,
        "paper": cfg.source.paper,
        "license": cfg.source.license,
        "mmpretrain_version": cfg.source.mmpretrain_version,
        "origin_url": _origin_url(cfg),
        "eval": e,
        "crop_pct": round(cfg.crop_pct, 4),
        "crop_mode": cfg.crop_mode,
        "interpolation": e.resize.interpolation if e.resize else "bilinear",
        "params_m": f"{complexity.params / 1e6:.2f}",
        "params": f"{complexity.params:,}",
        "gmacs": f"{complexity.macs / 1e9:.3f}",
        "gflops": f"{complexity.flops / 1e9:.3f}",
        "training": _training(cfg),
        "source": _source(cfg, provenance),
        "parity": _parity(provenance),
    }


# ----------------------------------------------------------------------------- deployment sections


def deploy_template_vars(cfg: HubConfig) -> dict[str, Any]:
    """The values of the card's "Export and deployment", "Feature Map Extraction", "Image Embeddings" and
    "Model Comparison" sections: feature map shapes measured on the meta device, the zoo's table."""
    import timm

    size = cfg.eval.input_size
    with torch.device("meta"):
        feature_model = timm.create_model(cfg.name, features_only=True)
        shapes = [tuple(f.shape) for f in feature_model(torch.empty(1, 3, size, size))]
    return {"feature_shapes": shapes, "unpooled_shape": shapes[-1], "zoo_table": zoo_table(highlight=cfg.name)}


def zoo_table(highlight: str | None = None) -> str:
    """The zoo as a markdown table (config, dataset, input, params, GMACs, published top-1/top-5), in
    mmpretrain's order, as ``resnet-hub list`` prints it; ``highlight`` in bold."""
    from resnet_hub.cli import list_rows, select_configs

    lines = ["| config | dataset | input | params (M) | GMACs | top-1 (%) | top-5 (%) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in list_rows(select_configs()):
        name = f"**{r['name']}**" if r["name"] == highlight else r["name"]
        top5 = "-" if r["top5"] is None else f"{r['top5']:.2f}"
        lines.append(f"| {name} | {r['dataset']} | {r['input_size']} | {r['params_m']:.2f} | {r['gmacs']:.2f} | "
                     f"{r['top1']:.2f} | {top5} |")
    return "\n".join(lines)
