"""What a model name means: the one parser every entry point asks, as open_clip's ``parse_model_name``.

A name is one of

- a registered config name, ``resnet50_8xb32_in1k`` (the zoo's timm models);
- ``hub:NAME[@REV]``: config ``NAME``, weights from ``{RESNET_HUB_NAMESPACE}/NAME`` on the Hub;
- ``hf-hub:REPO[@REV]``: any timm Hub bundle (timm's own prefix);
- ``local-dir:PATH``: a folder with ``config.json`` + ``model.safetensors`` (timm's own prefix);
- any other timm model name (``resnet50``, ``resnet50.a1_in1k``);
- a YAML file of the config schema, only where a caller accepts one (``load_config``, so the
  trainer's ``--config``).

Which of these a caller takes is its ``allow=``; a name it does not take, or that means nothing,
is a ``ValueError`` naming the closest registered config names. Nothing here reads a file: a
``hub:`` name is a config name, never a path.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Literal, Optional

from .configs import all_configs, closest_names, hub_repo_id

__all__ = ["ModelName", "parse_model_name", "name_prefix", "MODEL_KINDS", "CONFIG_KINDS", "YAML_SUFFIXES"]

Kind = Literal["config", "hub", "hf-hub", "local-dir", "timm", "yaml"]
PREFIXES: dict[str, Kind] = {"hub:": "hub", "hf-hub:": "hf-hub", "hf_hub:": "hf-hub", "local-dir:": "local-dir"}
_FORMS = {"config": "a config name", "hub": "hub:NAME[@REV]", "hf-hub": "hf-hub:REPO", "local-dir": "local-dir:PATH",
          "timm": "a timm model name", "yaml": "a YAML config file"}
MODEL_KINDS: tuple[Kind, ...] = ("config", "hub", "hf-hub", "local-dir", "timm")  # timm.create_model's names
CONFIG_KINDS: tuple[Kind, ...] = ("config", "yaml")  # what load_config (the trainer's --config) takes
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ModelName:
    """A parsed model name: its ``kind`` and what it names."""
    text: str  # the name as given (stripped)
    kind: Kind
    config: Optional[str] = None  # the registered config it names: kinds config and hub
    repo: Optional[str] = None  # the Hub repo id: kinds hub and hf-hub
    revision: Optional[str] = None  # hub:/hf-hub: ...@REV
    path: Optional[Path] = None  # kinds local-dir (a folder) and yaml (a file)


def name_prefix(name: str) -> Optional[Kind]:
    """The kind of ``name``'s prefix (``hub``, ``hf-hub``, ``local-dir``), or None; case-insensitive."""
    lowered = name.strip().lower()
    return next((kind for prefix, kind in PREFIXES.items() if lowered.startswith(prefix)), None)


def _looks_like_file(text: str) -> bool:
    return text.lower().endswith(YAML_SUFFIXES) or "/" in text or os.sep in text


def _unknown(text: str, allow: Collection[Kind]) -> ValueError:
    hint = closest_names(text)
    if not hint and "timm" in allow:
        import timm

        hint = difflib.get_close_matches(text, timm.list_models(), n=3, cutoff=0.6)
    noun = "model" if set(allow) - set(CONFIG_KINDS) else "config"
    forms = ", ".join(_FORMS[k] for k in allow if k != "config")
    return ValueError(f"unknown {noun} {text!r}; closest: {', '.join(hint) if hint else 'none'} "
                      f"(the zoo's {len(all_configs())} names: resnet-hub list, or resnet_hub.list_configs()"
                      f"{'; or ' + forms if forms else ''})")


def _refuse(text: str, kind: Kind, allow: Collection[Kind]) -> ValueError:
    return ValueError(f"{text!r} ({_FORMS[kind]}) is not taken here; give "
                      f"{' or '.join(_FORMS[k] for k in allow)}")


def _hub(text: str, ident: str) -> ModelName:
    if not ident:
        raise ValueError(f"{text!r} names no config: write hub:NAME, e.g. hub:resnet50_8xb32_in1k "
                         "(all names: resnet_hub.list_configs())")
    name, _, revision = ident.partition("@")
    if _looks_like_file(name):  # never read: hub: names a registered config, files go to --config
        raise ValueError(f"{text!r}: hub: takes a registered config name, not a file path "
                         "(a YAML config file is for the trainer's --config)")
    if name not in all_configs():
        raise _unknown(name, ("config",))
    # an invalid RESNET_HUB_NAMESPACE fails here, before any download
    return ModelName(text, "hub", config=name, repo=hub_repo_id(name), revision=revision or None)


def _local_dir(text: str, rest: str) -> ModelName:
    if not rest:
        raise ValueError(f"{text!r} names no folder: write local-dir:PATH")
    folder = Path(rest).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{text}: no such folder {folder}")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{text}: no config.json in {folder} (a local-dir: model is a folder "
                                "with config.json and model.safetensors)")
    return ModelName(text, "local-dir", path=folder)


def _prefixed(text: str, kind: Kind) -> ModelName:
    rest = text.split(":", 1)[1].strip()
    if kind == "hub":
        return _hub(text, rest)
    if kind == "local-dir":
        return _local_dir(text, rest)
    repo, _, revision = rest.partition("@")
    if not repo:
        raise ValueError(f"{text!r} names no repo: write hf-hub:OWNER/NAME")
    return ModelName(text, "hf-hub", repo=repo, revision=revision or None)


def parse_model_name(name: str | os.PathLike, *, allow: Collection[Kind] = MODEL_KINDS) -> ModelName:
    """What ``name`` means (module docstring), if it is one of the kinds in ``allow``.

    Raises ``ValueError`` for an unknown name (with the closest config names) or a kind not in
    ``allow``, ``FileNotFoundError`` for a ``local-dir:`` folder or a YAML file that is not there.
    """
    path_ok = isinstance(name, os.PathLike) and "yaml" in allow  # load_config(Path(...))
    text = os.fspath(name).strip() if isinstance(name, str) or path_ok else None
    if not text:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    kind = name_prefix(text)
    if kind is not None:
        if kind not in allow:
            raise _refuse(text, kind, allow)
        return _prefixed(text, kind)
    if text in all_configs():
        if "config" not in allow:
            raise _refuse(text, "config", allow)
        return ModelName(text, "config", config=text)
    if _looks_like_file(text):  # never a timm name: timm would read "x.yaml" as model x, pretrained tag "yaml"
        if "yaml" not in allow:
            raise _unknown(text, allow)
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no config file {text}")
        return ModelName(text, "yaml", path=path)
    if "timm" in allow:
        import timm

        if timm.is_model(text):
            return ModelName(text, "timm")
    raise _unknown(text, allow)
