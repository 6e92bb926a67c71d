#!/bin/bash
# Submits training, then its analysis once training has finished successfully (requeues
# included): jobs/pipeline.sh CONFIG.ini OUT_PREFIX [sbatch options for both jobs]
# The analysis is the spectrum over every checkpoint of the run: OUT_PREFIX.h5/.csv/.png.
set -euo pipefail
config=${1:?usage: jobs/pipeline.sh CONFIG.ini OUT_PREFIX [sbatch options]}
prefix=${2:?usage: jobs/pipeline.sh CONFIG.ini OUT_PREFIX [sbatch options]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
ckdir=$(awk -F= '/^\[/ { s = $0 } s == "[checkpoint]" && $1 ~ /^[ \t]*dir[ \t]*$/ { gsub(/^[ \t]+|[ \t]+$/, "", $2); print $2 }' "$config")
[ -n "$ckdir" ] || { echo "pipeline: $config sets no [checkpoint] dir" >&2; exit 2; }
train=$(sbatch --parsable "$@" "$here/train.sbatch" "$config")
analyze=$(sbatch --parsable "$@" --dependency=afterok:"$train" "$here/analyze.sbatch" spectrum --run "$ckdir" --out "$prefix.h5")
echo "training job $train, analysis job $analyze (after training succeeds)"
