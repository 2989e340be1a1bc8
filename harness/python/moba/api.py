"""moba.check, moba.bench, moba.paper: any MoBA callable (moba.user_callable's signature)
checked and timed beside the project's kernels and PyTorch's attention, by the rules, truths,
input families, timer and report format of `moba check|bench|paper`."""

from . import bridge, torch_baselines
from ._native import native
from .command import flags_from_kwargs, load_report, run_moba
from .ops import kernel_callable

KERNEL_OP_PREFIX = "op_"  # op_wgmma_moba: the kernel called through the torch custom op


def register(fn, name=None, **options):
    """fn (a callable, or 'op_<kernel>' for a kernel through the torch op) as a registry entry;
    returns its name. options: those of moba.bridge.register."""
    if isinstance(fn, str):
        if fn.startswith(KERNEL_OP_PREFIX):
            kernel = fn[len(KERNEL_OP_PREFIX):]
            known = [e["name"] for e in native.implementations() if not e["external"]]
            if kernel not in known:
                raise ValueError(f"moba: '{fn}' names no built-in kernel (built-in: {', '.join(known)})")
            options = {k: v for k, v in options.items() if k not in ("dtypes", "max_head_dim")}
            if "cli" not in options:
                options["cli"] = bridge.cli_impl_flags(fn, **{k: v for k, v in options.items()
                                                              if k in ("block_means", "gating", "backward", "lse")})
            return bridge.register(kernel_callable(kernel), name or fn, technique=f"{kernel} through the torch "
                                   "custom op moba::attention_fwd (autograd: moba::attention_bwd)", like=kernel,
                                   **options)
        if not any(e["name"] == fn for e in native.implementations()):
            raise ValueError(f"moba: unknown implementation '{fn}'")
        return fn
    return bridge.register(fn, name, **options)


def _names(fns, options):
    fns = fns if isinstance(fns, (list, tuple)) else [fns]
    return [register(f, **options) for f in fns]


def check(fn, suite="quick", inputs=None, out="check.json", name=None, block_means="exact", gating=True,
          backward=True, lse=True, dtypes=("bf16", "fp16"), **flags):
    """`moba check --impl NAME --suite SUITE --inputs INPUTS --out OUT [flags]` on fn (or a list
    of them; built-in names too). Shape flags (seqlens=..., heads=...) with suite=None check one
    configuration. Returns the report (a dict, with 'exit_status' added)."""
    options = dict(block_means=block_means, gating=gating, backward=backward, lse=lse, dtypes=dtypes)
    if name is not None:
        options["name"] = name
    names = _names(fn, options)
    args = ["check", "--impl", ",".join(names), "--out", out]
    if suite:
        args += ["--suite", suite]
    if inputs:
        args += ["--inputs", inputs if isinstance(inputs, str) else ",".join(inputs)]
    status = run_moba(args + flags_from_kwargs(flags))
    report = load_report(out) or {}
    report["exit_status"] = status
    return report


def bench(fns=(), impl=("wgmma_moba", "wgmma_dense"), torch=("sdpa_cudnn", "sdpa_flash", "flex_causal"),
          out="bench.json", block_means="exact", gating=True, backward=True, lse=True, **flags):
    """`moba bench` on the callables fns beside the built-in kernels `impl` and PyTorch's
    attention `torch` (moba.torch_baselines), in this process with one timer: every
    speedup_vs_dense is a ratio of medians measured here. Returns the report (with 'exit_status'
    and 'torch_unavailable': the baselines this torch lacks, with the reason)."""
    options = dict(block_means=block_means, gating=gating, backward=backward, lse=lse)
    names = _names(list(fns), options) if fns else []
    unavailable = {k: v for k, v in torch_baselines.register_torch_baselines(tuple(torch)).items() if v}
    names += [n for n in torch if n not in unavailable] + list(impl)
    status = run_moba(["bench", "--impl", ",".join(names), "--out", out] + flags_from_kwargs(flags))
    report = load_report(out) or {}
    report.update(exit_status=status, torch_unavailable=unavailable)
    return report


def paper(figure="2b", fns=(), impl=("wgmma_moba", "wgmma_dense"), torch=("sdpa_cudnn", "sdpa_flash"),
          out=None, **flags):
    """`moba paper --figure FIGURE` with the callables, kernels and PyTorch baselines given: the
    fastest dense one measured in this process (cuDNN included) is the baseline."""
    names = _names(list(fns), {}) if fns else []
    unavailable = {k: v for k, v in torch_baselines.register_torch_baselines(tuple(torch)).items() if v}
    names += [n for n in torch if n not in unavailable] + list(impl)
    out = out or f"paper-{figure}.json"
    status = run_moba(["paper", "--figure", figure, "--impl", ",".join(names), "--out", out] + flags_from_kwargs(flags))
    report = load_report(out) or {}
    report.update(exit_status=status, torch_unavailable=unavailable)
    return report


def implementations():
    """Every registry entry (built-in, then those registered in this process) as dicts."""
    return native.implementations()
