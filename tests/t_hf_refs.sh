#!/usr/bin/env bash
# Losses against the libraries users run: models (and merged adapters) written by Hugging Face
# transformers / PEFT, evaluated by `lorampi eval` on their own token files, must give the
# loss those libraries computed on the same tokens (ref.json), within 1e-5 relative, on one
# rank and on tp = 2 (every rank checked). And `lorampi merge` of hf-tiny GPT-2's PEFT LoRA
# (taken in by init_from, one step at lr 1e-30: no value moves) equals PEFT's merge_and_unload tensor by tensor:
# the same key names, shapes and values within fp32 rounding, on 1 and 2 ranks. The Llama
# family: hf-tiny's Llama, Qwen2, Qwen3 and the variants (llama3 and linear RoPE, the
# transformers-4 config layout, Mistral, bf16 shards with an index) on tp = 1 and 2; their
# PEFT LoRA adapters taken in by init_from give PEFT's loss, and 5 AdamW steps PEFT's
# trajectory within 1e-4 relative (tp = 1, tp = 2, dp = 2); likewise their PEFT prefix-tuning
# adapters (tp = 1, 2), whose `export` is PEFT's files. PEFT's IA3 and DoRA adapters of
# hf-tiny's gpt2_methods and llama_methods likewise (loss 1e-5, trajectory 1e-4; tp 1 and 2),
# and written back by save_adapter and export in PEFT's format (keys, shapes, values, config).
# Their checkpoints merged by `lorampi merge` (GPT-2, 1 and 2 ranks) give PEFT's loss within 1e-5.
# Fixtures: tests/fixtures/hf-tiny and tests/fixtures/hf-variants (tests/fixtures/README.md).
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
tiny="$src/tests/fixtures/hf-tiny"
var="$src/tests/fixtures/hf-variants"
py=/usr/bin/python3  # Debian's, with numpy (install-deps.sh test)

# ref_loss REF.JSON KEY: the reference loss (KEY "loss" or "lora.loss").
ref_loss() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); [j:=j[k] for k in sys.argv[2].split('.')]; print(j)" "$1" "$2"; }

# check NAME MODEL DATA B T REF [NP TP]: eval's loss equals REF within 1e-5 relative.
check() {
  local name=$1 model=$2 data=$3 B=$4 T=$5 ref=$6 np=${7:-1} tp=${8:-1}
  printf '[model]\npath = %s\n[adapter]\nmethod = none\n[train]\nbatch_size = %s\nseq_len = %s\n[parallel]\ntp = %s\n' \
    "$model" "$B" "$T" "$tp" > "$name.ini"
  if ! mpi "$np" "$bin" eval "$name.ini" --no-resume --data "$data" --batches 1 > "$name.out" 2> "$name.err"; then
    fail "$name: eval failed"; cat "$name.err"; return
  fi
  local n
  n=$(grep -c "^eval: " "$name.out")
  [ "$n" -ge 1 ] || { fail "$name: no eval line"; cat "$name.out" "$name.err"; return; }
  python3 - "$name" "$name.out" "$ref" "$np" <<'PY' && ok || fail "$name"
import json, sys
name, out, ref, np_ = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
lines = [json.loads(l) for l in open(out) if l.startswith("{")]
assert len(lines) == 1, f"{name}: expected one JSON line from rank 0, got {len(lines)}"
loss = lines[0]["loss"]
rel = abs(loss - ref) / abs(ref)
print(f"{name}: loss {loss:.7f} reference {ref:.7f} rel {rel:.2e}")
sys.exit(0 if rel < 1e-5 else 1)
PY
}

g="$tiny/gpt2"
if [ -d "$g" ]; then
  check gpt2 "$g/model" "$g/data.bin" 1 32 "$(ref_loss "$g/ref.json" loss)"
  check gpt2_tp2 "$g/model" "$g/data.bin" 1 32 "$(ref_loss "$g/ref.json" loss)" 2 2
else
  echo "no $g: the hf-tiny GPT-2 checks are skipped"
fi
m="$var/gpt2_merged"
check gpt2_merged "$m/model" "$g/data.bin" 1 32 "$(ref_loss "$m/ref.json" loss)"
check gpt2_merged_tp2 "$m/model" "$g/data.bin" 1 32 "$(ref_loss "$m/ref.json" loss)" 2 2

# The Llama family: the models' losses, one and two ranks.
for f in llama qwen2 qwen3; do
  d="$tiny/$f"
  [ -d "$d" ] || { fail "no fixture $d"; continue; }
  check $f "$d/model" "$d/data.bin" 2 16 "$(ref_loss "$d/ref.json" loss)"
  check ${f}_tp2 "$d/model" "$d/data.bin" 2 16 "$(ref_loss "$d/ref.json" loss)" 2 2
done
mkdir -p t4 && cp "$var/llama3rope/model/config.t4.json" t4/config.json && ln -sf "$var/llama3rope/model/model.safetensors" t4/
for v in llama3rope linrope mistral sharded; do
  check $v "$var/$v/model" "$var/$v/data.bin" 2 16 "$(ref_loss "$var/$v/ref.json" loss)"
  check ${v}_tp2 "$var/$v/model" "$var/$v/data.bin" 2 16 "$(ref_loss "$var/$v/ref.json" loss)" 2 2
done
check llama3rope_t4_layout t4 "$var/llama3rope/data.bin" 2 16 "$(ref_loss "$var/llama3rope/ref.json" loss)"

# trajectory NAME DIR NP TP [METHOD]: init_from DIR/METHOD (lora, ia3, dora; default lora), 5
# AdamW steps as the fixture's (lr 1e-3, betas 0.9/0.999, eps 1e-8, no decay, no clipping,
# constant lr); step losses against METHOD.adamw_losses (or the first against METHOD.loss
# where there is no trajectory).
trajectory() {
  local name=$1 d=$2 np=$3 tp=$4 meth=${5:-lora}
  printf '[model]\npath = %s\n[adapter]\nmethod = %s\ninit_from = %s\n[train]\nsteps = 5\nlr = 1e-3\nschedule = constant\nweight_decay = 0\ngrad_clip = 0\nbatch_size = 2\nseq_len = 16\n[data]\ntrain = %s\n[log]\nmetrics = %s.jsonl\n[parallel]\ntp = %s\n' \
    "$d/model" "$meth" "$d/$meth" "$d/data.bin" "$name" "$tp" > "$name.ini"
  if ! mpi "$np" "$bin" train "$name.ini" > "$name.log" 2>&1; then fail "$name: training failed"; cat "$name.log"; return; fi
  python3 - "$name" "$name.jsonl" "$d/ref.json" "$meth" <<'PY' && ok || fail "$name: not PEFT's trajectory"
import json, sys
name, metrics, ref = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))[sys.argv[4]]
got = [json.loads(l)["loss"] for l in open(metrics)]
want = ref.get("adamw_losses", [ref["loss"]])
rel = max(abs(g - w) / abs(w) for g, w in zip(got, want))
rel0 = abs(got[0] - ref["loss"]) / abs(ref["loss"])  # the loss before training: 1e-5
print("%s: losses %s, PEFT %s, worst rel %.2e (first %.2e)" % (name, ["%.6f" % g for g in got], ["%.6f" % w for w in want], rel, rel0))
sys.exit(0 if len(got) == 5 and rel0 < 1e-5 and rel < (1e-5 if len(want) == 1 else 1e-4) else 1)
PY
}
for f in llama qwen2 qwen3; do
  trajectory ${f}_lora "$tiny/$f" 1 1
  trajectory ${f}_lora_tp2 "$tiny/$f" 2 2
done
trajectory llama_lora_dp2 "$tiny/llama" 2 1
# IA³ (c_attn, feed-forward mlp.c_proj; k_proj, v_proj, feed-forward down_proj) and DoRA
# (c_attn, c_fc; q_proj, v_proj, o_proj, down_proj) from PEFT's own files (non-neutral values).
for f in gpt2 llama; do
  for meth in ia3 dora; do
    trajectory ${f}_methods_$meth "$tiny/${f}_methods" 1 1 $meth
    trajectory ${f}_methods_${meth}_tp2 "$tiny/${f}_methods" 2 2 $meth
  done
done
trajectory llama_methods_dora_dp2 "$tiny/llama_methods" 2 1 dora

# export_peft NAME DIR METHOD: init_from DIR/METHOD on tp = 2, one step at lr 1e-30 (no value
# moves), `[train] save_adapter` and `lorampi export` of the checkpoint: PEFT's key names,
# shapes and values, its adapter_config.json fields (less peft_version; for LORA, less the
# fields PEFT writes unset) with the same peft_type, use_dora, r, lora_alpha, fan_in_fan_out
# and target/feed-forward modules (ours by site, "attn.c_attn" for PEFT's "c_attn").
export_peft() {
  local name=$1 d=$2 meth=$3
  printf '[model]\npath = %s\n[adapter]\nmethod = %s\ninit_from = %s\n[train]\nsteps = 1\nlr = 1e-30\nbatch_size = 2\nseq_len = 16\nsave_adapter = %s_out\n[data]\ntrain = %s\n[checkpoint]\ndir = %s_ck\n[parallel]\ntp = 2\n' \
    "$d/model" "$meth" "$d/$meth" "$name" "$d/data.bin" "$name" > "$name.ini"
  if ! mpi 2 "$bin" train "$name.ini" > "$name.log" 2>&1; then fail "$name: training failed"; cat "$name.log"; return; fi
  if ! "$bin" export "${name}_ck/ckpt-00000001.h5" --out "${name}_export" > "$name.export.log" 2>&1; then
    fail "$name: export failed"; cat "$name.export.log"; return
  fi
  for out in "${name}_out" "${name}_export"; do
    $py - "$out" "$d/$meth" <<'PY' && ok || fail "$name: $out is not PEFT's format"
import json, struct, sys
import numpy as np
def read(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"])
            for k, v in h.items()}
ours, peft = sys.argv[1], sys.argv[2]
a, b = read(ours + "/adapter_model.safetensors"), read(peft + "/adapter_model.safetensors")
assert set(a) == set(b), "keys differ: %s" % sorted(set(a) ^ set(b))
assert all(a[k].shape == b[k].shape for k in b), [(k, a[k].shape, b[k].shape) for k in b if a[k].shape != b[k].shape]
worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in b)
ca, cb = json.load(open(ours + "/adapter_config.json")), json.load(open(peft + "/adapter_config.json"))
unset = lambda v: v in (None, False, "", [], {}) or v == "megatron.core" or v == 16
missing = [k for k in cb if k not in ca and k != "peft_version" and not (cb["peft_type"] == "LORA" and unset(cb[k]))]
assert not missing, "fields missing: %s" % missing
for k in ("peft_type", "use_dora", "r", "lora_alpha", "fan_in_fan_out"):
    assert k not in cb or ca.get(k) == cb[k], (k, ca.get(k), cb[k])
for k in ("target_modules", "feedforward_modules"):
    if k in cb:
        assert len(ca[k]) == len(cb[k]) and all(any(x == y or x.endswith("." + y) for x in ca[k]) for y in cb[k]), (k, ca[k], cb[k])
print("%s: %d tensors as PEFT's, max |difference| %.3g; config fields as PEFT's" % (ours, len(b), worst))
sys.exit(0 if worst == 0 else 1)
PY
  done
}
for f in gpt2 llama; do
  for meth in ia3 dora; do export_peft ${f}_export_$meth "$tiny/${f}_methods" $meth; done
done

# IA³ and DoRA merged (`lorampi merge` of the checkpoints above, 1 and 2 ranks): the merged
# GPT-2 gives PEFT's loss of the adapted model within 1e-5 (the Llama family's merged
# config.json is not written yet).
for meth in ia3 dora; do
  for np in 1 2; do
    if mpi $np "$bin" merge gpt2_export_${meth}_ck/ckpt-00000001.h5 --out merged_${meth}_$np > merged_${meth}_$np.log 2>&1; then
      check merged_${meth}_$np merged_${meth}_$np "$tiny/gpt2_methods/data.bin" 2 16 "$(ref_loss "$tiny/gpt2_methods/ref.json" $meth.loss)" $np $np
    else
      fail "merge of $meth on $np ranks"; cat merged_${meth}_$np.log
    fi
  done
done

# Prefix tuning: PEFT's PREFIX_TUNING adapters of gpt2_methods and llama_methods (GQA: the
# prefixes of 2 KV heads of 4) taken in by init_from give PEFT's loss (1e-5) and its 5-step
# AdamW trajectory (1e-4) on tp = 1 and 2; `export` of the run (one step at lr 1e-30: no value
# moves) writes PEFT's files: the same key, shape and values, the same adapter_config.json fields
# and values (but base_model_name_or_path), and the export taken in again gives the same loss.
prefix_run() {  # NAME DIR NP TP STEPS LR: train from DIR/prefix, checkpoint at the end
  printf '[model]\npath = %s\n[adapter]\nmethod = prefix\ninit_from = %s\n[train]\nsteps = %s\nlr = %s\nschedule = constant\nweight_decay = 0\ngrad_clip = 0\nbatch_size = 2\nseq_len = 16\n[data]\ntrain = %s\n[log]\nmetrics = %s.jsonl\n[parallel]\ntp = %s\n[checkpoint]\ndir = %s.ck\n' \
    "$2/model" "${7:-$2/prefix}" "$5" "$6" "$2/data.bin" "$1" "$4" "$1" > "$1.ini"
  mpi "$3" "$bin" train "$1.ini" > "$1.log" 2>&1 || { fail "$1: training failed"; cat "$1.log"; return 1; }
}
prefix_losses() {  # NAME METRICS REF.JSON N: the first N losses against prefix.adamw_losses
  $py - "$@" <<'PY'
import json, sys
name, metrics, ref, n = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))["prefix"], int(sys.argv[4])
got = [json.loads(l)["loss"] for l in open(metrics)][:n]
want = ref["adamw_losses"][:n]
rel = max(abs(g - w) / abs(w) for g, w in zip(got, want))
print("%s: losses %s, PEFT %s, worst rel %.2e" % (name, ["%.7f" % g for g in got], ["%.7f" % w for w in want], rel))
sys.exit(0 if len(got) == n and abs(got[0] - ref["loss"]) <= 1e-5 * ref["loss"] and rel < 1e-4 else 1)
PY
}
for f in gpt2_methods llama_methods; do
  for tp in 1 2; do
    prefix_run ${f}_prefix_tp$tp "$tiny/$f" $tp $tp 5 1e-3 && prefix_losses ${f}_prefix_tp$tp ${f}_prefix_tp$tp.jsonl "$tiny/$f/ref.json" 5 \
      && ok || fail "${f} prefix tp $tp: not PEFT's trajectory"
  done
  n=${f}_prefix_export
  prefix_run $n "$tiny/$f" 2 2 1 1e-30 || continue
  mpi 2 "$bin" export $n.ck/ckpt-00000001.h5 --out $n.out > $n.exlog 2>&1 || { fail "$n: export"; cat $n.exlog; continue; }
  $py - $n.out "$tiny/$f/prefix" <<'PY' && ok || fail "$n: not PEFT's files"
import json, struct, sys
import numpy as np
def st(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); m = h.pop("__metadata__", None)
    return m, {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"]) for k, v in h.items()}
(mo, ours), (mp, peft) = st(sys.argv[1] + "/adapter_model.safetensors"), st(sys.argv[2] + "/adapter_model.safetensors")
assert mo == mp and sorted(ours) == sorted(peft), (mo, mp, sorted(ours), sorted(peft))
assert all(ours[k].shape == peft[k].shape for k in peft)
worst = max(float(np.max(np.abs(ours[k] - peft[k]))) for k in peft)
co, cp = json.load(open(sys.argv[1] + "/adapter_config.json")), json.load(open(sys.argv[2] + "/adapter_config.json"))
assert sorted(co) == sorted(cp), sorted(set(co) ^ set(cp))
differ = [k for k in cp if co[k] != cp[k] and k != "base_model_name_or_path"]
print("export vs PEFT: keys %s, worst difference %.2e, config fields differing: %s" % (sorted(ours), worst, differ))
sys.exit(0 if worst == 0 and not differ else 1)
PY
  prefix_run ${n}_again "$tiny/$f" 1 1 1 1e-30 "$PWD/$n.out" && prefix_losses ${n}_again ${n}_again.jsonl "$tiny/$f/ref.json" 1 \
    && ok || fail "$n: the export taken in again"
done

# merge against PEFT: init_from the fixture adapter, a checkpoint after one step at lr 1e-30: no value moves
if [ -d "$g" ]; then
  printf '[model]\npath = %s\n[adapter]\ninit_from = %s\n[train]\nsteps = 1\nlr = 1e-30\nbatch_size = 1\nseq_len = 32\n[data]\ntrain = %s\n[checkpoint]\ndir = ck\n' \
    "$g/model" "$g/lora" "$g/data.bin" > peft.ini
  "$bin" train peft.ini > peft.log 2>&1 || { fail "train from the PEFT adapter"; cat peft.log; }
  for np in 1 2; do
    if mpi $np "$bin" merge ck/ckpt-00000001.h5 --out merged$np > merge$np.log 2>&1; then
      $py - merged$np/model.safetensors "$m/model/model.safetensors" <<'PY' && ok || fail "merge on $np ranks differs from PEFT's merge_and_unload"
import json, struct, sys
import numpy as np
def read(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"])
            for k, v in h.items() if v["dtype"] == "F32"}
ours, peft = read(sys.argv[1]), read(sys.argv[2])
assert set(ours) == set(peft), "keys differ: %s" % sorted(set(ours) ^ set(peft))
worst = max(float(np.max(np.abs(ours[k] - peft[k]) / (np.abs(peft[k]) + 1e-3))) for k in peft)
print("merge vs PEFT: %d tensors, worst relative difference %.2e" % (len(peft), worst))
sys.exit(0 if worst < 1e-5 else 1)
PY
    else
      fail "merge on $np ranks"; cat merge$np.log
    fi
  done
  check merged_by_lorampi merged1 "$g/data.bin" 1 32 "$(ref_loss "$m/ref.json" loss)"
fi
finish
