#!/usr/bin/env bash
# Checkpoints end to end through the CLI (4 ranks = tp 2 x dp 2 unless said otherwise):
#  - retention keeps the newest `keep` files, and no temporary is left; a run that reached its
#    last step leaves the marker `finished` ("step N of N"), a stopped one none;
#  - stop at step 10 + resume = the uninterrupted run, bitwise (losses, norms, adapters or
#    weights, m, v), LoRA and full fine-tuning (resume_checks, tests/shlib.sh);
#  - the (2,2) checkpoint resumes at (1,1), (4,1) and (1,2), LoRA and full fine-tuning:
#    losses within 1e-5 relative of the uninterrupted run (the parallelism tests' tolerance);
#  - kill -9 of one rank while checkpoint 10 is being written: ckpt-10 does not appear, ckpt-5
#    is intact, and the same command resumes from 5 to the bitwise-identical result;
#  - SIGUSR1 mid-run: checkpoint, exit code 3, and the same command completes bit for bit;
#  - eval of the final checkpoint equals the run's last validation loss;
#  - h5py reads the adapters, equal to the PEFT export of the same run; `lorampi export` of the
#    final checkpoint writes that PEFT directory again, tensor for tensor;
#  - a flipped data byte, a flipped metadata byte, a truncated file, another base model,
#    other r or targets, format version 1, an array or a fraction where a scalar integer
#    belongs: one clear error, every rank exits non-zero, nothing on disk changes.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3   # Debian's python3-h5py (install-deps.sh) belongs to the system python
check="$py $src/tests/ckpt_check.py"

alpha_data

{ tiny_model_ini; cat <<INI
[adapter]
method = lora
r = 4
alpha = 8
targets = all
dropout = 0.1
INI
resume_run_ini 2
} > run.ini

# Reference: uninterrupted, with the PEFT export.
mkdir ref && (cd ref && mpi 4 "$bin" train ../run.ini --set train.save_adapter=peft > log 2>&1) || fail "reference run"
all_up ref/log 4 && ok || fail "reference: not every rank ran"
ls ref/ck > ref.ls
[ "$(cat ref.ls | tr '\n' ' ')" = "ckpt-00000015.h5 ckpt-00000020.h5 finished " ] && ok || fail "retention: $(cat ref.ls)"
[ "$(cat ref/ck/finished)" = "step 20 of 20" ] && ok || fail "finished marker: $(cat ref/ck/finished)"
$check peft ref/ck/ckpt-00000020.h5 ref/peft 8 > peft.log 2>&1 && ok || { fail "h5py vs PEFT"; cat peft.log; }
# export of the final checkpoint (2 ranks) = the run's own save_adapter, tensor for tensor.
samepeft() { $py -c 'import json, sys, numpy as np; sys.path.insert(0, sys.argv[3])
from ckpt_check import read_safetensors
a, b = (read_safetensors(d + "/adapter_model.safetensors") for d in sys.argv[1:3])
assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a), "tensors differ"
ja, jb = (json.load(open(d + "/adapter_config.json")) for d in sys.argv[1:3])
assert ja == jb, (ja, jb)' "$1" "$2" "$src/tests"; }
mpi 2 "$bin" export ref/ck/ckpt-00000020.h5 --out exported > export.log 2>&1 && samepeft exported ref/peft > cmp.log 2>&1 \
  && ok || { fail "export = save_adapter"; cat export.log cmp.log; }
mpi 2 "$bin" export ref/ck/ckpt-00000020.h5 --out exported > export.log 2>&1; [ $? -ne 0 ] && grep -q "not empty" export.log \
  && ok || { fail "export into a non-empty dir"; cat export.log; }
mpi 1 "$bin" export ref/ck/ckpt-00000020.h5 --out exported --force > export.log 2>&1 && ok || fail "export --force"

# eval of the final checkpoint on the validation file = the run's last val_loss (same layout:
# the same numbers; 1 rank: within 1e-5).
lastval=$($py -c 'import json, sys; print([json.loads(l) for l in open(sys.argv[1])][-1]["val_loss"])' ref/m.jsonl)
for lay in "4 2" "1 1"; do
  set -- $lay
  mpi $1 "$bin" eval run.ini --set parallel.tp=$2 \
    --resume ref/ck/ckpt-00000020.h5 > eval.log 2>&1
  $py -c 'import json, sys; o = json.loads(open(sys.argv[1]).read().strip().split("\n")[-1])
assert abs(o["loss"] - float(sys.argv[2])) <= float(sys.argv[3]) * float(sys.argv[2]) and o["tokens"] > 0, (o, sys.argv[2])' \
    eval.log "$lastval" "$([ $1 = 4 ] && echo 1e-7 || echo 1e-5)" && ok || { fail "eval on $1 ranks vs val_loss $lastval"; cat eval.log; }
done

# Stop at 10 + resume bit for bit, and the (2,2) checkpoint of step 10 on other layouts:
# LoRA (in ref/, beside the reference run) and full fine-tuning. The stopped run has written
# checkpoint 10 but not 15, and no `finished`; the resumed one writes it.
stopped() { [ -f ck/ckpt-00000010.h5 ] && [ ! -f ck/ckpt-00000015.h5 ] && [ ! -e ck/finished ] && ok || fail "stop-at 10: $(ls ck)"; }
after_stop=stopped
cd ref; resume_checks lora ../run.ini "1 1 4 4 2 1"; cd ..
mkdir full && cd full
mpi 4 "$bin" train ../run.ini --set adapter.method=none > log 2>&1 || fail "full fine-tuning: reference"
resume_checks "full fine-tuning" ../run.ini "1 1 4 4 2 1" --set adapter.method=none
cd ..
after_stop=
[ "$(cat ref/same/ck/finished)" = "step 20 of 20" ] && ok || fail "resumed run: no finished marker"

# kill -9 of one rank in the middle of writing checkpoint 10.
mkdir kill && cd kill
cp ../run.ini kill.ini   # a name of its own so that pgrep finds only this run's ranks
LORAMPI_TEST_CKPT_DELAY=10:60 "${MPIEXEC:-mpiexec}" --oversubscribe -n 4 "$bin" train kill.ini > log1 2>&1 &
job=$!
for i in $(seq 600); do [ -f ck/ckpt-00000010.h5.tmp ] && grep -q "test delay" log1 && break; sleep 0.1; done
victim=$(pgrep -f "^$bin train kill.ini" | tail -1)
if [ -f ck/ckpt-00000010.h5.tmp ] && [ -n "$victim" ]; then
  kill -9 "$victim"
  wait $job && fail "mpirun exited 0 after a rank was killed" || ok
  [ ! -e ck/ckpt-00000010.h5 ] && [ -f ck/ckpt-00000005.h5 ] && ok || fail "after kill -9: $(ls ck)"
  mpi 4 "$bin" train kill.ini > log2 2>&1 || fail "resume after kill"
  grep -q "resumed from ck/ckpt-00000005.h5" log2 && ok || fail "did not resume from ckpt-5"
  ! ls ck | grep -q tmp && ok || fail "a temporary is left: $(ls ck)"
  [ "$(series ../ref/m.jsonl)" = "$(series m.jsonl)" ] && ok || fail "kill+resume metrics differ"
  $check same ../ref/ck/ckpt-00000020.h5 ck/ckpt-00000020.h5 > same.log 2>&1 && ok || { fail "kill+resume: final checkpoint differs"; cat same.log; }
else
  kill -9 $job 2>/dev/null; fail "never saw checkpoint 10 being written"
fi
cd ..

# SIGUSR1 (Slurm's warning signal, forwarded by mpirun) in the middle of a run: the ranks agree
# at the next step, checkpoint, exit with code 3; the same command finishes bit for bit like an
# uninterrupted run.
mkdir sig && cd sig
long="--set train.steps=400 --set checkpoint.every=0 --set log.every=100"
mpi 4 "$bin" train ../run.ini $long --set checkpoint.dir=ref --set log.metrics=ref.jsonl > ref.log 2>&1 || fail "signal: reference run"
"${MPIEXEC:-mpiexec}" --oversubscribe -n 4 "$bin" train ../run.ini $long > log1 2>&1 &
job=$!
for i in $(seq 600); do [ -f m.jsonl ] && [ "$(wc -l < m.jsonl)" -ge 30 ] && break; sleep 0.05; done
kill -USR1 $job
wait $job; rc=$?
[ $rc -eq 3 ] && grep -q "received SIGUSR1: stopped after step" log1 && ok || { fail "signal: exit $rc"; tail -5 log1; }
stopped=$(ls ck | sed -n 's/ckpt-0*\([0-9]*\)\.h5$/\1/p')
[ -n "$stopped" ] && [ "$stopped" -lt 400 ] && ok || fail "signal: checkpoint $(ls ck)"
mpi 4 "$bin" train ../run.ini $long > log2 2>&1 && grep -q "resumed from ck/ckpt-0*$stopped.h5" log2 && ok || fail "signal: resume"
[ "$(series ref.jsonl)" = "$(series m.jsonl)" ] && ok || fail "signal: stop + resume metrics differ"
$check same ref/ckpt-00000400.h5 ck/ckpt-00000400.h5 > same.log 2>&1 && ok || { fail "signal: final checkpoint differs"; cat same.log; }
cd ..

# Errors: each one message, non-zero exit, the checkpoint dir untouched.
mkdir err && cd err
cp -r ../ref/ck ck
want_error() {  # want_error "what" "expected message part" extra args...
  local what=$1 msg=$2; shift 2
  local before; before=$(ls -l --time-style=full-iso ck; md5sum ck/*)
  mpi 4 "$bin" train ../run.ini "$@" > out.log 2>&1
  local rc=$?
  [ $rc -ne 0 ] && ok || fail "$what: exit code 0"
  grep -q -- "$msg" out.log && ok || { fail "$what: no message '$msg'"; cat out.log; }
  [ "$(grep -c 'lorampi: error' out.log)" -eq 1 ] && ok || { fail "$what: not exactly one error"; cat out.log; }
  [ "$before" = "$(ls -l --time-style=full-iso ck; md5sum ck/*)" ] && ok || fail "$what: checkpoint dir modified"
}
want_error "other r" "has \[adapter\] r = 4, this run has r = 8" --set adapter.r=8
want_error "other targets" "\[adapter\] targets = c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj, this run has targets = c_attn" --set adapter.targets=c_attn
want_error "other base" "was trained on other base weights" --set train.seed=43
want_error "missing file" "ck/nope.h5: No such file" --resume ck/nope.h5
cp ck/ckpt-00000020.h5 bad.h5
$check flip bad.h5 adapter/transformer.h.1.mlp.c_fc/lora_B > flip.log 2>&1 || fail "flip"
want_error "flipped data byte" "cannot read dataset /adapter/transformer.h.1.mlp.c_fc/lora_B: its Fletcher32 checksum" --resume bad.h5
cp ck/ckpt-00000020.h5 bad2.h5
printf '\x5a' | dd of=bad2.h5 bs=1 seek=20 conv=notrunc status=none   # inside the superblock
want_error "flipped superblock byte" "cannot open checkpoint bad2.h5" --resume bad2.h5
head -c 100000 ck/ckpt-00000020.h5 > short.h5
want_error "truncated file" "cannot open checkpoint short.h5" --resume short.h5
echo "not hdf5" > text.h5
want_error "not HDF5" "cannot open checkpoint text.h5" --resume text.h5
# Attributes of the wrong form (h5py rewrites them in copies): an old format version, an
# array where a scalar belongs (it overflowed a variable once), a fractional integer.
attr() { cp ck/ckpt-00000020.h5 "$1"; $py -c 'import h5py, sys, numpy as np
f = h5py.File(sys.argv[1], "r+"); k = sys.argv[2]; del f.attrs[k]
f.attrs[k] = eval(sys.argv[3], {"np": np}); f.close()' "$1" "$2" "$3" || fail "h5py edit of $2"; }
attr v1.h5 format_version 'np.int64(1)'
want_error "format version 1" "v1.h5.*format_version 2" --resume v1.h5
attr arr.h5 step 'np.arange(100, dtype=np.int64)'
want_error "array-valued step" "arr.h5.*step.*not a scalar" --resume arr.h5
attr frac.h5 tp 'np.float64(2.5)'
want_error "fractional tp" "frac.h5.*tp.*not an integer" --resume frac.h5
want_error "--stop-at without dir" "--stop-at needs \[checkpoint\] dir" --set checkpoint.dir= --stop-at 3
cd ..

finish
