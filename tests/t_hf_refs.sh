#!/usr/bin/env bash
# Losses against the libraries users run: models (and merged adapters) written by Hugging Face
# transformers / PEFT, evaluated by `lorampi eval` on their own token files, must give the
# loss those libraries computed on the same tokens (ref.json), within 1e-5 relative, on one
# rank and on tp = 2 (every rank checked). Fixtures: ../shared/fixtures/hf-tiny and
# tests/fixtures/hf-variants (tests/fixtures/README.md says what made each).
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
tiny="$src/../shared/fixtures/hf-tiny"
var="$src/tests/fixtures/hf-variants"

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
finish
