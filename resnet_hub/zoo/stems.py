"""mmpretrain's four ResNet stems, one row each: the one table every stem fact is read from.

The config schema (``architecture.stem``), the timm registry (:mod:`resnet_hub.zoo.models`), the
architecture a config names (``HubConfig.architecture_name``), the converter's key renames
(:mod:`resnet_hub.hub.convert`), the model card's wording (:mod:`resnet_hub.hub.card`) and the
mmpretrain derivation (:mod:`resnet_hub.reference`) all derive from :data:`STEMS`.

``v1`` is timm's plain 7x7 stem, ``v1c`` its deep stem (``stem_type='deep', stem_width=32``),
``v1d`` the deep stem with ``avg_down``; only the CIFAR stem (one 3x3 stride-1 conv, no
max-pool) is this plugin's own, ``CifarResNet``.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Mapping

__all__ = ["Stem", "STEMS", "StemName", "stem_of_mmpretrain_type"]


@dataclass(frozen=True)
class Stem:
    """One stem: what mmpretrain calls it, what timm builds for it, how its keys and card read."""
    name: str  # as hub_configs write it: architecture.stem
    mmpretrain_type: str  # the backbone class of mmpretrain's config
    timm_suffix: str  # the timm architecture is f"resnet{depth}{timm_suffix}"
    timm_args: Mapping[str, Any]  # the timm ResNet constructor arguments that make this stem
    stock_timm: bool  # plain timm has the architecture; False: resnet_hub registers it (CifarResNet)
    first_conv: str  # timm's pretrained-cfg first_conv: the module in_chans= adapts
    reduction: int  # the last feature map's stride
    renames: Mapping[str, str]  # mmpretrain backbone module -> timm module, where they differ
    card: str  # the model card's description of the architecture

    def architecture(self, depth: int) -> str:
        return f"resnet{depth}{self.timm_suffix}"


# mmpretrain's deep stem is stem.{0,1,2}.{conv,bn}; timm's is one conv1 Sequential
# (conv, bn, relu, conv, bn, relu, conv) plus bn1
_DEEP_STEM = {
    "stem.0.conv": "conv1.0", "stem.0.bn": "conv1.1",
    "stem.1.conv": "conv1.3", "stem.1.bn": "conv1.4",
    "stem.2.conv": "conv1.6", "stem.2.bn": "bn1",
}
# v1d's average-pool shortcut: mmpretrain leaves the pool out where the stride is 1 (the first
# block of layer1), timm keeps an Identity there, so mmpretrain's downsample.{0,1} is timm's {1,2}
_AVG_DOWN_FIRST_BLOCK = {"layer1.0.downsample.0": "layer1.0.downsample.1",
                         "layer1.0.downsample.1": "layer1.0.downsample.2"}


def _stem(*, timm_args: Mapping[str, Any] = MappingProxyType({}), renames: Mapping[str, str] = MappingProxyType({}),
          **fields: Any) -> Stem:
    return Stem(timm_args=MappingProxyType(dict(timm_args)), renames=MappingProxyType(dict(renames)), **fields)


STEMS: Mapping[str, Stem] = MappingProxyType({s.name: s for s in (
    _stem(name="v1", mmpretrain_type="ResNet", timm_suffix="", stock_timm=True, first_conv="conv1", reduction=32,
          card="ResNet (mmpretrain `ResNet`): 7x7 stride-2 stem convolution and max-pool, stride in the 3x3 "
               "convolution"),
    _stem(name="v1c", mmpretrain_type="ResNetV1c", timm_suffix="c", stock_timm=True, first_conv="conv1.0",
          reduction=32, timm_args=dict(stem_width=32, stem_type="deep"), renames=_DEEP_STEM,
          card="ResNetV1c (mmpretrain `ResNetV1c`): the 7x7 stem replaced by three 3x3 convolutions "
               "(32, 32, 64 wide)"),
    _stem(name="v1d", mmpretrain_type="ResNetV1d", timm_suffix="d", stock_timm=True, first_conv="conv1.0",
          reduction=32, timm_args=dict(stem_width=32, stem_type="deep", avg_down=True),
          renames={**_DEEP_STEM, **_AVG_DOWN_FIRST_BLOCK},
          card="ResNetV1d (mmpretrain `ResNetV1d`): ResNetV1c's deep stem, plus 2x2 average pooling before each "
               "downsampling shortcut convolution"),
    _stem(name="cifar", mmpretrain_type="ResNet_CIFAR", timm_suffix="_cifar", stock_timm=False, first_conv="conv1",
          reduction=8,
          card="ResNet with mmpretrain's CIFAR stem (`ResNet_CIFAR`): one 3x3 stride-1 stem convolution and no "
               "max-pool, for 32x32 images"),
)})

# the schema type of architecture.stem, in the table's order (which is also the zoo's sort order)
StemName = Literal[tuple(STEMS)]  # type: ignore[valid-type]


def stem_of_mmpretrain_type(backbone_type: str) -> Stem:
    """The stem of an mmpretrain backbone class name (``ResNetV1d`` -> ``v1d``)."""
    for stem in STEMS.values():
        if stem.mmpretrain_type == backbone_type:
            return stem
    raise ValueError(f"mmpretrain backbone {backbone_type!r} is none of this zoo's stems "
                     f"({', '.join(s.mmpretrain_type for s in STEMS.values())})")
