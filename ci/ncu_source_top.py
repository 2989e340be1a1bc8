#!/usr/bin/env python3
"""Where a kernel's warps wait, by SASS instruction: reads the CSV of ncu's source page
(`ncu -i R.ncu-rep --page source --csv --print-source sass`, gzipped or not; one or more kernels)
and prints, per kernel, the instruction count, the instructions executed, the stall reasons
summed over the kernel, and the N instructions with the most warp-state samples in address
order, each with its execution count and its two largest stall reasons.

Why the execution count matters: an instruction run once per key tile is in the main loop; one
run far more often is a wait loop (mbarrier try_wait); a region of the loop with many more
instructions per tile than the same loop in another kernel is compiled differently (this is how
the own-block dQ's per-element branches were found, kernels/NOTES.md, 2026-12-03).
Usage: ci/ncu_source_top.py SOURCE.csv[.gz] [N]   (N: 30 by default)"""
import csv
import gzip
import sys


def kernels(path):
    """[(kernel name, header, rows)] of a source-page CSV: each kernel starts with a
    "Kernel Name" line, then the header line, then one line per instruction."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        lines = list(csv.reader(f))
    found = []
    for i, line in enumerate(lines):
        if line and line[0] == "Kernel Name":
            found.append((line[1], lines[i + 1], []))
        elif found and line and line is not found[-1][1]:
            found[-1][2].append(line)
    return found


def summarize(name, header, rows, top):
    samples = header.index("Warp Stall Sampling (All Samples)")
    source = header.index("Source")
    executed = header.index("Instructions Executed")
    reasons = [(j, h[len("stall_"):]) for j, h in enumerate(header)
               if h.startswith("stall_") and "Not Issued" not in h]
    value = lambda row, j: int(row[j] or 0)
    total = sum(value(r, samples) for r in rows) or 1
    print(f"== {name[:150]}")
    print(f"   {len(rows)} instructions, {sum(value(r, executed) for r in rows):,} executed, {total:,} samples")
    by_reason = sorted(((sum(value(r, j) for r in rows), h) for j, h in reasons), reverse=True)
    print("   stalls: " + ", ".join(f"{h} {100 * n / total:.1f}%" for n, h in by_reason[:8]))
    worst = sorted(range(len(rows)), key=lambda k: -value(rows[k], samples))[:top]
    for k in sorted(worst):
        r = rows[k]
        two = sorted(((value(r, j), h) for j, h in reasons), reverse=True)[:2]
        print(f"   {k:5d} {100 * value(r, samples) / total:5.1f}%  executed {value(r, executed):>12,}  "
              f"{r[source].strip()[:58]:58s}  {', '.join(f'{h} {n}' for n, h in two)}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    seen = set()
    for kernel_name, kernel_header, kernel_rows in kernels(sys.argv[1]):
        table = (kernel_name, tuple(map(tuple, kernel_rows)))
        if table in seen:  # ncu may print one launch's table twice
            continue
        seen.add(table)
        summarize(kernel_name, kernel_header, kernel_rows, count)
