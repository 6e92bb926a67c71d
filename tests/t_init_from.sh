#!/usr/bin/env bash
# [adapter] init_from end to end, against the PEFT fixture tests/fixtures/hf-tiny/gpt2
# (a GPT-2 model and a LoRA adapter written by transformers 5.17 / PEFT 0.21, with PEFT's own
# loss on one batch in ref.json):
#  - step 1's loss with the fixture's adapter equals ref.json lora.loss within 1e-5 relative,
#    on tp = 1 and tp = 2 (every rank up), and the overridden [adapter] keys are warned about;
#  - export -> init_from -> export is exact: an adapter with layers_to_transform,
#    rank_pattern, alpha_pattern and rsLoRA, trained 2 steps and saved, then loaded and saved
#    again (lr 1e-30: no value moves) gives bitwise equal tensors and an equivalent config;
#    `lorampi export` of the run's checkpoint gives the same tensors; a resume takes the
#    checkpoint, not init_from;
#  - bad input (an adapter for another model, an unknown target, use_dora with method lora or
#    without magnitudes, bias = all, a
#    truncated safetensors file, a tensor no module uses, full fine-tuning): non-zero exit on
#    every rank (2 ranks, no hang), one message naming the file and the problem, nothing
#    written.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
fx=$(cd "$src/tests/fixtures/hf-tiny/gpt2" 2>/dev/null && pwd)
[ -n "$fx" ] && [ -f "$fx/ref.json" ] || { fail "fixture $src/tests/fixtures/hf-tiny/gpt2 missing"; finish; exit 1; }

cat > run.ini <<INI
[model]
path = $fx/model
[adapter]
init_from = $fx/lora
[train]
steps = 1
batch_size = 1
seq_len = 32
lr = 1e-3
[data]
train = $fx/data.bin
INI

# A tiny safetensors reader/writer and the comparisons (Python, no third-party module).
cat > st.py <<'PY'
import json, struct, sys
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
def write(path, tensors):  # name -> (shape, raw float32 bytes)
    h, off = {"__metadata__": {"format": "pt"}}, 0
    for k, (shape, raw) in tensors.items():
        h[k] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}; off += len(raw)
    hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for shape, raw in tensors.values(): f.write(raw)
def first_loss(path): return json.loads(open(path).readline())["loss"]
cmd = sys.argv[1]
if cmd == "loss":  # metrics ref.json: step 1's loss within 1e-5 relative of lora.loss
    got, ref = first_loss(sys.argv[2]), json.load(open(sys.argv[3]))["lora"]["loss"]
    print("loss %.9f ref %.9f rel %.2e" % (got, ref, abs(got - ref) / abs(ref)))
    sys.exit(0 if abs(got - ref) <= 1e-5 * abs(ref) else 1)
if cmd == "variant":  # fixture dir -> out dir: layers 1-2, c_attn + mlp.c_fc, per-module r/alpha, rsLoRA
    src, out = sys.argv[2], sys.argv[3]
    t = read(src + "/adapter_model.safetensors"); keep = {}
    for k, (dt, shape, raw) in sorted(t.items()):
        if not any(f"h.{l}.{m}." in k for l in (1, 2) for m in ("attn.c_attn", "mlp.c_fc")): continue
        if "h.1.mlp.c_fc" in k:  # r 2: A's first 2 rows, B's first 2 columns
            a = "lora_A" in k
            rows = [raw[i * shape[1] * 4:(i + 1) * shape[1] * 4] for i in range(shape[0])]
            raw = b"".join(rows[:2]) if a else b"".join(r[:8] for r in rows)
            shape = [2, shape[1]] if a else [shape[0], 2]
        keep[k] = (shape, raw)
    write(out + "/adapter_model.safetensors", keep)
    c = json.load(open(src + "/adapter_config.json"))
    c.update(target_modules=["c_attn", "mlp.c_fc"], layers_to_transform=[1, 2], use_rslora=True,
             rank_pattern={"h.1.mlp.c_fc": 2}, alpha_pattern={"c_attn": 5})
    json.dump(c, open(out + "/adapter_config.json", "w"), indent=2)
    sys.exit(0)
if cmd == "same":  # two PEFT dirs: tensors bitwise, configs equivalent
    a, b = sys.argv[2], sys.argv[3]
    ta, tb = read(a + "/adapter_model.safetensors"), read(b + "/adapter_model.safetensors")
    if ta != tb: print("tensors differ:", sorted(set(ta) ^ set(tb)) or [k for k in ta if ta[k] != tb[k]][:3]); sys.exit(1)
    if len(sys.argv) > 4: sys.exit(0)  # tensors only
    ca, cb = json.load(open(a + "/adapter_config.json")), json.load(open(b + "/adapter_config.json"))
    for k in ("peft_type", "r", "lora_alpha", "use_rslora", "fan_in_fan_out", "bias", "layers_to_transform",
              "rank_pattern", "alpha_pattern", "lora_dropout"):
        if ca.get(k) != cb.get(k): print("config", k, ca.get(k), cb.get(k)); sys.exit(1)
    if sorted(ca["target_modules"]) != sorted(cb["target_modules"]): print("target_modules differ"); sys.exit(1)
    sys.exit(0)
if cmd == "check_variant":  # lorampi's export of the variant: its r/alpha per module written back
    c = json.load(open(sys.argv[2] + "/adapter_config.json"))
    rp, ap = c["rank_pattern"], c["alpha_pattern"]
    ok = (c["r"] == 4 and c["lora_alpha"] == 8 and c["use_rslora"] and c["layers_to_transform"] == [1, 2]
          and sorted(c["target_modules"]) == ["attn.c_attn", "mlp.c_fc"] and rp == {"transformer.h.1.mlp.c_fc": 2}
          and ap == {"transformer.h.1.attn.c_attn": 5.0, "transformer.h.2.attn.c_attn": 5.0})
    print(json.dumps({"r": c["r"], "rank_pattern": rp, "alpha_pattern": ap})); sys.exit(0 if ok else 1)
PY

# 1. PEFT's loss on tp = 1 and tp = 2.
for tp in 1 2; do
  mpi $tp "$bin" train run.ini --set parallel.tp=$tp --set log.metrics=m$tp.jsonl > tp$tp.log 2>&1 || { cat tp$tp.log; fail "tp $tp: training failed"; }
  grep -q "ranks 0-$((tp-1)) of $tp up" tp$tp.log && ok || fail "tp $tp: not every rank reported"
  python3 st.py loss m$tp.jsonl "$fx/ref.json" > loss$tp.txt && ok || fail "tp $tp: step-1 loss is not PEFT's: $(cat loss$tp.txt)"
  cat loss$tp.txt
done
grep -q "warning: \[adapter\] init_from: the adapter's config overrides \[adapter\] r = 8 -> 4, \[adapter\] alpha = 16 -> 8" tp1.log \
  && grep -q "adapter_config.json)" tp1.log && [ "$(grep -c 'init_from: the adapter' tp2.log)" -eq 1 ] && ok \
  || { fail "one warning listing the overridden keys"; cat tp1.log; }

# 2. export -> init_from -> export, with per-module r/alpha, some layers, rsLoRA.
mkdir -p variant && python3 st.py variant "$fx/lora" variant || fail "writing the variant adapter"
mpi 1 "$bin" train run.ini --set adapter.init_from=variant --set train.steps=2 --set train.save_adapter=outA \
  --set checkpoint.dir=ckA > rtA.log 2>&1 || { cat rtA.log; fail "variant: training failed"; }
python3 st.py check_variant outA && ok || fail "variant: the export does not carry its rank/alpha patterns"
mpi 2 "$bin" train run.ini --set adapter.init_from=outA --set train.lr=1e-30 --set train.weight_decay=0 \
  --set train.save_adapter=outB --set parallel.tp=2 > rtB.log 2>&1 || { cat rtB.log; fail "init_from of the export failed"; }
python3 st.py same outA outB && ok || fail "export -> init_from -> export is not exact"
"$bin" export ckA/ckpt-00000002.h5 --out outE > exp.log 2>&1 && python3 st.py same outA outE tensors && ok \
  || { cat exp.log; fail "lorampi export of the checkpoint differs from save_adapter"; }
# A resume continues the run from its checkpoint; init_from is not read for tensors.
mpi 1 "$bin" train run.ini --set adapter.init_from=variant --set train.steps=3 --set checkpoint.dir=ckA > res.log 2>&1 \
  && grep -q "resumed from ckA/ckpt-00000002.h5" res.log && ! grep -q "^init_from:" res.log && ok \
  || { cat res.log; fail "resume with init_from: the checkpoint must take precedence"; }

# 3. Bad input: 2 ranks, non-zero, one message naming the file and the problem, nothing written.
bad() {  # bad NAME PATTERN [--set ...]
  local name=$1 pat=$2; shift 2
  timeout 60 "${MPIEXEC:-mpiexec}" --oversubscribe -n 2 "$bin" train run.ini --set parallel.tp=2 \
    --set checkpoint.dir=ck_$name --set train.save_adapter=out_$name "$@" > bad_$name.log 2>&1
  local rc=$?
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then fail "$name: exit code $rc"; cat bad_$name.log; return; fi
  grep -q -- "$pat" bad_$name.log && ok || { fail "$name: message lacks '$pat'"; cat bad_$name.log; }
  [ "$(grep -c 'lorampi: error' bad_$name.log)" -eq 1 ] && ok || { fail "$name: not one error message"; cat bad_$name.log; }
  [ -z "$(ls -A ck_$name 2>/dev/null)" ] && [ ! -e out_$name ] && ok || fail "$name: files were written"
}
badcfg() {  # badcfg DIR PYTHON-EXPR-ON-c: a copy of the fixture with its config edited
  mkdir -p "$1" && cp "$fx/lora/adapter_model.safetensors" "$1/" && chmod u+w "$1"/*
  python3 -c "import json; c = json.load(open('$fx/lora/adapter_config.json')); $2; json.dump(c, open('$1/adapter_config.json', 'w'))"
}
bad other_model "adapter_model.safetensors: tensor base_model.model.transformer.h.0.attn.c_attn.lora_A.weight has shape (4, 128); the model needs (4, 64)" \
  --set model.path= --set model.n_embd=64 --set model.vocab_size=512 --set model.n_ctx=128
badcfg unknown_target "c['target_modules'] = ['c_attn', 'q_proj']"
bad unknown_target "unknown_target/adapter_config.json: \"target_modules\" entry \"q_proj\" matches no module of the model" --set adapter.init_from=unknown_target
badcfg embedding "c['target_modules'] = ['c_attn', 'wte']"
bad embedding "embedding/adapter_config.json: \"target_modules\" entry \"wte\" matches transformer.wte, which lorampi cannot adapt" --set adapter.init_from=embedding
badcfg dora "c['use_dora'] = True"
bad dora "dora/adapter_config.json holds a PEFT DoRA adapter; it needs \[adapter\] method = dora (not lora)" --set adapter.init_from=dora
bad dora_tensors "dora/adapter_model.safetensors has no tensor base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector" \
  --set adapter.init_from=dora --set adapter.method=dora
badcfg bias "c['bias'] = 'all'"
bad bias "bias/adapter_config.json: \"bias\" = \"all\": lorampi trains no biases" --set adapter.init_from=bias
badcfg extra "c['layers_to_transform'] = [0, 1]"
bad extra "extra/adapter_model.safetensors: tensor base_model.model.transformer.h.2.attn.c_attn.lora_A.weight belongs to no module" --set adapter.init_from=extra
badcfg truncated "pass"
sz=$(stat -c %s truncated/adapter_model.safetensors); truncate -s $((sz / 2)) truncated/adapter_model.safetensors
bad truncated "truncated/adapter_model.safetensors" --set adapter.init_from=truncated
bad full_finetune "\[adapter\] init_from = .* needs \[adapter\] method = lora" --set adapter.method=none
finish
