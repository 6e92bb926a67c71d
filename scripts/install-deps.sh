#!/usr/bin/env bash
# Installs lorampi's build and test dependencies from Debian packages.
# Idempotent: packages already present are skipped, and apt is not touched at all
# when everything is there.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libopenmpi-dev openmpi-bin
      libhdf5-openmpi-dev hdf5-tools
      libscalapack-openmpi-dev
      libopenblas-openmp-dev liblapacke-dev
      libjansson-dev libinih-dev
      python3-h5py
      fortunes-min)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
