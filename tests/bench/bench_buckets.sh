#!/usr/bin/env bash
# [parallel] bucket_mb on dp = 2 x 1 thread: ms/step (median of steps 2..STEPS; step 1 is the
# warm-up) and the communication per step (lorampi's "communication:" line, all steps: time
# in MPI calls, of which the gradient all-reduce's; the buckets' overlap with the backward is
# not in it; the other collectives, the loss's first, absorb the wait for the slower rank), for
# each bucket_mb of BENCH_BUCKETS (default "0 25 1"; 0 = one all-reduce after the backward),
# alternating within each model so that load from other jobs falls on all alike. Models:
# gpt2 (GPT-2 124M shape, LoRA r = 8 on all linear layers of the blocks, B x T = 4 x 256) and
# llama (Llama-3.2-1B shape, random weights, LoRA r = 16 on all-linear, frozen weights bf16
# to halve the memory of two replicas, B x T = 2 x 128).
# Usage: tests/bench/bench_buckets.sh BUILD_DIR [STEPS]   Env: BENCH_MODELS ("gpt2 llama"),
# BENCH_BUCKETS, BENCH_LOG (a directory that keeps every run's output).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd); steps=${2:-4}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
logs=${BENCH_LOG:-$work/logs}; mkdir -p "$logs"; logs=$(cd "$logs" && pwd); cd "$work"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "benchmark text line %d\n", i }' > t.txt
"$build/lorampi" tokenize --bytes --out d t.txt > /dev/null
mkdir -p llama && cp "$here/llama-3.2-1b.json" llama/config.json  # Llama-3.2-1B's shape
printf '[model]\nn_layer = 12\nn_head = 12\nn_embd = 768\nvocab_size = 50257\nn_ctx = 1024\n[adapter]\nr = 8\nalpha = 16\ntargets = all\n[train]\nbatch_size = 4\nseq_len = 256\n' > gpt2.ini
printf '[model]\npath = llama\nrandom_init = true\ndtype = bf16\n[adapter]\nr = 16\nalpha = 32\ntargets = all-linear\n[train]\nbatch_size = 2\nseq_len = 128\n' > llama.ini
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
echo
echo "| model | bucket_mb | buckets | ms/step | comm ms/step | of which gradients | MB all-reduced/step |"
echo "|---|---|---|---|---|---|---|"
for model in ${BENCH_MODELS:-gpt2 llama}; do
  for mb in ${BENCH_BUCKETS:-0 25 1}; do
    log="$logs/$model-b$mb.log"
    OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -n 2 "$build/lorampi" train "$model.ini" \
      --set train.steps="$steps" --set data.train=d_train.bin --set parallel.bucket_mb="$mb" > "$log" 2>&1 \
      || { echo "$model bucket_mb $mb failed:" >&2; tail -5 "$log" >&2; continue; }
    ms=$(sed -nE 's/^step +([0-9]+)\/[0-9]+ .*\| ([0-9]+) ms \|.*/\1 \2/p' "$log" | awk '$1 > 1 { print $2 }' | median)
    nb=$(sed -nE 's/^gradient all-reduce: ([0-9]+) buckets.*/\1/p' "$log"); nb=${nb:-"1 (after)"}
    comm=$(sed -nE 's/^communication: ([0-9.]+) ms per step.* all-reduce ([0-9.]+) ms.*; ([0-9.]+) MB all-reduced per step/\1 | \2 | \3/p' "$log")
    echo "| $model | $mb | $nb | $ms | $comm |"
  done
done
