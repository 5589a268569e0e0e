"""What runs the BN-folded model in ``inference_model`` / ``predict``: eager PyTorch, an inductor-compiled
copy, or ONNX Runtime; and which memory layout each CPU wants.

Measured figures these choices follow (ResNet-50, fp32, batch 16, 2 threads, 2-core AVX2-only AMD EPYC, quiet
machine; issue 19's measurements and benchmarks/RESULTS.md):

- eager, BN-folded: contiguous 6.29 img/s vs channels_last about 10% slower; channels_last wins on AVX-512
  (oneDNN's blocked kernels), hence :func:`cpu_channels_last`.
- ``torch.compile`` (inductor, ``freezing=True``): 1.45-1.95x eager once compiled, after a compile of about
  2 minutes per model, batch size and process (inductor's on-disk cache shortens later processes' compiles).
- ONNX Runtime (CPU provider, 2 intra-op threads) on the ``torch.onnx.export(..., dynamo=True)`` graph:
  about 19 img/s against 9 for timm eager, with an export of seconds.

So ``auto`` is ONNX Runtime on a CPU where it is installed (fastest measured, no minutes-long compile), else eager;
``compile`` is there for long-running processes where its compile is paid once. OpenVINO 2026.4, the other x86
CPU runtime, on the same exported ONNX file (ResNet-50, batch 16, 2 threads, f32, model alone, 3 interleaved
rounds on the AVX2-only EPYC while other jobs loaded it): 5.19 img/s against ONNX Runtime's 5.80 and timm eager's
2.68, agreeing with ONNX Runtime to 1.3e-7. It won nowhere measured, so it is not a backend.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import torch

__all__ = ["BACKENDS", "resolve_backend", "cpu_channels_last", "prepare_forward"]

BACKENDS = ("eager", "compile", "onnxruntime", "auto")


def cpu_channels_last() -> bool:
    """Whether channels_last pays on this CPU: with AVX-512 (or better) yes, on AVX2 it loses about 10%."""
    return torch.backends.cpu.get_cpu_capability() not in ("DEFAULT", "AVX2", "NO AVX", "ZVECTOR", "VSX")


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device, precision: str) -> str:
    """``backend`` checked, with ``auto`` resolved for ``device`` and ``precision`` (see the module's figures)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" and precision == "fp32" and _has_onnxruntime() else "eager"
    if backend == "onnxruntime":
        if device.type != "cpu" or precision != "fp32":
            raise ValueError(f"the onnxruntime backend runs fp32 on the CPU; got {precision} on {device}")
        if not _has_onnxruntime():
            raise ImportError("the onnxruntime backend needs onnxruntime and onnxscript: "
                              "pip install 'resnet_hub[export]'")
    return backend


class _Padded:
    """A compiled forward for one batch size: smaller batches (the last one) are padded, so nothing recompiles."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor]):
        self.forward, self.batch = forward, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.batch is None or n > self.batch:
            self.batch = n
        if n < self.batch:
            pad = x.new_zeros((self.batch - n, *x.shape[1:])).to(memory_format=_layout(x))
            x = torch.cat([x, pad]).to(memory_format=_layout(x))
        return self.forward(x)[:n]


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format


class _OnnxRuntime:
    """The model exported to ONNX in memory (:mod:`resnet_hub.export`), run by ONNX Runtime's CPU provider."""

    def __init__(self, model: torch.nn.Module, input_size: Sequence[int]):
        import onnxruntime as ort

        from .export import INPUT_NAME, export_program, to_onnx

        proto = to_onnx(export_program(model, input_size)).model_proto.SerializeToString()
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same cores torch would use
        self.session = ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])
        self.input_name = INPUT_NAME

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.contiguous().numpy()})[0])


def prepare_forward(model: torch.nn.Module, folded: torch.nn.Module, backend: str,
                    input_size: Optional[Sequence[int]] = None) -> tuple[Callable, float]:
    """(forward, seconds it took to prepare) for ``backend`` (resolved): ``folded`` as is (eager), compiled by
    inductor with freezing (compiled on its first batch; its compile time is measured there, see
    :class:`Compiled`), or exported to ONNX Runtime from ``model`` (the export's seconds returned)."""
    start = time.perf_counter()
    if backend == "onnxruntime":
        return _OnnxRuntime(model, input_size or model.pretrained_cfg["input_size"]), time.perf_counter() - start
    if backend == "compile":
        return Compiled(folded), 0.0
    return folded, 0.0


class Compiled:
    """``folded`` compiled by inductor with ``freezing=True`` (weights as constants, conv+BN+ReLU fused by
    oneDNN), padded to one batch size; ``compile_seconds`` is what the first call cost beyond a forward."""

    def __init__(self, folded: torch.nn.Module):
        self.compile_seconds: Optional[float] = None
        self._padded = _Padded(torch.compile(folded, backend="inductor", options={"freezing": True}))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compile_seconds is None:
            start = time.perf_counter()
            out = self._padded(x)
            self.compile_seconds = time.perf_counter() - start
            return out
        return self._padded(x)
