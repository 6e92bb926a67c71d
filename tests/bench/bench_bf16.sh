#!/usr/bin/env bash
# [model] dtype = f32 against bf16, side by side in one run: the same LoRA run (r = 8 on all
# linear layers, 1 rank x 2 threads, B*T = 2 x 128, STEPS steps, dropout 0) of
#  - GPT-2 124M (12 layers, 768 wide, vocab 50257) and
#  - a Llama-family model (LlamaForCausalLM, 8 layers, hidden 1024, 16 heads over 4 KV heads,
#    intermediate 2816, vocab 32000, untied head; ~150 M parameters),
# each base drawn at random, trained one step (method none) and stored as BF16 (rounded to
# nearest even), so both dtypes hold exactly the same weights and only the GEMMs differ.
# Reports per model and dtype: ms/step (median of steps 2..STEPS), tokens/s, peak RSS per
# rank, frozen MB (the training log's), and the largest |loss_bf16 - loss_f32| over the
# steps (absolute and relative); then the oneDNN kernel that ran (ONEDNN_VERBOSE=1) and the
# GEMMs alone (bench_wgemm: fp32 OpenBLAS against bf16 oneDNN, GPT-2 shapes, 1024 rows).
# Usage: tests/bench/bench_bf16.sh [BUILD_DIR] [STEPS]   (default build, 30)
set -euo pipefail
build=$(cd "${1:-build}" && pwd); steps=${2:-30}
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
py=/usr/bin/python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
cat /usr/share/common-licenses/* > t.txt
"$build/lorampi" tokenize --bytes --out d --val-fraction 0.05 t.txt > /dev/null
mpi() { OMP_NUM_THREADS=2 mpirun --oversubscribe --bind-to none -n 1 "$build/lorampi" "$@"; }

mkdir -p llama_cfg && cat > llama_cfg/config.json <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 1024,
 "intermediate_size": 2816, "num_hidden_layers": 8, "num_attention_heads": 16,
 "num_key_value_heads": 4, "head_dim": 64, "vocab_size": 32000, "max_position_embeddings": 2048,
 "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "hidden_act": "silu", "rope_theta": 10000.0,
 "torch_dtype": "float32"}
JSON
printf '[model]\nn_layer = 12\nn_head = 12\nn_embd = 768\nvocab_size = 50257\nn_ctx = 1024\n' > gpt2.model
printf '[model]\npath = llama_cfg\nrandom_init = true\n' > llama.model
common() {
  printf '[train]\nbatch_size = 2\nseq_len = 128\nlr = 1e-3\nwarmup_steps = 2\nseed = 1\n[data]\ntrain = d_train.bin\n[log]\nevery = 1\n'
}
# A base model in BF16: one step of full training from the random init, saved, rounded.
to_bf16() { $py - "$1" <<'PY'
import json, struct, sys, numpy as np
p = sys.argv[1] + "/model.safetensors"; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); hdr, parts, off = {}, [], 0
for k, e in h.items():
    if k == "__metadata__": hdr[k] = e; continue
    s, t = e["data_offsets"]; x = np.frombuffer(b[8 + n + s:8 + n + t], dtype=np.float32).view(np.uint32).astype(np.uint64)
    raw = ((x + 0x7FFF + ((x >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
    hdr[k] = {"dtype": "BF16", "shape": e["shape"], "data_offsets": [off, off + len(raw)]}; parts.append(raw); off += len(raw)
hj = json.dumps(hdr).encode(); hj += b" " * (-len(hj) % 8)
open(p, "wb").write(struct.pack("<Q", len(hj)) + hj + b"".join(parts))
PY
}
for m in gpt2 llama; do
  { cat $m.model; common; printf '[adapter]\nmethod = none\n'; } > base_$m.ini
  mpi train base_$m.ini --set train.steps=1 --set train.warmup_steps=0 --set train.save_model=base_$m > base_$m.log 2>&1 \
    || { tail -5 base_$m.log; exit 1; }
  to_bf16 base_$m
  tg=all; [ $m = llama ] && tg=all-linear
  { printf '[model]\npath = base_%s\n' $m; common; printf '[adapter]\nmethod = lora\ntargets = %s\nr = 8\nalpha = 16\ndropout = 0\n' $tg; } > $m.ini
done

echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs; other jobs slow every column alike)"
echo "| model | dtype | ms/step (median) | tokens/s | peak RSS/rank MB | frozen MB | max abs loss diff | max rel loss diff |"
echo "|---|---|---|---|---|---|---|---|"
for m in gpt2 llama; do
  for dt in f32 bf16; do
    mpi train $m.ini --set model.dtype=$dt --set train.steps=$steps --set log.metrics=${m}_$dt.jsonl > ${m}_$dt.log 2>&1 \
      || { tail -5 ${m}_$dt.log; exit 1; }
  done
  for dt in f32 bf16; do
    log=${m}_$dt.log
    ms=$(sed -nE 's/^step +([0-9]+)\/[0-9]+ .*\| ([0-9]+) ms \|.*/\1 \2/p' $log | awk '$1 > 1 { print $2 }' | sort -n \
         | awk '{ a[NR] = $1 } END { print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
    rss=$(sed -nE 's/^peak RSS per rank: max ([0-9.]+) MB.*/\1/p' $log)
    fz=$(sed -nE 's/^memory per rank: frozen ([0-9.]+) MB.*/\1/p' $log)
    diff=$($py - ${m}_f32.jsonl ${m}_bf16.jsonl $dt <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]; b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(a) == len(b) > 0
d = [abs(x - y) for x, y in zip(a, b)]
print("| – | – |" if sys.argv[3] == "f32" else "| %.2e | %.2e |" % (max(d), max(e / abs(x) for e, x in zip(d, a))))
PY
)
    echo "| $m | $dt | $ms | $(awk -v m="$ms" 'BEGIN { printf "%.0f", 256000 / m }') | $rss | $fz $diff"
  done
done
$py - gpt2_f32.jsonl gpt2_bf16.jsonl llama_f32.jsonl llama_bf16.jsonl <<'PY'
import json, sys
for m in range(2):
    a, b = ([json.loads(l)["loss"] for l in open(sys.argv[1 + 2 * m + k])] for k in range(2))
    print(["gpt2", "llama"][m], "loss f32:", " ".join("%.4f" % x for x in a[::5]), "| bf16:", " ".join("%.4f" % x for x in b[::5]))
PY
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "oneDNN kernels (ONEDNN_VERBOSE=1, one bf16 step of GPT-2):"
ONEDNN_VERBOSE=1 mpi train gpt2.ini --set model.dtype=bf16 --set train.steps=1 --set train.warmup_steps=0 2>&1 \
  | grep "^onednn_verbose,exec,cpu,matmul" | cut -d, -f5 | sort | uniq -c
grep -m1 "^onednn_verbose,info,cpu,isa" <(ONEDNN_VERBOSE=1 mpi train gpt2.ini --set model.dtype=bf16 --set train.steps=1 --set train.warmup_steps=0 2>&1) || true
[ -x "$build/tests/bench_wgemm" ] && OMP_NUM_THREADS=2 "$build/tests/bench_wgemm" 1024 5
