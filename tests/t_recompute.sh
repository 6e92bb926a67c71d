#!/usr/bin/env bash
# [train] recompute = attn | block against none, through the CLI:
#  - the same bits: losses, lr, grad norms of every step and every dataset of the final
#    checkpoint (adapters, m, v) equal none's, for GPT-2 (3 layers) and the Llama family
#    (hf-tiny's qwen3: q/k norm, rotary, grouped-query; llama_methods: prefixes), with LoRA,
#    houlsby, parallel, prefix, IA³, DoRA (dropout 0.1: the masks must come out the same)
#    and full fine-tuning, 2 micro-steps of accumulation, on 1 rank, tp 2, dp 2, tp 2 x dp 2;
#  - a none checkpoint resumes under block (the key is not compared on resume) to the
#    same final checkpoint; generation (prefill fills the cache block by block) gives the
#    same text under every setting;
#  - `plan`: attn saves nothing against none (the tiled attention keeps no probabilities);
#    what block saves equals an independent count of the buffers it does not keep (a
#    block's buffers and its adapters' saved rows); the attention tiles are 2 x 64 x (p + T)
#    floats per thread; for GPT-2 at tp 1 and 2, with prefixes, and for qwen3;
#  - a bad value is refused naming the key and the values it takes.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
tiny="$src/tests/fixtures/hf-tiny"
export PYTHONPATH="$src/tests"

alpha_data
model_ini() {
  case $1 in
    gpt2) tiny_model_ini | sed 's/^n_layer = 2/n_layer = 3/'; printf '[adapter]\ntargets = all\n' ;;
    qwen3) printf '[model]\npath = %s\n[adapter]\ntargets = all-linear\n' "$tiny/qwen3/model" ;;
    llama) printf '[model]\npath = %s\n[adapter]\ntargets = all-linear\n' "$tiny/llama_methods/model" ;;
  esac
}
for family in gpt2 qwen3 llama; do
{ model_ini $family; cat <<INI
[adapter]
r = 4
alpha = 8
size = 8
virtual_tokens = 5
dropout = 0.1
[train]
steps = 4
batch_size = 4
seq_len = 32
grad_accum = 2
lr = 3e-3
seed = 42
eval_batches = 2
[data]
train = $work/alpha_train.bin
val = $work/alpha_val.bin
[log]
metrics = m.jsonl
[checkpoint]
dir = ck
every = 2
keep = 0
INI
} | awk '/^\[adapter\]/ { if (seen++) next } { print }' > run_$family.ini
done

series() { $py -c 'import json,sys
for l in open(sys.argv[1]): o = json.loads(l); print(o["step"], repr(o["loss"]), repr(o["lr"]), repr(o["grad_norm"]))' "$1"; }

# family method ranks tp
cases="gpt2:lora:1:1 gpt2:lora,houlsby:2:2 gpt2:dora,parallel:2:1 gpt2:prefix:4:2
gpt2:none:2:2 qwen3:lora:2:2 qwen3:dora:1:1 llama:prefix,parallel:2:1 llama:ia3,houlsby:2:2"
for c in $cases; do
  IFS=: read -r family method n tp <<< "$c"
  d="$family-${method/,/+}-n$n-tp$tp"
  for mode in none attn block; do
    mkdir -p "$d/$mode"
    (cd "$d/$mode" && mpi "$n" "$bin" train ../../run_$family.ini --set adapter.method=$method \
      --set parallel.tp=$tp --set train.recompute=$mode > log 2>&1) || { fail "$d $mode: run"; tail -3 "$d/$mode/log"; continue; }
    grep -q "(\[train\] recompute = $mode)" "$d/$mode/log" && ok || fail "$d $mode: the log does not name the setting"
    [ $mode = none ] && continue
    [ "$(series "$d/none/m.jsonl")" = "$(series "$d/$mode/m.jsonl")" ] && [ "$(wc -l < "$d/$mode/m.jsonl")" = 4 ] && ok \
      || { fail "$d $mode: losses/norms differ from none"; diff <(series "$d/none/m.jsonl") <(series "$d/$mode/m.jsonl") | head -4; }
    $py "$src/tests/ckpt_check.py" same "$d/none/ck/ckpt-00000004.h5" "$d/$mode/ck/ckpt-00000004.h5" > "$d/$mode/same.log" 2>&1 && ok \
      || { fail "$d $mode: final checkpoint differs from none"; tail -2 "$d/$mode/same.log"; }
  done
  echo "$d: none, attn, block compared"
done

# Generation under block fills the key/value cache block by block (the next block overwrites
# the buffers): the same text as under none, with and without the cache (prefixes: GPT-2's).
(cd gpt2-prefix-n4-tp2/none && for mode in none attn block; do for cache in --bytes --no-cache; do
  "$bin" generate ../../run_gpt2.ini --set adapter.method=prefix --set parallel.tp=1 --set train.recompute=$mode \
    --bytes $cache --prompt abcdefghijklmnopqrstuvwxyzabcdefghij --tokens 8 2> /dev/null | tail -n 1; done; done) > gen.txt
[ "$(wc -l < gen.txt)" = 6 ] && [ "$(sort -u gen.txt | wc -l)" = 1 ] && ok || { fail "generation differs under recompute"; cat gen.txt; }

# Written under none, resumed under block.
d=gpt2-lora+houlsby-n2-tp2; mkdir -p resume/ck && cp "$d/none/ck/ckpt-00000002.h5" resume/ck/
(cd resume && mpi 2 "$bin" train ../run_gpt2.ini --set adapter.method=lora,houlsby --set parallel.tp=2 \
  --set train.recompute=block > log 2>&1) && grep -q "resumed from ck/ckpt-00000002.h5" resume/log \
  && $py "$src/tests/ckpt_check.py" same "$d/none/ck/ckpt-00000004.h5" resume/ck/ckpt-00000004.h5 > resume/same.log 2>&1 \
  && ok || { fail "none checkpoint resumed under block"; tail -n 3 resume/log resume/same.log; }

# plan: the savings against a count of the buffers. B sequences of T tokens per replica,
# p prefixes, tp ranks; per block and rank: two norms (out (N,C), mean, rstd (N)), q|k|v
# (N, (NH + 2 KVH) hd / tp), the attention output (N, NH hd / tp) (no probabilities: the
# attention works in per-thread tiles of 64 query rows, counted apart), the q/k norm's input
# and rstd (N, q|k|v) (N, (NH + KVH)/tp) where it exists, the residual after attention
# (N,C), the MLP's hidden before (GELU: H/tp; gated: 2 H/tp) and after its activation (H/tp),
# and each LoRA module's x A^T (N, r).
# plan runs nothing: long sequences and big batches cost nothing here (batch 8 global).
plan_check() {  # name family n_layer C NH KVH hd H qk gated lora_modules ranks tp P T sets...
  local name=$1 fam=$2 L=$3 C=$4 NH=$5 KVH=$6 hd=$7 H=$8 qk=$9 gated=${10} mods=${11} ranks=${12} tp=${13} P=${14} T=${15}
  shift 15
  "$bin" plan run_$fam.ini --ranks $ranks --set parallel.tp=$tp --set train.recompute=block --set train.batch_size=8 \
    --set train.seq_len=$T "$@" > "plan_$name.log" 2>&1 || { fail "plan $name"; cat "plan_$name.log"; return; }
  $py - "plan_$name.log" $L $C $NH $KVH $hd $H $qk $gated $mods $ranks $tp $P $T <<'PY' && ok || fail "plan $name: savings differ from the count"
import re, sys
log = open(sys.argv[1]).read()
L, C, NH, KVH, hd, H, qk, gated, mods, ranks, tp, P, T = map(int, sys.argv[2:])
B, r = 8 // (ranks // tp), 4
N = B * T
mb = {k: float(v) for k, v in re.findall(r"with \[train\] recompute = (\w+) +([0-9.]+) MB", log)}
assert set(mb) == {"none", "attn", "block"}, log
assert "recompute = block" in re.search(r".*\(this config\)", log).group(0)
qkv = (NH + 2 * KVH) * hd // tp
block = (2 * (N * C + 2 * N) + N * qkv + N * NH * hd // tp
         + (N * qkv + N * (NH + KVH) // tp if qk else 0) + N * C
         + N * (2 if gated else 1) * H // tp + N * H // tp + N * r * mods)
want = {"attn": 0.0, "block": 4 * (L - 1) * block / 1e6}
threads, tiles = re.search(r"of which attention tiles \((\d+) threads?\) +([0-9.]+) MB", log).groups()
counted = 4 * int(threads) * 2 * min(64, T) * (P + T) / 1e6
print("%s: attention tiles %s MB, counted %.3f MB" % (sys.argv[1], tiles, counted))
assert abs(float(tiles) - counted) <= 0.051, (tiles, counted)
for k in want:
    got = mb["none"] - mb[k]
    print("%s: none - %s = %.3f MB, counted %.3f MB" % (sys.argv[1], k, got, want[k]))
    assert abs(got - want[k]) <= 0.0015, (k, got, want[k])
PY
}
#          name       fam   L C  NH KVH hd H   qk gated mods ranks tp P T
plan_check gpt2_tp1   gpt2  3 32 4  4   8  128 0  0     4    1     1  0 512 --set adapter.method=lora --set model.n_ctx=512
plan_check gpt2_tp2   gpt2  3 32 4  4   8  128 0  0     4    4     2  0 512 --set adapter.method=lora --set model.n_ctx=512
plan_check gpt2_pfx   gpt2  3 32 4  4   8  128 0  0     0    2     2  5 256 --set adapter.method=prefix --set model.n_ctx=512
plan_check qwen3_tp2  qwen3 2 64 4  2   16 160 1  1     7    2     2  0 128 --set adapter.method=lora
cat plan_gpt2_tp2.log | sed -n 4,8p

"$bin" train run_gpt2.ini --set train.recompute=full > bad.log 2>&1
[ $? -ne 0 ] && grep -q 'train\] recompute = "full": expected none, attn' bad.log && ok || { fail "bad value not refused"; cat bad.log; }
finish
