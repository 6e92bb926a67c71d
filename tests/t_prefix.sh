#!/usr/bin/env bash
# Prefix tuning end to end through the CLI on the tiny byte-level model (4 ranks = tp 2 x dp 2):
#  - the parameter report counts the prefixes: layers x virtual_tokens x 2 x n_embd (+ LoRA's);
#  - stop at step 10 + resume with the same command = the uninterrupted run, bit for bit
#    (losses, norms, every dataset of the final checkpoint); the (2,2) checkpoint of step 10
#    resumes at (1,1) and (4,1) within 1e-5 relative;
#  - `[train] save_adapter` = `lorampi export` = PEFT's prefix-tuning directory holding the
#    checkpoint's prefixes (prefix_check.py); with LoRA, DIR/lora and DIR/prefix;
#  - `analyze spectrum` gives each prefix matrix's singular values = numpy's;
#  - generation with and without the key/value cache, and on tp 2, gives the same text;
#  - refused with a message naming the key: resuming with other virtual_tokens,
#    [adapter] layers, save_model, seq_len + virtual_tokens beyond n_ctx, a PEFT
#    prefix-tuning adapter under method = lora.
# prefix_projection = true (PEFT's MLP, encoder_hidden_size 16):
#  - the parameter report counts the MLP: p D + H D + H + L 2 D H + L 2 D (D = n_embd);
#  - tp 2 x dp 2 and tp 2 give the 1-rank run's losses within 1e-5 relative (20 steps);
#  - stop at step 10 + resume = the uninterrupted run bit for bit (metrics, final checkpoint),
#    the (2,2) checkpoint resumes at (1,1) within 1e-5 relative;
#  - save_adapter = export, prompt_embeddings = numpy's MLP output of the checkpoint's MLP
#    tensors, prefix_projection true and encoder_hidden_size 16 in its config;
#  - eval of the checkpoint = eval of a plain prefix run initialised from that export, bitwise
#    (the format round trip);
#  - analyze spectrum: the MLP's two matrices, singular values = numpy's; vs-base refuses them;
#  - generation with and without the cache, and on tp 2, gives the same text;
#  - refused: init_from with prefix_projection, encoder_hidden_size without it or out of
#    range, resuming with another encoder_hidden_size or without the projection.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
check="$py $src/tests/prefix_check.py"

alpha_data
{ tiny_model_ini; cat <<INI
[adapter]
virtual_tokens = 4
r = 4
alpha = 8
targets = c_attn
INI
resume_run_ini 0
} > run.ini


C=32; L=2; p=4
pfx=$((L * p * 2 * C)); lora=$((L * 4 * (C + 3 * C)))
for method in prefix lora,prefix; do
  mkdir "$method" && cd "$method"
  set_m="--set adapter.method=$method"
  mpi 4 "$bin" train ../run.ini $set_m --set train.save_adapter=out > ref.log 2>&1 || { fail "$method: reference"; tail -5 ref.log; }
  want=$pfx; [ $method = prefix ] || want=$((pfx + lora))
  grep -q "training: adapters, $want trainable parameters" ref.log && ok || { fail "$method: count, want $want"; grep training: ref.log; }
  dir=out; [ $method = prefix ] || { dir=out/prefix; [ -f out/lora/adapter_model.safetensors ] && ok || fail "$method: no out/lora"; }
  $check export ck/ckpt-00000020.h5 $dir 4 > export.log 2>&1 && ok || { fail "$method: save_adapter format"; cat export.log; }
  mpi 2 "$bin" export ck/ckpt-00000020.h5 --out exported > ex.log 2>&1 && diff -r out exported > /dev/null && ok \
    || { fail "$method: export != save_adapter"; cat ex.log; diff -r out exported | head -3; }
  if [ $method = prefix ]; then
    mpi 2 "$bin" analyze spectrum ck/ckpt-00000020.h5 --out spec.h5 --no-plot > an.log 2>&1 \
      && $check spectrum ck/ckpt-00000020.h5 spec.h5 > spec.log 2>&1 && ok || { fail "$method: spectrum"; cat an.log spec.log; }
    prompt=$($py -c "print('abcdefghijklmnopqrstuvwxyz' * 3)")  # beyond n_ctx - virtual_tokens: the window slides
    "$bin" generate ../run.ini $set_m --set parallel.tp=1 --bytes --prompt "$prompt" --tokens 8 > gen1.txt 2> gen1.err &&
      "$bin" generate ../run.ini $set_m --set parallel.tp=1 --bytes --no-cache --prompt "$prompt" --tokens 8 > gen2.txt 2> gen2.err &&
      [ "$(tail -n 1 gen1.txt)" = "$(tail -n 1 gen2.txt)" ] && ok || { fail "$method: generation with and without the cache differ"; cat gen1.err gen2.err; }
    mpi 2 "$bin" generate ../run.ini $set_m --bytes --prompt "$prompt" --tokens 8 > gen3.txt 2> gen3.err &&
      [ "$(tail -n 1 gen1.txt)" = "$(tail -n 1 gen3.txt)" ] && ok || { fail "$method: generation on tp 2 differs from tp 1"; cat gen3.err; }
  fi
  resume_checks "$method" ../run.ini "1 1 4 4" $set_m
  mpi 2 "$bin" train ../run.ini $set_m --set adapter.virtual_tokens=2 --resume ck/ckpt-00000010.h5 > bad.log 2>&1
  [ $? -ne 0 ] && grep -q "virtual_tokens = 4, this run has virtual_tokens = 2" bad.log && ok || { fail "$method: other virtual_tokens"; tail -3 bad.log; }
  cd ..
done

# prefix_projection = true: PEFT's MLP (adapters/prefix.h).
H=16; D=$C; O=$((L * 2 * D))
mkdir proj && cd proj
set_p="--set adapter.method=prefix --set adapter.prefix_projection=true --set adapter.encoder_hidden_size=$H"
mpi 4 "$bin" train ../run.ini $set_p --set train.save_adapter=out > ref.log 2>&1 || { fail "proj: reference"; tail -5 ref.log; }
want=$((p * D + H * D + H + O * H + O))
grep -q "training: adapters, $want trainable parameters" ref.log && ok || { fail "proj: count, want $want"; grep training: ref.log; }
for lay in "1 1" "2 2"; do
  set -- $lay; d="scratch_n$1"
  mkdir "$d" && (cd "$d" && mpi "$1" "$bin" train ../../run.ini $set_p --set parallel.tp=$2 > log 2>&1) || { fail "proj: run at $d"; tail -3 "$d/log"; }
done
for d in scratch_n2 .; do  # tp 2, tp 2 x dp 2 against the 1-rank run
  rel=$(maxrel scratch_n1/m.jsonl "$d/m.jsonl") && awk -v r="$rel" 'BEGIN { exit !(r < 1e-5) }' && ok || fail "proj: $d vs 1 rank: losses off by $rel"
  echo "proj: $d vs the 1-rank run, max relative loss difference $rel"
done
$check export-proj ck/ckpt-00000020.h5 out 4 $H > export.log 2>&1 && ok || { fail "proj: save_adapter"; cat export.log; }
mpi 2 "$bin" export ck/ckpt-00000020.h5 --out exported > ex.log 2>&1 && diff -r out exported > /dev/null && ok \
  || { fail "proj: export != save_adapter"; cat ex.log; }
mpi 4 "$bin" eval ../run.ini $set_p --resume ck/ckpt-00000020.h5 > ev1.json 2> ev1.err || fail "proj: eval"
mpi 4 "$bin" eval ../run.ini --set adapter.method=prefix --set adapter.init_from=out --set checkpoint.dir=none --no-resume \
  > ev2.json 2> ev2.err || { fail "proj: eval from the export"; tail -3 ev2.err; }
evloss() { $py -c 'import json,sys; print(repr(json.loads(open(sys.argv[1]).read().splitlines()[-1])["loss"]))' "$1"; }
l1=$(evloss ev1.json); l2=$(evloss ev2.json)
[ -n "$l1" ] && [ "$l1" = "$l2" ] && ok || fail "proj: eval of the checkpoint $l1 != eval from its export $l2"
echo "proj: eval loss of the checkpoint $l1, of a plain prefix run from its export $l2"
mpi 2 "$bin" analyze spectrum ck/ckpt-00000020.h5 --out spec.h5 --no-plot > an.log 2>&1 \
  && $check spectrum-proj ck/ckpt-00000020.h5 spec.h5 > spec.log 2>&1 && ok || { fail "proj: spectrum"; cat an.log spec.log; }
mpi 2 "$bin" analyze vs-base ck/ckpt-00000020.h5 --model none --out vs.h5 --no-plot > vs.log 2>&1
[ $? -ne 0 ] && grep -q "prefix_encoder.transform.0 belongs to a bottleneck adapter or prefix tuning" vs.log && ok \
  || { fail "proj: vs-base not refused"; tail -3 vs.log; }
prompt=$($py -c "print('abcdefghijklmnopqrstuvwxyz' * 3)")
"$bin" generate ../run.ini $set_p --set parallel.tp=1 --bytes --prompt "$prompt" --tokens 8 > gen1.txt 2> gen1.err &&
  "$bin" generate ../run.ini $set_p --set parallel.tp=1 --bytes --no-cache --prompt "$prompt" --tokens 8 > gen2.txt 2> gen2.err &&
  [ "$(tail -n 1 gen1.txt)" = "$(tail -n 1 gen2.txt)" ] && ok || { fail "proj: generation with and without the cache differ"; cat gen1.err gen2.err; }
mpi 2 "$bin" generate ../run.ini $set_p --bytes --prompt "$prompt" --tokens 8 > gen3.txt 2> gen3.err &&
  [ "$(tail -n 1 gen1.txt)" = "$(tail -n 1 gen3.txt)" ] && ok || { fail "proj: generation on tp 2 differs from tp 1"; cat gen3.err; }
resume_checks proj ../run.ini "1 1" $set_p
for bad in "--set adapter.encoder_hidden_size=8|encoder_hidden_size = 16, this run has encoder_hidden_size = 8" \
           "--set adapter.prefix_projection=false --set adapter.encoder_hidden_size=0|prefix_projection = true, this run has prefix_projection = false"; do
  mpi 2 "$bin" train ../run.ini $set_p ${bad%%|*} --resume ck/ckpt-00000010.h5 > bad.log 2>&1
  [ $? -ne 0 ] && grep -q -- "${bad#*|}" bad.log && ok || { fail "proj: resume with ${bad%%|*}"; tail -3 bad.log; }
done
cd ..

# Refusals, each naming what is wrong.
refused() {  # WHAT PATTERN ARGS...: the run fails and says PATTERN
  local what=$1 pat=$2; shift 2
  "$bin" train run.ini --set parallel.tp=1 --set checkpoint.dir=none.ck "$@" > refused.log 2>&1
  [ $? -ne 0 ] && grep -q -- "$pat" refused.log && ok || { fail "refusal: $what"; tail -3 refused.log; }
}
refused "encoder_hidden_size without the projection" "encoder_hidden_size = 8 is the width of prefix_projection's MLP" \
  --set adapter.method=prefix --set adapter.encoder_hidden_size=8
refused "encoder_hidden_size out of range" "encoder_hidden_size.*an integer in \[0, 65536\]" --set adapter.method=prefix \
  --set adapter.prefix_projection=true --set adapter.encoder_hidden_size=-1
refused "init_from under prefix_projection" "prefix_projection = true trains an MLP whose output the prefixes are" \
  --set adapter.method=prefix --set adapter.prefix_projection=true --set adapter.init_from=proj/out
refused layers "prefix tuning adapts every layer" --set adapter.method=prefix --set adapter.layers=0
refused save_model "prefix tuning has no merged form" --set adapter.method=prefix --set train.save_model=merged
refused context "plus \[adapter\] virtual_tokens = 40 exceeds the model's context length 64" --set adapter.method=prefix --set adapter.virtual_tokens=40
mkdir peft && printf '{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4, "num_layers": 2, "num_attention_heads": 4, "token_dim": 32, "task_type": "CAUSAL_LM"}' > peft/adapter_config.json
refused "prefix adapter under lora" "a PEFT prefix-tuning adapter; it needs \[adapter\] method = prefix" --set adapter.init_from=peft
mkdir other && sed 's/"num_layers": 2/"num_layers": 3/' peft/adapter_config.json > other/adapter_config.json
refused "prefix adapter for another model" "num_layers = 3, num_attention_heads = 4, token_dim = 32, but the model has 2 layers of 4 key/value heads of 8 (token_dim 32)" \
  --set adapter.method=prefix --set adapter.init_from=other
finish
