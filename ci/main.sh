#!/usr/bin/env bash
# The main job: builds, checks the registered implementations on the quick matrix against the
# float64 reference (on the GPU when there is one; without one, the CPU baseline only, and it
# says so), then, on a GPU, a short benchmark. Reports: reports/check-quick.json and
# reports/bench-short.json; the dashboard of these and the committed reports:
# reports/dashboard/index.html. Exit status non-zero on any incorrect or failed check.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
moba=build/release/harness/cli/moba
$moba check --suite quick --out reports/check-quick.json "$@"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  $moba bench --seqlen 8K --heads 16 --kv-heads 4 --block 512 --topk 8 --phase fwd,fwdbwd \
    --max-seconds 2 --out reports/bench-short.json
else
  echo "No GPU found: the benchmark is skipped."
fi
# The dashboard of the committed reports and this run's (static; open it from file://). Exit 1
# from it means a report failed validation: listed at the top of the page, and this job fails.
$moba dashboard reports/h100 reports/h200 $(ls reports/check-quick.json reports/bench-short.json 2>/dev/null) \
  --out reports/dashboard
echo "Dashboard: $PWD/reports/dashboard/index.html"
