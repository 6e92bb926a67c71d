#!/usr/bin/env bash
# [parallel] bucket_mb: the gradient all-reduce in buckets started during the backward, on
# the tiny byte-level model (2 blocks), 8 steps of 2 micro-steps (grad_accum = 2):
#  - LoRA on every target + prefix tuning with prefix_projection's MLP (the shared encoder,
#    in the last bucket), and full fine-tuning (shards over dp), each on dp = 2 and tp = 2:
#    bucket_mb = 1e-6 (one bucket per block + the rest: 3, as the log says) and the default
#    25 (2) give the bucket_mb = 0 run's metrics (loss, lr, grad norm of every step) and
#    final checkpoint (every dataset) bit for bit (two ranks: a + b = b + a, so any
#    reduction order gives the same sums; a bucket started in the first micro-step would
#    reduce partial gradients and change them), and the same bytes all-reduced per step;
#  - the same with [train] recompute = block (LoRA + prefix, tp 2, 1e-6);
#  - on tp 2 x dp 2 with 1e-6: stop at step 4 + the same command = the uninterrupted run,
#    bit for bit; every rank up in every run;
#  - a negative or non-numeric bucket_mb: every rank non-zero, one message naming the key.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"

alpha_data
{ tiny_model_ini; cat <<INI
[adapter]
method = lora,prefix
targets = all
r = 4
alpha = 8
virtual_tokens = 4
prefix_projection = true
encoder_hidden_size = 16
INI
  accum_run_ini
} > run.ini

# run DIR NP TP BUCKET_MB [ARGS...]: one training run in DIR, every rank up.
run() {
  local d=$1 np=$2 tp=$3 mb=$4; shift 4
  run_in "$d" "$np" --set parallel.tp="$tp" --set parallel.bucket_mb="$mb" "$@"
}
bytes() { grep -o "[0-9.]* MB all-reduced per step" "$1/log"; }
for mode in lora_prefix full; do
  args=(); [ $mode = full ] && args=(--set adapter.method=none)
  for lay in "2 1" "2 2"; do
    set -- $lay
    ref="$mode.n$1_tp$2.b0"
    run "$ref" "$1" "$2" 0 "${args[@]}"
    ! grep -q "buckets" "$ref/log" && ok || fail "$ref: bucket_mb = 0 reports buckets"
    for mb_n in "1e-6 3" "25 2"; do
      set -- $lay $mb_n
      d="$mode.n$1_tp$2.b$3"
      run "$d" "$1" "$2" "$3" "${args[@]}"
      grep -q "gradient all-reduce: $4 buckets" "$d/log" && ok || fail "$d: not $4 buckets: $(grep buckets "$d/log")"
      [ "$(series "$ref/m.jsonl")" = "$(series "$d/m.jsonl")" ] && [ "$(wc -l < "$d/m.jsonl")" = 8 ] && ok \
        || fail "$d: metrics differ from bucket_mb = 0"
      /usr/bin/python3 "$src/tests/ckpt_check.py" same "$ref/ck/ckpt-00000008.h5" "$d/ck/ckpt-00000008.h5" \
        > "$d/same.log" 2>&1 && ok || { fail "$d: final checkpoint differs from bucket_mb = 0"; cat "$d/same.log"; }
      [ -n "$(bytes "$ref")" ] && [ "$(bytes "$ref")" = "$(bytes "$d")" ] && ok \
        || fail "$d: $(bytes "$d") vs $(bytes "$ref") with bucket_mb = 0"
    done
  done
done

# [train] recompute = block (each block's forward again just before its backward, after the
# bucket of the block above started): the same bits as without, bucketed or not.
d=lora_prefix.n2_tp2.recompute
run "$d" 2 2 1e-6 --set train.recompute=block
[ "$(series lora_prefix.n2_tp2.b0/m.jsonl)" = "$(series "$d/m.jsonl")" ] && ok || fail "$d: metrics differ from bucket_mb = 0"
/usr/bin/python3 "$src/tests/ckpt_check.py" same lora_prefix.n2_tp2.b0/ck/ckpt-00000008.h5 "$d/ck/ckpt-00000008.h5" \
  > "$d/same.log" 2>&1 && ok || { fail "$d: final checkpoint differs from bucket_mb = 0"; cat "$d/same.log"; }

# Bitwise restart on tp 2 x dp 2 with one bucket per block.
run whole 4 2 1e-6
run same 4 2 1e-6 --stop-at 4
run same 4 2 1e-6
grep -q "resumed from ck/ckpt-00000004.h5" same/log && ok || fail "restart: not resumed from step 4"
[ "$(series whole/m.jsonl)" = "$(series same/m.jsonl)" ] && ok || fail "restart: metrics differ"
/usr/bin/python3 "$src/tests/ckpt_check.py" same whole/ck/ckpt-00000008.h5 same/ck/ckpt-00000008.h5 \
  > same.log 2>&1 && ok || { fail "restart: final checkpoint differs"; cat same.log; }

# Bad values: every rank exits non-zero with the config's message naming the key.
for v in -1 abc; do
  timeout 60 "${MPIEXEC:-mpiexec}" --oversubscribe -n 2 "$bin" train run.ini --set parallel.bucket_mb=$v > "bad$v.log" 2>&1
  rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "\[parallel\] bucket_mb = \"$v\": expected a non-negative number" "bad$v.log" \
    && ok || { fail "bucket_mb = $v: exit $rc"; cat "bad$v.log"; }
done
finish
