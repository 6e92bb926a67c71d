#!/usr/bin/env bash
# [parallel] sequence_parallel (Megatron's sequence parallelism over the tp group) on the tiny
# byte-level model (2 blocks), 8 steps of 2 micro-steps (grad_accum = 2), LoRA on every
# target with dropout + houlsby adapters (block-level: their gradients become tp partial
# sums), and full fine-tuning (the norms' gradients likewise):
#  - tp 2 and tp 2 x dp 2 with it against the same layout without: losses within 1e-5
#    relative at every step (the same sums in another order), every rank up, the log says so;
#  - with [train] recompute = block: the same bits as without recompute;
#  - [model] dtype = bf16: losses within 1e-5 of bf16 without it;
#  - stop at step 4 + the same command = the uninterrupted run, bit for bit (metrics and the
#    final checkpoint);
#  - `plan`: the activations shrink by exactly what the split removes, computed here from the
#    shapes: per block the two norms' outputs, statistics and the two residuals held by rows
#    N/tp instead of N, less the two (N, C) buffers that gather a norm's output and a gradient;
#  - rows that do not split over tp: every rank non-zero, one message naming the key.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"

alpha_data
{ tiny_model_ini; cat <<INI
[adapter]
method = lora,houlsby
targets = all
r = 4
alpha = 8
dropout = 0.1
size = 8
INI
  accum_run_ini
} > run.ini

# run DIR NP SP [ARGS...]: one tp 2 training run in DIR, every rank up.
run() {
  local d=$1 np=$2 sp=$3; shift 3
  run_in "$d" "$np" --set parallel.tp=2 --set parallel.sequence_parallel="$sp" "$@"
}
close() {  # close REF DIR TOL: every step's loss within TOL relative
  local m; m=$(maxrel "$1/m.jsonl" "$2/m.jsonl")
  echo "$2 against $1: largest relative loss difference $m"
  awk -v m="$m" -v t="$3" 'BEGIN { exit !(m != "" && m <= t) }' && ok || fail "$2: losses differ from $1 by $m"
}
for mode in lora_houlsby full; do
  args=(); [ $mode = full ] && args=(--set adapter.method=none)
  for np in 2 4; do
    run "$mode.n$np" $np false "${args[@]}"
    run "$mode.n$np.sp" $np true "${args[@]}"
    grep -q "tp 2 x dp $((np / 2)), sequence parallel" "$mode.n$np.sp/log" && ok || fail "$mode.n$np.sp: the log does not say so"
    ! grep -q "sequence parallel" "$mode.n$np/log" && ok || fail "$mode.n$np: sequence parallel without the key"
    close "$mode.n$np" "$mode.n$np.sp" 1e-5
  done
done

run recompute 2 true --set train.recompute=block
[ "$(series lora_houlsby.n2.sp/m.jsonl)" = "$(series recompute/m.jsonl)" ] && ok || fail "recompute = block: metrics differ"
run bf16 2 false --set model.dtype=bf16
run bf16.sp 2 true --set model.dtype=bf16
close bf16 bf16.sp 1e-5

# Bitwise restart on tp 2 x dp 2.
run same 4 true --stop-at 4
run same 4 true
grep -q "resumed from ck/ckpt-00000004.h5" same/log && ok || fail "restart: not resumed from step 4"
[ "$(series lora_houlsby.n4.sp/m.jsonl)" = "$(series same/m.jsonl)" ] && ok || fail "restart: metrics differ"
/usr/bin/python3 "$src/tests/ckpt_check.py" same lora_houlsby.n4.sp/ck/ckpt-00000008.h5 same/ck/ckpt-00000008.h5 \
  > same.log 2>&1 && ok || { fail "restart: final checkpoint differs"; cat same.log; }

# plan: N = 8 x 32 rows, C = 32, 2 blocks, tp 2 (floats saved: 2 (4 N C + 4 N) (1 - 1/2) - 2 N C).
acts() { "$bin" plan run.ini --ranks 2 --set parallel.tp=2 --set parallel.sequence_parallel="$1" |
  awk '/recompute = none/ { print $6 }'; }
a0=$(acts false) a1=$(acts true)
awk -v a="$a0" -v b="$a1" 'BEGIN { N = 256; C = 32; want = 4 * (2 * (4 * N * C + 4 * N) / 2 - 2 * N * C) / 1e6
  d = a - b; printf "plan: activations %s -> %s MB, saved %.4f MB, expected %.4f\n", a, b, d, want
  exit !(a != "" && d > want - 0.0015 && d < want + 0.0015) }' && ok || fail "plan: $a0 -> $a1 MB"

# 33 rows do not split over 2 ranks: refused, naming the key.
timeout 60 "${MPIEXEC:-mpiexec}" --oversubscribe -n 2 "$bin" train run.ini --set parallel.tp=2 \
  --set parallel.sequence_parallel=true --set train.batch_size=1 --set train.seq_len=33 > odd.log 2>&1
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(grep -c 'sequence_parallel = true splits' odd.log)" -eq 1 ] \
  && ok || { fail "odd rows: exit $rc"; cat odd.log; }
finish
