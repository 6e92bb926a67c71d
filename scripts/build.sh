#!/usr/bin/env bash
# Installs the dependencies (Debian packages, skipped when present), configures and builds.
# Usage: scripts/build.sh [BUILD_DIR]   (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release 
cmake --build "$build" -j "$(nproc)"
