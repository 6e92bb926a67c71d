#!/usr/bin/env bash
# Training under a real one-node Slurm (tests/slurm_cluster.sh), through jobs/pipeline.sh:
#  - the warning signal (scancel --signal=USR1 --batch, what --signal=B:USR1@T delivers) in the
#    middle of the run: the batch script forwards it, the ranks checkpoint and exit 3, the job
#    requeues itself, restarts (Restarts=1), resumes and finishes with adapters, moments and
#    losses bitwise equal to an uninterrupted run on the same layout;
#  - the dependent analysis job runs after it and writes its results;
#  - a job with a bad config fails with the message in its output file and is not requeued.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
cluster="$src/tests/slurm_cluster.sh"
"$cluster" up "$work/cluster" > up.log 2>&1 || { fail "Slurm did not come up"; cat up.log; finish; exit 1; }
export SLURM_CONF=$work/cluster/slurm.conf
trap '"$cluster" down "$work/cluster"' EXIT
export LORAMPI_BIN=$bin
unset OMPI_MCA_rmaps_base_oversubscribe PRTE_MCA_rmaps_default_mapping_policy

job_field() { scontrol show job "$1" -o 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
wait_done() {  # job id, seconds
  for i in $(seq $(($2 * 10))); do
    case "$(job_field "$1" JobState)" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) return 0;; esac
    sleep 0.1
  done
  return 1
}

alpha_data
{ tiny_model_ini; cat <<'INI'
[adapter]
method = lora
r = 4
targets = all
dropout = 0.1
[train]
steps = 400
batch_size = 8
seq_len = 32
lr = 3e-3
seed = 42
[data]
train = alpha_train.bin
val = alpha_val.bin
[log]
every = 100
metrics = m.jsonl
[checkpoint]
dir = ck
INI
} > run.ini
mpi 2 "$bin" train run.ini --set checkpoint.dir=ref --set log.metrics=ref.jsonl > ref.log 2>&1 || fail "reference run"

ids=$("$src/jobs/pipeline.sh" run.ini spec --ntasks=2 --ntasks-per-node=2 2> pipe.err) || { fail "pipeline.sh"; cat pipe.err; }
train=$(echo "$ids" | sed -n 's/^training job \([0-9]*\),.*/\1/p'); analyze=$(echo "$ids" | sed -n 's/.*analysis job \([0-9]*\) .*/\1/p')
[ -n "$train" ] && [ -n "$analyze" ] && ok || fail "pipeline output: $ids"
for i in $(seq 600); do [ -f m.jsonl ] && [ "$(wc -l < m.jsonl)" -ge 30 ] && break; sleep 0.1; done
scancel --signal=USR1 --batch "$train" || fail "scancel --signal"
wait_done "$train" 120 && wait_done "$analyze" 120 && ok || fail "jobs did not finish: $(squeue 2>&1)"
out=lorampi-train-$train.out
[ "$(job_field "$train" JobState)" = COMPLETED ] && [ "$(job_field "$train" Restarts)" = 1 ] && ok || fail "training job: $(job_field "$train" JobState), restarts $(job_field "$train" Restarts)"
grep -q "checkpoint written on the signal: requeueing" $out && grep -q "received SIGUSR1: stopped after step" $out \
  && grep -q "Slurm restart 1 of job $train" $out && grep -q "resumed from ck/ckpt-" $out && ok || { fail "training output"; cat $out; }
series() { $py -c 'import json,sys
for l in open(sys.argv[1]): o = json.loads(l); print(o["step"], repr(o["loss"]), repr(o["grad_norm"]))' "$1"; }
[ "$(series ref.jsonl)" = "$(series m.jsonl)" ] && ok || fail "losses differ from the uninterrupted run"
$py "$src/tests/ckpt_check.py" same ref/ckpt-00000400.h5 ck/ckpt-00000400.h5 > same.log 2>&1 && ok || { fail "final checkpoint differs"; cat same.log; }
[ "$(job_field "$analyze" JobState)" = COMPLETED ] && [ -s spec.h5 ] && [ -s spec.csv ] && ok || { fail "analysis job"; cat lorampi-analyze-$analyze.out; }

# A bad config: fails once, with the message in the output file.
sed 's/^r = 4/r = -1/' run.ini > bad.ini
bad=$(sbatch --parsable --ntasks=2 "$src/jobs/train.sbatch" bad.ini)
wait_done "$bad" 60 && ok || fail "bad job did not end"
[ "$(job_field "$bad" JobState)" = FAILED ] && [ "$(job_field "$bad" Restarts)" = 0 ] && grep -q "lorampi: error: bad.ini" lorampi-train-$bad.out \
  && grep -q "not requeued" lorampi-train-$bad.out && ok || { fail "bad config job: $(job_field "$bad" JobState)"; cat lorampi-train-$bad.out; }
finish
