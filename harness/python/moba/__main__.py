"""python -m moba check|bench|paper|list|... : the `moba` command line, in a process that can
also run Python callables. Every flag of `moba <command>` works as there; beside them:

  --impl LIST         comma list; an item `package.module:function` or `path/file.py:function`
                      is a Python callable (moba.user_callable's signature), `op_<kernel>` a
                      built-in kernel through the torch custom op, anything else a registered name
  --torch LIST        (bench, paper) PyTorch baselines to time beside: sdpa_cudnn, sdpa_flash,
                      flex_causal (default for bench: all three; paper: sdpa_cudnn,sdpa_flash);
                      (decode-study, bench --q-len) PyTorch dense decodes added to --dense:
                      sdpa_flash_decode, sdpa_cudnn_decode, sdpa_efficient_decode (default: the
                      first two; `none`: none).
                      `check --impl sdpa_flash_decode` (and the other two) judges one first
  --block-means M     exact (default) or rounded: the gating convention of the callables
                      (../shared/SPEC.md §2.7)
  --no-gating         the callables return no selection of their own
  --no-backward       do not differentiate the callables (forward only)
  --no-lse            the callables return no lse
"""

import argparse
import importlib
import importlib.util
import os
import sys

from . import api, bridge, torch_baselines, torch_decode
from ._native import native
from .command import run_moba

_PYTHON_COMMANDS = ("check", "bench", "paper", "decode-study")


def load_callable(spec):
    """'package.module:function' or 'path/to/file.py:function' -> the function."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ValueError(f"moba: '{spec}' is not module:function")
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.exists(path):
            raise ValueError(f"moba: no file {target} (from --impl {spec})")
        mod_name = "moba_user_" + os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"moba: {target} has no callable '{attr}'")
    return fn


def parse(argv):
    """(command, python options, the argv left for the C++ command line)."""
    p = argparse.ArgumentParser(prog="python -m moba", add_help=False, allow_abbrev=False)
    p.add_argument("--impl")
    p.add_argument("--torch")
    p.add_argument("--dense")
    p.add_argument("--block-means", default="exact", choices=("exact", "rounded"))
    p.add_argument("--no-gating", action="store_true")
    p.add_argument("--no-backward", action="store_true")
    p.add_argument("--no-lse", action="store_true")
    options, rest = p.parse_known_args(argv[1:])
    return argv[0], options, rest


def register_impls(command, options):
    """Registers what --impl and --torch name; returns the --impl value for the C++ side."""
    names = []
    register_options = dict(block_means=options.block_means, gating=not options.no_gating,
                            backward=not options.no_backward, lse=not options.no_lse)
    if command in ("bench", "paper"):
        default = "sdpa_cudnn,sdpa_flash,flex_causal" if command == "bench" else "sdpa_cudnn,sdpa_flash"
        wanted = [t for t in (options.torch if options.torch is not None else default).split(",") if t]
        status = torch_baselines.register_torch_baselines(tuple(wanted))
        for name, why in status.items():
            if why:
                print(f"moba: {name} not available: {why}", file=sys.stderr)
            else:
                names.append(name)
    for item in (options.impl or "").split(","):
        if not item:
            continue
        if item in torch_decode.BACKENDS:
            why = torch_decode.register_torch_decode((item,))[item]
            if why:
                raise ValueError(f"--impl {item}: {why}")
            names.append(item)
        elif ":" in item:
            try:
                fn = load_callable(item)
            except ImportError as e:
                raise ImportError(f"--impl {item}: {e}") from e
            names.append(api.register(fn, cli=bridge.cli_impl_flags(item, **register_options), **register_options))
        else:
            names.append(api.register(item, **register_options))
    return ",".join(dict.fromkeys(names))


def decode_study_args(command, options, rest):
    """`moba decode-study` (or `moba bench --q-len`, which runs the study) flags with the PyTorch
    dense decodes (--torch) registered and added to --dense; --impl (the MoBA step) goes through
    as typed."""
    wanted = options.torch if options.torch is not None else ",".join(torch_decode.DEFAULT)
    wanted = [] if wanted == "none" else [t for t in wanted.split(",") if t]
    unknown = [t for t in wanted if t not in torch_decode.BACKENDS]
    if unknown:
        raise ValueError(f"--torch {','.join(unknown)}: not a PyTorch dense decode "
                         f"({', '.join(torch_decode.BACKENDS)} or none)")
    dense = [d for d in (options.dense or "split_decode_dense").split(",") if d]
    for name, why in torch_decode.register_torch_decode(tuple(wanted)).items():
        if why:
            print(f"moba: {name} not available: {why}", file=sys.stderr)
        elif name not in dense:
            dense.append(name)
    return [command, "--dense", ",".join(dense)] + (["--impl", options.impl] if options.impl else []) + rest


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _PYTHON_COMMANDS:
        return run_moba(argv)  # list, compare, export, validate, --help: as the C++ tool
    command, options, rest = parse(argv)
    if command == "check" and options.torch is not None:
        print("moba: error: --torch applies to bench, paper and decode-study (PyTorch's dense attention is a "
              "speed baseline); check it with --impl", file=sys.stderr)
        return 2
    decode = command == "decode-study" or (command == "bench" and any(a.startswith("--q-len") for a in rest))
    if options.dense is not None and not decode:
        print("moba: error: --dense applies to decode-study and bench --q-len", file=sys.stderr)
        return 2
    try:
        if decode:
            args = decode_study_args(command, options, rest)
        else:
            impl = register_impls(command, options)
            args = [command] + (["--impl", impl] if impl else []) + rest
    except (ValueError, TypeError, ImportError) as e:
        text = str(e)
        print(text if text.startswith("moba: ") else f"moba: error: {text}", file=sys.stderr)
        return 2
    # Reports name the command typed here (meta.command), not the argv of registered names the
    # C++ side parses; each record's command names its entry's --impl item (bridge.PYTHON_TOOL).
    native.set_invocation(bridge.PYTHON_TOOL.split() + argv)
    try:
        status = run_moba(args)
    finally:
        native.set_invocation([])
    if "--help" in rest or "-h" in rest:
        print("\nWith python -m moba, besides:" + __doc__.split("beside them:", 1)[1].rstrip())
    return status


if __name__ == "__main__":
    sys.exit(main())
