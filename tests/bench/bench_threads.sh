#!/usr/bin/env bash
# Threads within one rank, side by side: GPT-2 124M shape (random weights), LoRA r = 8 on c_attn
# ("attn") and on all linear layers ("all"), B x T = 4 x 256, `lorampi train` on 1 thread, on 2
# threads, and on 2 threads bound to cores (OMP_PROC_BIND=close OMP_PLACES=cores), alternating
# within each round so that load falls on all three alike. Per run: the median step time of
# steps 2..STEPS (step 1 is the warm-up); the ratio is 1-thread time / 2-thread time.
# Usage: tests/bench/bench_threads.sh BUILD_DIR [ROUNDS] [STEPS]     (defaults 3, 6)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [ROUNDS] [STEPS]" >&2; exit 2; }
build=$(cd "$1" && pwd); rounds=${2:-3}; steps=${3:-6}
[ "$steps" -ge 2 ] || { echo "$0: STEPS must be >= 2 (step 1 is the warm-up), got $steps" >&2; exit 2; }
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "benchmark text line %d\n", i }' > t.txt
"$build/lorampi" tokenize --bytes --out d t.txt > /dev/null
for m in attn all; do
  { printf '[model]\nn_layer = 12\nn_head = 12\nn_embd = 768\nvocab_size = 50257\nn_ctx = 1024\n'
    printf '[adapter]\nr = 8\nalpha = 16\ntargets = %s\n' "$([ $m = all ] && echo all || echo c_attn)"
    printf '[train]\nsteps = %s\nbatch_size = 4\nseq_len = 256\n[data]\ntrain = d_train.bin\n' "$steps"; } > $m.ini
done
med() { sed -nE 's/^step +([0-9]+)\/[0-9]+ .*\| ([0-9]+) ms \|.*/\1 \2/p' "$1" | awk '$1 > 1 { print $2 }' |
        sort -n | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
run() { env "$@" "$build/lorampi" train "$m.ini" > run.log 2>&1 || { tail -5 run.log >&2; exit 1; }; med run.log; }
echo "cpu: $(lscpu | sed -nE 's/^Model name: +//p'), $(nproc --all) cores; OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
for r in $(seq "$rounds"); do
  for m in attn all; do
    a=$(run OMP_NUM_THREADS=1); b=$(run OMP_NUM_THREADS=2); c=$(run OMP_NUM_THREADS=2 OMP_PROC_BIND=close OMP_PLACES=cores)
    awk -v r="$r" -v m="$m" -v a="$a" -v b="$b" -v c="$c" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
      printf "round %s %-4s: 1 thread %5d ms, 2 threads %5d ms (%.2fx), 2 bound %5d ms (%.2fx); load %s\n",
             r, m, a, b, a / b, c, a / c, l }'
  done
done
