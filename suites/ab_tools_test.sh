#!/usr/bin/env bash
# ci/ab_bench.sh and ci/ab_summary.py without a GPU: every refusal of ab_bench.sh happens before
# anything is built (exit 2, the bad value named, no worktree made); ab_summary.py calls a change
# consistent only when every round moves the same way by at least 1%, leaves out records that did
# not pass, and refuses unequal round counts.
# Usage: suites/ab_tools_test.sh SOURCE_DIR SCRATCH_DIR
source "$(dirname "${BASH_SOURCE[0]}")/script_test.sh"

# expect_refusal WHAT ENV... -- ARGS...: exit 2 and WHAT in stderr, and nothing under AB_WORK.
expect_refusal() {
  local what=$1; shift
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local err rc
  err=$(env AB_WORK="$scratch/work" OUT="$scratch/out" "${envs[@]}" bash "$src/ci/ab_bench.sh" "$@" 2>&1 >/dev/null)
  rc=$?
  ((rc == 2)) || fail "ab_bench.sh $*: exit $rc, expected 2"
  [[ $err == *"$what"* ]] || fail "ab_bench.sh $*: stderr does not name '$what': $err"
  [[ ! -e $scratch/work && ! -e $scratch/out ]] || fail "ab_bench.sh $*: made $scratch/work or $scratch/out before refusing"
}
expect_refusal "'no-such-rev' is not a commit" -- no-such-rev -- --seqlen 1K
expect_refusal "no '--'" -- HEAD
expect_refusal "no bench arguments" -- HEAD --
expect_refusal "'--out'" -- HEAD -- --seqlen 1K --out x.json
expect_refusal "'--out=x.json'" -- HEAD -- --seqlen 1K --out=x.json
expect_refusal "got 3 revisions" -- HEAD HEAD HEAD -- --seqlen 1K
expect_refusal "AB_ROUNDS='0'" AB_ROUNDS=0 -- HEAD -- --seqlen 1K
expect_refusal "AB_STEP_LIMIT='ten'" AB_STEP_LIMIT=ten -- HEAD -- --seqlen 1K

# Two-round reports for ab_summary.py: report ROUND SIDE followed by "impl phase median outcome" lines.
report() {
  local path=$scratch/$1-$2.json; shift 2
  python3 - "$path" "$@" <<'EOF'
import json, sys
path, rows = sys.argv[1], sys.argv[2:]
config = {"layout": "GQA", "seqlens": [131072], "block": 2048, "topk": 3, "seed": 1}
records = []
for row in rows:
    impl, phase, median, outcome = row.split()
    records.append({"kind": "bench", "impl": impl, "phase": phase, "gating": "included",
                    "config": config, "outcome": outcome, "timing": {"median_ms": float(median)}})
json.dump({"records": records}, open(path, "w"))
EOF
}
# faster: -10% and -5%; noise: -3% then +2%; small: -0.5% and -0.4% (same sign, under 1%);
# broken: failed in round 2's new report.
report 1 base "faster fwd 10 passed" "noise fwd 10 passed" "small fwd 100 passed" "broken fwd 10 passed"
report 1 new  "faster fwd 9 passed"  "noise fwd 9.7 passed" "small fwd 99.5 passed" "broken fwd 10 passed"
report 2 base "faster fwd 10 passed" "noise fwd 10 passed" "small fwd 100 passed" "broken fwd 10 passed"
report 2 new  "faster fwd 9.5 passed" "noise fwd 10.2 passed" "small fwd 99.6 passed" "broken fwd 10 failed"
summary=$(python3 "$src/ci/ab_summary.py" --base "$scratch/1-base.json" "$scratch/2-base.json" \
  --new "$scratch/1-new.json" "$scratch/2-new.json")
rc=$?
((rc == 0)) || fail "ab_summary.py: exit $rc"
line() { grep -E "^\| $1 fwd" <<<"$summary"; }
[[ $(line faster) == *"-10.00%, -5.00% | -7.50% | faster |"* ]] || fail "faster: $(line faster)"
[[ $(line noise) == *"| within the noise |"* ]] || fail "noise: $(line noise)"
[[ $(line small) == *"| within the noise |"* ]] || fail "small: $(line small)"
[[ -z $(line broken) ]] || fail "a failed record is in the table: $(line broken)"
grep -q "left out: .*broken fwd.*failed" <<<"$summary" || fail "the failed record is not listed as left out: $summary"
python3 "$src/ci/ab_summary.py" --base "$scratch/1-base.json" "$scratch/2-base.json" --new "$scratch/1-new.json" \
  >/dev/null 2>&1
rc=$?
((rc == 2)) || fail "ab_summary.py with 2 base and 1 new reports: exit $rc, expected 2"

finish "ab tools"
