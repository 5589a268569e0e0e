"""Where a fine-tune starts: ``--pretrained`` parsed (pure) and loaded into a fresh model.

``--pretrained`` takes what a user holds::

    hub:resnet18_8xb32_in1k[@REV]      the zoo's weights on the Hub ({namespace}/NAME)
    hf-hub:ORG/REPO[@REV]              any timm Hub bundle
    local-dir:PATH or PATH             a bundle folder (config.json + model.safetensors)
    PATH.safetensors                   a bundle's weights file
    PATH.pth or URL                    an mmpretrain/mmcls checkpoint (backbone; --sha256 / --no-verify)

Bundles load through timm's own pretrained machinery (``pretrained_cfg_overlay=dict(file=...)``
with the source's class count, so that a head of another size is left freshly initialised);
mmpretrain checkpoints through the converter's key mapping (:func:`resnet_hub.hub.convert.load_pretrained_backbone`),
loaded by :mod:`resnet_hub.hub.checkpoint_io` only (nothing unpickled). Every form's keys and shapes
are checked against the model before anything loads.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["PretrainedSource", "parse_pretrained", "load_pretrained", "SAFETENSORS"]

SAFETENSORS = "model.safetensors"
_FORMS = ("hub:NAME[@REV], hf-hub:ORG/REPO[@REV], local-dir:PATH, a bundle folder, a .safetensors file, "
          "an mmpretrain .pth file or URL, or 'none'")


@dataclass(frozen=True)
class PretrainedSource:
    """A parsed ``--pretrained``: which loader, and how it is described without any local path."""
    text: str  # as given (may hold a local path: never printed into cards)
    kind: str  # "hub" | "hf-hub" | "bundle" | "safetensors" | "mmpretrain"
    description: str  # for logs, run.json and cards: "hub:NAME", "local file model.safetensors", ...
    repo: Optional[str] = None  # hub and hf-hub
    revision: Optional[str] = None
    path: Optional[Path] = None  # bundle folder, safetensors or local .pth file
    sha256: Optional[str] = None  # mmpretrain: expected hash (--sha256)
    verify: bool = True  # mmpretrain: check the hash (--no-verify turns it off)
    prefix: Optional[str] = "backbone"  # mmpretrain: the checkpoint's key prefix of the backbone

    @property
    def base_model(self) -> Optional[str]:
        """The Hub repo id of these weights when the name says it (hub:, hf-hub:), else None."""
        return self.repo

    def as_dict(self) -> dict:
        return {"pretrained": self.description, "kind": self.kind, "base_model": self.base_model,
                "revision": self.revision}


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def parse_pretrained(text: Optional[str], *, sha256: Optional[str] = None, verify: bool = True,
                     prefix: Optional[str] = "backbone") -> Optional[PretrainedSource]:
    """What ``--pretrained text`` names (None for none); a ``ValueError``/``FileNotFoundError`` names the forms."""
    from resnet_hub.zoo.names import name_prefix, parse_model_name

    if text is None or text.strip().lower() in ("", "none"):
        return None
    text = text.strip()
    kind = name_prefix(text)
    if kind in ("hub", "hf-hub"):
        name = parse_model_name(text, allow=("hub", "hf-hub"))
        shown = f"{kind}:{name.config if kind == 'hub' else name.repo}" + (f"@{name.revision}" if name.revision else "")
        return PretrainedSource(text, kind, shown, repo=name.repo, revision=name.revision)
    if kind == "local-dir":
        folder = parse_model_name(text, allow=("local-dir",)).path
        return _bundle(text, folder)
    if _is_url(text):
        return PretrainedSource(text, "mmpretrain", text, sha256=sha256, verify=verify, prefix=prefix)
    path = Path(text).expanduser()
    if path.is_dir():
        return _bundle(text, path)
    if not path.is_file():
        raise FileNotFoundError(f"--pretrained {text}: no such file or folder (give {_FORMS})")
    if path.suffix == ".safetensors":
        return PretrainedSource(text, "safetensors", f"local file {path.name}", path=path)
    return PretrainedSource(text, "mmpretrain", f"mmpretrain checkpoint {path.name}", path=path, sha256=sha256,
                            verify=verify, prefix=prefix)


def _bundle(text: str, folder: Path) -> PretrainedSource:
    if not (folder / SAFETENSORS).is_file():
        raise FileNotFoundError(f"--pretrained {text}: no {SAFETENSORS} in that folder (a bundle folder holds "
                                f"config.json and {SAFETENSORS}; give {_FORMS})")
    return PretrainedSource(text, "bundle", f"local folder {folder.resolve().name}", path=folder / SAFETENSORS)


# ----------------------------------------------------------------------------- loading


def _weights_file(source: PretrainedSource) -> Path:
    """The local safetensors file of a bundle source (a Hub one downloaded through huggingface_hub's cache)."""
    if source.path is not None:
        return source.path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(source.repo, SAFETENSORS, revision=source.revision))
    except Exception as e:  # huggingface_hub's many network/offline/not-found errors: one line for the user
        raise ConnectionError(f"--pretrained {source.description}: could not get {SAFETENSORS} from the Hub "
                              f"repo {source.repo} ({type(e).__name__}: {' '.join(str(e).split())[:300]})") from None


def _header(path: Path) -> tuple[dict[str, tuple], dict[str, str]]:
    """Names and shapes of a safetensors file's tensors, and its metadata, from the header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own SafetensorError for a file that is not one
        raise ValueError(f"--pretrained: {path.name} is not a readable safetensors file ({e})") from None


def _check_fits(source: PretrainedSource, shapes: dict, model, classifier: str) -> Optional[int]:
    """Refuse a file whose body does not fit ``model``; returns the file's class count (None: no head)."""
    current = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    body = {k: s for k, s in current.items() if not k.startswith(classifier + ".")}
    missing = sorted(set(body) - set(shapes))
    unexpected = sorted(k for k in set(shapes) - set(body) if not k.startswith(classifier + "."))
    wrong = sorted(k for k in set(body) & set(shapes) if body[k] != shapes[k])
    problems = [f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise ValueError(f"--pretrained {source.description} does not fit this config's architecture "
                         f"({'; '.join(problems)}); give weights of the same architecture as --config")
    head = shapes.get(f"{classifier}.weight")
    return head[0] if head else None


def load_pretrained(create, source: PretrainedSource, *, cfg, num_classes: int) -> tuple:
    """``create(**kwargs)`` (the trainer's model factory) with ``source``'s weights; returns the model and
    the lines that say what was loaded, from where, and what was freshly initialised."""
    if source.kind == "mmpretrain":
        from resnet_hub.hub.convert import load_pretrained_backbone

        model = create()
        load_pretrained_backbone(model, source.text, cfg=cfg, prefix=source.prefix, sha256=source.sha256,
                                 verify=source.verify)
        classifier = model.pretrained_cfg.get("classifier", "fc")
        return model, [f"pretrained: backbone from {source.description} (mmpretrain keys mapped by the converter)",
                       f"new: {classifier} ({num_classes} classes), freshly initialised"]
    path = _weights_file(source)
    if source.kind == "bundle" and (path.parent / "config.json").is_file():
        from resnet_hub.hub.bundle import check_loadable

        check_loadable(path.parent)  # a tampered or broken bundle, as predict and eval refuse it
    shapes, meta = _header(path)
    probe = create()
    classifier = probe.pretrained_cfg.get("classifier", "fc")
    source_classes = _check_fits(source, shapes, probe, classifier)
    del probe
    # timm's own loader: the file, and the source's head size, so that a different --num-classes
    # drops the source head (timm's load_pretrained) instead of failing
    overlay = {"file": str(path), "num_classes": source_classes or num_classes}
    model = create(pretrained=True, pretrained_cfg_overlay=overlay)
    where = f" (sha256 {meta['source_sha256'][:12]}...)" if meta.get("source_sha256") else ""
    lines = [f"pretrained: {source.description}{where}, every weight but the head loaded through timm"]
    if source_classes == num_classes:
        lines[0] = f"pretrained: {source.description}{where}, every weight loaded through timm (head included)"
    else:
        lines.append(f"head: {source_classes or 'none'} -> {num_classes} classes, new ({classifier} freshly "
                     "initialised)")
    return model, lines


def source_facts(source: Optional[PretrainedSource]) -> dict:
    """What the card says of the starting weights: a description without local paths, and base_model when known."""
    if source is None:
        return {}
    facts = {"pretrained": source.description}
    if source.base_model:
        facts["base_model"] = source.base_model
    elif source.kind in ("bundle", "safetensors"):
        base = _bundle_base_model(source.path)
        if base:
            facts["base_model"] = base
    return facts


def _bundle_base_model(path: Path) -> Optional[str]:
    """The Hub repo a local bundle's weights are published under, if its metadata says so: a bundle this
    trainer made carries ``repo_id``; a converted release of a zoo config is that config's Hub repo."""
    try:
        _, meta = _header(path)
    except ValueError:
        return None
    if meta.get("repo_id"):
        return meta["repo_id"]
    config = meta.get("config")
    if config:
        from resnet_hub.hub.card import from_release
        from resnet_hub.zoo.configs import all_configs, hub_repo_id

        cfg = all_configs().get(config)
        if cfg is not None and from_release(cfg, meta):  # the card's own test: sha256 first, else the URL
            return hub_repo_id(config)
    return None


def describe_dataset_name(dataset_name: Optional[str], spec) -> tuple[Optional[str], Optional[str]]:
    """The dataset's name for cards (never a local path) and, when guessed, a line saying so."""
    if dataset_name:
        return dataset_name, None
    if spec.kind == "hub":
        return spec.path, None
    if spec.kind == "imagefolder":
        name = os.path.basename(os.path.normpath(spec.path))
        return name, (f"dataset name: {name!r} (the folder's name; give --dataset-name ORG/NAME to name it on "
                      "the card)")
    return spec.path, None


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
