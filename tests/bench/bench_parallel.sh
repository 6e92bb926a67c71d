#!/usr/bin/env bash
# tokens/s, peak RSS per rank and time in collectives for a GPT-2 124M-shaped model (random
# weights, LoRA r=8 on c_attn, B*T = 1024) on 2 cores: 1 rank x 2 threads, tp=2 x 1 thread,
# dp=2 x 1 thread. Usage: tests/bench/bench_parallel.sh [BUILD_DIR] [STEPS]
set -euo pipefail
build=$(cd "${1:-build}" && pwd); steps=${2:-4}
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
n_ctx = 1024
[adapter]
targets = c_attn
r = 8
[train]
steps = $steps
batch_size = 4
seq_len = 256
[data]
train = d_train.bin
[log]
every = 1000
INI
echo "| layout | threads/rank | tokens/s | ms/step | comm ms/step | peak RSS/rank MB |"
echo "|---|---|---|---|---|---|"
run() {  # label np threads tp
  out=$(OMP_NUM_THREADS=$3 mpirun --oversubscribe --bind-to none -n $2 "$build/lorampi" train b.ini --set parallel.tp=$4)
  tps=$(echo "$out" | sed -nE 's/^done:.* ([0-9]+) tokens\/s/\1/p')
  comm=$(echo "$out" | sed -nE 's/^communication: ([0-9.]+) ms.*/\1/p')
  rss=$(echo "$out" | sed -nE 's/^peak RSS per rank: max ([0-9.]+) MB.*/\1/p')
  echo "| $1 | $3 | $tps | $(awk -v t="$tps" 'BEGIN { printf "%.0f", 1024000 / t }') | $comm | $rss |"
}
run "1 rank" 1 2 1
[ "${ONLY_FIRST:-0}" = 1 ] && exit 0
run "tp=2" 2 1 2
run "dp=2" 2 1 1
