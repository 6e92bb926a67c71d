#!/usr/bin/env bash
# The whole test suite: installs the test dependencies, configures, builds, runs ctest
# (benchmarks are not part of it; run them with tests/bench/run.sh).
# Usage: scripts/test.sh [BUILD_DIR [CMAKE_OPTIONS...]]   (default: build)
# e.g. scripts/test.sh build-san -DLMP_SANITIZE=ON, the suite under ASan + UBSan.
# LMP_TEST_JOBS=N runs N tests at a time (ctest -j N; default 1; CI uses 2, see .ci/run);
# LMP_CTEST_ARGS adds ctest options (CI's sanitized pass: -LE heavy).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
shift || true
"$root/scripts/install-deps.sh" test
"$root/scripts/build.sh" "$build" "$@"
cd "$build"
# shellcheck disable=SC2086  # LMP_CTEST_ARGS: options, split on spaces
ctest --output-on-failure -j "${LMP_TEST_JOBS:-1}" ${LMP_CTEST_ARGS:-}
