"""The ``resnet-hub`` command: the zoo at a glance, predictions, and the project's tools.

Each subcommand is a library module's ``add_arguments(parser)`` / ``run(args)`` pair, the same
pair its ``scripts/*.py`` uses, imported only when that subcommand runs: ``resnet-hub --help``
stays fast and lists every subcommand, and one whose module or optional dependencies are
missing fails with one line saying what to install.
"""
from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import hashlib
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import __version__, commands
from .commands import HelpFormatter

# name -> (module, add_arguments, run, one-line summary)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "list": ("resnet_hub.cli", "add_list_arguments", "run_list",
             "list the zoo's configs: dataset, parameters, GMACs, published top-1/top-5"),
    "info": ("resnet_hub.cli", "add_info_arguments", "run_info",
             "everything about one config: architecture, eval transform, weights, results, recipe"),
    "predict": ("resnet_hub.inference", "add_arguments", "run", "classify images with a zoo model"),
    "export": ("resnet_hub.export", "add_arguments", "run",
               "export a model to ONNX or torch.export (.pt2), checked against timm, with its preprocessing"),
    "embed": ("resnet_hub.embed", "add_arguments", "run",
              "image embeddings (pooled features before the classifier) to .safetensors or .npy"),
    "convert": ("resnet_hub.hub.convert", "add_arguments", "run",
                "convert mmpretrain's released checkpoints into Hub bundles (safetensors + config.json)"),
    "push": ("resnet_hub.hub.push", "add_arguments", "run", "upload converted bundles to the Hugging Face Hub"),
    "train": ("resnet_hub.train.trainer", "add_arguments", "run",
              "train a config's recipe with Accelerate (accelerate launch -m resnet_hub.train for many devices)"),
    "eval": ("resnet_hub.train.evaluate", "add_arguments", "run",
             "top-1/top-5 of a model on an HF dataset split or an image folder"),
    "bench": ("resnet_hub.bench.benchmark", "add_arguments", "run",
              "benchmarks side by side: resnet_hub vs mmpretrain and the plain HF/torchvision pipeline"),
}
_FORMATTER = HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = commands.ArgumentParser(  # its error line scrubs tokens, as every subcommand's does
        prog="resnet-hub", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="mmpretrain's ResNet zoo as timm models, with weights on the Hugging Face Hub.",
        epilog="Run 'resnet-hub COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"resnet_hub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (*_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # exits for --help, --version and argparse's "invalid choice"
        parser.print_help(sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    module_name, add_name, run_name, summary = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        missing = getattr(e, "name", None)
        if missing == module_name:
            hint = f"this install of resnet_hub has no {module_name}"
        else:
            hint = f"{e} (install the extras: pip install 'resnet_hub[train,hub,test]')"
        print(f"error: resnet-hub {name}: {hint}", file=sys.stderr)
        return 1
    return commands.main(getattr(module, add_name), getattr(module, run_name), summary, rest, prog=f"resnet-hub {name}")


# ----------------------------------------------------------------------------- complexity


def _cache_file() -> Path:
    import timm
    import torch

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "resnet_hub"
    return root / f"complexity-timm{timm.__version__}-torch{torch.__version__.split('+')[0]}.json"


def measure_complexity(name: str) -> dict[str, int]:
    """Parameters and multiply-accumulates of one forward at the config's eval input size, as the
    model card measures them (:func:`resnet_hub.hub.card.measure_complexity`, on the meta device)."""
    import timm
    import torch

    from .hub.card import measure_complexity as measure

    with torch.device("meta"):
        model = timm.create_model(name).eval()
    c = measure(model, model.pretrained_cfg["input_size"][-1])
    return {"params": c.params, "macs": c.macs}


def complexity(names: Sequence[str]) -> dict[str, dict[str, int]]:
    """:func:`measure_complexity` of each config, cached on disk per config file content and timm/torch version."""
    from resnet_hub.atomic import write_json

    from .zoo.configs import load_config

    path = _cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    out, changed = {}, False
    for name in names:
        key = f"{name}:{hashlib.sha256(load_config(name).path.read_bytes()).hexdigest()[:16]}"
        if key not in cache:
            cache[key] = measure_complexity(name)
            changed = True
        out[name] = cache[key]
    if changed:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, cache, indent=1, sort_keys=True)
        except OSError:  # a read-only home: measure again next time
            pass
    return out


# ----------------------------------------------------------------------------- list


def _dataset_names(cfg) -> set[str]:
    return {cfg.results.dataset.lower(), cfg.training.dataset.name.lower(), cfg.labels.lower()}


def select_configs(pattern: Optional[str] = None, dataset: Optional[str] = None) -> list[str]:
    """Config names matching a shell pattern (or a substring) and a dataset name, in the order of
    mmpretrain's tables (:func:`resnet_hub.zoo.configs.zoo_order`)."""
    from .zoo.configs import closest_names, list_configs, load_config, zoo_order

    names = zoo_order(list_configs())
    if pattern:
        glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatchcase(n, glob)]
        if not names:
            hint = closest_names(pattern)
            raise ValueError(f"no config matches {pattern!r}; closest: {', '.join(hint) if hint else 'none'}")
    if dataset:
        known = sorted({d for n in list_configs() for d in _dataset_names(load_config(n))})
        if dataset.lower() not in known:
            raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(known)}")
        names = [n for n in names if dataset.lower() in _dataset_names(load_config(n))]
    return names


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", metavar="PATTERN",
                        help="shell pattern or substring of config names, e.g. 'resnet50*' or cifar")
    parser.add_argument("--dataset", metavar="NAME", help="only configs of this dataset, e.g. imagenet-1k, cifar10")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")


def list_rows(names: Sequence[str]) -> list[dict]:
    from .zoo.configs import load_config

    sizes = complexity(names)
    rows = []
    for name in names:
        cfg = load_config(name)
        rows.append(dict(name=name, dataset=cfg.results.dataset, input_size=cfg.eval.input_size,
                         params_m=round(sizes[name]["params"] / 1e6, 2), gmacs=round(sizes[name]["macs"] / 1e9, 2),
                         top1=cfg.results.top1, top5=cfg.results.top5))
    return rows


def run_list(args: argparse.Namespace) -> int:
    rows = list_rows(select_configs(args.pattern, args.dataset))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    header = ["name", "dataset", "input", "params (M)", "GMACs", "top-1", "top-5"]
    table = [[r["name"], r["dataset"], str(r["input_size"]), f"{r['params_m']:.2f}", f"{r['gmacs']:.2f}",
              f"{r['top1']:.2f}", "-" if r["top5"] is None else f"{r['top5']:.2f}"] for r in rows]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for i, row in enumerate([header, *table]):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("\nGMACs: multiply-accumulates (1 MAC = 2 FLOPs) of one image at the input size, measured from the model; "
          "mmpretrain's 'Flops (G)' counts the same. top-1/top-5: as published by mmpretrain.")
    return 0


# ----------------------------------------------------------------------------- info


def add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="config name, e.g. resnet50_8xb32_in1k (see resnet-hub list)")
    parser.add_argument("--json", action="store_true", help="print the whole config as JSON")


def info(name: str) -> dict:
    """Everything known about config ``name``: its hub_configs fields plus the measured size."""
    from .zoo.configs import hub_repo_id, load_config

    cfg = load_config(name)
    data = dataclasses.asdict(cfg)
    data.pop("path", None)
    data.update(timm_architecture=cfg.architecture_name, hub_repo=hub_repo_id(name), **complexity([name])[name])
    return data


def run_info(args: argparse.Namespace) -> int:
    data = info(args.name)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    e, r, t = data["eval"], data["results"], data["training"]
    resize = ("none (inputs are already %dx%d)" % (e["input_size"], e["input_size"]) if e["resize"] is None else
              f"{e['resize']['mode'].replace('_', ' ')} {e['resize']['size']}, {e['resize']['interpolation']}")
    opt = t["optimizer"]
    lines = [
        ("name", data["name"]),
        ("architecture", f"ResNet-{data['architecture']['depth']}, {data['architecture']['stem']} stem "
                         f"(timm: {data['timm_architecture']})"),
        ("parameters", f"{data['params'] / 1e6:.2f} M"),
        ("GMACs", f"{data['macs'] / 1e9:.2f} (multiply-accumulates at {e['input_size']}x{e['input_size']})"),
        ("classes", f"{data['num_classes']} ({data['labels']})"),
        ("eval transform", f"resize {resize}; center crop {e['center_crop'] or '-'}; {e['channel_order']}; "
                           f"mean {tuple(e['mean'])}, std {tuple(e['std'])}"),
        ("published", f"{r['dataset']} top-1 {r['top1']}" + (f", top-5 {r['top5']}" if r["top5"] is not None else "")),
        ("hub repo", f"{data['hub_repo']}  (timm.create_model('hub:{data['name']}', pretrained=True))"),
        ("original weights", data["checkpoint"]["url"]),
        ("source", f"mmpretrain {data['source']['mmpretrain_version']} {data['source']['config']}"),
        ("paper", f"{data['source']['paper']['title']} (arXiv:{data['source']['paper']['arxiv']})"),
        ("license", data["source"]["license"]),
        ("training", f"{t['epochs']} epochs on {t['dataset']['name']}, batch {t['devices']}x"
                     f"{t['batch_size_per_device']}, {opt['type']} lr {opt['lr']} wd {opt['weight_decay']}, "
                     f"{t['precision']['type']}"),
        ("augmentation", ", ".join(a["type"] for a in t["augmentation"])
         + "".join(f", {b['type']} {b['alpha']}" for b in t["batch_augments"])),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
