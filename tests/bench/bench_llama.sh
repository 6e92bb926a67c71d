#!/usr/bin/env bash
# tokens/s and peak RSS per rank for a Llama-3.2-1B-shaped model (random weights: [model]
# random_init from a config.json alone; 16 layers, hidden 2048, 32 heads over 8 KV heads,
# intermediate 8192, vocab 128256, untied head; 1.50e9 parameters) with LoRA r = 16 on all
# linear layers, B*T = 2 x 512 = 1024: 1 rank x 2 threads, tp = 2 x 1 thread, dp = 2 x 1
# thread, back to back; ms/step the median of steps 2..STEPS (step 1 is the warm-up);
# against `lorampi plan`'s total per rank.
# Usage: tests/bench/bench_llama.sh [BUILD_DIR] [STEPS] [LAYOUT]   (STEPS >= 2, default 4;
# LAYOUT 1rank, tp2 or dp2: that one only, no table header). BENCH_LOG=DIR keeps each run's
# output there (DIR/<layout>.log).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd); steps=${2:-4}; only=${3:-}
logdir=${BENCH_LOG:+$(mkdir -p "$BENCH_LOG" && cd "$BENCH_LOG" && pwd)}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "benchmark text line %d\n", i }' > t.txt
"$build/lorampi" tokenize --bytes --out d t.txt > /dev/null
mkdir -p m && cp "$here/llama-3.2-1b.json" m/config.json  # Llama-3.2-1B's shape
cat > b.ini <<INI
[model]
path = m
random_init = true
[adapter]
targets = all-linear
r = 16
alpha = 32
[train]
steps = $steps
batch_size = 2
seq_len = 512
[data]
train = d_train.bin
[log]
every = 1
INI
[ -n "$only" ] || echo "| layout | threads/rank | tokens/s | ms/step (median) | peak RSS/rank MB | plan total/rank MB |"
[ -n "$only" ] || echo "|---|---|---|---|---|---|"
run() {  # label np threads tp
  local out ms rss plan log=${logdir:-.}/$5.log
  OMP_NUM_THREADS=$3 mpirun --oversubscribe --bind-to none -n $2 "$build/lorampi" train b.ini --set parallel.tp=$4 > "$log" 2>&1 || true
  out=$(cat "$log")
  ms=$(echo "$out" | sed -nE 's/^step +([0-9]+)\/[0-9]+ .*\| ([0-9]+) ms \|.*/\1 \2/p' | awk '$1 > 1 { print $2 }' | sort -n \
       | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
  rss=$(echo "$out" | sed -nE 's/^peak RSS per rank: max ([0-9.]+) MB.*/\1/p')
  plan=$("$build/lorampi" plan b.ini --ranks $2 --set parallel.tp=$4 2>&1 | sed -nE "s/^ +total +([0-9.]+) MB/\1/p" | head -1)
  [ -n "$ms" ] && [ -n "$rss" ] || { echo "$out" | tail -20; return 1; }
  echo "| $1 | $3 | $(awk -v m="$ms" 'BEGIN { printf "%.0f", 1024000 / m }') | $ms | $rss | ${plan:-?} |"
}
for l in 1rank tp2 dp2; do
  [ -z "$only" ] || [ "$only" = $l ] || continue
  case $l in 1rank) run "1 rank" 1 2 1 $l ;; tp2) run "tp=2" 2 1 2 $l ;; dp2) run "dp=2" 2 1 1 $l ;; esac
done
