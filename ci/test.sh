#!/usr/bin/env bash
# Builds and runs every test. CPU tests assert; GPU tests run on a GPU and are reported as
# skipped (never passed) where there is none. Usage: ci/test.sh [extra ctest args, e.g. -L gpu]
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/deps.sh
jobs=$(nproc)
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs" "$@"
