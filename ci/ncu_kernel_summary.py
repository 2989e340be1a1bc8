#!/usr/bin/env python3
"""Per-kernel launch counts and durations from an ncu log of `--metrics gpu__time_duration.sum`.

ncu prints a block per profiled launch (the kernel's signature line, then its metrics), or with
`--print-summary per-kernel` a block per kernel ("Invocations N", then minimum, maximum and
average). This groups either by kernel name (template arguments kept, parameters dropped) and
prints the kernels whose mean duration is at least MIN_MS, longest mean first: launches, mean,
min, max.
The durations are at the clocks ncu locks for each kernel, so kernels of different libraries
timed in one log compare at equal clocks.

Usage: ci/ncu_kernel_summary.py NCU_LOG [MIN_MS]      Exit 1 when the log holds no duration.
"""
import re
import sys
from collections import defaultdict

UNITS_MS = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0,
            "s": 1e3, "second": 1e3}
# A block's header: "  void name<...>(params) (grid)x(block), Context 1, Stream 7, Device 0, CC 9.0"
# per launch, "  name (grid)x(block), Device 0, CC 9.0, Invocations 2" per kernel.
HEADER = re.compile(r"^  (\S.*?) \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\), (?:Context|Device) .*?(?:Invocations (\d+))?\s*$")
# One value per launch; minimum, maximum and average per kernel.
DURATION = re.compile(r"^\s+gpu__time_duration\.sum\s+(\S+)\s+([0-9.,]+)(?:\s+([0-9.,]+)\s+([0-9.,]+))?\s*$")


def kernel_name(signature):
    """The signature without its parameter list: 'void k<T, 128>(A, B)' -> 'void k<T, 128>'."""
    depth = 0
    for i, ch in enumerate(signature):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            return signature[:i]
    return signature


def number(text):
    return float(text.replace(",", ""))


def summarize(lines):
    """{kernel: [(launches, mean ms, min ms, max ms)]}, one entry per block of the log."""
    blocks = defaultdict(list)
    current = invocations = None
    for line in lines:
        header = HEADER.match(line)
        if header:
            current = kernel_name(header.group(1))
            invocations = int(header.group(2)) if header.group(2) else None
            continue
        m = DURATION.match(line)
        if m and current is not None:
            unit = m.group(1)
            if unit not in UNITS_MS:
                raise ValueError(f"unknown duration unit '{unit}' in: {line.strip()}")
            scale = UNITS_MS[unit]
            if m.group(3) is None:  # one launch
                value = number(m.group(2)) * scale
                blocks[current].append((1, value, value, value))
            else:  # a kernel's summary: minimum, maximum, average over its invocations
                lo, hi, mean = (number(m.group(i)) * scale for i in (2, 3, 4))
                blocks[current].append((invocations or 1, mean, lo, hi))
            current = None
    return blocks


def main(argv):
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    min_ms = float(argv[2]) if len(argv) == 3 else 0.0
    with open(argv[1], errors="replace") as f:
        blocks = summarize(f)
    if not blocks:
        print(f"{argv[1]}: no gpu__time_duration.sum of any launch", file=sys.stderr)
        return 1
    rows = []
    for name, entries in blocks.items():
        launches = sum(e[0] for e in entries)
        mean = sum(e[0] * e[1] for e in entries) / launches
        rows.append((mean, name, launches, min(e[2] for e in entries), max(e[3] for e in entries)))
    print(f"{'launches':>8} {'mean ms':>10} {'min ms':>10} {'max ms':>10}  kernel")
    for mean, name, launches, lo, hi in sorted(rows, reverse=True):
        if mean >= min_ms:
            print(f"{launches:>8} {mean:>10.3f} {lo:>10.3f} {hi:>10.3f}  {name[:140]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
