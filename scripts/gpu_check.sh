#!/usr/bin/env bash
# On a CUDA machine, in under 8 minutes: the CUDA-only tests (pytest -m cuda), then the four GPU benchmark
# rows (the trainer's build_train_step and device loaders against eager fp32, resnet_hub/bench/benchmark_gpu.py)
# into benchmarks/gpu_<device>.json. PYTHON picks the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
device=$("$python" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
if [ -z "$device" ]; then
    echo "error: no CUDA device here; the GPU rows stay blocked (see README, Fast paths on GPUs)" >&2
    exit 1
fi
out="benchmarks/gpu_$(printf '%s' "$device" | tr -cs 'A-Za-z0-9' '_' | sed 's/_*$//').json"
timeout 150 "$python" -m pytest -m cuda -q
timeout 330 "$python" -m resnet_hub.bench.benchmark_gpu --json "$out"
echo "wrote $out ($device)"
