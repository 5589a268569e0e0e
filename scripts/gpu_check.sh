#!/usr/bin/env bash
# The GPU check in one command on a GPU machine without network (README, "Running the GPU check"):
#   bash scripts/gpu_check.sh --prepare   where pip reaches the index: the wheels that the GPU image
#                                         (scripts/gpu_image.txt) lacks, scripts/gpu_wheels.txt, into .whl/
#   bash scripts/gpu_check.sh             on the GPU machine, with the checkout and .whl/ copied there: .whl/
#                                         into a temporary folder (no network), then the CUDA-only tests
#                                         (pytest -m cuda) and the four GPU rows (resnet_hub/bench/benchmark_gpu.py)
#                                         into benchmarks/gpu_<device>.json, in under 8 minutes
#   bash scripts/gpu_check.sh --rehearse  here: the same steps on the CPU at tiny sizes, in a venv built like the
#                                         GPU image (.gpu-rehearsal/venv, or GPU_REHEARSAL_ENV; made once) or
#                                         the interpreter PYTHON names
# PYTHON picks the interpreter (default: .venv/bin/python where it exists, which needs no .whl/, else python3);
# --results DIR writes the JSON into DIR instead of benchmarks/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
budget_s=480          # the whole check on the GPU machine, after which nothing more is started
rehearsal_budget_s=900  # the same on a (shared) CPU, where the tiny rows take minutes of eager ResNet-50
pip_platforms=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
               --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
max_mib=64            # what travels to the GPU machine: the checkout (tracked + untracked, not ignored) and .whl/

die() { echo "gpu_check: error: $*" >&2; exit 1; }
say() { echo "gpu_check: $*" >&2; }

# ---------------------------------------------------------------------------- --prepare

travel_size() {  # bytes of the checkout that travels plus .whl/
    local tree whl
    tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    whl=$(du -cb .whl 2>/dev/null | tail -1 | cut -f1)
    echo $((tree + whl))
}

prepare() {
    local py=${PYTHON:-python3} bytes
    tmp=$(mktemp -d "$repo/.whl.tmp.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    grep -v '^\s*\(#\|$\)' scripts/gpu_wheels.txt | xargs "$py" -m pip download -q --no-deps "${pip_platforms[@]}" \
        -d "$tmp" || die "pip download failed (needs the package index)"
    rm -rf .whl && mv "$tmp" .whl  # only the wheels named now, none left from an older list
    ls -l .whl | tail -n +2 | awk '{printf "  %8.1f MiB  %s\n", $5 / 1048576, $9}'
    bytes=$(travel_size)
    say "$(awk -v b="$bytes" -v m="$max_mib" \
        'BEGIN {printf "checkout + .whl/: %.1f MiB of the %d MiB that may travel", b / 1048576, m}')"
    [ "$bytes" -le $((max_mib * 1048576)) ] || die "over ${max_mib} MiB: carry less"
}

# ---------------------------------------------------------------------------- the check itself

left() { echo $((deadline - SECONDS)); }

step_timeout() {  # seconds for the next step: its own cap, or what is left of the budget
    local cap=$1 rest
    rest=$(left)
    [ "$rest" -gt 1 ] || rest=1  # the budget is spent: the step gets a second and fails
    echo $((cap < rest ? cap : rest))
}

install_wheels() {  # .whl/ into a temporary folder first on PYTHONPATH, without the network
    local site=$1
    [ -d .whl ] && compgen -G ".whl/*.whl" >/dev/null || die "no .whl/ here: run 'bash scripts/gpu_check.sh --prepare' \
where pip reaches the index, then copy .whl/ with the checkout"
    timeout "$(step_timeout 60)" "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --disable-pip-version-check --target "$site" .whl/*.whl \
        || die "installing .whl/ failed (its wheels are for CPython 3.12 on x86-64, the GPU image's)"
    export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"
}

# What the run will use, and whether it imports and meets what resnet_hub (core, train and export extras) and each
# carried wheel declare. With strict=1 (the rehearsal) a miss fails the check; on the GPU it is a warning
# and the check goes on (the rows and tests that do not need what is missing still run).
preflight() {
    timeout "$(step_timeout 90)" "$python" - "$1" "$2" <<'EOF'
import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

import torch

strict = sys.argv[1] == "1"
print(f"python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__}, CUDA "
      + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"), flush=True)
project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]
wanted = [("resnet_hub", r) for r in project["dependencies"] + extras["train"] + extras.get("export", [])]
for dist in md.distributions(path=[sys.argv[2]]):  # the carried wheels, as installed from .whl/
    wanted += [(f"{dist.name} (carried)", r) for r in dist.requires or ()]
unmet = []
for who, text in wanted:
    req = Requirement(text)
    if req.marker and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        have = md.version(req.name)
    except md.PackageNotFoundError:
        have = None
    if have is None or not req.specifier.contains(have, prereleases=True):
        unmet.append(f"{who} needs {req}, here {have or 'absent'}")
for module in ("datasets", "timm", "resnet_hub", "resnet_hub.bench.benchmark_gpu"):
    try:
        __import__(module)
    except Exception as e:
        unmet.append(f"import {module} failed: {type(e).__name__}: {e}")
versions = []
for name in ("timm", "datasets", "huggingface_hub", "transformers", "accelerate", "safetensors", "numpy",
             "pyarrow", "fsspec", "torchvision"):
    try:
        versions.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        versions.append(f"{name} absent")
print("versions: " + ", ".join(versions), flush=True)
for line in unmet:
    print(("error: " if strict else "warning: ") + line, flush=True)
sys.exit(1 if strict and unmet else 0)
EOF
}

check() {  # device: cuda or cpu; tiny: 0 or 1; results: folder for the JSON; strict: 0 or 1
    local device=$1 tiny=$2 results=$3 strict=$4 name out rc=0
    local start=$SECONDS
    deadline=$((SECONDS + budget_s))
    site=$(mktemp -d)
    trap 'rm -rf "$site"' EXIT
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1  # no network there: never wait on one
    say "python: $python"
    if [ "$python" = .venv/bin/python ]; then
        say "scripts/setup.sh's .venv has every dependency: .whl/ is not needed"
    else
        install_wheels "$site"
    fi
    preflight "$strict" "$site" || die "the environment cannot run the check (above)"
    if [ "$device" = cuda ]; then
        name=$("$python" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
        [ -n "$name" ] || die "no CUDA device here; the GPU rows stay blocked (see README, Running the GPU check)"
    else
        name=cpu
    fi
    out="$results/gpu_$(printf '%s' "$name" | tr -cs 'A-Za-z0-9' '_' | sed 's/_*$//').json"
    # the CUDA tests live in the modules that mark them; addopts' `-n 2` is pytest-xdist's, not needed here
    mapfile -t modules < <(grep -l 'mark\.cuda' tests/test_*.py)
    [ ${#modules[@]} -gt 0 ] || die "no test module marks a test cuda"
    # on the CPU every one of them skips: -qq -rs lists the skips without a closing "N skipped" line, which
    # would read as a test run of no test after the suite's in .ci/run
    local verbosity=(-v -ra)
    [ "$device" = cuda ] || verbosity=(-qq -rs)
    say "pytest -m cuda: ${modules[*]}"
    timeout "$(step_timeout 150)" "$python" -m pytest -o addopts= -p no:cacheprovider "${verbosity[@]}" -m cuda \
        "${modules[@]}" || { rc=$?; say "pytest -m cuda failed (exit $rc); the rows still run"; }
    local row_args=(--json "$out" --device "$device")
    [ "$tiny" = 1 ] && row_args+=(--tiny)
    say "the GPU rows into $out, $(left) s left"
    timeout "$(left)" "$python" -m resnet_hub.bench.benchmark_gpu "${row_args[@]}" || rc=$?
    say "wrote $out ($name); the check took $((SECONDS - start)) s; exit $rc"
    return "$rc"
}

# ---------------------------------------------------------------------------- --rehearse

find_python312() {
    local p
    for p in "${REHEARSAL_PYTHON:-}" python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12.*/bin/python3.12 \
             /root/.pyenv/versions/3.12.*/bin/python3.12; do
        if [ -n "$p" ] && "$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no Python 3.12 here (name one with REHEARSAL_PYTHON=...)"
}

# A venv like the GPU image (scripts/gpu_image.txt), made once and remade when that file changes;
# torch 2.11.0 comes from the index as its CUDA build (a few GB, cached by pip).
rehearsal_env() {
    local env=${GPU_REHEARSAL_ENV:-$repo/.gpu-rehearsal/venv} stamp
    stamp=$(sha256sum scripts/gpu_image.txt | cut -c1-16)
    if [ "$(cat "$env/.image" 2>/dev/null)" != "$stamp" ]; then
        say "building the rehearsal venv in $env (once; again when scripts/gpu_image.txt changes)"
        [ -x "$env/bin/python" ] || "$(find_python312)" -m venv "$env"
        rm -f "$env/.image"
        "$env/bin/python" -m pip install -q --disable-pip-version-check -r scripts/gpu_image.txt >&2 \
            || die "building the rehearsal venv failed"
        echo "$stamp" >"$env/.image"
    fi
    echo "$env/bin/python"
}

rehearse() {
    if [ -n "${PYTHON:-}" ]; then python=$PYTHON; else python=$(rehearsal_env) || exit 1; fi
    ! "$python" -c 'import datasets' 2>/dev/null || die "$python already has datasets: not like the GPU image"
    mkdir -p .gpu-rehearsal
    budget_s=$rehearsal_budget_s
    check cpu 1 .gpu-rehearsal 1
}

# ---------------------------------------------------------------------------- main

results=benchmarks
mode=gpu
while [ $# -gt 0 ]; do
    case $1 in
        --prepare) mode=prepare ;;
        --rehearse) mode=rehearse ;;
        --results) [ $# -ge 2 ] || die "--results needs a folder"; results=$2; shift ;;
        -h|--help) sed -n '2,13p' "$0" | cut -c3-; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
case $mode in
    prepare) prepare ;;
    rehearse) rehearse ;;
    gpu)
        if [ -n "${PYTHON:-}" ]; then python=$PYTHON
        elif [ -x .venv/bin/python ]; then python=.venv/bin/python
        else python=python3; fi
        mkdir -p "$results"
        check cuda 0 "$results" 0 ;;
esac
