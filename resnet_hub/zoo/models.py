"""The mmpretrain ResNet zoo as timm models, on timm's own ``ResNet``.

mmpretrain's stems map onto timm's ``ResNet`` arguments as :data:`resnet_hub.zoo.stems.STEMS`
says; only the CIFAR stem (one 3x3 stride-1 conv, no max-pool) is new, as :class:`CifarResNet`.

Registered here, following ``timm/models/resnet.py``:
- architectures ``resnet{18,34,50,101,152}_cifar`` (the other architectures are timm's);
- one model per ``hub_configs/*.yaml`` named after its config, whose pretrained cfg points at
  ``{RESNET_HUB_NAMESPACE}/{config}`` on the Hugging Face Hub.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from .configs import HubConfig, all_configs, hub_repo_id
from .labels import label_names
from .stems import STEMS

__all__ = ["CifarResNet", "model_args", "config_pretrained_cfg", "LAYERS"]

LAYERS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
_CIFAR_MEAN_STD = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.201))


class CifarResNet(ResNet):
    """ResNet with mmpretrain's ``ResNet_CIFAR`` stem: a 3x3 stride-1 conv and no max-pool.

    Everything else, blocks, head, feature API, is timm's ``ResNet``; feature reductions are
    1, 2, 4, 8 for the four stages instead of 4, 8, 16, 32.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.conv1, nn.Conv2d):
            raise ValueError("CifarResNet takes the plain stem; stem_type must be ''")
        old = self.conv1
        self.conv1 = nn.Conv2d(self.in_chans, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False,
                               device=old.weight.device, dtype=old.weight.dtype)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        self.feature_info = [dict(info, reduction=max(1, info["reduction"] // 4)) for info in self.feature_info]


def model_args(cfg: HubConfig) -> dict[str, Any]:
    """The ``ResNet`` constructor arguments of a config: its variant as data."""
    block, layers = LAYERS[cfg.architecture.depth]
    return dict(block=block, layers=layers, num_classes=cfg.num_classes, **cfg.stem.timm_args)


def _create_resnet(variant: str, pretrained: bool = False, cifar: bool = False, **kwargs: Any) -> ResNet:
    return build_model_with_cfg(CifarResNet if cifar else ResNet, variant, pretrained, **kwargs)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": 10, "input_size": (3, 32, 32), "pool_size": (4, 4), "crop_pct": 1.0,
        "interpolation": "bilinear", "first_conv": "conv1", "classifier": "fc",
        "license": "apache-2.0", "paper_ids": ("arXiv:1512.03385",),
        "paper_name": "Deep Residual Learning for Image Recognition",
        **_CIFAR_MEAN_STD, **kwargs,
    }


def config_pretrained_cfg(cfg: HubConfig) -> dict[str, Any]:
    """The timm pretrained cfg of a config (as a dict): its eval preprocessing, labels, provenance, Hub repo.
    A config of one's own without mmpretrain's release says only what it has (class numbers for names)."""
    e, s = cfg.eval, cfg.source
    release = {} if s is None else dict(
        license=s.license, paper_ids=(f"arXiv:{s.paper.arxiv}",), paper_name=s.paper.title,
        origin_url=f"https://github.com/open-mmlab/mmpretrain/blob/v{s.mmpretrain_version}/{s.config}")
    return _cfg(
        hf_hub_id=hub_repo_id(cfg.name),
        num_classes=cfg.num_classes,
        input_size=(3, e.input_size, e.input_size),
        pool_size=(e.input_size // cfg.stem.reduction,) * 2,
        crop_pct=cfg.crop_pct,
        crop_mode=cfg.crop_mode,
        interpolation=e.resize.interpolation if e.resize else "bilinear",
        mean=e.mean,
        std=e.std,
        first_conv=cfg.stem.first_conv,
        label_names=label_names(cfg.labels) if cfg.labels else tuple(str(i) for i in range(cfg.num_classes)),
        description=(f"mmpretrain {cfg.name}, converted from {cfg.checkpoint.url}" if cfg.checkpoint else
                     f"{cfg.name}: ResNet-{cfg.architecture.depth} ({cfg.architecture_name}), no released weights"),
        **release,
    )


_CIFAR = STEMS["cifar"]
default_cfgs = generate_default_cfgs({
    **{_CIFAR.architecture(depth): _cfg() for depth in LAYERS},
    **{name: config_pretrained_cfg(cfg) for name, cfg in all_configs().items()},
})


def _cifar_entrypoint(depth: int):
    block, layers = LAYERS[depth]
    name = _CIFAR.architecture(depth)

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> ResNet:
        return _create_resnet(name, pretrained, cifar=True, **dict(dict(block=block, layers=layers), **kwargs))

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = f"ResNet-{depth} with mmpretrain's CIFAR stem (3x3 stride-1 conv, no max-pool)."
    return entrypoint


def _config_entrypoint(cfg: HubConfig):
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> ResNet:
        return _create_resnet(cfg.name, pretrained, cifar=cfg.stem is _CIFAR,
                              **dict(model_args(cfg), **kwargs))

    # config names hold '-', so the entrypoint gets its name here rather than from a `def`
    entrypoint.__name__ = entrypoint.__qualname__ = cfg.name
    entrypoint.__doc__ = (f"mmpretrain `{cfg.name}`: ResNet-{cfg.architecture.depth} ({cfg.architecture.stem} stem), "
                          f"{cfg.num_classes} classes of {cfg.labels}, top-1 {cfg.results.top1}.")
    return entrypoint


for _depth in LAYERS:
    register_model(_cifar_entrypoint(_depth))
for _cfg_obj in all_configs().values():
    register_model(_config_entrypoint(_cfg_obj))
del _depth, _cfg_obj
