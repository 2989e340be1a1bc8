"""Runs the `moba` command line (harness/cli/app.hpp) inside this process, so the entries
Python registered are checked and timed by the very code of `moba check|bench|paper`."""

import json
import signal
import sys

from . import bridge
from ._native import native


def run_moba(args):
    """`moba ARGS...` in-process; returns its exit status. Python's SIGINT/SIGTERM handlers are
    put back afterwards (`moba check` installs its own while it runs)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        return native.run_main(["moba", *map(str, args)])
    finally:
        bridge.forget_graphs()
        for s, h in handlers.items():
            if h is not None:
                signal.signal(s, h)


def flags_from_kwargs(kwargs):
    """{'seqlens': [4096, 17], 'kv_heads': 2, 'gating_only': True} -> ['--seqlens', '4096,17', ...]."""
    args = []
    for key, value in kwargs.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(map(str, value))]
        else:
            args += [flag, str(value)]
    return args


def load_report(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
