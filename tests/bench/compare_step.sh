#!/usr/bin/env bash
# Two builds side by side in one run: the GPT-2 124M step of bench_step (LoRA r = 8 on c_attn,
# and full fine-tuning, B*T = 1024) from OLD and NEW build directories, alternating old/new
# for ROUNDS rounds at 1 and 2 threads; prints every measurement and the best of each.
# Usage: tests/bench/compare_step.sh OLD_BUILD NEW_BUILD [ROUNDS] [STEPS]
# e.g. git worktree add /tmp/old HEAD~3 && scripts/build.sh /tmp/old/build, then this.
set -euo pipefail
old=$1; new=$2; rounds=${3:-2}; steps=${4:-3}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
for t in 1 2; do
  for mode in lora full; do
    for r in $(seq "$rounds"); do
      for b in old new; do
        dir=$old; [ $b = new ] && dir=$new
        line=$(OMP_NUM_THREADS=$t "$dir/tests/bench_step" "$steps" 4 256 $mode | grep -E "^\| (LoRA|full)" | head -1)
        echo "threads $t | $b | $line"
      done
    done
  done
done | tee /tmp/compare_step.$$
echo "best of $rounds rounds: tokens/s, CPU ms/step (all threads; a one-thread step's CPU time barely moves"
echo "with the other jobs on a shared machine) and peak RSS MB, old -> new"
awk -F'|' '{ gsub(/ +/, " "); k = $1 "|" $4; b = $2 ~ /new/; if ($8 + 0 > best[k, b]) best[k, b] = $8 + 0; rss[k, b] = $11 + 0; keys[k] = 1
    if ($12 + 0 > 0 && (cpu[k, b] == 0 || $12 + 0 < cpu[k, b])) cpu[k, b] = $12 + 0 }
  END { for (k in keys) printf "%s | %d -> %d tok/s (%+.1f%%) | CPU %d -> %d ms/step (%+.1f%%) | RSS %.0f -> %.0f MB\n", k, best[k, 0], best[k, 1],
        100 * (best[k, 1] - best[k, 0]) / best[k, 0], cpu[k, 0], cpu[k, 1],
        cpu[k, 0] > 0 ? 100 * (cpu[k, 1] - cpu[k, 0]) / cpu[k, 0] : 0, rss[k, 0], rss[k, 1] }' /tmp/compare_step.$$ | sort
rm -f /tmp/compare_step.$$
