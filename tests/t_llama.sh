#!/usr/bin/env bash
# The Llama family through the CLI, on the transformers-written fixtures of
# tests/fixtures/hf-tiny (llama: GQA, untied head; qwen3: q/k norm, tied):
#  - LoRA on all-linear at tp 2 x dp 2: the first loss is transformers' (ref.json, B = 0);
#    stop at step 10, resume on (1,1) and (1,2): losses within 1e-5 relative of the
#    uninterrupted run; full fine-tuning of qwen3 likewise (2,2) -> (1,1);
#  - BF16 and F16 model files give the run of F32 files of the same values, bit for bit;
#  - the PEFT export names HF's modules (base_model.model.model.layers.0.self_attn.q_proj...),
#    fan_in_fan_out false, target_modules the seven projections; `export` of the checkpoint
#    gives the same directory;
#  - analyze vs-base of the LoRA checkpoint against numpy (W read (out, in) from the file);
#  - a transformers-4 config.json (top-level rope_theta, rope_scaling null) = the
#    transformers-5 one (rope_parameters), bit for bit;
#  - refused with their names: tp not dividing num_key_value_heads (listing the tp values that
#    work), a GPT-2 target on a Llama model, rope_type yarn, MixtralForCausalLM, num_experts,
#    a Mistral sliding_window shorter than seq_len (and accepted when it covers it); sizes of
#    config.json the file's tensors contradict (checked from headers before allocating).
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
fx=${LMP_HF_TINY:-$src/tests/fixtures/hf-tiny}
[ -d "$fx/llama" ] || { echo "FAIL: fixtures not found at $fx"; exit 1; }

cat > run.ini <<INI
[model]
path = $fx/llama/model
[adapter]
method = lora
targets = all-linear
r = 4
alpha = 8
dropout = 0.1
[train]
steps = 20
batch_size = 4
seq_len = 16
lr = 1e-3
warmup_steps = 2
weight_decay = 0.0
seed = 3
[data]
train = $fx/llama/data.bin
[log]
every = 5
metrics = m.jsonl
[parallel]
tp = 2
[checkpoint]
dir = ck
every = 5
INI

first() { $py -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["loss"])' "$1"; }
relok() { $py -c 'import sys; a, b, t = map(float, sys.argv[1:]); sys.exit(not abs(a - b) <= t * abs(b))' "$@"; }
reflos() { $py -c 'import json,sys; print(json.load(open(sys.argv[1]))["loss"])' "$1"; }

# Checkpoint on (2,2), resume on other layouts; LoRA on llama, full fine-tuning on qwen3.
resume_check() {  # name method fixture
  local name=$1 method=$2 f=$3
  mkdir -p "$name" && cd "$name"
  local set="--set model.path=$fx/$f/model --set data.train=$fx/$f/data.bin --set adapter.method=$method"
  mpi 4 "$bin" train ../run.ini $set --set checkpoint.dir=ref --set train.save_adapter=peft > ref.log 2>&1 \
    && mv m.jsonl ref.jsonl && ok || { fail "$name: reference run"; cat ref.log; }
  mpi 4 "$bin" train ../run.ini $set --stop-at 10 > stop.log 2>&1 || { fail "$name: stop-at"; cat stop.log; }
  for lay in "1 1" "2 1"; do
    set -- $lay; d="n$1_tp$2"
    cp -r ck "$d"; cp m.jsonl "$d.jsonl"
    mpi "$1" "$bin" train ../run.ini $set --set parallel.tp=$2 --set checkpoint.dir="$d" \
      --set log.metrics="$d.jsonl" > "$d.log" 2>&1 || { fail "$name: resume on $d"; cat "$d.log"; }
    grep -q "written by tp 2 x dp 2" "$d.log" && ok || fail "$name: $d did not resume from the (2,2) checkpoint"
    rel=$(maxrel ref.jsonl "$d.jsonl"); $py -c "import sys; sys.exit(not $rel <= 1e-5)" \
      && ok || fail "$name: (2,2) -> $d losses differ by $rel relative"
  done
  cd ..
}
resume_check lora lora llama
resume_check full none qwen3
# LoRA starts at B = 0: transformers' loss of the base model on the fixture batch.
relok "$(first lora/ref.jsonl)" "$(reflos $fx/llama/ref.json)" 1e-5 && ok || fail "first loss $(first lora/ref.jsonl) vs transformers $(reflos $fx/llama/ref.json)"

$py - lora/peft <<'PY' && ok || fail "PEFT export of a Llama adapter"
import json, struct, sys
d = sys.argv[1]
c = json.load(open(d + "/adapter_config.json"))
assert c["fan_in_fan_out"] is False, c["fan_in_fan_out"]
want = {"self_attn." + p for p in ("q_proj", "k_proj", "v_proj", "o_proj")} | {"mlp." + p for p in ("gate_proj", "up_proj", "down_proj")}
assert set(c["target_modules"]) == want, c["target_modules"]
b = open(d + "/adapter_model.safetensors", "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
assert "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight" in h, sorted(h)[:4]
assert h["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"]["shape"] == [64, 4]
assert len([k for k in h if k != "__metadata__"]) == 2 * 7 * 2
PY

# export of the final (2,2) checkpoint = the run's save_adapter, tensor for tensor.
mpi 2 "$bin" export lora/ref/ckpt-00000020.h5 --out exported > export.log 2>&1 || { fail "export"; cat export.log; }
$py - exported lora/peft <<'PY' && ok || fail "export of a Llama checkpoint differs from save_adapter"
import json, struct, sys, numpy as np
def rd(p):
    b = open(p + "/adapter_model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]], dtype=np.float32)
            for k, e in h.items() if k != "__metadata__"}
a, b = rd(sys.argv[1]), rd(sys.argv[2])
assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
assert json.load(open(sys.argv[1] + "/adapter_config.json")) == json.load(open(sys.argv[2] + "/adapter_config.json"))
PY

# analyze vs-base reads the (out, in) base weights: w_fro and proj_dw against numpy.
mpi 2 "$bin" analyze vs-base lora/ref/ckpt-00000020.h5 --model "$fx/llama/model" --out vb.h5 --no-plot > vb.log 2>&1 \
  || { fail "vs-base"; cat vb.log; }
$py - "$fx/llama/model/model.safetensors" lora/ref/ckpt-00000020.h5 vb.csv <<'PY' && ok || fail "vs-base of a Llama adapter vs numpy"
import csv, json, struct, sys, h5py, numpy as np
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
rows = {r["module"]: r for r in csv.DictReader(open(sys.argv[3]))}
assert len(rows) == 14, len(rows)
for mod, r in rows.items():
    e = h[mod + ".weight"]; s, t = e["data_offsets"]
    W = np.frombuffer(b[8 + n + s:8 + n + t], dtype=np.float32).reshape(e["shape"]).astype(np.float64)
    g = h5py.File(sys.argv[2], "r")["adapter/" + mod]
    dW = g.attrs["scaling"] * g["lora_B"][()].astype(np.float64) @ g["lora_A"][()]
    U, S, Vt = np.linalg.svd(dW)
    want = (np.linalg.norm(W), np.linalg.norm(U[:, :4].T @ W @ Vt[:4].T))
    got = (float(r["w_fro"]), float(r["proj_dw"]))
    assert all(abs(x - y) <= 1e-6 * abs(x) for x, y in zip(want, got)), (mod, want, got)
PY

# transformers 4's layout of the same config: identical run.
mkdir -p t4 && cp "$fx/llama/model/model.safetensors" t4/ && $py - "$fx/llama/model/config.json" t4/config.json <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); p = c.pop("rope_parameters")
c["rope_theta"] = p["rope_theta"]; c["rope_scaling"] = None
json.dump(c, open(sys.argv[2], "w"))
PY
one="--set parallel.tp=1 --set checkpoint.dir= --set train.steps=3 --set log.every=1"
mpi 1 "$bin" train run.ini $one --set log.metrics=t5.jsonl > t5.log 2>&1 || { fail "t5 run"; cat t5.log; }
mpi 1 "$bin" train run.ini $one --set model.path=t4 --set log.metrics=t4.jsonl > t4.log 2>&1 || { fail "t4 run"; cat t4.log; }
[ "$(cut -d, -f1-2 t4.jsonl)" = "$(cut -d, -f1-2 t5.jsonl)" ] && ok || fail "transformers-4 config differs from -5"

# BF16 and F16 files: the same run as F32 files of the same (rounded) values, bit for bit.
$py - "$fx/llama/model" <<'PY' || fail "writing BF16/F16 copies"
import json, os, struct, sys, numpy as np
src = sys.argv[1]; b = open(src + "/model.safetensors", "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
def write(d, conv):
    os.makedirs(d, exist_ok=True); os.system("cp '%s/config.json' %s/" % (src, d))
    hdr, blob = {}, b""
    for k, e in h.items():
        if k == "__metadata__": continue
        s, t = e["data_offsets"]; x = np.frombuffer(b[8 + n + s:8 + n + t], dtype=np.float32)
        dt, raw = conv(x)
        hdr[k] = {"dtype": dt, "shape": e["shape"], "data_offsets": [len(blob), len(blob) + len(raw)]}; blob += raw
    hj = json.dumps(hdr).encode(); open(d + "/model.safetensors", "wb").write(struct.pack("<Q", len(hj)) + hj + blob)
bf = lambda x: (x.view(np.uint32) + 0x7FFF + ((x.view(np.uint32) >> 16) & 1)) >> 16  # round to nearest even
write("bf16", lambda x: ("BF16", bf(x).astype(np.uint16).tobytes()))
write("bf16r", lambda x: ("F32", (bf(x) << 16).astype(np.uint32).view(np.float32).tobytes()))
write("f16", lambda x: ("F16", x.astype(np.float16).tobytes()))
write("f16r", lambda x: ("F32", x.astype(np.float16).astype(np.float32).tobytes()))
PY
for dt in bf16 f16; do
  mpi 1 "$bin" train run.ini $one --set model.path=$dt --set log.metrics=$dt.jsonl > $dt.log 2>&1 || { fail "$dt run"; cat $dt.log; }
  mpi 1 "$bin" train run.ini $one --set model.path=${dt}r --set log.metrics=${dt}r.jsonl > ${dt}r.log 2>&1 || fail "${dt}r run"
  [ -s $dt.jsonl ] && [ "$(cut -d, -f1-3 $dt.jsonl)" = "$(cut -d, -f1-3 ${dt}r.jsonl)" ] && ok || fail "$dt file differs from F32 of its values"
done

# Refusals, each naming what it refuses.
variant() {  # dir python-expression-on-c
  mkdir -p "$1" && ln -sf "$fx/llama/model/model.safetensors" "$1/" && $py -c "import json, sys
c = json.load(open('$fx/llama/model/config.json')); $2
json.dump(c, open('$1/config.json', 'w'))"
}
refuse() {  # what expected-text args...
  local what=$1 want=$2; shift 2
  mpi "$@" > refuse.log 2>&1; rc=$?
  [ $rc -ne 0 ] && grep -q -- "$want" refuse.log && ok || { fail "$what: rc $rc, expected '$want'"; cat refuse.log; }
}
refuse "tp 4 over 2 kv heads" "tp may be 1, 2" 4 "$bin" train run.ini $one --set parallel.tp=4
refuse "GPT-2 target" "targets = c_attn: model family LlamaForCausalLM has no such layer; its targets are q_proj" \
  1 "$bin" train run.ini $one --set adapter.targets=c_attn
variant yarn 'c["rope_parameters"] = {"rope_theta": 1e4, "rope_type": "yarn", "factor": 4.0}'
refuse "rope yarn" 'rope_type "yarn" is not implemented' 1 "$bin" train run.ini $one --set model.path=yarn
variant mixtral 'c["architectures"] = ["MixtralForCausalLM"]; c["model_type"] = "mixtral"'
refuse "Mixtral" "model MixtralForCausalLM (model_type mixtral) is not implemented" 1 "$bin" train run.ini $one --set model.path=mixtral
variant moe 'c["num_experts"] = 8'
refuse "MoE" "num_experts is set: mixture-of-experts" 1 "$bin" train run.ini $one --set model.path=moe
variant bigvocab 'c["vocab_size"] = 1 << 30'
refuse "vocab_size beyond the file" "model.embed_tokens.weight has shape \[256, 64\], config.json needs \[1073741824, 64\]" \
  1 "$bin" train run.ini $one --set model.path=bigvocab
variant fewer 'c["num_hidden_layers"] = 1'
refuse "fewer layers than the file" "holds model.layers.1.self_attn.q_proj.weight, but config.json says num_hidden_layers = 1" \
  1 "$bin" train run.ini $one --set model.path=fewer
variant swa 'c["architectures"] = ["MistralForCausalLM"]; c["model_type"] = "mistral"; c["sliding_window"] = 8'
refuse "sliding window" "sliding_window = 8 applies at \[train\] seq_len = 16" 1 "$bin" train run.ini $one --set model.path=swa
mpi 1 "$bin" train run.ini $one --set model.path=swa --set train.seq_len=8 > swa.log 2>&1 && ok || { fail "window covering seq_len"; cat swa.log; }
finish
