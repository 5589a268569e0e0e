"""mmpretrain as the executable reference: its configs, metafile and models.

Everything here needs the ``test`` extra (mmpretrain, mmengine, mmcv-lite). The rest of the
package never imports this module; ``hub_configs/*.yaml`` is what it reads at run time, and
:func:`derive_hub_config` is how those files are made and re-checked (``scripts/sync_hub_configs.py``
writes them, ``tests/test_hub_configs.py`` proves they still equal what mmpretrain says).
"""
from __future__ import annotations

import inspect
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from resnet_hub.zoo.stems import stem_of_mmpretrain_type

MMPRETRAIN_VERSION = "1.2.0"
PAPER = {
    "title": "Deep Residual Learning for Image Recognition",
    "url": "https://openaccess.thecvf.com/content_cvpr_2016/html/He_Deep_Residual_Learning_CVPR_2016_paper.html",
    "arxiv": "1512.03385",
}

# What mmpretrain does not say: where each dataset lives on the Hugging Face Hub and its columns.
# CUB-200-2011 has no canonical Hub repo; this one has the 5,994/5,794 train/test split of the
# original release with `image`/`label` columns. Override with --dataset / --image-column.
_HF_DATASETS = {
    "ImageNet": dict(name="imagenet-1k", hf_id="ILSVRC/imagenet-1k", train_split="train",
                     eval_split="validation", image_column="image", label_column="label"),
    "CIFAR10": dict(name="cifar10", hf_id="uoft-cs/cifar10", train_split="train",
                    eval_split="test", image_column="img", label_column="label"),
    "CIFAR100": dict(name="cifar100", hf_id="uoft-cs/cifar100", train_split="train",
                     eval_split="test", image_column="img", label_column="fine_label"),
    "CUB": dict(name="cub-200-2011", hf_id="bentrevett/caltech-ucsd-birds-200-2011",
                train_split="train", eval_split="test", image_column="image", label_column="label"),
}
# Images of these datasets have one native size; their test pipelines do no resizing.
_NATIVE_SIZE = {"CIFAR10": 32, "CIFAR100": 32}
# dataset type -> (label set name used in hub_configs, mmpretrain's category tuple)
LABEL_SETS = {
    "ImageNet": ("imagenet-1k", "IMAGENET_CATEGORIES"),
    "CIFAR10": ("cifar10", "CIFAR10_CATEGORIES"),
    "CIFAR100": ("cifar100", "CIFAR100_CATEGORIES"),
    "CUB": ("cub-200-2011", "CUB_CATEGORIES"),
}


def _require_mmpretrain():
    try:
        import mmpretrain
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this needs mmpretrain, the reference implementation: "
            f"pip install 'mmpretrain=={MMPRETRAIN_VERSION}' mmengine==0.10.7 mmcv-lite==2.2.0 "
            "(or pip install 'resnet_hub[test]')"
        ) from e
    return mmpretrain


def config_dir() -> Path:
    mmpretrain = _require_mmpretrain()
    return Path(mmpretrain.__file__).parent / ".mim" / "configs" / "resnet"


@lru_cache(maxsize=None)
def _metafile() -> dict[str, dict]:
    import yaml

    data = yaml.safe_load((config_dir() / "metafile.yml").read_text())
    return {m["Name"]: m for m in data["Models"]}


def zoo_names() -> list[str]:
    """The config names that mmpretrain's ResNet metafile publishes weights for."""
    return sorted(_metafile())


def load_mmpretrain_config(name: str):
    from mmengine.config import Config

    path = config_dir() / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"mmpretrain {MMPRETRAIN_VERSION} has no config {path.name}")
    return Config.fromfile(str(path))


def label_names(dataset_type: str) -> tuple[str, ...]:
    _require_mmpretrain()
    from mmpretrain.datasets import categories

    return tuple(getattr(categories, LABEL_SETS[dataset_type][1]))


def _defaults(fn) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _plain(value):
    """mmengine ConfigDicts and tuples as plain YAML-friendly values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _mean_std(values) -> list[float]:
    return [round(v / 255.0, 6) for v in values]


def _eval_preprocessing(cfg) -> dict:
    ops = [op for op in cfg.test_pipeline if op["type"] not in ("LoadImageFromFile", "PackInputs")]
    pre = cfg.data_preprocessor
    out: dict[str, Any] = {"resize": None, "crop": None}
    for op in ops:
        kind = op["type"]
        if kind == "ResizeEdge":
            if op.get("edge", "short") != "short":
                raise ValueError(f"unsupported ResizeEdge edge {op['edge']!r}")
            out["resize"] = dict(mode="shorter_edge", size=op["scale"],
                                 interpolation=op.get("interpolation", "bilinear"),
                                 backend=op.get("backend", "cv2"))
        elif kind == "Resize":
            scale = op["scale"]
            if not isinstance(scale, int) or op.get("keep_ratio", False):
                raise ValueError(f"unsupported Resize {dict(op)}")
            out["resize"] = dict(mode="square", size=scale,
                                 interpolation=op.get("interpolation", "bilinear"),
                                 backend=op.get("backend", "cv2"))
        elif kind == "CenterCrop":
            out["crop"] = op["crop_size"]
        else:
            raise ValueError(f"unsupported test transform {kind}")
    size = out["crop"] or _NATIVE_SIZE[cfg.dataset_type]
    return {
        "input_size": size,
        "resize": out["resize"],
        "center_crop": out["crop"],
        # LoadImageFromFile gives BGR and to_rgb flips it; CIFAR arrays are RGB and are kept.
        "channel_order": "RGB",
        "mean": _mean_std(pre["mean"]),
        "std": _mean_std(pre["std"]),
    }


def _train_pipeline(cfg) -> list[dict]:
    from mmpretrain.datasets import transforms as T

    ops = []
    for op in cfg.train_pipeline:
        op = dict(op)
        kind = op.pop("type")
        if kind in ("LoadImageFromFile", "PackInputs"):
            continue
        if kind == "RandomResizedCrop":
            d = _defaults(T.RandomResizedCrop.__init__)
            ops.append(dict(type="random_resized_crop", size=op["scale"],
                            scale=list(op.get("crop_ratio_range", d["crop_ratio_range"])),
                            ratio=[round(float(x), 6) for x in op.get("aspect_ratio_range", d["aspect_ratio_range"])],
                            interpolation=op.get("interpolation", d["interpolation"]),
                            backend=op.get("backend", d["backend"])))
        elif kind == "RandomFlip":
            if op.get("direction", "horizontal") != "horizontal":
                raise ValueError(f"unsupported flip {op}")
            ops.append(dict(type="horizontal_flip", prob=op["prob"]))
        elif kind == "RandAugment":
            hp = op.get("hparams", {})
            ops.append(dict(type="rand_augment", policies=op["policies"], num_policies=op["num_policies"],
                            total_level=op["total_level"], magnitude_level=op["magnitude_level"],
                            magnitude_std=op["magnitude_std"],
                            # pad_val is given in the BGR order the images are loaded in
                            fill=list(reversed(hp["pad_val"])),
                            interpolation=hp.get("interpolation", "bilinear")))
        elif kind == "RandomCrop":
            d = _defaults(T.RandomCrop.__init__)
            ops.append(dict(type="random_crop", size=op["crop_size"], padding=op.get("padding", d["padding"]),
                            pad_mode=op.get("padding_mode", d["padding_mode"]), fill=op.get("pad_val", d["pad_val"])))
        elif kind == "Resize":
            ops.append(dict(type="resize", size=[op["scale"], op["scale"]],
                            interpolation=op.get("interpolation", "bilinear")))
        else:
            raise ValueError(f"unsupported train transform {kind}")
    return ops


def _optimizer(cfg) -> dict:
    from mmpretrain.engine.optimizers import Lamb

    wrapper = cfg.optim_wrapper
    opt = dict(wrapper["optimizer"])
    kind = opt.pop("type")
    if kind == "SGD":
        out = dict(type="sgd", lr=opt["lr"], momentum=opt.get("momentum", 0.0),
                   weight_decay=opt.get("weight_decay", 0.0), nesterov=opt.get("nesterov", False))
    elif kind == "Lamb":
        d = _defaults(Lamb.__init__)
        out = dict(type="lamb", lr=opt["lr"], weight_decay=opt.get("weight_decay", d["weight_decay"]),
                   betas=list(opt.get("betas", d["betas"])), eps=opt.get("eps", d["eps"]),
                   max_grad_norm=opt.get("max_grad_norm", d["max_grad_norm"]))
    else:
        raise ValueError(f"unsupported optimizer {kind}")
    paramwise = wrapper.get("paramwise_cfg", {}) or {}
    no_decay = [k for k, key in (("bias", "bias_decay_mult"), ("norm", "norm_decay_mult"))
                if paramwise.get(key, 1.0) == 0.0]
    out["no_weight_decay"] = no_decay
    return out


def _lr_schedule(cfg) -> list[dict]:
    scheds = cfg.param_scheduler
    scheds = scheds if isinstance(scheds, (list, tuple)) else [scheds]
    out = []
    for s in scheds:
        s = dict(s)
        kind = s.pop("type")
        if not s.get("by_epoch", True):
            raise ValueError("iteration-based schedules are not used by this zoo")
        begin, end = s.get("begin", 0), s.get("end", cfg.train_cfg.max_epochs)
        if kind == "LinearLR":
            out.append(dict(type="linear", begin=begin, end=end, start_factor=s["start_factor"],
                            end_factor=s.get("end_factor", 1.0),
                            per_iteration=bool(s.get("convert_to_iter_based", False))))
        elif kind == "CosineAnnealingLR":
            out.append(dict(type="cosine", begin=begin, end=end, t_max=s.get("T_max", end - begin),
                            eta_min=float(s.get("eta_min", 0.0)),
                            per_iteration=bool(s.get("convert_to_iter_based", False))))
        elif kind == "MultiStepLR":
            out.append(dict(type="multistep", begin=begin, end=end, milestones=list(s["milestones"]),
                            gamma=s.get("gamma", 0.1)))
        else:
            raise ValueError(f"unsupported scheduler {kind}")
    return out


def _loss(cfg) -> dict:
    loss = dict(cfg.model.head.loss)
    kind = loss.pop("type")
    sigmoid = bool(loss.get("use_sigmoid", False))
    if kind == "CrossEntropyLoss":
        smoothing, mode = 0.0, None
    elif kind == "LabelSmoothLoss":
        smoothing, mode = loss["label_smooth_val"], loss.get("mode", "original")
    else:
        raise ValueError(f"unsupported loss {kind}")
    return dict(type="bce" if sigmoid else "cross_entropy", label_smoothing=smoothing, smoothing_mode=mode)


def _training(name: str, cfg) -> dict:
    from mmpretrain.datasets.samplers import RepeatAugSampler

    match = re.search(r"(\d+)xb(\d+)", name)
    devices, per_device = int(match.group(1)), int(match.group(2))
    if per_device != cfg.train_dataloader.batch_size:
        raise ValueError(f"{name}: name says batch {per_device}, config {cfg.train_dataloader.batch_size}")
    sampler = dict(cfg.train_dataloader.sampler)
    if sampler["type"] == "RepeatAugSampler":
        sampler_out = dict(type="repeat_aug",
                           num_repeats=sampler.get("num_repeats", _defaults(RepeatAugSampler.__init__)["num_repeats"]))
    else:
        sampler_out = dict(type="default")
    wrapper = cfg.optim_wrapper
    if wrapper.get("type") == "AmpOptimWrapper":
        precision = dict(type="fp16", loss_scale=wrapper.get("loss_scale", "dynamic"))
    else:
        precision = dict(type="fp32", loss_scale=None)
    backbone = cfg.model.backbone
    init = backbone.get("init_cfg")
    init_from = None
    if init and init.get("type") == "Pretrained":
        init_from = dict(url=init["checkpoint"], prefix=init.get("prefix"))
    augments = (cfg.model.get("train_cfg") or {}).get("augments") or []
    if isinstance(augments, dict):
        augments = [augments]
    return dict(
        dataset=dict(_HF_DATASETS[cfg.dataset_type]),
        epochs=cfg.train_cfg.max_epochs,
        devices=devices,
        batch_size_per_device=per_device,
        lr_base_batch_size=cfg.auto_scale_lr.base_batch_size,
        optimizer=_optimizer(cfg),
        lr_schedule=_lr_schedule(cfg),
        loss=_loss(cfg),
        batch_augments=[dict(type=a["type"].lower(), alpha=a["alpha"]) for a in augments],
        augmentation=_train_pipeline(cfg),
        sampler=sampler_out,
        drop_path_rate=float(backbone.get("drop_path_rate", 0.0)),
        sync_bn=backbone.get("norm_cfg", {}).get("type") == "SyncBN",
        precision=precision,
        init_from=init_from,
    )


def derive_hub_config(name: str) -> dict:
    """The hub_configs record of ``name``, read from mmpretrain's config and metafile."""
    meta = _metafile().get(name)
    if meta is None:
        raise KeyError(f"{name} is not in mmpretrain's ResNet metafile")
    cfg = load_mmpretrain_config(name)
    model = cfg.model
    backbone = model.backbone
    if model.type != "ImageClassifier" or model.neck.type != "GlobalAveragePooling" \
            or model.head.type != "LinearClsHead":
        raise ValueError(f"{name}: not a plain ImageClassifier + GAP + LinearClsHead")
    if backbone.get("style", "pytorch") != "pytorch" or backbone.get("num_stages", 4) != 4:
        raise ValueError(f"{name}: unsupported backbone {dict(backbone)}")
    weights = meta["Weights"]
    file_name = weights.rsplit("/", 1)[-1]
    prefix = re.search(r"-([0-9a-f]{8})\.pth$", file_name)
    metrics = meta["Results"][0]["Metrics"]
    return {
        "name": name,
        "source": {
            "mmpretrain_version": MMPRETRAIN_VERSION,
            "config": meta["Config"],
            "paper": dict(PAPER),
            "license": "apache-2.0",
        },
        "architecture": {"depth": backbone.depth, "stem": stem_of_mmpretrain_type(backbone.type).name},
        "num_classes": model.head.num_classes,
        "labels": LABEL_SETS[cfg.dataset_type][0],
        "eval": _eval_preprocessing(cfg),
        "checkpoint": {
            "url": weights,
            "sha256_prefix": prefix.group(1) if prefix else None,
            "sha256": None,
        },
        "results": {
            "dataset": meta["Results"][0]["Dataset"],
            "top1": metrics["Top 1 Accuracy"],
            "top5": metrics.get("Top 5 Accuracy"),
        },
        "training": _plain(_training(name, cfg)),
    }


_HEADER = ("# Derived from mmpretrain {version} ({config}) by scripts/sync_hub_configs.py.\n"
           "# Schema: resnet_hub/configs.py. Values are mmpretrain's; mean/std are on a 0-1 scale.\n")


def expected_files(config_out: Path, labels_out: Path) -> dict[Path, str]:
    """Path -> text of every hub_configs YAML and label file, as mmpretrain says they should be.

    A full sha256 already recorded in an existing YAML is kept: it is measured from the
    released file, which mmpretrain does not publish.
    """
    import yaml

    files = {}
    for dataset_type, (label_set, _) in LABEL_SETS.items():
        files[labels_out / f"{label_set}.txt"] = "".join(f"{n}\n" for n in label_names(dataset_type))
    for name in zoo_names():
        record = derive_hub_config(name)
        path = config_out / f"{name}.yaml"
        if path.is_file():
            old = yaml.safe_load(path.read_text()) or {}
            record["checkpoint"]["sha256"] = (old.get("checkpoint") or {}).get("sha256")
        header = _HEADER.format(version=MMPRETRAIN_VERSION, config=record["source"]["config"])
        files[path] = header + yaml.safe_dump(record, sort_keys=False, width=100)
    return files


def build_mmpretrain_model(name: str, num_classes: int | None = None):
    """mmpretrain's own model for config ``name``, randomly initialised, in eval mode; with a head of
    ``num_classes`` in place of the config's when given (a fine-tune of that config)."""
    _require_mmpretrain()
    from mmpretrain.models import build_classifier
    from mmpretrain.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    cfg = load_mmpretrain_config(name)
    model_cfg = cfg.model
    if num_classes is not None:
        model_cfg.head.num_classes = num_classes
    # a fresh build must not try to download the CUB run's ImageNet-21k initialisation
    model_cfg.backbone.pop("init_cfg", None)
    if model_cfg.backbone.get("norm_cfg", {}).get("type") == "SyncBN":
        model_cfg.backbone.norm_cfg = dict(type="BN", requires_grad=True)
    model_cfg.pop("train_cfg", None)
    model_cfg.setdefault("data_preprocessor", dict(cfg.data_preprocessor))
    return build_classifier(model_cfg).eval()
