#!/usr/bin/env bash
# One fuzz test (tests/fuzz/CMakeLists.txt): runs fuzzer BIN from its seed corpus
# SRC/corpus/<target>/ (the regression inputs included: each runs first) plus the corpus it
# grows in WORK, for LMP_FUZZ_SECONDS seconds (default: the build's LMP_FUZZ_SECONDS). Any
# crash, sanitizer report, timeout (10 s on one input) or 2 GB of memory is a finding: the
# test fails and the input is kept in WORK as crash-*, timeout-* or oom-*.
# Leak detection is off: a die turned into a return (fuzzutil.h) leaks by design.
set -euo pipefail
bin=$1 src=$2 work=$3
name=$(basename "$bin")
secs=${LMP_FUZZ_SECONDS:-${LMP_FUZZ_SECONDS_DEFAULT:-60}}
mkdir -p "$work/corpus"
dict=()
[ -f "$src/$name.dict" ] && dict=(-dict="$src/$name.dict")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$work"
# A die that longjmps leaks what the dying code had allocated, so the process grows; when it
# reaches the RSS limit ("out-of-memory (used: ...)", not one input's huge malloc, which
# -malloc_limit_mb reports as "out-of-memory (malloc(...))"), the fuzzer restarts from its
# grown corpus for the time left. Every other stop is the verdict.
end=$(( $(date +%s) + secs ))
: > "$work/log"
while :; do
  left=$(( end - $(date +%s) ))
  [ "$left" -ge 1 ] || { status=0; break; }
  set +e
  "$bin" -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -detect_leaks=0 \
    -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$work/" "${dict[@]}" \
    "$work/corpus" "$src/corpus/$name" > "$work/run.log" 2>&1
  status=$?
  set -e
  cat "$work/run.log" >> "$work/log"
  if [ "$status" -ne 0 ] && grep -q 'ERROR: libFuzzer: out-of-memory (used:' "$work/run.log"; then
    echo "run.sh: RSS limit reached through the leaks of dies; restarting" >> "$work/log"
    rm -f "$work"/oom-*
    continue
  fi
  break
done
grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse)' "$work/log"
exit "$status"
