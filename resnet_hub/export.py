"""Export a zoo model for deployment: ONNX (ONNX Runtime, OpenVINO, optimum, transformers.js) or a
``torch.export`` program (``.pt2``, loaded with torch alone), each checked against the timm model
before it is written.

>>> from resnet_hub.export import export_model
>>> export_model("hub:resnet50_8xb32_in1k", "deploy/", formats=("onnx", "pt2"))

What goes out is what inference runs: the model ``predict`` loads (:func:`resnet_hub.inference.get_model`),
in eval mode, BatchNorm folded into the convolutions (:func:`resnet_hub.inference.fold_batchnorm`),
float32, one NCHW input ``pixel_values`` with a dynamic batch dimension and one output ``logits``
(the names optimum and transformers.js read). The ONNX comes from ``torch.onnx.export(...,
dynamo=True)`` on the same ``torch.export`` program as the ``.pt2``. Beside it, ``preprocessing.json``
says what a deployer must do to an image without timm (resize, crop, interpolation, scale, mean/std,
channel order) and the class names, derived from the transform ``predict`` runs.

Each file is run (ONNX Runtime for ``.onnx``, ``torch.export.load`` for ``.pt2``) on a batch of a
size other than the one traced, and compared with the timm model; a file whose logits differ by
more than :data:`TOLERANCE` is not written (:class:`ExportMismatchError` says by how much). Files
appear whole or not at all (:mod:`resnet_hub.atomic`).

``add_arguments`` / ``run`` are the ``resnet-hub export`` command.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .atomic import replacing, replacing_dir, write_json
from .inference import fold_batchnorm, get_model

__all__ = ["FORMATS", "MODEL_FILES", "PREPROCESSING_FILE", "TOLERANCE", "ExportedFile", "ExportMismatchError",
           "export_model", "export_program", "to_onnx", "run_exported", "preprocessing_spec",
           "add_arguments", "run"]

FORMATS = ("onnx", "pt2")
MODEL_FILES = {"onnx": "model.onnx", "pt2": "model.pt2"}  # onnx/model.onnx on the Hub: optimum's path
PREPROCESSING_FILE = "preprocessing.json"
INPUT_NAME, OUTPUT_NAME = "pixel_values", "logits"
# max |exported - timm| / max(1, max |timm|) over a checked batch. Measured (every architecture of the zoo, random
# weights with random BatchNorm statistics, float32, AVX2-only EPYC): at most 1.5e-7 (ResNet-34, ONNX Runtime),
# from folding BatchNorm and from the runtimes' own kernels; kept 100x above that, for other CPUs' kernels and real
# weights' larger logits. A wrong graph (a BatchNorm lost, a wrong stem) is off by the logits' own size.
TOLERANCE = 1e-5
_CHECK_BATCH = 3  # not the traced batch (2): the check also proves the batch dimension is dynamic


class ExportMismatchError(ValueError):
    """An exported file's logits are not the timm model's; nothing was written."""


@dataclass(frozen=True)
class ExportedFile:
    format: str
    path: Path
    max_abs_diff: float  # max |exported - timm| on the check batch
    relative_diff: float  # max_abs_diff / max(1, max |timm|), what TOLERANCE bounds
    opset: Optional[int]  # the ONNX default-domain opset; None for .pt2


def export_program(model: torch.nn.Module, input_size: Optional[Sequence[int]] = None
                   ) -> torch.export.ExportedProgram:
    """``model`` with BatchNorm folded, in eval mode and float32, as a ``torch.export`` program whose
    batch dimension is dynamic. ``input_size`` (C, H, W) defaults to the model's pretrained cfg."""
    folded = fold_batchnorm(model).float().eval()
    example = torch.randn(2, *_input_size(model, input_size))
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        return torch.export.export(folded, (example,), dynamic_shapes=({0: batch},))


def to_onnx(program: torch.export.ExportedProgram):
    """The ``torch.onnx.export(..., dynamo=True)`` ONNX program of an exported program (its ``.save(path)``
    writes it; the opset is ``opset(program)``). The exporter's progress lines go to nothing."""
    with contextlib.redirect_stdout(io.StringIO()):
        return torch.onnx.export(program, dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                 verbose=False)


def run_exported(path: Union[str, Path], images: np.ndarray, threads: Optional[int] = None) -> np.ndarray:
    """Logits of an exported file (``.onnx`` in ONNX Runtime's CPU provider, ``.pt2`` via
    ``torch.export.load``) for a float32 NCHW batch."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: images})[0]
    with torch.no_grad():
        return torch.export.load(str(path)).module()(torch.from_numpy(images)).numpy()


def _input_size(model: torch.nn.Module, input_size: Optional[Sequence[int]]) -> tuple[int, ...]:
    size = tuple(input_size or model.pretrained_cfg["input_size"])
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input_size is (channels, height, width); got {size}")
    return size


def _check(path: Path, model: torch.nn.Module, images: np.ndarray, expected: np.ndarray, fmt: str,
           tolerance: float) -> tuple[float, float]:
    got = run_exported(path, images)
    if got.shape != expected.shape:
        raise ExportMismatchError(f"the exported {fmt} gives logits of shape {got.shape}, timm's are {expected.shape}; "
                                  "nothing written")
    diff = float(np.abs(got.astype(np.float64) - expected).max())
    relative = diff / max(1.0, float(np.abs(expected).max()))
    if not relative <= tolerance:  # NaN fails too
        raise ExportMismatchError(f"the exported {fmt}'s logits differ from the timm model's by up to {diff:.3g} "
                                  f"(relative {relative:.3g}, tolerance {tolerance:g}); nothing written")
    return diff, relative


def _write_checked(fmt: str, program, target: Path, model, images, expected, tolerance) -> ExportedFile:
    """Write one format to ``target`` whole, only if its logits match; the ONNX opset it used."""
    opset = None
    with replacing(target) as tmp:
        if fmt == "onnx":
            onnx_program = to_onnx(program)
            opset = int(onnx_program.model.opset_imports[""])
            onnx_program.save(str(tmp))
        else:
            torch.export.save(program, str(tmp))
        diff, relative = _check(tmp, model, images, expected, fmt, tolerance)
    return ExportedFile(fmt, target, diff, relative, opset)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(f"ONNX export needs onnx, onnxscript and onnxruntime ({e}): "
                          "pip install 'resnet_hub[export]'") from None


def export_model(model: Union[str, torch.nn.Module], output_dir: Union[str, Path],
                 formats: Union[str, Sequence[str]] = ("onnx",), *, pretrained: Union[bool, str] = True,
                 input_size: Optional[Sequence[int]] = None, tolerance: float = TOLERANCE) -> dict[str, ExportedFile]:
    """Export ``model`` (a name as ``predict`` takes, or a timm model on the CPU) into ``output_dir``:
    ``model.onnx`` and/or ``model.pt2`` (``formats``) and ``preprocessing.json``. Each model file is
    written only if its logits match the timm model's within ``tolerance`` (see :data:`TOLERANCE`),
    else :class:`ExportMismatchError`. ``pretrained`` applies to a name, as in :func:`get_model`;
    ``input_size`` (C, H, W) only sets the traced and checked size (the batch is dynamic either way)."""
    formats = (formats,) if isinstance(formats, str) else tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"export formats are {', '.join(FORMATS)}; got {', '.join(map(repr, unknown or formats))}")
    if "onnx" in formats:
        _require_onnx()  # before any download
    if isinstance(model, str):
        model = get_model(model, pretrained=pretrained)
    if any(t.device.type != "cpu" for t in model.parameters()):
        raise ValueError("export runs on the CPU: pass model.cpu()")
    was_training = model.training
    try:
        model.eval()
        program = export_program(model, input_size)
        images = np.random.default_rng(0).standard_normal((_CHECK_BATCH, *_input_size(model, input_size)),
                                                          dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(images)).double().numpy()
    finally:
        model.train(was_training)
    out = Path(output_dir)
    _check_export_dir(out)
    # the folder appears whole, as a bundle does: built beside it and swapped in (resnet_hub.atomic.replacing_dir)
    with replacing_dir(out) as tmp:
        files = {fmt: _write_checked(fmt, program, tmp / MODEL_FILES[fmt], model, images, expected, tolerance)
                 for fmt in formats}
        write_json(tmp / PREPROCESSING_FILE, dict(preprocessing_spec(model), files={
            f.format: dict(file=f.path.name, opset=f.opset, max_abs_diff_vs_timm=f.max_abs_diff)
            for f in files.values()}))
    return {fmt: dataclasses.replace(f, path=out / f.path.name) for fmt, f in files.items()}


def _check_export_dir(out: Path) -> None:
    """An export replaces its folder whole: refuse one holding anything but an export's files."""
    known = {*MODEL_FILES.values(), PREPROCESSING_FILE}
    other = sorted(p.name for p in out.iterdir() if p.name not in known) if out.is_dir() else []
    if other:
        raise FileExistsError(f"{out} holds {', '.join(other[:5])}, which is not part of an export; the folder is "
                              "replaced whole: choose an empty or new --output folder")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a folder")


def preprocessing_spec(model: torch.nn.Module) -> dict:
    """What to do to an image before the exported model, without timm: the transform ``predict`` runs
    (:func:`resnet_hub.inference.eval_transform`) in words a deployer can follow, and the class names."""
    from timm.data import resolve_data_config
    from torchvision import transforms as T

    from .inference import eval_transform

    data_cfg = resolve_data_config({}, model=model)
    spec: dict = dict(input=dict(name=INPUT_NAME, layout="NCHW", dtype="float32", channel_order="RGB",
                                 size=list(data_cfg["input_size"][1:])),
                      output=dict(name=OUTPUT_NAME, meaning="class logits; softmax gives probabilities"),
                      resize=None, center_crop=None)
    for step in eval_transform(model).transforms:
        if isinstance(step, T.Resize):
            size = [step.size] if isinstance(step.size, int) else list(step.size)
            spec["resize"] = dict(size=size[0] if len(size) == 1 else size,
                                  edge="shorter (aspect kept)" if len(size) == 1 else "both (aspect not kept)",
                                  interpolation=step.interpolation.value, antialias=bool(step.antialias))
        elif isinstance(step, T.CenterCrop):
            spec["center_crop"] = list(step.size)
    spec.update(rescale_factor=1 / 255, mean=list(data_cfg["mean"]), std=list(data_cfg["std"]),
                steps="decode as RGB -> resize -> center crop -> x / 255 -> (x - mean) / std per channel -> NCHW")
    names = model.pretrained_cfg.get("label_names") if hasattr(model, "pretrained_cfg") else None
    spec["labels"] = list(names) if names and len(names) == getattr(model, "num_classes", len(names)) else None
    return spec


# ----------------------------------------------------------------------------- resnet-hub export


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .inference import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=["onnx"], dest="formats",
                        help="onnx (ONNX Runtime, OpenVINO, optimum) and/or pt2 (torch.export, torch alone)")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for model.onnx / model.pt2 and preprocessing.json (created if missing)")


def run(args: argparse.Namespace) -> int:
    from .inference import model_from_args

    if "onnx" in args.formats:
        _require_onnx()
    files = export_model(model_from_args(args), args.output, args.formats)
    for f in files.values():
        what = f"ONNX opset {f.opset}" if f.opset else "torch.export program"
        print(f"wrote {f.path} ({what}, {f.path.stat().st_size / 1e6:.1f} MB): logits within {f.max_abs_diff:.2g} "
              f"of the timm model's (relative {f.relative_diff:.2g}, tolerance {TOLERANCE:g})")
    print(f"wrote {Path(args.output) / PREPROCESSING_FILE}")
    return 0
