#!/usr/bin/env bash
# Time per generated token against the prompt length, with the key/value cache and without
# (--no-cache recomputes the whole window for every token), on a GPT-2 124M-shaped model
# (random weights, greedy, 1 rank): the first token (with the cache: the prompt's prefill)
# and the mean of the tokens after it.
# Usage: tests/bench/bench_generate.sh [BUILD_DIR] [TOKENS]   (default: build, 16)
set -euo pipefail
build=${1:-build}; tokens=${2:-16}
bin=$(cd "$build" && pwd)/lorampi
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
printf '[model]\nn_layer = 12\nn_head = 12\nn_embd = 768\nvocab_size = 50257\nn_ctx = 1024\n[train]\nseq_len = 64\n' > "$dir/gpt2.ini"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}"
echo "| prompt tokens | cache: first token ms | cache: ms/token after | no cache: first token ms | no cache: ms/token after |"
echo "|---|---|---|---|---|"
for len in 64 256 768; do
  prompt=$(head -c "$len" /dev/zero | tr '\0' 'a')
  row="| $len"
  for opt in "" --no-cache; do
    ms=$(mpirun -n 1 "$bin" generate "$dir/gpt2.ini" --bytes --prompt "$prompt" --tokens "$tokens" \
           --temperature 0 $opt | sed -n 's/.*(first token \([0-9.]*\) ms, then \([0-9.]*\) ms per token).*/\1 | \2/p')
    row="$row | $ms"
  done
  echo "$row |"
done
