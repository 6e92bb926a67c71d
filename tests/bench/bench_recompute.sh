#!/usr/bin/env bash
# [train] recompute on long sequences: peak RSS and ms/step of none, attn and block for a
# GPT-2-small-shaped model (random weights: 12 layers, 12 heads, n_embd 768, vocab 50257,
# n_ctx 2048; 124M parameters) with LoRA r = 8 on c_attn, one sequence of T tokens per
# step, 1 rank x 2 threads, back to back; ms/step the median of steps 2..STEPS (step 1 is
# the warm-up); against `lorampi plan`'s activations and total.
# Usage: tests/bench/bench_recompute.sh [BUILD_DIR] [STEPS] [SEQ_LENS]   (STEPS >= 2,
# default 3; SEQ_LENS default "1024 2048"). BENCH_LOG=DIR keeps each run's output there.
set -euo pipefail
build=$(cd "${1:-build}" && pwd); steps=${2:-3}; lens=${3:-1024 2048}
logdir=${BENCH_LOG:+$(mkdir -p "$BENCH_LOG" && cd "$BENCH_LOG" && pwd)}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "benchmark text line %d\n", i }' > t.txt
"$build/lorampi" tokenize --bytes --out d t.txt > /dev/null
cat > b.ini <<INI
[model]
n_layer = 12
n_head = 12
n_embd = 768
vocab_size = 50257
n_ctx = 2048
[adapter]
targets = c_attn
r = 8
alpha = 16
[train]
steps = $steps
batch_size = 1
[data]
train = d_train.bin
[log]
every = 1
INI
echo "| seq_len | recompute | ms/step (median) | vs none | peak RSS MB | plan activations MB | plan total MB |"
echo "|---|---|---|---|---|---|---|"
for T in $lens; do
  base=
  for mode in none attn block; do
    log=${logdir:-.}/T$T-$mode.log
    OMP_NUM_THREADS=2 mpirun --bind-to none -n 1 "$build/lorampi" train b.ini --set train.seq_len=$T \
      --set train.recompute=$mode > "$log" 2>&1 || { tail -20 "$log"; exit 1; }
    ms=$(sed -nE 's/^step +([0-9]+)\/[0-9]+ .*\| ([0-9]+) ms \|.*/\1 \2/p' "$log" | awk '$1 > 1 { print $2 }' | sort -n \
         | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    rss=$(sed -nE 's/^peak RSS per rank: max ([0-9.]+) MB.*/\1/p' "$log")
    "$build/lorampi" plan b.ini --ranks 1 --set train.seq_len=$T --set train.recompute=$mode > plan.log 2>&1
    acts=$(sed -nE 's/^ +activations and scratch +([0-9.]+) MB/\1/p' plan.log)
    total=$(sed -nE 's/^ +total +([0-9.]+) MB/\1/p' plan.log)
    base=${base:-$ms}
    echo "| $T | $mode | $ms | $(awk -v m="$ms" -v b="$base" 'BEGIN { printf "%.2fx", m / b }') | $rss | $acts | $total |"
  done
done
