#!/usr/bin/env bash
# Runs the benchmarks side by side and prints the README tables.
# Usage: tests/bench/run.sh [BUILD_DIR]   (default: build)
set -euo pipefail
build=${1:-build}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
steps=${BENCH_STEPS:-3}
# Peak RSS is per process, so each mode runs in its own process.
for t in 1 2; do
  for mode in lora full; do
    OMP_NUM_THREADS=$t "$build/tests/bench_step" "$steps" 4 256 $mode | grep -E "^\| (LoRA|full)|sgemm|openblas" | sort -u
  done
done
