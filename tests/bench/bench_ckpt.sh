#!/usr/bin/env bash
# Checkpoint write/read time and size, GPT-2 124M, LoRA r=8 on all targets vs full weights,
# on 1 and 2 ranks (tp = ranks), side by side; prints the README table.
# Usage: tests/bench/bench_ckpt.sh [BUILD_DIR] [DIR]   (DIR: where files go, default /tmp)
set -euo pipefail
build=${1:-build}
dir=${2:-${TMPDIR:-/tmp}}/lorampi-bench-ckpt.$$
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "| checkpoint     | ranks | size MB | write s | MB/s | read s | MB/s | posix write+fsync s | checksum s |"
echo "|----------------|---|---------|---------|------|--------|------|---------|----------|"
for n in 1 2; do
  mpirun --oversubscribe --bind-to none -n $n "$build/tests/bench_ckpt" "$dir" "${BENCH_REPS:-3}" | grep '^|'
done
rm -rf "$dir"
