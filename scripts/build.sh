#!/usr/bin/env bash
# Configures and builds lorampi; installs nothing (scripts/install-deps.sh build does).
# Usage: scripts/build.sh [BUILD_DIR] [CMAKE_OPTIONS...]   (default: build)
# e.g. scripts/build.sh build -DLMP_NATIVE=OFF on a login node whose CPU differs from the
# compute nodes'.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build" -j "$(nproc)"
