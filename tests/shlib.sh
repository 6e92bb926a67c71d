# Shared by the tests/t_*.sh CLI tests: a fresh work dir, pass/fail counting, mpiexec.
# Usage: source "$src/tests/shlib.sh" after setting bin, src, work.
# File systems a test mounted in its work dir (t_faults' small tmpfs) and left mounted when
# it was interrupted: unmounted before the dir is replaced, and at a test's exit.
unmount_work() {
  local m
  for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts 2>/dev/null | sort -r); do
    umount "$m" 2>/dev/null || echo "warning: cannot unmount $m"
  done
}
unmount_work
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
fails=0; passes=0
ok()   { passes=$((passes+1)); }
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
# Under the sanitizers (LMP_SANITIZE=1) a launch of more than one rank runs without leak
# checking unless LMP_TEST_FULL=1: LSan's suppressions of Open MPI's own leaks need the slow
# unwinder on every malloc (a 4-rank launch 3.3 s instead of 1.0), and the CLI tests launch
# hundreds. ASan and UBSan still check every rank; leaks stay checked in every 1-rank launch
# (the same code paths) and in the 4-rank mpitest_* programs.
mpi()  {
  if [ "${LMP_SANITIZE:-0}" = 1 ] && [ "${LMP_TEST_FULL:-0}" != 1 ] && [ "$1" -gt 1 ]; then
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0" "${MPIEXEC:-mpiexec}" --oversubscribe -n "$@"
  else
    "${MPIEXEC:-mpiexec}" --oversubscribe -n "$@"
  fi
}
# Prints "passes passed, fails failed" and returns non-zero when anything failed.
finish() { echo "$passes passed, $fails failed"; [ "$fails" -eq 0 ]; }
# The synthetic task of the CLI tests: lines of the alphabet starting at a pseudo-random
# letter (every byte but a line's first is predictable), as byte tokens alpha_{train,val}.bin.
alpha_data() {
  awk 'BEGIN { a = "abcdefghijklmnopqrstuvwxyz"; s = 7;
    for (i = 0; i < 3000; i++) { s = (s * 1103515245 + 12345) % 2147483648; k = s % 26;
      print substr(a a, k + 1, 26) } }' > alpha.txt
  "$bin" tokenize --bytes --out alpha --val-fraction 0.1 alpha.txt > tok.log || fail "tokenize"
}
# The [model] section of the CLI tests' tiny byte-level model.
tiny_model_ini() {
  printf '[model]\nn_layer = 2\nn_head = 4\nn_embd = 32\nvocab_size = 256\nn_ctx = 64\n'
}
# The run of the stop/resume tests (resume_checks below; t_ckpt, t_methods, t_ia3dora,
# t_prefix), after the [model] and [adapter] sections: 20 steps on alpha_data's files, tp 2,
# every step's metrics in m.jsonl, a checkpoint every 5 steps in ck/, keeping KEEP (0: all).
#   resume_run_ini KEEP
resume_run_ini() { cat <<INI
[train]
steps = 20
batch_size = 8
seq_len = 32
lr = 3e-3
warmup_steps = 3
seed = 42
[data]
train = $work/alpha_train.bin
val = $work/alpha_val.bin
[log]
every = 5
metrics = m.jsonl
[parallel]
tp = 2
[checkpoint]
dir = ck
every = 5
keep = $1
INI
}
# The run of the gradient-reduction tests (t_buckets, t_seqpar), after the [model] and
# [adapter] sections: 8 steps of 2 micro-steps on alpha_data's train file, every step's
# metrics in m.jsonl, a checkpoint at the end in ck/.
accum_run_ini() { cat <<INI
[train]
steps = 8
batch_size = 8
seq_len = 32
grad_accum = 2
lr = 3e-3
warmup_steps = 2
seed = 42
[data]
train = $work/alpha_train.bin
[log]
every = 4
metrics = m.jsonl
[checkpoint]
dir = ck
INI
}
# Losses, learning rates and gradient norms of a metrics file, one step per line, exact.
series() { /usr/bin/python3 -c 'import json,sys
for l in open(sys.argv[1]): o = json.loads(l); print(o["step"], repr(o["loss"]), repr(o["lr"]), repr(o["grad_norm"]))' "$1"; }
# Largest relative loss difference between metrics files A and B; B must hold every step
# 1..N of A (N = A's last step), so a resumed run that skipped or repeated a step fails.
maxrel() { /usr/bin/python3 -c 'import json,sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
assert [o["step"] for o in b] == list(range(1, a[-1]["step"] + 1)), [o["step"] for o in b]
print(max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b)))' "$1" "$2"; }
# Every rank ran: LOG's rank report names all N ranks.   all_up LOG N
all_up() { grep -q "ranks 0-$(($2 - 1)) of $2 up" "$1"; }
# `lorampi train ../run.ini ARGS` on NP ranks inside DIR (its output in DIR/log), counted as
# passed when every rank was up; else failed, with the log's tail.   run_in DIR NP [ARGS...]
run_in() {
  local d=$1 np=$2; shift 2
  mkdir -p "$d" && (cd "$d" && mpi "$np" "$bin" train ../run.ini "$@" > log 2>&1) && all_up "$d/log" "$np" \
    && ok || { fail "$d: run"; tail -3 "$d/log"; }
}
# The sanitized suite (LMP_SANITIZE=1; README "Tests") runs a part of some CLI tests' method
# matrices, each code path of the rest being under the sanitizers in lighter tests (named
# where it is used): `sanitized_subset ALL SUBSET` prints SUBSET there, ALL otherwise
# (LMP_TEST_FULL=1: ALL always).
sanitized_subset() {
  if [ "${LMP_SANITIZE:-0}" = 1 ] && [ "${LMP_TEST_FULL:-0}" != 1 ]; then echo "$2"; else echo "$1"; fi
}
# Stop + resume, bit for bit, and resumes on other layouts. Run in a directory holding the
# uninterrupted run of INI + ARGS on 4 ranks (the ini's tp 2: tp 2 x dp 2) with metrics
# m.jsonl and checkpoints every 5 of its 20 steps in ck/:
#  - in same/: stop at step 10, then the same command resumes: every rank up, the metrics
#    (loss, lr, grad norm of every step) and every dataset of the last checkpoint (adapters,
#    m, v) equal the uninterrupted run's bit for bit; $after_stop (a function), if set, runs
#    in same/ between the two;
#  - for each "RANKS TP" of LAYOUTS, in n<RANKS>_tp<TP>/: the step-10 checkpoint resumes
#    there, every rank up, losses within 1e-5 relative (the parallelism tests' tolerance).
#   resume_checks WHAT INI "LAYOUTS" [ARGS...]
resume_checks() {
  local what=$1 ini lays=$3 last d rel
  ini=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
  shift 3
  local args=("$@")
  last=$(cd ck && ls ckpt-*.h5 | tail -1)
  mkdir same && cd same || return 1
  if mpi 4 "$bin" train "$ini" "${args[@]}" --stop-at 10 > log1 2>&1; then
    [ -z "${after_stop:-}" ] || $after_stop
    cp -r ck ../stop10 && cp m.jsonl ../stop10.jsonl
    mpi 4 "$bin" train "$ini" "${args[@]}" > log2 2>&1 || { fail "$what: resume run"; tail -3 log2; }
  else
    fail "$what: stop-at run"; tail -3 log1
  fi
  cd ..
  grep -q "resumed from ck/ckpt-00000010.h5: step 10 of 20 (written by tp 2 x dp 2)" same/log2 && all_up same/log2 4 \
    && [ "$(series m.jsonl)" = "$(series same/m.jsonl)" ] && ok || fail "$what: stop + resume metrics differ from the uninterrupted run"
  /usr/bin/python3 "$src/tests/ckpt_check.py" same "ck/$last" "same/ck/$last" > same.log 2>&1 && ok \
    || { fail "$what: final checkpoints differ"; cat same.log; }
  set -- $lays
  while [ $# -ge 2 ]; do
    d="n$1_tp$2"
    mkdir "$d" && cp -r stop10 "$d/ck" && cp stop10.jsonl "$d/m.jsonl"
    (cd "$d" && mpi "$1" "$bin" train "$ini" "${args[@]}" --set parallel.tp=$2 > log 2>&1) \
      || { fail "$what: resume at $d"; tail -3 "$d/log"; }
    grep -q "written by tp 2 x dp 2" "$d/log" && all_up "$d/log" "$1" && ok || fail "$what: $d did not resume on every rank"
    rel=$(maxrel m.jsonl "$d/m.jsonl") && awk -v r="$rel" 'BEGIN { exit !(r < 1e-5) }' && ok || fail "$what: $d losses off by $rel"
    echo "$what: resumed at $d, max relative loss difference $rel"
    shift 2
  done
}
