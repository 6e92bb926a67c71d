#!/usr/bin/env bash
# End to end through the CLI on a synthetic sequence task (lines of the alphabet starting
# at a pseudo-random letter: every byte but the first of a line is predictable):
#  - a tiny model trained from scratch drives the loss far below its start (ln 256 = 5.55);
#  - the same seed gives bitwise-identical metrics; `plot` draws the runs' curves;
#  - 2 ranks (dp = 2) give the 1-rank losses within 1e-5 relative, and both ranks ran;
#  - LoRA on the trained model learns, and its adapter is written in PEFT layout;
#  - bad input fails on every rank with one clear message.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"

alpha_data
[ -s alpha_train.bin ] && [ -s alpha_val.bin ] && ok || fail "token files missing"

{ tiny_model_ini; cat <<'INI'
[adapter]
method = none
[train]
steps = 150
batch_size = 8
seq_len = 32
lr = 3e-3
warmup_steps = 10
weight_decay = 0.0
eval_every = 50
eval_batches = 2
seed = 42
[data]
train = alpha_train.bin
val = alpha_val.bin
[log]
metrics = m1.jsonl
every = 50
INI
} > run.ini

# jsonl field extractor without jq: prints "step loss" per line
losses() { sed -E 's/.*"step": ?([0-9]+).*"loss": ?([-0-9.eE+]+).*/\1 \2/' "$1"; }

mpi 1 "$bin" train run.ini --set train.save_model=base > run1.log 2>&1 || { cat run1.log; fail "1-rank training failed"; }
first=$(losses m1.jsonl | head -1 | cut -d' ' -f2); last=$(losses m1.jsonl | tail -1 | cut -d' ' -f2)
awk -v f="$first" -v l="$last" 'BEGIN { exit !(f > 4.5 && l < 0.35 * f) }' && ok || fail "loss did not fall: $first -> $last"
[ "$(wc -l < m1.jsonl)" = 150 ] && ok || fail "metrics has $(wc -l < m1.jsonl) lines, expected 150"
grep -q '"val_loss"' m1.jsonl && ok || fail "no val_loss in metrics"
[ -s base/model.safetensors ] && [ -s base/config.json ] && ok || fail "save_model wrote no HF directory"

mpi 1 "$bin" train run.ini --set log.metrics=m2.jsonl > run2.log 2>&1 || fail "second run failed"
cmp -s <(losses m1.jsonl) <(losses m2.jsonl) && ok || fail "same seed, different losses"

mpi 2 "$bin" train run.ini --set log.metrics=m3.jsonl > run3.log 2>&1 || { cat run3.log; fail "2-rank run failed"; }
grep -q "ranks 0-1 of 2 up" run3.log && ok || fail "2-rank run did not report both ranks"
paste <(losses m1.jsonl) <(losses m3.jsonl) | awk '{ d = $2 - $4; if (d < 0) d = -d;
  if (d > 1e-5 * $2 + 1e-6) { print "step " $1 ": " $2 " vs " $4; bad = 1 } } END { exit bad }' \
  && ok || fail "dp=2 losses differ from 1 rank beyond 1e-5 relative"

# Training curves: a PNG of two runs overlaid; a malformed line or a missing file is one
# error naming it, and nothing is written.
"$bin" plot m1.jsonl m3.jsonl --out runs.png > plot.log 2>&1 && /usr/bin/python3 -c 'import struct, sys
d = open(sys.argv[1], "rb").read(); w, h = struct.unpack(">II", d[16:24])
assert d[:8] == b"\x89PNG\r\n\x1a\n" and w >= 800 and h >= 600 and len(d) > 20000, (w, h, len(d))' runs.png \
  && ok || { fail "plot"; cat plot.log; }
printf '{"step": 1, "loss": 2.0, "lr": 1e-3, "grad_norm": 1, "tokens_per_s": 5}\n{"step": 2, "loss": "x"}\n' > bad.jsonl
"$bin" plot bad.jsonl --out bad.png > plot.log 2>&1; [ $? -ne 0 ] && grep -q "bad.jsonl:2" plot.log && [ ! -e bad.png ] && ok || { fail "plot: malformed line"; cat plot.log; }
"$bin" plot nope.jsonl --out bad.png > plot.log 2>&1; [ $? -ne 0 ] && grep -q "nope.jsonl" plot.log && ok || { fail "plot: missing file"; cat plot.log; }

# Tensor parallelism through the CLI: 30 steps of each layout against 1 rank.
mpi 1 "$bin" train run.ini --set train.steps=30 --set log.metrics=ref30.jsonl > ref30.log 2>&1 || fail "30-step run failed"
for layout in "2 2" "4 2" "4 4"; do
  set -- $layout; np=$1; tp=$2
  mpi $np "$bin" train run.ini --set train.steps=30 --set parallel.tp=$tp --set log.metrics=tp$np$tp.jsonl > tp$np$tp.log 2>&1 \
    || { cat tp$np$tp.log; fail "np=$np tp=$tp run failed"; continue; }
  grep -q "ranks 0-$((np-1)) of $np up" tp$np$tp.log && ok || fail "np=$np tp=$tp: not every rank reported"
  paste <(losses ref30.jsonl) <(losses tp$np$tp.jsonl) | awk '{ d = $2 - $4; if (d < 0) d = -d;
    if (d > 1e-5 * $2) { print "step " $1 ": " $2 " vs " $4; bad = 1 } } END { exit bad || NR != 30 }' \
    && ok || fail "np=$np tp=$tp losses differ from 1 rank beyond 1e-5 relative"
done
set -- "$bin" "$src" "$work"

# LoRA on the model just trained, on the same data: starts where the base left off, learns.
cat > lora.ini <<'INI'
[model]
path = base
[adapter]
method = lora
r = 4
alpha = 8
targets = c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj
[train]
steps = 40
batch_size = 8
seq_len = 32
lr = 1e-2
[data]
train = alpha_train.bin
val = alpha_val.bin
[log]
metrics = lora.jsonl
every = 20
INI
mpi 1 "$bin" train lora.ini --set train.save_adapter=adapter > lora.log 2>&1 || { cat lora.log; fail "LoRA run failed"; }
grep -q "trainable parameters" lora.log && ok || fail "no parameter summary"
[ -s adapter/adapter_model.safetensors ] && grep -q '"peft_type": "LORA"' adapter/adapter_config.json \
  && ok || fail "no PEFT adapter written"
lf=$(losses lora.jsonl | head -1 | cut -d' ' -f2); ll=$(losses lora.jsonl | tail -1 | cut -d' ' -f2)
awk -v f="$lf" -v b="$last" 'BEGIN { exit !(f < 2 * b + 0.2) }' && ok \
  || fail "LoRA's first loss $lf is not the base model's ($last): B = 0 must start at the base"

# Bad input: non-zero exit on every rank, one message naming the problem, no hang.
expect_error() {  # expect_error NAME PATTERN NP ARGS...
  local name=$1 pat=$2 np=$3; shift 3
  timeout 60 "${MPIEXEC:-mpiexec}" --oversubscribe -n "$np" "$bin" "$@" > "err_$name.log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then fail "$name: exit code $rc"; return; fi
  grep -q -- "$pat" "err_$name.log" && ok || { fail "$name: message lacks '$pat'"; cat "err_$name.log"; }
}
# Generation with the trained model: greedy decoding continues the alphabet, the same on
# tp = 2; sampling is reproducible from its seed; the key/value cache gives the tokens of
# recomputing the window (--no-cache), also past the 64-token context (the cache refills).
gen() { "${MPIEXEC:-mpiexec}" --oversubscribe -n "$1" "$bin" generate run.ini --set model.path=base --set adapter.method=none --bytes "${@:2}" 2>&1 | tail -1; }
g1=$(gen 1 --prompt defgh --tokens 20 --temperature 0); g2=$(gen 2 --set parallel.tp=2 --prompt defgh --tokens 20 --temperature 0)
[ "${g1:0:14}" = "defghijklmnopq" ] && ok || fail "greedy generation: '$g1'"
[ "$g1" = "$g2" ] && ok || fail "greedy generation on tp = 2: '$g2' vs '$g1'"
s1=$(gen 1 --prompt q --tokens 30 --temperature 1 --seed 3); s2=$(gen 1 --prompt q --tokens 30 --temperature 1 --seed 3)
s3=$(gen 1 --prompt q --tokens 30 --temperature 1 --seed 4)
[ "$s1" = "$s2" ] && [ "$s1" != "$s3" ] && ok || fail "sampling: '$s1' / '$s2' / '$s3'"
for np_tp in "1 1" "2 2"; do
  set -- $np_tp
  c1=$(gen $1 --set parallel.tp=$2 --prompt defgh --tokens 90 --temperature 0)
  c2=$(gen $1 --set parallel.tp=$2 --prompt defgh --tokens 90 --temperature 0 --no-cache)
  [ ${#c1} -eq 95 ] && [ "$c1" = "$c2" ] && ok || fail "cache vs no cache, tp = $2: '$c1' vs '$c2'"
done
p1=$(gen 1 --prompt q --tokens 30 --temperature 1 --seed 3 --top-k 0 --top-p 0.5)
p2=$(gen 1 --prompt q --tokens 30 --temperature 1 --seed 3 --top-k 0 --top-p 0.5 --no-cache)
[ "$p1" = "$p2" ] && [ ${#p1} -ge 2 ] && ok || fail "top-p sampling with and without the cache: '$p1' / '$p2'"

expect_error unknown_key "learning_rate" 2 train run.ini --set train.learning_rate=1
expect_error bad_value "\[train\] lr" 2 train run.ini --set train.lr=abc
expect_error missing_data "nope.bin" 2 train run.ini --set data.train=nope.bin
expect_error tp_world "tp = 3" 2 train run.ini --set parallel.tp=3
expect_error tp_heads "n_head" 4 train run.ini --set parallel.tp=4 --set model.n_head=2
expect_error missing_model "missing_dir" 1 train lora.ini --set model.path=missing_dir
expect_error no_config "nothere.ini" 1 train nothere.ini
# Hostile values (issue 12): r above the adapted matrix's rank; a float that rounds to 0;
# a config that is a directory; a model directory whose config.json disagrees with its tensors.
expect_error rank_above_matrix "\[adapter\] r = 64 exceeds the rank of the adapted matrix attn.c_attn (32 x 96)" 1 train lora.ini --set adapter.r=64
expect_error lr_underflow "smallest float" 1 train run.ini --set train.lr=1e-50
mkdir -p cfgdir
expect_error config_dir "cfgdir: is a directory" 1 train cfgdir
mkdir -p bigvocab && cp base/model.safetensors bigvocab/ \
  && sed -E 's/"vocab_size": *[0-9]+/"vocab_size": 1073741824/' base/config.json > bigvocab/config.json
expect_error vocab_2p30 "wte.weight has shape \[256, 32\]" 1 train lora.ini --set model.path=bigvocab
expect_error nan_loss "diverged" 1 train run.ini --set log.metrics=nan.jsonl --set train.lr=1e30 --set train.grad_clip=0 --set train.steps=20
# Usage errors return from the argument parsers (the sanitized suite checks they free what
# they allocated).
expect_error usage_set "needs section.key=value" 1 train run.ini --set
expect_error usage_option "unknown option --frob" 1 plan run.ini --frob
expect_error usage_topk "top-k -1" 1 generate run.ini --bytes --top-k -1
expect_error usage_tokenize "either --vocab" 1 tokenize --out x alpha.txt

finish
