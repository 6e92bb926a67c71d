#!/usr/bin/env bash
# `lorampi plan` against reality: for tp = 1, 2, 4 the planned memory per rank is within 20%
# of the peak RSS measured by a real run of the same config, and the measured per-rank peak
# falls as tp grows (each rank holds 1/tp of the frozen model and of most activations).
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "the quick brown fox %d jumps\n", i }' > text.txt
"$bin" tokenize --bytes --out d text.txt > /dev/null || fail "tokenize"
cat > p.ini <<'INI'
[model]
n_layer = 4
n_head = 8
n_embd = 512
vocab_size = 256
n_ctx = 256
[adapter]
method = lora
targets = all
[train]
steps = 2
batch_size = 8
seq_len = 256
[data]
train = d_train.bin
INI
prev=0
for tp in 1 2 4; do
  planned=$("$bin" plan p.ini --ranks $tp --set parallel.tp=$tp | awk '/^  total/ { print $2 }')
  measured=$("${MPIEXEC:-mpiexec}" --oversubscribe -n $tp "$bin" train p.ini --set parallel.tp=$tp | awk '/peak RSS per rank/ { print $6 }')
  echo "tp=$tp: planned $planned MB, measured peak $measured MB"
  [ -n "$planned" ] && [ -n "$measured" ] || { fail "tp=$tp: no figures"; continue; }
  # AddressSanitizer's shadow memory and quarantine are not in the plan (LMP_SANITIZE=1 is
  # set for the sanitized suite): there only the fall with tp is checked.
  [ "${LMP_SANITIZE:-0}" = 1 ] ||
  awk -v p="$planned" -v m="$measured" 'BEGIN { d = (p - m) / m; if (d < 0) d = -d; exit !(d <= 0.2) }' \
    && ok || fail "tp=$tp: plan $planned MB vs measured $measured MB differ by more than 20%"
  if [ "$prev" != 0 ]; then
    awk -v a="$measured" -v b="$prev" 'BEGIN { exit !(a < b) }' && ok || fail "tp=$tp: peak RSS $measured MB did not fall below $prev MB"
  fi
  prev=$measured
done
# The gradient buckets plan prints are the ones training makes. LoRA r = 8 on all four linear
# layers of a 512-wide block holds 8 * (512 + 1536 + 512 + 512 + 512 + 2048 + 2048 + 512) =
# 65536 floats = 0.2621 MB; bucket_mb = 0.4 (MiB) closes a bucket at two blocks: 0.52 MB each,
# launched blocks 3-2, then 1-0, then the rest (nothing trainable outside the blocks).
"$bin" plan p.ini --ranks 2 --set parallel.bucket_mb=0.4 > bk.log 2>&1
got=$(sed -n '/^gradient buckets/,/^checkpoint/p' bk.log | awk '/^  / { sub(/^ +/, ""); gsub(/ +/, " "); print }' | tr '\n' ';')
[ "$got" = "blocks 3-2 0.5 MB;blocks 1-0 0.5 MB;rest (embeddings, final norm, head), after 0.0 MB;" ] && ok \
  || { fail "plan's buckets: $got"; cat bk.log; }
"${MPIEXEC:-mpiexec}" --oversubscribe -n 2 "$bin" train p.ini --set train.steps=1 --set parallel.bucket_mb=0.4 > bk_train.log 2>&1
grep -q "gradient all-reduce: 3 buckets" bk_train.log && ok || fail "training's buckets: $(grep -i bucket bk_train.log)"
"$bin" plan p.ini --ranks 1 | grep -q "gradient buckets: none (one rank)" && ok || fail "plan on 1 rank: buckets"
"$bin" plan p.ini --ranks 2 --set parallel.bucket_mb=0 | grep -q "gradient buckets: none (\[parallel\] bucket_mb = 0)" \
  && ok || fail "plan with bucket_mb = 0: buckets"
# Extreme sizes (issue 12): refused with a clear message, never printed wrapped.
"$bin" plan p.ini --ranks 1 --set model.n_layer=128 --set model.n_embd=1000000 --set model.n_head=1 \
  --set model.n_ctx=1000000 --set train.seq_len=1000000 --set train.batch_size=10000000 > extreme.log 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "beyond lorampi's limit" extreme.log && ! grep -q "MB" extreme.log && ok \
  || { fail "extreme sizes: rc $rc"; cat extreme.log; }
finish
