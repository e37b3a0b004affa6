#!/usr/bin/env bash
# The prepared GPU smoke test (see benchmarks/gpu_check.py): run it first on a CUDA machine.
#   benchmarks/gpu_check.sh [OUT_DIR]        default runs/gpu-check; last stdout line: JSON
# Uses .venv when it exists, else $PYTHON or python3. CPU-only machines run the CPU-safe steps.
set -u
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then py="$PYTHON"; elif [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
exec "$py" benchmarks/gpu_check.py "$@"
