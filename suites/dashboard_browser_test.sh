#!/usr/bin/env bash
# ctest dashboard_browser: `moba dashboard` over suites/fixtures/dashboard/ (real committed
# reports: two Figure 2b paper runs, a dense benchmark at two commits, one long-suite case at
# two commits with incorrect records; and in bad/ a report failing the schema, one of
# format_version 2 and a gzip file), then the page opened in headless Chromium. Fails on any
# console error, a chart that did not render, a mark count other than the fixtures give, or a
# bad input missing from the page. Exit 77 (ctest: skipped) when Chromium is not installed.
# Usage: dashboard_browser_test.sh MOBA_BINARY FIXTURES_DIR WORK_DIR
set -euo pipefail
moba=$1 fixtures=$2 work=$3

browser=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $browser ]]; then
  echo "SKIP: no chromium on PATH (Debian: apt-get install chromium; ci/test.sh installs it)"
  exit 77
fi
command -v python3 >/dev/null || { echo "FAIL: python3 is needed to read the dumped page"; exit 1; }

rm -rf "$work" && mkdir -p "$work"
# The bad inputs make the command exit 1, after writing the site with the other reports.
set +e
"$moba" dashboard "$fixtures" --out "$work/site" >"$work/stdout.txt" 2>"$work/stderr.txt"
status=$?
set -e
cat "$work/stdout.txt" "$work/stderr.txt"
[[ $status -eq 1 ]] || { echo "FAIL: moba dashboard exited $status, expected 1 (invalid fixtures)"; exit 1; }
for f in index.html data.js dashboard.js dashboard.css vendor/vega.min.js vendor/vega-lite.min.js vendor/vega-embed.min.js; do
  [[ -s $work/site/$f ]] || { echo "FAIL: $f not written"; exit 1; }
done

dump() {  # dump URL OUTPUT: the DOM after the page's scripts ran (virtual time: no real wait)
  timeout 120 "$browser" --headless=new --disable-gpu --no-sandbox --disable-dev-shm-usage --no-first-run \
    --user-data-dir="$work/profile" --virtual-time-budget=20000 --dump-dom "$1" \
    >"$2" 2>"$work/chromium.log" || { echo "FAIL: chromium failed on $1"; tail -20 "$work/chromium.log"; exit 1; }
}
dump "file://$work/site/index.html" "$work/index.dom.html"
dump "file://$work/site/index.html#fig2b-only" "$work/fig2b.dom.html"

python3 - "$work" <<'EOF'
import html, json, re, sys

work = sys.argv[1]
failures = []

def status_of(path):
    dom = open(path, encoding="utf-8").read()
    m = re.search(r'<pre id="render-status"[^>]*>(.*?)</pre>', dom, re.S)
    if not m:
        sys.exit(f"FAIL: {path}: no render-status element")
    return dom, json.loads(html.unescape(m.group(1)))

# What the fixtures hold (count by hand from suites/fixtures/dashboard/):
#   Figure 2b on the H100, 128K and 512K: time of wgmma_moba, wgmma_dense, tiled_mma,
#   tiled_mma_dense (8 points) + published MoBA and full attention (4) in 6 lines; speedup of
#   the two MoBA implementations (4) + published (2) + ideal (2) in 4 lines.
#   History: wgmma_dense MHA 32K fwd and fwdbwd, measured at aee7055 and b0ccbb1: 4 points,
#   4 min-max rules, 2 lines.
#   Outcomes: 4 reports all passed + 2 with passed and incorrect: 8 cells (and 8 counts).
#   Worst ratio: 5 (check, tensor) pairs in each of the 2 check reports.
#   Side by side (the last pair, the two case-50 reports): 8 check pairs that changed.
#   Reports: 6 (GPU, commit) groups. Throughput: 19 bench records in 9 (layout, phase) charts.
gpu = "nvidia-h100-80gb-hbm3"
expected = {
    f"fig2b-{gpu}-time": {"symbol": 12, "line": 6},
    f"fig2b-{gpu}-speedup": {"symbol": 8, "line": 4},
    f"history-{gpu}": {"symbol": 4, "rule": 4, "line": 2},
    "outcomes": {"rect": 8, "text": 8},
    "worst-ratio": {"rect": 10, "text": 10},
    "compare": {"symbol": 8},
    "reports": {"rect": 6},
}

dom, st = status_of(f"{work}/index.dom.html")
if not st.get("done"):
    failures.append("the page never finished rendering")
for e in st.get("errors", []):
    failures.append(f"console error: {e}")
charts = st.get("charts", {})
for chart_id, info in charts.items():
    if not info.get("rendered"):
        failures.append(f"chart {chart_id} did not render: {info.get('error', 'empty SVG')}")
for chart_id, marks in expected.items():
    got = charts.get(chart_id, {}).get("marks")
    if got != marks:
        failures.append(f"chart {chart_id}: marks {got}, expected {marks}")
throughput = {k: v for k, v in charts.items() if k.startswith("throughput-")}
points = sum(v.get("marks", {}).get("symbol", 0) for v in throughput.values())
if len(throughput) != 9 or points != 19:
    failures.append(f"throughput: {len(throughput)} charts with {points} points, expected 9 with 19")

# Bad input is listed at the top of the page, and the incorrect records are flagged.
problems = re.search(r'<section id="problems"(.*?)</section>', dom, re.S)
if not problems or "hidden" in problems.group(1)[:20]:
    failures.append("the problems box is missing or hidden")
else:
    for name, words in [("invalid-outcome.json", "schema violation"),
                        ("format-version-2.json", "format_version 2"),
                        ("compressed.json.gz", "gzip")]:
        if name not in problems.group(1) or words not in problems.group(1):
            failures.append(f"{name} is not listed with '{words}' in the problems box")
if st.get("problems") != 3:
    failures.append(f"{st.get('problems')} problems shown, expected 3")
if st.get("bad") != 4 or "4 record(s) incorrect or failed" not in dom:
    failures.append(f"alarm: {st.get('bad')} bad records, expected 4 shown at the top")

# #fig2b-only (the README's PNGs): the two Figure 2b charts alone.
_, fig = status_of(f"{work}/fig2b.dom.html")
if fig.get("errors") or sorted(fig.get("charts", {})) != sorted([f"fig2b-{gpu}-speedup", f"fig2b-{gpu}-time"]):
    failures.append(f"#fig2b-only: {fig}")

if failures:
    print("FAIL:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"PASS: {len(charts)} charts rendered, marks as expected, 3 bad inputs listed, no console error")
EOF
