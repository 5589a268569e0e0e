"""The stem table: each row agrees with what timm and mmpretrain build, and every view derives from it."""
from __future__ import annotations

import inspect
import typing

import pytest
import timm
import torch
from conftest import requires_mmpretrain
from timm.models import get_pretrained_cfg
from timm.models.resnet import Bottleneck, ResNet

import resnet_hub
from resnet_hub.hub.card import render_card
from resnet_hub.zoo.configs import Architecture, load_config
from resnet_hub.zoo.models import config_pretrained_cfg, model_args
from resnet_hub.zoo.stems import STEMS, stem_of_mmpretrain_type

NAMES = resnet_hub.list_configs()
STOCK = [s for s in STEMS.values() if s.stock_timm]


def _structure(model: torch.nn.Module) -> list:
    return [(n, type(m).__name__, tuple(getattr(m, "weight", torch.empty(0)).shape)) for n, m in model.named_modules()]


def test_the_schema_takes_exactly_the_table_in_its_order():
    assert typing.get_args(typing.get_type_hints(Architecture)["stem"]) == tuple(STEMS) == ("v1", "v1c", "v1d", "cifar")


@pytest.mark.parametrize("stem", STOCK, ids=lambda s: s.name)
def test_stock_rows_build_timms_own_architecture(stem):
    """timm_args on timm's ResNet give timm's resnet50{c,d}, module for module; first_conv is timm's."""
    with torch.device("meta"):
        ours = ResNet(Bottleneck, [3, 4, 6, 3], **stem.timm_args)
        theirs = timm.create_model(stem.architecture(50))
    assert _structure(ours) == _structure(theirs)
    assert get_pretrained_cfg(stem.architecture(50)).first_conv == stem.first_conv
    assert theirs.feature_info[-1]["reduction"] == stem.reduction


def test_cifar_row_is_the_plugins_architecture():
    stem = STEMS["cifar"]
    model = timm.create_model(stem.architecture(18))
    assert type(model) is resnet_hub.zoo.models.CifarResNet and not stem.stock_timm
    assert isinstance(model.get_submodule(stem.first_conv), torch.nn.Conv2d)
    assert model.feature_info[-1]["reduction"] == stem.reduction
    assert model.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 32 // stem.reduction


@pytest.mark.parametrize("name", NAMES)
def test_every_config_view_derives_from_its_row(name):
    cfg = load_config(name)
    stem = STEMS[cfg.architecture.stem]
    assert cfg.stem is stem and cfg.architecture_name == stem.architecture(cfg.architecture.depth)
    assert cfg.is_stock_timm == stem.stock_timm
    args = model_args(cfg)
    assert {k: args[k] for k in stem.timm_args} == dict(stem.timm_args)
    pcfg = config_pretrained_cfg(cfg)
    assert pcfg["first_conv"] == stem.first_conv
    assert pcfg["pool_size"] == (cfg.eval.input_size // stem.reduction,) * 2
    with torch.device("meta"):
        model = timm.create_model(name)
    assert isinstance(model.get_submodule(stem.first_conv), torch.nn.Conv2d)
    assert stem.timm_args.keys() <= set(inspect.signature(ResNet).parameters)
    for timm_module in stem.renames.values():  # every rename lands on a module timm's model has
        model.get_submodule(timm_module)


@pytest.mark.parametrize("stem", STEMS.values(), ids=lambda s: s.name)
def test_card_describes_the_row(stem):
    name = next(n for n in NAMES if load_config(n).architecture.stem == stem.name)
    with torch.device("meta"):
        model = timm.create_model(name)
    text = render_card(load_config(name), model, {"trained_with": "resnet_hub.train"})
    assert f"**Architecture:** {stem.card}." in text and f"`{stem.mmpretrain_type}`" in stem.card


def test_mmpretrain_type_lookup():
    assert [stem_of_mmpretrain_type(s.mmpretrain_type) for s in STEMS.values()] == list(STEMS.values())
    with pytest.raises(ValueError, match="ResNeXt.*ResNetV1c"):
        stem_of_mmpretrain_type("ResNeXt")


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("stem", STEMS.values(), ids=lambda s: s.name)
def test_rows_name_mmpretrains_backbones_and_their_modules(stem):
    from mmpretrain.registry import MODELS

    backbone = MODELS.build(dict(type=stem.mmpretrain_type, depth=50))
    modules = dict(backbone.named_modules())
    missing = [m for m in stem.renames if m not in modules]
    assert not missing, f"{stem.mmpretrain_type} has no {missing}"
