#!/usr/bin/env bash
# Training under a real one-node Slurm (tests/slurm_cluster.sh), through jobs/pipeline.sh and
# jobs/train.sbatch:
#  - the warning signal (scancel --signal=USR1 --batch, what --signal=B:USR1@T delivers) in the
#    middle of the run: the batch script forwards it, the ranks checkpoint and exit 3, the job
#    requeues itself, restarts (Restarts=1), waits for the previous step (a PMIx socket left in
#    the spool directory, as a step still cleaning up leaves it), resumes and finishes with
#    adapters, moments and losses bitwise equal to an uninterrupted run on the same layout and
#    lorampi's "finished" marker; the dependent analysis job runs after it;
#  - a step that really fails to launch (that PMIx socket already there for step 0: srun says
#    "task 0 launch failed" and exits 0): retried, trains, finishes, COMPLETED;
#  - a launcher that exits 0 without starting lorampi: retried, then FAILED (exit 4), and the
#    afterok analysis of pipeline.sh never runs;
#  - lorampi exiting 0 before the last step (a launcher adding --stop-at): FAILED, "not finished";
#  - a bad config fails with the message in its output file and is not requeued; a config
#    without [checkpoint] dir is refused.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
cluster="$src/tests/slurm_cluster.sh"
"$cluster" up "$work/cluster" > up.log 2>&1 || { fail "Slurm did not come up"; cat up.log; finish; exit 1; }
export SLURM_CONF=$work/cluster/slurm.conf
trap '"$cluster" down "$work/cluster"' EXIT
export LORAMPI_BIN=$bin
# Short launch backoff and step wait: the cases below retry in seconds, and nothing hangs long.
export LORAMPI_LAUNCH_BACKOFF=1 LORAMPI_STEP_WAIT=30
unset OMPI_MCA_rmaps_base_oversubscribe PRTE_MCA_rmaps_default_mapping_policy
spool=$work/cluster/spool

job_field() { scontrol show job "$1" -o 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
wait_done() {  # job id, seconds
  for i in $(seq $(($2 * 10))); do
    case "$(job_field "$1" JobState)" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) return 0;; esac
    sleep 0.1
  done
  return 1
}
# The UNIX socket Slurm 22.05's PMIx plugin binds for step S of job J; while a file is there
# (a step of that number still cleaning up) srun cannot launch step S.
pmix_socket() { echo "$spool/stepd.slurm.pmix.$1.$2"; }
plant() { $py -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$1" 2>/dev/null; }

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

# Launchers for the failure cases (LORAMPI_LAUNCH: any command line that starts the ranks).
printf '#!/bin/sh\necho "noop-launch: exiting 0 without starting $*"\n' > noop-launch
printf '#!/bin/sh\nexec srun --mpi=pmix --kill-on-bad-exit=1 "$@" --stop-at 50\n' > stopat-launch
chmod +x noop-launch stopat-launch
sed 's/^dir = ck$/dir = ckb/' run.ini > b.ini

ids=$("$src/jobs/pipeline.sh" run.ini spec --ntasks=2 --ntasks-per-node=2 2> pipe.err) || { fail "pipeline.sh"; cat pipe.err; }
train=$(echo "$ids" | sed -n 's/^training job \([0-9]*\),.*/\1/p'); analyze=$(echo "$ids" | sed -n 's/.*analysis job \([0-9]*\) .*/\1/p')
[ -n "$train" ] && [ -n "$analyze" ] && ok || fail "pipeline output: $ids"
out=lorampi-train-$train.out
for i in $(seq 600); do [ -f m.jsonl ] && [ "$(wc -l < m.jsonl)" -ge 30 ] && break; sleep 0.1; done
scancel --signal=USR1 --batch "$train" || fail "scancel --signal"
for i in $(seq 600); do grep -q "requeueing job" $out 2>/dev/null && break; sleep 0.1; done

# While the training job waits for its restart, the other cases queue behind it (one 2-task
# job at a time on this node).
# (a) A real launch failure: the job's step 0 finds its PMIx socket taken.
a=$(sbatch --parsable --hold --ntasks=2 "$src/jobs/train.sbatch" run.ini --set checkpoint.dir=cka --set log.metrics=a.jsonl)
plant "$(pmix_socket "$a" 0)" || fail "cannot create $(pmix_socket "$a" 0)"
scontrol release "$a"
# (b) A launcher that exits 0 without starting lorampi, under pipeline.sh (afterok analysis).
ids=$(LORAMPI_LAUNCH=$work/noop-launch LORAMPI_LAUNCH_RETRIES=1 "$src/jobs/pipeline.sh" b.ini specb --ntasks=2 --ntasks-per-node=2 2> pipeb.err) || { fail "pipeline.sh (b)"; cat pipeb.err; }
b=$(echo "$ids" | sed -n 's/^training job \([0-9]*\),.*/\1/p'); banalyze=$(echo "$ids" | sed -n 's/.*analysis job \([0-9]*\) .*/\1/p')
# (b') lorampi itself exits 0 before its last step.
s=$(LORAMPI_LAUNCH=$work/stopat-launch sbatch --parsable --ntasks=2 "$src/jobs/train.sbatch" run.ini --set checkpoint.dir=cks --set log.metrics=s.jsonl)
# A bad config and a config without [checkpoint] dir.
sed 's/^r = 4/r = -1/' run.ini > bad.ini
bad=$(sbatch --parsable --ntasks=2 "$src/jobs/train.sbatch" bad.ini)
grep -v '^dir = ck$' run.ini > nodir.ini
nodir=$(sbatch --parsable --ntasks=2 "$src/jobs/train.sbatch" nodir.ini)

# The requeued training job finds the PMIx socket of its step 0 still there (planted once the
# previous step is gone) and must wait for it; (a) must retry after its failed launch. Each
# socket goes away a second after the job says it is waiting, as a finishing step's would.
planted=; a_gone=; t_gone=
for i in $(seq 1200); do
  if [ -z "$planted" ] && ! ls -A "$spool" | grep -q "_$train\.0$"; then
    plant "$(pmix_socket "$train" 0)" && planted=1
  fi
  if [ -z "$a_gone" ] && grep -q "launch retry: waiting" lorampi-train-$a.out 2>/dev/null; then
    sleep 1; rm -f "$(pmix_socket "$a" 0)"; a_gone=1
  fi
  if [ -z "$t_gone" ] && grep -q "requeued start: waiting" $out 2>/dev/null; then
    sleep 1; rm -f "$(pmix_socket "$train" 0)"; t_gone=1
  fi
  [ -n "$a_gone" ] && [ -n "$t_gone" ] && break
  sleep 0.1
done
[ -n "$planted" ] && [ -n "$a_gone" ] && [ -n "$t_gone" ] && ok || fail "planted $planted, (a) waited ${a_gone:-no}, requeued job waited ${t_gone:-no}"
rm -f "$(pmix_socket "$a" 0)" "$(pmix_socket "$train" 0)"
for j in $train $analyze $a $b $s $bad $nodir; do wait_done "$j" 120 || fail "job $j did not end: $(squeue 2>&1)"; done

# The preempted, requeued run: bitwise the uninterrupted one, finished by lorampi's marker.
[ "$(job_field "$train" JobState)" = COMPLETED ] && [ "$(job_field "$train" Restarts)" = 1 ] && ok || fail "training job: $(job_field "$train" JobState), restarts $(job_field "$train" Restarts)"
grep -q "checkpoint written on the signal: requeueing" $out && grep -q "received SIGUSR1: stopped after step" $out \
  && grep -q "Slurm restart 1 of job $train" $out && grep -q "resumed from ck/ckpt-" $out \
  && grep -q "requeued start: waiting up to 30 s for earlier steps of job $train to end: .*stepd.slurm.pmix.$train.0" $out \
  && grep -q "earlier steps gone after" $out && ! grep -q "launch failed" $out \
  && grep -q 'training finished: ck/finished says "step 400 of 400"' $out && ok || { fail "training output"; cat $out; }
[ "$(cat ck/finished)" = "step 400 of 400" ] && ok || fail "ck/finished: $(cat ck/finished 2>&1)"
[ "$(series ref.jsonl)" = "$(series m.jsonl)" ] && ok || fail "losses differ from the uninterrupted run"
$py "$src/tests/ckpt_check.py" same ref/ckpt-00000400.h5 ck/ckpt-00000400.h5 > same.log 2>&1 && ok || { fail "final checkpoint differs"; cat same.log; }
[ "$(job_field "$analyze" JobState)" = COMPLETED ] && [ -s spec.h5 ] && [ -s spec.csv ] && ok || { fail "analysis job"; cat lorampi-analyze-$analyze.out; }

# (a) The failed launch was retried once and the run trained to its end.
oa=lorampi-train-$a.out
[ "$(job_field "$a" JobState)" = COMPLETED ] && [ "$(job_field "$a" Restarts)" = 0 ] && ok || { fail "(a): $(job_field "$a" JobState)"; cat $oa; }
grep -q "task 0 launch failed" $oa && grep -q "the step did not launch: 0 of 2 ranks started lorampi, launcher exit code 0 (attempt 1 of 4)" $oa \
  && grep -q "retrying in 1 s" $oa && [ "$(grep -c "did not launch" $oa)" = 1 ] \
  && grep -q 'training finished: cka/finished says "step 400 of 400"' $oa && [ ! -e cka/.lorampi-started-$a ] && ok || { fail "(a) output"; cat $oa; }
$py "$src/tests/ckpt_check.py" same ref/ckpt-00000400.h5 cka/ckpt-00000400.h5 > samea.log 2>&1 && ok || { fail "(a) final checkpoint differs"; cat samea.log; }

# (b) Never started: FAILED with exit code 4 after 2 attempts; the analysis never runs.
ob=lorampi-train-$b.out
[ "$(job_field "$b" JobState)" = FAILED ] && [ "$(job_field "$b" ExitCode)" = 4:0 ] && [ "$(job_field "$b" Restarts)" = 0 ] && ok || { fail "(b): $(job_field "$b" JobState) $(job_field "$b" ExitCode)"; cat $ob; }
grep -q "attempt 2 of 2" $ob && grep -q "training never started after 2 launch attempts: job failed" $ob \
  && ! grep -q "training finished" $ob && ok || { fail "(b) output"; cat $ob; }
for _ in $(seq 300); do [ "$(job_field "$banalyze" Reason)" = DependencyNeverSatisfied ] && break; sleep 0.1; done
[ "$(job_field "$banalyze" JobState)" = PENDING ] && [ "$(job_field "$banalyze" Reason)" = DependencyNeverSatisfied ] \
  && [ ! -e lorampi-analyze-$banalyze.out ] && [ ! -e specb.h5 ] && ok || fail "(b) analysis: $(job_field "$banalyze" JobState) $(job_field "$banalyze" Reason)"
scancel "$banalyze"

# (b') lorampi ran and exited 0 at step 50 of 400: not finished.
os=lorampi-train-$s.out
[ "$(job_field "$s" JobState)" = FAILED ] && [ "$(job_field "$s" ExitCode)" = 1:0 ] && grep -q "stopped after step 50 (--stop-at)" $os \
  && grep -q "lorampi exited 0 but the run is not finished (no cks/finished): job failed" $os && ok || { fail "(b'): $(job_field "$s" JobState)"; cat $os; }

# A bad config: fails once, with the message in the output file; no [checkpoint] dir: refused.
[ "$(job_field "$bad" JobState)" = FAILED ] && [ "$(job_field "$bad" Restarts)" = 0 ] && grep -q "lorampi: error: bad.ini" lorampi-train-$bad.out \
  && grep -q "not requeued" lorampi-train-$bad.out && ok || { fail "bad config job: $(job_field "$bad" JobState)"; cat lorampi-train-$bad.out; }
[ "$(job_field "$nodir" JobState)" = FAILED ] && [ "$(job_field "$nodir" ExitCode)" = 2:0 ] && grep -q "nodir.ini sets no \[checkpoint\] dir" lorampi-train-$nodir.out \
  && ok || { fail "no-dir job: $(job_field "$nodir" JobState)"; cat lorampi-train-$nodir.out; }
finish
