# Shared by the tests/t_*.sh CLI tests: a fresh work dir, pass/fail counting, mpiexec.
# Usage: source "$src/tests/shlib.sh" after setting bin, src, work.
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
fails=0; passes=0
ok()   { passes=$((passes+1)); }
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
mpi()  { "${MPIEXEC:-mpiexec}" --oversubscribe -n "$@"; }
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
