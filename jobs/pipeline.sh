#!/bin/bash
# Submits training, then its analysis once training has finished successfully (requeues
# included): jobs/pipeline.sh CONFIG.ini OUT_PREFIX [sbatch options for both jobs]
# "Finished successfully" is train.sbatch's exit 0, which it gives only when lorampi's
# [checkpoint] dir/finished marker says the run reached its last step; otherwise the
# analysis stays pending (DependencyNeverSatisfied) and never runs on an unfinished run.
# The analysis is the spectrum over every checkpoint of the run: OUT_PREFIX.h5/.csv/.png.
set -euo pipefail
config=${1:?usage: jobs/pipeline.sh CONFIG.ini OUT_PREFIX [sbatch options]}
prefix=${2:?usage: jobs/pipeline.sh CONFIG.ini OUT_PREFIX [sbatch options]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
# [checkpoint] dir as lorampi's INI reader (inih) reads it: last line wins, comment lines ; #,
# inline comments after " ;", "key = value" or "key: value" (train.sbatch reads it the same way).
ckdir=$(awk '
  function trim(s) { sub(/^[ \t\r\f\v]+/, "", s); sub(/[ \t\r\f\v]+$/, "", s); return s }
  { line = trim($0) }
  line == "" || line ~ /^[;#]/ { next }
  line ~ /^\[/ { e = index(line, "]"); if (e) sec = substr(line, 2, e - 2); next }
  sec == "checkpoint" { i = match(line, /[=:]/)
    if (i && trim(substr(line, 1, i - 1)) == "dir") { v = trim(substr(line, i + 1)); if (match(v, /[ \t];/)) v = trim(substr(v, 1, RSTART)); dir = v } }
  END { print dir }' "$config")
[ -n "$ckdir" ] || { echo "pipeline: $config sets no [checkpoint] dir" >&2; exit 2; }
train=$(sbatch --parsable "$@" "$here/train.sbatch" "$config")
analyze=$(sbatch --parsable "$@" --dependency=afterok:"$train" "$here/analyze.sbatch" spectrum --run "$ckdir" --out "$prefix.h5")
echo "training job $train, analysis job $analyze (after training succeeds)"
