#!/usr/bin/env bash
# Create .venv (once) and install modelyard's packages into it, editable, with the engine plugins.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test
# TORCH_SPEC picks the torch build first (default torch==2.13.0: a CPU build where one lies on local
# disk); a plain `torch` requirement could otherwise pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
root="."
if [ $# -gt 0 ]; then root=".[$1]"; fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
pip install --quiet --upgrade pip
pip install --quiet "$TORCH_SPEC"
# llama-cpp-python is an sdist: it compiles on install (about 10 minutes on 2 cores), once per machine, since
# pip caches the wheel it built. GGML_NATIVE=OFF keeps that wheel portable to any x86-64 CPU; set CMAKE_ARGS
# yourself for a GPU build (-DGGML_CUDA=on) before the first run.
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
    echo "Installing llama-cpp-python (it compiles on a fresh machine: about 10 minutes)..." >&2
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}" pip install --quiet "llama-cpp-python==0.3.36"
fi
pip install --quiet -e core -e server -e plugins/engine-transformers -e plugins/engine-sentence-transformers \
    -e plugins/engine-llamacpp -e plugins/engine-vllm -e plugins/flexible-hf-pipeline -e plugins/flexible-modelscope \
    -e plugins/flexible-yolo -e "$root"
