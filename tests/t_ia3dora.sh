#!/usr/bin/env bash
# IA³ and DoRA end to end through the CLI, on the tiny byte-level GPT-2 (4 ranks = tp 2 x
# dp 2) and on hf-tiny's Llama (llama_methods/model), for ia3, dora, ia3,houlsby and
# dora,parallel (dropout 0.1: DoRA's masks; IA³ has none):
#  - the parameter report counts them (GPT-2: IA³ 3C + C + 4C per layer on c_attn,
#    attn.c_proj and feed-forward mlp.c_proj; DoRA r (in + out) + out per module); `plan` runs;
#  - stop at step 10 + resume with the same command = the uninterrupted run, bit for bit
#    (losses, norms, every dataset of the final checkpoint: adapters, m, v);
#  - the (2,2) checkpoint of step 10 resumes on 1 rank and at tp 4 (Llama: dp 2) within 1e-5;
#  - `lorampi export` = `[train] save_adapter` (PEFT's IA3 / LoRA with use_dora; DIR/<method>
#    beside the bottleneck);
#  - `analyze spectrum` of DoRA's LoRA part = numpy's SVD of scale·B·A; IA³ is refused there
#    (vectors);
#  - resuming with another method, and lora,ia3 together, are refused with a message.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
tiny="$src/tests/fixtures/hf-tiny"
export PYTHONPATH="$src/tests"

alpha_data
model_ini() {
  case $1 in
    gpt2) tiny_model_ini; printf '[adapter]\ntargets = c_attn,attn.c_proj,mlp.c_proj\n' ;;
    llama) printf '[model]\npath = %s\n[adapter]\ntargets = all-linear\n' "$tiny/llama_methods/model" ;;
  esac
}
for family in gpt2 llama; do
{ model_ini $family; cat <<INI
[adapter]
r = 4
alpha = 8
size = 8
dropout = 0.1
INI
resume_run_ini 0
} | awk '/^\[adapter\]/ { if (seen++) next } { print }' > run_$family.ini
done

C=32; L=2; r=4; m=8
ia3=$((L * (3 * C + C + 4 * C)))
dora=$((L * (r * (C + 3 * C) + 3 * C + r * (C + C) + C + r * (4 * C + C) + C)))
bneck=$((2 * m * C + m + C))
# Under the sanitizers three of the eight (README "Tests"): GPT-2 ia3 and dora, Llama
# dora,parallel. IA³ on Llama and ia3,houlsby are sanitized in test_grad_ia3dora,
# mpitest_tp_equiv and t_hf_refs (PEFT's IA3 of llama_methods: init_from, save_adapter,
# export); their checkpoint and resume path is the one of the cases that run.
for family in gpt2 llama; do
[ $family = gpt2 ] && subset="ia3 dora" || subset="dora,parallel"
for method in $(sanitized_subset "ia3 dora ia3,houlsby dora,parallel" "$subset"); do
  mkdir "$family-$method" && cd "$family-$method"
  set_m="--set adapter.method=$method"
  mpi 4 "$bin" train ../run_$family.ini $set_m --set train.save_adapter=out > ref.log 2>&1 || { fail "$family $method: reference"; tail -5 ref.log; }
  lin=${method%,*}
  if [ $family = gpt2 ]; then
    want=$([ $lin = ia3 ] && echo $ia3 || echo $dora)
    case $method in *houlsby) want=$((want + 2 * L * bneck)) ;; *parallel) want=$((want + L * bneck)) ;; esac
    grep -q "training: adapters, $want trainable parameters" ref.log && ok || { fail "$family $method: count, want $want"; grep training: ref.log; }
    "$bin" plan ../run_$family.ini $set_m --ranks 4 > plan.log 2>&1 && grep -q "trainable parameters" plan.log && ok \
      || { fail "$family $method: plan"; cat plan.log; }
  fi
  dir=out; case $method in *,*) dir=out/$lin ;; esac
  [ -f $dir/adapter_config.json ] && grep -q "\"peft_type\": \"$([ $lin = ia3 ] && echo IA3 || echo LORA)\"" $dir/adapter_config.json && ok \
    || fail "$family $method: no PEFT directory at $dir"
  # The same tensors and config (the tensors' order in the file may differ: registration
  # order vs the checkpoint's).
  mpi 2 "$bin" export ck/ckpt-00000020.h5 --out exported > ex.log 2>&1 && $py - out exported <<'PY' && ok \
    || { fail "$family $method: export != save_adapter"; cat ex.log; }
import glob, json, os, sys
from ckpt_check import read_safetensors
import numpy as np
a, b = sys.argv[1], sys.argv[2]
fa = sorted(os.path.relpath(p, a) for p in glob.glob(a + "/**/*.*", recursive=True))
fb = sorted(os.path.relpath(p, b) for p in glob.glob(b + "/**/*.*", recursive=True))
assert fa == fb, (fa, fb)
for f in fa:
    if f.endswith(".json"):
        assert json.load(open(os.path.join(a, f))) == json.load(open(os.path.join(b, f))), f
    else:
        x, y = read_safetensors(os.path.join(a, f)), read_safetensors(os.path.join(b, f))
        assert set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x), f
PY
  if [ $lin = dora ] && [ $method = dora ]; then
    mpi 2 "$bin" analyze spectrum ck/ckpt-00000020.h5 --out spec.h5 --no-plot > an.log 2>&1 \
      && $py "$src/tests/analysis_check.py" spectrum ck/ckpt-00000020.h5 spec.h5 > spec.log 2>&1 && ok \
      || { fail "$family $method: spectrum"; cat an.log spec.log; }
  fi
  if [ $method = ia3 ]; then
    "$bin" analyze spectrum ck/ckpt-00000020.h5 --out spec.h5 --no-plot > an.log 2>&1
    [ $? -ne 0 ] && grep -q "IA3 vectors" an.log && ok || { fail "$family ia3: spectrum not refused"; cat an.log; }
  fi
  other="4 4"; [ $family = llama ] && other="2 1"
  resume_checks "$family $method" ../run_$family.ini "1 1 $other" $set_m
  cd ..
done
done
mkdir other && cd other
mpi 2 "$bin" train ../run_gpt2.ini --set adapter.method=dora --resume ../gpt2-ia3/ck/ckpt-00000010.h5 > bad.log 2>&1
[ $? -ne 0 ] && grep -q "method = ia3, this run has method = dora" bad.log && ok || { fail "other method"; tail -3 bad.log; }
"$bin" train ../run_gpt2.ini --set adapter.method=lora,ia3 --set parallel.tp=1 > bad2.log 2>&1
[ $? -ne 0 ] && grep -q "at most one of them" bad2.log && ok || { fail "lora,ia3 not refused"; tail -3 bad2.log; }
"$bin" train ../run_gpt2.ini --set adapter.method=ia3 --set adapter.feedforward=mlp.c_fc --set parallel.tp=1 > bad3.log 2>&1
[ $? -ne 0 ] && grep -q "feedforward = mlp.c_fc: not among \[adapter\] targets" bad3.log && ok || { fail "feedforward outside targets"; tail -3 bad3.log; }
cd ..
finish
