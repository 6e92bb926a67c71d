#!/usr/bin/env bash
# [train] recompute on long sequences: peak RSS and time per step of none, attn and block
# for a GPT-2-small-shaped model (random weights: 12 layers, 12 heads, n_embd 768, vocab
# 50257, n_ctx 2048; 124M parameters) with LoRA r = 8 on c_attn, one sequence of T tokens
# per step, 1 rank x THREADS threads, back to back; ms/step the median of steps 2..STEPS
# (step 1 is the warm-up); against `lorampi plan`'s activations and total. BENCH_CPU=1 adds
# the CPU seconds per step (all threads): the process's CPU time of STEPS steps less that of
# a 1-step run, over STEPS - 1 (an extra run per row). On a shared machine the CPU time of a
# 1-thread run barely moves with the other jobs' load, while the wall time does.
# Usage: tests/bench/bench_recompute.sh [BUILD_DIR] [STEPS] [SEQ_LENS] [THREADS]
#   (STEPS >= 2, default 3; SEQ_LENS default "1024 2048"; THREADS default 2).
# BENCH_LOG=DIR keeps each run's output there.
set -euo pipefail
build=$(cd "${1:-build}" && pwd); steps=${2:-3}; lens=${3:-1024 2048}; threads=${4:-2}
logdir=${BENCH_LOG:+$(mkdir -p "$BENCH_LOG" && cd "$BENCH_LOG" && pwd)}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=$threads
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
batch_size = 1
[data]
train = d_train.bin
[log]
every = 1
INI
# CPU seconds (user + system) of one 1-rank run (no mpirun: a singleton, so its rusage is
# the process's own) of $2 steps at seq_len $1 under recompute $3; its log in $4.
cpu_run() {
  /usr/bin/time -f "%U %S" -o cpu.txt "$build/lorampi" train b.ini --set train.seq_len=$1 --set train.steps=$2 \
    --set train.recompute=$3 > "$4" 2>&1 || { tail -20 "$4"; exit 1; }
  awk '{ print $1 + $2 }' cpu.txt
}
echo "| seq_len | recompute | ms/step (median) | vs none | CPU s/step | vs none | peak RSS MB | plan activations MB | plan total MB |"
echo "|---|---|---|---|---|---|---|---|---|"
for T in $lens; do
  base=; cbase=
  for mode in none attn block; do
    log=${logdir:-.}/T$T-$mode.log
    cpu_all=$(cpu_run $T $steps $mode "$log")
    ms=$(sed -nE 's/^step +([0-9]+)\/[0-9]+ .*\| ([0-9]+) ms \|.*/\1 \2/p' "$log" | awk '$1 > 1 { print $2 }' | sort -n \
         | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    rss=$(sed -nE 's/^peak RSS per rank: max ([0-9.]+) MB.*/\1/p' "$log")
    cpu=-; cratio=-
    if [ "${BENCH_CPU:-0}" = 1 ]; then
      cpu_one=$(cpu_run $T 1 $mode "${logdir:-.}/T$T-$mode-1step.log")
      cpu=$(awk -v a="$cpu_all" -v b="$cpu_one" -v s="$steps" 'BEGIN { printf "%.1f", (a - b) / (s - 1) }')
      cbase=${cbase:-$cpu}
      cratio=$(awk -v m="$cpu" -v b="$cbase" 'BEGIN { printf "%.2fx", m / b }')
    fi
    "$build/lorampi" plan b.ini --ranks 1 --set train.seq_len=$T --set train.recompute=$mode > plan.log 2>&1
    acts=$(sed -nE 's/^ +activations and scratch +([0-9.]+) MB/\1/p' plan.log)
    total=$(sed -nE 's/^ +total +([0-9.]+) MB/\1/p' plan.log)
    base=${base:-$ms}
    echo "| $T | $mode | $ms | $(awk -v m="$ms" -v b="$base" 'BEGIN { printf "%.2fx", m / b }') | $cpu | $cratio | $rss | $acts | $total |"
  done
done
