#!/usr/bin/env python3
"""Per-kernel launch counts and durations from an ncu log, and their change against another log.

ncu prints a block per profiled launch (the kernel's signature line, then its metrics), or with
`--print-summary per-kernel` a block per kernel ("Invocations N", then minimum, maximum and
average). The duration is `gpu__time_duration.sum` (`--metrics gpu__time_duration.sum`) or, in a
log of sections, SpeedOfLight's "Duration". This groups either by kernel name (template arguments
kept, parameters dropped) and prints the kernels whose mean duration is at least MIN_MS, longest
mean first: launches, mean, min, max.
The durations are at the clocks ncu locks for each kernel, so kernels of different libraries
timed in one log compare at equal clocks, and logs of different runs compare too.

--compare OLD_LOG: each kernel's mean in OLD_LOG beside this log's and the change, matched by
name without return type and namespaces (ncu names a kernel `void wgmma::k<...>` or `void k<...>`
depending on the run), each marked slower / faster beyond --threshold percent (2 by default:
ncu's run-to-run spread for an unchanged kernel was about 1%, kernels/NOTES.md) or same; kernels
in one log only are listed as such.

Usage: ci/ncu_kernel_summary.py NCU_LOG [MIN_MS] [--compare OLD_LOG [--threshold PCT]]
Exit: 0; 1 a log without durations; 2 usage; 3 (with --compare) a kernel slower beyond the threshold.
"""
import argparse
import re
import sys
from collections import defaultdict

UNITS_MS = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0,
            "s": 1e3, "second": 1e3}
# A block's header: "  void name<...>(params) (grid)x(block), Context 1, Stream 7, Device 0, CC 9.0"
# per launch, "  name (grid)x(block), Device 0, CC 9.0, Invocations 2" per kernel.
HEADER = re.compile(r"^  (\S.*?) \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\), (?:Context|Device) .*?(?:Invocations (\d+))?\s*$")
# One value per launch; minimum, maximum and average per kernel. "Duration" is SpeedOfLight's line.
DURATION = re.compile(r"^\s+(?:gpu__time_duration\.sum|Duration)\s+(\S+)\s+([0-9.,]+)(?:\s+([0-9.,]+)\s+([0-9.,]+))?\s*$")


def top_level(text):
    """(index, character) of the characters of `text` outside template brackets <...>."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            yield i, ch


def kernel_name(signature):
    """The signature without its parameter list: 'void k<T, 128>(A, B)' -> 'void k<T, 128>'."""
    return next((signature[:i] for i, ch in top_level(signature) if ch == "("), signature)


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


def kernel_means(blocks):
    """{kernel: (launches, mean ms, min ms, max ms)}, every launch weighing the same."""
    means = {}
    for name, entries in blocks.items():
        launches = sum(e[0] for e in entries)
        mean = sum(e[0] * e[1] for e in entries) / launches
        means[name] = (launches, mean, min(e[2] for e in entries), max(e[3] for e in entries))
    return means


def match_key(name):
    """A kernel's name for matching across logs: no return type, no namespaces outside the template
    arguments ('void wgmma::detail::k<T, 128>' and 'void k<T, 128>' -> 'k<T, 128>')."""
    name = name[5:] if name.startswith("void ") else name
    starts = [i + 1 for i, ch in top_level(name) if ch == ":" and name[i - 1:i] == ":"]
    return name[starts[-1] if starts else 0:]


def read_log(path):
    with open(path, errors="replace") as f:
        return summarize(f)


def compare(new, old, min_ms, threshold):
    """Prints old and new means per kernel with the change; returns the number of slower kernels."""
    old_by_key = {match_key(k): v for k, v in kernel_means(old).items()}
    new_by_key = {match_key(k): v for k, v in kernel_means(new).items()}
    rows = []
    for key in set(old_by_key) | set(new_by_key):
        o, n = old_by_key.get(key), new_by_key.get(key)
        longest = max(o[1] if o else 0.0, n[1] if n else 0.0)
        if longest >= min_ms:
            rows.append((longest, key, o, n))
    slower = 0
    print(f"{'old ms':>10} {'new ms':>10} {'change':>8}  {'verdict':8} kernel")
    for _, key, o, n in sorted(rows, reverse=True):
        if o and n:
            change = 100.0 * (n[1] - o[1]) / o[1]
            verdict = "slower" if change > threshold else "faster" if change < -threshold else "same"
            slower += verdict == "slower"
            print(f"{o[1]:>10.3f} {n[1]:>10.3f} {change:>+7.1f}%  {verdict:8} {key[:140]}")
        elif o:
            print(f"{o[1]:>10.3f} {'-':>10} {'':>8}  {'old only':8} {key[:140]}")
        else:
            print(f"{'-':>10} {n[1]:>10.3f} {'':>8}  {'new only':8} {key[:140]}")
    return slower


def main(argv):
    parser = argparse.ArgumentParser(add_help=True, usage=__doc__.strip().splitlines()[-2].split("Usage: ")[1])
    parser.add_argument("log")
    parser.add_argument("min_ms", nargs="?", type=float, default=0.0)
    parser.add_argument("--compare", metavar="OLD_LOG")
    parser.add_argument("--threshold", type=float, default=2.0)
    try:
        args = parser.parse_intermixed_args(argv[1:])
    except SystemExit as e:
        return 0 if e.code == 0 else 2
    if args.threshold < 0 or args.threshold != args.threshold:
        print(f"--threshold {args.threshold}: a percentage, 0 or more", file=sys.stderr)
        return 2
    if args.threshold != 2.0 and not args.compare:
        print("--threshold applies to --compare only", file=sys.stderr)
        return 2
    blocks = read_log(args.log)
    if not blocks:
        print(f"{args.log}: no gpu__time_duration.sum or Duration of any launch", file=sys.stderr)
        return 1
    if args.compare:
        old = read_log(args.compare)
        if not old:
            print(f"{args.compare}: no gpu__time_duration.sum or Duration of any launch", file=sys.stderr)
            return 1
        return 3 if compare(blocks, old, args.min_ms, args.threshold) else 0
    print(f"{'launches':>8} {'mean ms':>10} {'min ms':>10} {'max ms':>10}  kernel")
    rows = sorted(((v[1], name, v) for name, v in kernel_means(blocks).items()), reverse=True)
    for mean, name, (launches, _, lo, hi) in rows:
        if mean >= args.min_ms:
            print(f"{launches:>8} {mean:>10.3f} {lo:>10.3f} {hi:>10.3f}  {name[:140]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
