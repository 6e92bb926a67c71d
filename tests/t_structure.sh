#!/usr/bin/env bash
# The structure README's "Design" promises, checked on the source tree:
#  - the layers of src/ include only downward: a file may include headers of its own folder
#    and of folders below it; every include that points up or sideways is named;
#  - no function is longer than 80 lines (a function: a line at column 0 that starts a
#    definition, up to the "}" at column 0 that closes it).
# Usage: t_structure.sh BIN SRC WORK (BIN and WORK unused).
src=$2
rank() {
  case "$1" in
    core) echo 0 ;; io) echo 1 ;; data) echo 2 ;; adapters) echo 3 ;; model) echo 4 ;;
    run|analysis) echo 5 ;; cli) echo 6 ;; *) echo -1 ;;
  esac
}
passes=0; fails=0
for f in "$src"/src/*/*.[ch] "$src"/analysis/*.[ch]; do
  dir=$(basename "$(dirname "$f")"); me=$(rank "$dir")
  while read -r inc; do
    to=${inc%%/*}; r=$(rank "$to")
    if [ "$r" -lt 0 ]; then echo "FAIL: ${f#$src/} includes \"$inc\": not a layer folder"; fails=$((fails+1))
    elif [ "$r" -gt "$me" ] || { [ "$r" -eq "$me" ] && [ "$to" != "$dir" ]; }; then
      echo "FAIL: ${f#$src/} ($dir) includes \"$inc\" ($to): an arrow upward or sideways"; fails=$((fails+1))
    else passes=$((passes+1)); fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
[ "$passes" -gt 50 ] || { echo "FAIL: only $passes includes seen"; fails=$((fails+1)); }
long=$(awk -v max=80 '
  FNR == 1 { infn = 0 }
  !infn && /^[A-Za-z_][A-Za-z0-9_ \*]*\(/ && !/;[ \t]*$/ {
    infn = 1; start = FNR; name = $0; sub(/\(.*/, "", name); n = split(name, w, /[ \*]+/); name = w[n]; next }
  infn && /^}/ { len = FNR - start + 1; if (len > max) printf "%s:%d: %s is %d lines\n", FILENAME, start, name, len; infn = 0 }
' "$src"/src/*/*.c "$src"/analysis/*.c)
if [ -n "$long" ]; then
  while read -r l; do echo "FAIL: ${l#$src/} (at most 80)"; fails=$((fails+1)); done <<< "$long"
else passes=$((passes+1)); fi
echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
