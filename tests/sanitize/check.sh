#!/usr/bin/env bash
# Runs one test of the sanitized suite (cmake -DLMP_SANITIZE=ON) so that a sanitizer report
# fails it even where the test expects a non-zero exit or reads a process's stderr for a
# message: ASan and LSan reports of every process it starts (the test, lorampi under
# mpirun, Slurm jobs, forked children) go to files under DIR; UBSan (gcc 12) ignores
# log_path and prints "runtime error:" on stderr, so the test's output and SCAN (the CLI
# tests' work dir, where they keep lorampi's logs) are searched for it, and for any ASan
# report of a process that did not get ASAN_OPTIONS.
# Usage: check.sh DIR SCAN|- COMMAND [ARGS...]
set -u
dir=$1; scan=$2; shift 2
rm -rf "$dir"; mkdir -p "$dir"
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:log_path=$dir/report"
"$@" 2>&1 | tee "$dir/output"
rc=${PIPESTATUS[0]}
shopt -s nullglob
reports=("$dir"/report.*)
[ "$scan" != - ] && [ -d "$scan" ] || scan=
pat='runtime error: |==[0-9]+==ERROR: [A-Za-z]+Sanitizer'
ub=$(grep -rlE "$pat" "$dir/output" $scan 2>/dev/null)
if [ ${#reports[@]} -gt 0 ] || [ -n "$ub" ]; then
  for r in "${reports[@]}" $ub; do echo "== $r"; grep -hE -B2 -A30 "$pat" "$r"; done
  echo "sanitizer: $(( ${#reports[@]} + $(echo "$ub" | grep -c .) )) report(s), above"
  exit 1
fi
exit "$rc"
