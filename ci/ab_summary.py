#!/usr/bin/env python3
"""The rounds of an A/B timing (ci/ab_bench.sh) in one table: for every bench configuration timed
in every round on both sides, the change of NEW's median against BASE's in each round
(new / base - 1, the definition `moba compare` uses), then the median of those changes and their
range. A change is called consistent when every round's change has the same sign and is at least
the median's run-to-run noise (1%, `moba compare`'s floor); otherwise it is within the noise.

Why rounds: one build's medians drift by about 2% between processes on the H200 (clocks, power
throttling; kernels/NOTES.md, 2026-12-03), more than some kernel changes move them. Alternating the
sides (A B, B A, A B, ...) puts the drift on both, and the spread over rounds shows what is left.

Records match on (config without seed, impl, phase, gating), as in `moba compare`. Records that did
not pass on both sides, or are missing from a round, are listed and left out of the table.
Usage: ci/ab_summary.py --base A1.json A2.json ... --new B1.json B2.json ...   (pairs in order)
Exit: 0 written, 2 for unreadable input or unequal round counts."""
import json
import statistics
import sys

NOISE = 0.01


def key(record):
    config = {k: v for k, v in record["config"].items() if k != "seed"}
    return json.dumps([config, record["impl"], record["phase"], record.get("gating")], sort_keys=True)


def label(record):
    c = record["config"]
    return (f"{record['impl']} {record['phase']} {c.get('layout', '')} L={sum(c.get('seqlens', []))} "
            f"Bs={c.get('block')} k={c.get('topk')} gating={record.get('gating')}")


def medians(path):
    """{key: (label, median_ms)} of a report's passed bench records; the others in a list."""
    with open(path) as f:
        report = json.load(f)
    found, left_out = {}, []
    for record in report.get("records", []):
        if record.get("kind") != "bench":
            continue
        if record.get("outcome") != "passed":
            left_out.append(f"{path}: {label(record)}: {record.get('outcome')}")
            continue
        found[key(record)] = (label(record), record["timing"]["median_ms"])
    return found, left_out


def summarize(base_paths, new_paths):
    rounds = []
    left_out = []
    for base_path, new_path in zip(base_paths, new_paths):
        base, base_left = medians(base_path)
        new, new_left = medians(new_path)
        left_out += base_left + new_left
        rounds.append((base, new))
    keys = [k for k in rounds[0][0] if all(k in b and k in n for b, n in rounds)]
    lines = ["| configuration | base median ms (per round) | new median ms | change per round | median change | verdict |",
             "|---|---|---|---|---|---|"]
    for k in keys:
        changes = [n[k][1] / b[k][1] - 1 for b, n in rounds]
        middle = statistics.median(changes)
        same_sign = all(c < 0 for c in changes) or all(c > 0 for c in changes)
        consistent = same_sign and min(abs(c) for c in changes) >= NOISE
        verdict = ("faster" if middle < 0 else "slower") if consistent else "within the noise"
        lines.append(f"| {rounds[0][0][k][0]} | {', '.join(f'{b[k][1]:.3f}' for b, _ in rounds)} | "
                     f"{', '.join(f'{n[k][1]:.3f}' for _, n in rounds)} | "
                     f"{', '.join(f'{100 * c:+.2f}%' for c in changes)} | {100 * middle:+.2f}% | {verdict} |")
    for k in sorted(set().union(*(set(b) | set(n) for b, n in rounds)) - set(keys)):
        some = next(side[k][0] for pair in rounds for side in pair if k in side)
        left_out.append(f"{some}: not timed passed on both sides in every round")
    return lines, left_out


def main(argv):
    if "--base" not in argv or "--new" not in argv:
        sys.exit(__doc__)
    b, n = argv.index("--base"), argv.index("--new")
    base_paths = argv[b + 1:n] if b < n else argv[b + 1:]
    new_paths = argv[n + 1:] if b < n else argv[n + 1:b]
    if not base_paths or len(base_paths) != len(new_paths):
        print(f"ab_summary: {len(base_paths)} base and {len(new_paths)} new reports: give one of each per round",
              file=sys.stderr)
        return 2
    try:
        lines, left_out = summarize(base_paths, new_paths)
    except (OSError, ValueError, KeyError) as error:
        print(f"ab_summary: {error}", file=sys.stderr)
        return 2
    print(f"{len(base_paths)} rounds; a change is consistent when every round moves the same way by at least {100 * NOISE:.0f}%")
    print("\n".join(lines))
    for line in left_out:
        print(f"left out: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
