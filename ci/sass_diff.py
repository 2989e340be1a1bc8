#!/usr/bin/env python3
"""Is the device code of two builds the same? Compares the SASS of every kernel in two sets of
CUDA object files (or cubins), independent of file moves and namespace renames.

    ci/sass_diff.py OLD_DIR NEW_DIR            # each: a folder searched for *.cu.o / *.cubin

Each function's SASS (cuobjdump -sass, address comments stripped, encodings kept) is hashed;
the two builds are compared as multisets of those hashes, so a kernel that moved to another
translation unit or namespace still matches when its machine code is identical. Functions
without a twin are listed by their demangled names on each side. Exit status 0 when every
function matches, 1 when some differ (the caller says why), 2 on usage errors. Needs cuobjdump
(and cu++filt for readable names), which the GPU machine has and this project's CPU image lacks.
"""
import collections
import hashlib
import pathlib
import re
import shutil
import subprocess
import sys

FUNCTION = re.compile(r"^\s*Function : (\S+)")
ADDRESS = re.compile(r"/\*[0-9a-f]{4,}\*/")


def functions(path):
    """(name, body hash, instruction count) for every function in one object file."""
    text = subprocess.run(["cuobjdump", "-sass", str(path)], capture_output=True, text=True,
                          check=True).stdout
    result, name, body = [], None, []
    for line in text.splitlines() + ["Function : <end>"]:
        match = FUNCTION.match(line)
        if match:
            if name is not None:
                digest = hashlib.sha256("\n".join(body).encode()).hexdigest()
                result.append((name, digest, sum(1 for b in body if ";" in b)))
            name, body = match.group(1), []
        elif name is not None and "/*" in line and not line.strip().startswith(".headerflags"):
            body.append(ADDRESS.sub("", line).strip())
    return result


def collect(root):
    found = sorted(pathlib.Path(root).rglob("*.cu.o")) + sorted(pathlib.Path(root).rglob("*.cubin"))
    out = []
    for path in found:
        out += [(name, digest, count, path.name) for name, digest, count in functions(path)]
    return out


def demangle(names):
    if not names or shutil.which("cu++filt") is None:
        return names
    run = subprocess.run(["cu++filt"], input="\n".join(names), capture_output=True, text=True)
    lines = run.stdout.splitlines()
    return lines if len(lines) == len(names) else names


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    old, new = collect(argv[1]), collect(argv[2])
    old_count = collections.Counter(d for _, d, _, _ in old)
    new_count = collections.Counter(d for _, d, _, _ in new)
    only_old = [f for f in old if new_count[f[1]] == 0]
    only_new = [f for f in new if old_count[f[1]] == 0]
    print(f"functions: old {len(old)}, new {len(new)}; identical SASS: "
          f"{sum((old_count & new_count).values())}")
    for label, items in (("only in OLD", only_old), ("only in NEW", only_new)):
        names = demangle([n for n, _, _, _ in items])
        for (_, _, count, file), name in zip(items, names):
            print(f"{label}: {file}: {count} instructions: {name[:220]}")
    return 0 if not only_old and not only_new else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
