#!/usr/bin/env bash
# The whole test suite: installs the test dependencies, configures, builds, runs ctest
# (benchmarks are not part of it; run them with tests/bench/run.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
"$root/scripts/install-deps.sh" test
"$root/scripts/build.sh" "$build"
cd "$build"
ctest --output-on-failure -j 1
