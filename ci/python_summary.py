"""Short tables of the reports ci/gpu_python.sh writes: check outcomes per implementation,
bench medians and speedups, paper rows. Usage: python3 ci/python_summary.py REPORT.json..."""

import collections
import json
import sys


def check_table(records):
    counts = collections.defaultdict(collections.Counter)
    for r in records:
        counts[r["impl"]][r["outcome"]] += 1
    print(f"{'impl':<28} {'passed':>7} {'incorrect':>9} {'failed':>7} {'not sup.':>8} {'skipped':>7}")
    for impl, c in counts.items():
        print(f"{impl:<28} {c['passed']:>7} {c['incorrect']:>9} {c['failed']:>7} {c['not supported']:>8} "
              f"{c['skipped']:>7}")
    bad = [r for r in records if r["outcome"] in ("incorrect", "failed")]
    for r in bad[:10]:
        print(f"  {r['outcome']}: {r['impl']} {r['check']} {r.get('tensor', '')}: {r.get('reason', '')[:160]}")


def bench_table(records):
    print(f"{'impl':<16} {'phase':<7} {'L':>7} {'outcome':<10} {'median ms':>10} {'vs dense':>9}  (dense: the "
          "fastest dense median of the same state, this process)")
    for r in records:
        m = (r.get("timing") or {}).get("median_ms")
        speed = r.get("speedup_vs_dense")
        print(f"{r['impl']:<16} {r.get('phase', ''):<7} {sum(r['config']['seqlens']):>7} {r['outcome']:<10} "
              f"{m if m is None else f'{m:.3f}':>10} {speed if speed is None else f'{speed:.2f}':>9}"
              + ("" if r["outcome"] == "passed" else f"  {r.get('reason', '')[:100]}"))


def main(paths):
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        records = report.get("records", [])
        print(f"== {path} ({report.get('meta', {}).get('tool')}, {len(records)} records, "
              f"complete: {report.get('complete')})")
        if records and records[0].get("kind") == "check":
            check_table(records)
        else:
            bench_table(records)


if __name__ == "__main__":
    main(sys.argv[1:])
