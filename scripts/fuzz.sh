#!/usr/bin/env bash
# The fuzz targets (tests/fuzz, README "Fuzzing"): configures a clang build with LMP_FUZZ=ON
# in its own directory (default build-fuzz/), builds it and runs `ctest -L fuzz`, each target
# for SECONDS (default 60) from its seed corpus. Fails on any crash, sanitizer report, hang or
# runaway allocation; the input is kept as BUILD/tests/fuzz/<target>.work/{crash,timeout,oom}-*.
#   scripts/fuzz.sh [SECONDS [BUILD_DIR]]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
build=${2:-$root/build-fuzz}
CC=${FUZZ_CC:-clang} cmake -S "$root" -B "$build" -DLMP_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLMP_FUZZ_SECONDS="$secs" > /dev/null
cmake --build "$build" -j "$(nproc)"
cd "$build"
# One target per core: each is one process.
LMP_FUZZ_SECONDS=$secs ctest -L fuzz --output-on-failure -j "$(nproc)"
