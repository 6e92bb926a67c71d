#!/usr/bin/env bash
# The bottleneck adapter methods end to end through the CLI (4 ranks = tp 2 x dp 2), for each
# of houlsby, parallel, lora,houlsby and lora,parallel on the tiny byte-level model:
#  - the parameter report counts the bottlenecks: 2 m C + m + C each (+ LoRA's r (in + out));
#  - stop at step 10 + resume with the same command = the uninterrupted run, bit for bit
#    (losses, norms, every dataset of the final checkpoint: adapters, m, v);
#  - the (2,2) checkpoint of step 10 resumes at (1,1) and (4,1) within 1e-5 relative (the
#    parallelism tests' tolerance);
#  - `[train] save_adapter` writes the documented format (README "Files"), equal tensor for tensor
#    to the checkpoint (h5py) and to `lorampi export` of it; with LoRA, DIR/lora is the PEFT
#    export and DIR/<method> the bottleneck;
#  - `analyze spectrum` gives each bottleneck's down, up and up_down singular values = numpy's;
#  - resuming with another [adapter] size or method is refused naming the key.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
check="$py $src/tests/bottleneck_check.py"
export PYTHONPATH="$src/tests"

alpha_data
# The [model] section of each family under test: a family is one more line here and its name
# in families (the LoRA part of the parameter count below is GPT-2's).
model_ini() { case $1 in gpt2) tiny_model_ini ;; esac; }
families="gpt2"
for family in $families; do
{ model_ini $family; cat <<INI
[adapter]
size = 8
r = 4
alpha = 8
targets = c_attn,mlp.c_proj
dropout = 0.1
INI
resume_run_ini 0
} > run_$family.ini
done

# Trainable parameters of the tiny model (C = 32, 2 layers, m = 8, r = 4 on c_attn and mlp.c_proj).
C=32; m=8; L=2
bneck=$((2 * m * C + m + C)); lora=$((L * (4 * (C + 3 * C) + 4 * (4 * C + C))))
# Under the sanitizers two of the four (README "Tests"): houlsby's and parallel's own code is
# sanitized in test_grad_bottleneck, test_grad_model and mpitest_tp_equiv, their checkpoint,
# export and resume path is one for both.
methods=$(sanitized_subset "houlsby parallel lora,houlsby lora,parallel" "lora,houlsby parallel")
for family in $families; do
for method in $methods; do
  mkdir "$family-$method" && cd "$family-$method"
  set_m="--set adapter.method=$method"
  mpi 4 "$bin" train ../run_$family.ini $set_m --set train.save_adapter=out > ref.log 2>&1 || { fail "$family $method: reference"; tail -5 ref.log; }
  case $method in houlsby|lora,houlsby) n=$((2 * L)) ;; *) n=$L ;; esac  # parallel: the MLP only
  want=$((n * bneck)); case $method in lora,*) want=$((want + lora)) ;; esac
  if [ $family = gpt2 ] || [ "${method#lora,}" = "$method" ]; then  # LoRA's count: GPT-2's shapes
    grep -q "training: adapters, $want trainable parameters" ref.log && ok || { fail "$family $method: count, want $want"; grep training: ref.log; }
  fi
  bm=${method#lora,}
  dir=out; case $method in lora,*) dir=out/$bm ;; esac
  $check export ck/ckpt-00000020.h5 $dir $bm $m > export.log 2>&1 && ok || { fail "$family $method: save_adapter format"; cat export.log; }
  case $method in lora,*) $check lora ck/ckpt-00000020.h5 out/lora > lora.log 2>&1 && ok || { fail "$family $method: PEFT LoRA part"; cat lora.log; } ;; esac
  mpi 2 "$bin" export ck/ckpt-00000020.h5 --out exported > ex.log 2>&1 && diff -r out exported > /dev/null && ok \
    || { fail "$family $method: export != save_adapter"; cat ex.log; diff -r out exported | head -3; }
  mpi 2 "$bin" analyze spectrum ck/ckpt-00000020.h5 --out spec.h5 --no-plot > an.log 2>&1 \
    && $check spectrum ck/ckpt-00000020.h5 spec.h5 > spec.log 2>&1 && ok || { fail "$family $method: spectrum"; cat an.log spec.log; }
  resume_checks "$family $method" ../run_$family.ini "1 1 4 4" $set_m
  # Another size or method: refused naming the key, nothing written.
  mpi 2 "$bin" train ../run_$family.ini $set_m --set adapter.size=4 --resume ck/ckpt-00000010.h5 > bad.log 2>&1
  [ $? -ne 0 ] && grep -q "size = 8, this run has size = 4" bad.log && ok || { fail "$family $method: other size"; tail -3 bad.log; }
  cd ..
done
done
mkdir other && cd other
mpi 2 "$bin" train ../run_gpt2.ini --set adapter.method=houlsby --resume ../gpt2-parallel/ck/ckpt-00000010.h5 > bad.log 2>&1
[ $? -ne 0 ] && grep -q "method = parallel, this run has method = houlsby" bad.log && ok || { fail "other method"; tail -3 bad.log; }
cd ..
finish
