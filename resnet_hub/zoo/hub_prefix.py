"""Teach ``timm.create_model`` the ``hub:`` prefix.

``hub:NAME`` (or ``hub:NAME@REVISION``) is registered config ``NAME`` with its weights from the
Hub repo ``{RESNET_HUB_NAMESPACE}/NAME``, the namespace read at call time; what the name means is
:func:`resnet_hub.zoo.names.parse_model_name`'s answer, so a path after ``hub:`` is refused
unread. Weights are fetched by timm's
own ``hf-hub`` loader, so the HF cache, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT`` behave exactly as
for ``hf-hub:`` names, and ``num_classes=``/``in_chans=`` adapt the loaded weights as timm does.

timm 1.0.x has no plugin hook for prefixes, so this wraps the one private function that turns a
name into (architecture, pretrained cfg): ``timm.models._factory._resolve_model_source``. If a
timm release renames or reshapes it, :func:`install` raises at import with what to do, rather
than leaving ``hub:`` names silently unknown.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect

import timm
from timm.models import _factory, get_pretrained_cfg

from .names import name_prefix, parse_model_name

_HOOKED = "_resolve_model_source"
_EXPECTED_PARAMS = ["model_name", "pretrained_cfg", "kwargs", "cache_dir"]


def resolve_hub_name(model_name: str, pretrained_cfg=None):
    """``hub:NAME[@REV]`` -> (``NAME``, its pretrained cfg pointing at the namespace's repo)."""
    parsed = parse_model_name(model_name, allow=("hub",))  # unknown names fail here, with the closest ones
    if pretrained_cfg:
        raise ValueError("pretrained_cfg= cannot be combined with a 'hub:' name; use the plain config name")
    repo_id = f"{parsed.repo}@{parsed.revision}" if parsed.revision else parsed.repo
    return parsed.config, dataclasses.replace(get_pretrained_cfg(parsed.config), hf_hub_id=repo_id)


def install() -> None:
    original = getattr(_factory, _HOOKED, None)
    if original is None or list(inspect.signature(original).parameters) != _EXPECTED_PARAMS:
        raise ImportError(
            f"resnet_hub cannot add the 'hub:' prefix to timm {timm.__version__}: "
            f"timm.models._factory.{_HOOKED}({', '.join(_EXPECTED_PARAMS)}) is missing or changed. "
            "Install the timm range resnet_hub declares (pip install 'timm>=1.0.31,<1.1') "
            "or a resnet_hub release that supports this timm."
        )
    if getattr(original, "__resnet_hub__", False):
        return

    @functools.wraps(original)
    def resolve_model_source(model_name, pretrained_cfg, kwargs, cache_dir=None):
        if isinstance(model_name, str) and name_prefix(model_name) == "hub":
            model_name, pretrained_cfg = resolve_hub_name(model_name, pretrained_cfg)
        return original(model_name, pretrained_cfg, kwargs, cache_dir)

    resolve_model_source.__resnet_hub__ = True
    setattr(_factory, _HOOKED, resolve_model_source)
