"""Image embeddings: the pooled features a zoo model's classifier reads (timm's
``forward_head(forward_features(x), pre_logits=True)``), for retrieval, clustering or a linear probe.

>>> from resnet_hub.embed import embed_images
>>> vectors = embed_images("hub:resnet50_8xb32_in1k", ["cat.jpg", "dog.jpg"])   # numpy (2, 2048)

Images go through the model's eval transform, as ``predict`` does; the model runs with BatchNorm
folded (:func:`resnet_hub.inference.fold_batchnorm`). ``add_arguments`` / ``run`` are the
``resnet-hub embed`` command, which saves the vectors to ``.safetensors`` or ``.npy``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from .commands import positive_int
from .inference import ImageInput, fold_batchnorm, get_model, preprocess

__all__ = ["PreLogits", "embed_images", "save_embeddings", "OUTPUT_SUFFIXES", "add_arguments", "run"]

OUTPUT_SUFFIXES = (".safetensors", ".npy")


class PreLogits(torch.nn.Module):
    """A timm classifier's pooled pre-logits features as its forward: ``forward_head(..., pre_logits=True)``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def embed_images(model: Union[str, torch.nn.Module], images: Sequence[ImageInput], batch_size: int = 16,
                 pretrained: Union[bool, str, os.PathLike] = True) -> np.ndarray:
    """Float32 embeddings, (len(images), num_features), of ``images`` (paths, PIL images or RGB arrays)
    under ``model`` (a name as ``predict`` takes, with ``pretrained`` as there, or a timm model)."""
    if isinstance(model, str):
        model = get_model(model, pretrained=pretrained)
    if not hasattr(model, "forward_head"):
        raise ValueError(f"{type(model).__name__} has no forward_head: embeddings need a timm classifier")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    was_training = model.training
    model.eval()
    features = fold_batchnorm(PreLogits(model)).eval()
    model.train(was_training)
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(features(preprocess(images[start:start + batch_size], model, device)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_features), np.float32)


def save_embeddings(path: Union[str, os.PathLike], embeddings: np.ndarray, names: Sequence[str]) -> Path:
    """``embeddings`` to ``.safetensors`` (tensor ``embeddings``, the image names in the metadata) or ``.npy``,
    whole or not at all."""
    from .atomic import replacing

    path = Path(path)
    if path.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--output must end in {' or '.join(OUTPUT_SUFFIXES)}; got {path.name}")
    with replacing(path) as tmp:
        if path.suffix == ".npy":
            np.save(tmp, embeddings)
        else:
            import json

            from safetensors.numpy import save_file

            save_file({"embeddings": np.ascontiguousarray(embeddings)}, str(tmp),
                      metadata={"images": json.dumps(list(names))})
    return path


# ----------------------------------------------------------------------------- resnet-hub embed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .inference import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files or directories of images")
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="where to save the (N, num_features) float32 embeddings: .safetensors or .npy")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass")


def run(args: argparse.Namespace) -> int:
    from .inference import expand_images, model_from_args

    if Path(args.output).suffix not in OUTPUT_SUFFIXES:  # before any download
        raise ValueError(f"--output must end in {' or '.join(OUTPUT_SUFFIXES)}; got {args.output}")
    paths = expand_images(args.images)
    embeddings = embed_images(model_from_args(args), paths, batch_size=args.batch_size)
    save_embeddings(args.output, embeddings, [str(p) for p in paths])
    print(f"wrote {args.output}: {embeddings.shape[0]} embeddings of {embeddings.shape[1]} float32 "
          "(pooled features before the classifier)")
    return 0
