#!/usr/bin/env python3
"""Summarise `moba check` reports (JSON, or .json.gz, any number; shards of one suite merge):
outcome counts, the worst ratio per input family (and which record), and the gating totals
(pairs, mismatches, near ties and their fraction, exact ties, tie violations).

    python3 ci/check_summary.py reports/h200/rigor/check-long-*.json [--json out.json]

The ratio judged is the record's `ratio` (SEMANTICS.md §6: the largest of the region and
relative-L2 ratios; a record passes at <= 1). Exit 1 when a report is incomplete or any record
is incorrect or failed, so a GPU script can gate on it."""
import argparse
import collections
import gzip
import json
import sys


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--json", help="also write the summary here")
    args = ap.parse_args()

    outcomes = collections.Counter()
    worst = {}  # family -> (ratio, impl, tensor, command)
    gating = collections.Counter()
    incomplete = []
    for path in args.reports:
        doc = load(path)
        if not doc.get("complete", False):
            incomplete.append(path)
        for r in doc["records"]:
            if r.get("kind") != "check":
                continue
            outcomes[r["outcome"]] += 1
            family = r.get("config", {}).get("inputs", "?")
            if r["check"] == "gating" or r.get("tensor") == "selection":
                for key in ("pairs", "mismatches", "near_ties", "near_tie_mismatches", "exact_ties",
                            "tie_violations", "invalid"):
                    gating[key] += int(r.get(key, 0))
                continue
            ratio = r.get("ratio")
            if ratio is not None and (family not in worst or ratio > worst[family][0]):
                worst[family] = (ratio, r["impl"], r.get("tensor", ""), r.get("command", ""))

    near_fraction = gating["near_ties"] / gating["pairs"] if gating["pairs"] else 0.0
    summary = {
        "reports": len(args.reports),
        "incomplete": incomplete,
        "outcomes": dict(outcomes),
        "worst_ratio_by_family": {f: {"ratio": w[0], "impl": w[1], "tensor": w[2], "command": w[3]}
                                  for f, w in sorted(worst.items())},
        "gating": dict(gating, near_tie_fraction=near_fraction),
    }
    print(f"{len(args.reports)} reports, {sum(outcomes.values())} records: "
          + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())))
    if incomplete:
        print("INCOMPLETE: " + ", ".join(incomplete))
    print(f"{'family':10} {'worst ratio':>11}  impl / tensor")
    for f, w in sorted(worst.items()):
        print(f"{f:10} {w[0]:11.3f}  {w[1]} / {w[2]}")
    print(f"gating (summed over the records, one per implementation with gating): {gating['pairs']} pairs, {gating['mismatches']} mismatches, "
          f"{gating['near_ties']} near ties ({100 * near_fraction:.3f}%), "
          f"{gating['near_tie_mismatches']} mismatches at near ties, "
          f"{gating['exact_ties']} exact ties, {gating['tie_violations']} tie violations, "
          f"{gating['invalid']} invalid")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    bad = outcomes["incorrect"] + outcomes["failed"]
    return 1 if bad or incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
