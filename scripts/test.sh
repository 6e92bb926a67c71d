#!/usr/bin/env bash
# The whole test suite: installs the test dependencies, configures, builds, runs ctest
# (benchmarks are not part of it; run them with tests/bench/run.sh).
# Usage: scripts/test.sh [BUILD_DIR [CMAKE_OPTIONS...]]   (default: build)
# e.g. scripts/test.sh build-san -DLMP_SANITIZE=ON, the suite under ASan + UBSan.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
"$root/scripts/install-deps.sh" test
"$root/scripts/build.sh" "$build" "$@"
cd "$build"
ctest --output-on-failure -j 1
