#!/usr/bin/env bash
# One-command accelerator benchmark (see benchmarks/gpu.py): every installed Keras backend vs the
# official linear_cae code on this machine's GPU, float32 and bfloat16; prints one markdown table.
# Usage: bash benchmarks/gpu.sh [--quick] [--backends jax,torch] [--json results.json]
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
exec python benchmarks/gpu.py "$@"
