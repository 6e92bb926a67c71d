# Shared by the tests/t_*.sh CLI tests: a fresh work dir, pass/fail counting, mpiexec.
# Usage: source "$src/tests/shlib.sh" after setting bin, src, work.
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
fails=0; passes=0
ok()   { passes=$((passes+1)); }
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
mpi()  { "${MPIEXEC:-mpiexec}" --oversubscribe -n "$@"; }
# Prints "passes passed, fails failed" and returns non-zero when anything failed.
finish() { echo "$passes passed, $fails failed"; [ "$fails" -eq 0 ]; }
