#!/usr/bin/env bash
# The README's Figure 2 images: `moba dashboard` over the committed reports, then headless
# Chromium screenshots of the page's #fig2a-only and #fig2b-only views (both GPUs' charts of that
# figure, nothing else) into reports/figures/fig2a.png and fig2b.png. Needs a built `moba`
# (ci/main.sh or cmake --build build/release --target moba) and Debian's chromium.
# With MOBA_DASHBOARD_VIEWS=1 also a screenshot of each view (#only-<view>: the page's header,
# the problem boxes and that view, the top of it) into OUT_DIR/dashboard/<view>.png.
# Usage: ci/dashboard_pngs.sh [OUT_DIR, default reports/figures]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/figures}
moba=build/release/harness/cli/moba
browser=$(command -v chromium || command -v chromium-browser) ||
  { echo "chromium is required (apt-get install chromium)" >&2; exit 1; }
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
# Exit 1 only means some report is invalid (it is listed on the page); the figures still render.
$moba dashboard reports/h100 reports/h200 --out "$site/site" || [[ $? -eq 1 ]]
mkdir -p "$out"
for figure in 2a 2b; do
  # One row per GPU of two 380x260 charts with their legends: 1000 px wide, 430 px per GPU.
  gpus=$(python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().split('=',1)[1].rstrip().rstrip(';')); print(len({r['gpu'] for r in d['fig2']['time'] if r['figure']=='$figure'}))" "$site/site/data.js")
  [[ $gpus -gt 0 ]] || { echo "no Figure $figure records: fig$figure.png not made"; continue; }
  timeout 120 "$browser" --headless=new --disable-gpu --no-sandbox --disable-dev-shm-usage --no-first-run --hide-scrollbars \
    --user-data-dir="$site/profile" --virtual-time-budget=20000 --window-size=1000,$((60 + 430 * gpus)) \
    --screenshot="$out/fig$figure.png" "file://$site/site/index.html#fig$figure-only" 2>/dev/null
  echo "wrote $out/fig$figure.png ($gpus GPU(s))"
done
[[ ${MOBA_DASHBOARD_VIEWS:-0} == 1 ]] || exit 0
mkdir -p "$out/dashboard"
for view in top:1100 fig2:1300 throughput:2000 history:2400 correctness:6000 compare:1100 reports:1300; do
  name=${view%%:*} height=${view##*:}
  hash="#only-$name"; [[ $name == top ]] && hash=""
  timeout 200 "$browser" --headless=new --disable-gpu --no-sandbox --disable-dev-shm-usage --no-first-run --hide-scrollbars \
    --user-data-dir="$site/profile" --virtual-time-budget=60000 --window-size=1400,$height \
    --screenshot="$out/dashboard/$name.png" "file://$site/site/index.html$hash" 2>/dev/null
  echo "wrote $out/dashboard/$name.png"
done
