#!/usr/bin/env bash
# The main job: builds, then checks the registered implementations on the quick matrix
# against the float64 reference (on the GPU when there is one; without one, the CPU baseline
# only, and it says so). Writes reports/check-quick.json; exit status non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
build/release/harness/cli/moba check --suite quick --out reports/check-quick.json "$@"
