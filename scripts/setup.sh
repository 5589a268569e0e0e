#!/usr/bin/env bash
# Make ./.venv with everything resnet_hub, its training, Hub and test extras need.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: the tested build (CPU-capable CUDA wheel); the rest must not replace it
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[train,hub,test]"
.venv/bin/python -c "import resnet_hub, timm; print('resnet_hub', resnet_hub.__version__, 'timm', timm.__version__, 'ready')"
