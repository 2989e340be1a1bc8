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
With --per OPCODE (e.g. HMMA) it also prints the kernel in chunks of --chunk SASS lines (50 by
default): instructions executed per "iteration", the iteration being one execution of the most
executed instruction of that opcode (for select_topk, one half: 32 rows x 32 blocks), and each
chunk's share of the samples. That is how the gating's budget per half was split into MMAs,
filter, scatter and merge (kernels/NOTES.md, "Gating at block 128").
Usage: ci/ncu_source_top.py SOURCE.csv[.gz] [N] [--per OPCODE [--chunk L]]   (N: 30 by default)"""
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


def regions(header, rows, opcode, chunk):
    """Instructions executed per execution of the busiest `opcode` instruction, by chunks."""
    samples = header.index("Warp Stall Sampling (All Samples)")
    source = header.index("Source")
    executed = header.index("Instructions Executed")
    value = lambda row, j: int(row[j] or 0)
    unit = max((value(r, executed) for r in rows if opcode in r[source]), default=0)
    if unit == 0:
        print(f"   no executed {opcode} instruction: no per-iteration table")
        return
    total = sum(value(r, samples) for r in rows) or 1
    print(f"   per execution of the busiest {opcode} ({unit:,}), chunks of {chunk} SASS lines:")
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        per = sum(value(r, executed) for r in part) / unit
        if per < 0.05:
            continue
        share = 100 * sum(value(r, samples) for r in part) / total
        busiest = max(part, key=lambda r: value(r, executed))
        ops = sum(value(r, executed) for r in part if opcode in r[source]) / unit
        print(f"   {start:5d}-{start + len(part) - 1:5d} {per:7.1f} per iteration ({opcode} {ops:5.1f})  "
              f"{share:5.1f}% of samples  busiest x{value(busiest, executed) / unit:.2f} "
              f"{busiest[source].strip()[:40]}")


if __name__ == "__main__":
    args = sys.argv[1:]
    per_opcode = chunk_lines = None
    if "--per" in args:
        at = args.index("--per")
        per_opcode = args[at + 1]
        del args[at:at + 2]
    if "--chunk" in args:
        at = args.index("--chunk")
        chunk_lines = int(args[at + 1])
        del args[at:at + 2]
    if not args:
        sys.exit(__doc__)
    sys.argv = [sys.argv[0]] + args
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    seen = set()
    for kernel_name, kernel_header, kernel_rows in kernels(sys.argv[1]):
        table = (kernel_name, tuple(map(tuple, kernel_rows)))
        if table in seen:  # ncu may print one launch's table twice
            continue
        seen.add(table)
        summarize(kernel_name, kernel_header, kernel_rows, count)
        if per_opcode:
            regions(kernel_header, kernel_rows, per_opcode, chunk_lines or 50)
