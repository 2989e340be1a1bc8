#!/usr/bin/env python3
"""Compares the machine code of every kernel in two folders of cubins of the same names
(ci/cubin_diff.sh builds them): each ELF section .text.<mangled kernel> byte for byte.
Prints the kernels that differ or exist on one side only; exit 0 when none does, 1 otherwise.
Needs only Python: no cuobjdump (ci/sass_diff.py needs it)."""
import hashlib
import pathlib
import re
import struct
import sys


# Kernels in anonymous namespaces carry a hash of their file's path in the mangled name; the two
# sides are compiled from different folders, so the hash is dropped.
ANONYMOUS = re.compile(r"\d+_GLOBAL__N__[0-9a-f]+_\d+_\w*?_[0-9a-f]{8}(?=\d)")


def kernels(path):
    """{kernel: sha256 of its .text section} of one ELF64 cubin."""
    data = pathlib.Path(path).read_bytes()
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strings = headers[shstrndx][4]
    result = {}
    for name_off, _, _, _, offset, size, *_ in headers:
        end = data.index(b"\0", strings + name_off)
        name = data[strings + name_off:end].decode()
        if name.startswith(".text."):
            result[ANONYMOUS.sub("(anonymous)", name[len(".text."):])] = hashlib.sha256(data[offset:offset + size]).hexdigest()
    return result


def main(old_dir, new_dir):
    differing = 0
    compared = 0
    for old in sorted(pathlib.Path(old_dir).glob("*.cubin")):
        new = pathlib.Path(new_dir) / old.name
        a = kernels(old)
        b = kernels(new) if new.exists() else {}
        for name in sorted(set(a) | set(b)):
            compared += 1
            if a.get(name) != b.get(name):
                differing += 1
                side = "differs" if name in a and name in b else ("old only" if name in a else "new only")
                print(f"{side:9} {old.name}: {name}")
    print(f"{compared} kernels compared, {differing} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: ci/cubin_text.py OLD_DIR NEW_DIR")
    sys.exit(main(sys.argv[1], sys.argv[2]))
