"""Standalone reproducers: a Python script per divergence that uses only the framework and NumPy.

The script is what one pastes into an upstream issue: it builds the case's inputs, calls the
framework's public API exactly as the adapter does, and compares with a 20-line NumPy statement of
the reference semantics printed inline (so the maintainer needs nothing of this project). For
adapters this module has no template for, the script calls the adapter through the harness and
says so.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

from conformance.adapters import split_variant
from conformance.cases import Case, case_fields
from conformance.results import Result

REFERENCE = '''
def reference(x, w, b, stride, padding, output_padding, groups, dilation):
    """PyTorch's conv_transpose semantics in plain NumPy (float64): x (N, C_in, *L) or unbatched (C_in, *L),
    w (C_in, C_out/g, *K); padding: (lo, hi) per axis, cropped from the start and the end of the full output."""
    if x.ndim == w.ndim - 1:
        return reference(x[None], w, b, stride, padding, output_padding, groups, dilation)[0]
    n, cin, *size = x.shape
    cout_g, kernel = w.shape[1], w.shape[2:]
    full_len = [(l - 1) * s + d * (k - 1) + 1 + op
                for l, k, s, d, op in zip(size, kernel, stride, dilation, output_padding)]
    out_len = [f - lo - hi for f, (lo, hi) in zip(full_len, padding)]
    full = np.zeros((n, groups, cout_g, *full_len))
    xg = x.reshape(n, groups, cin // groups, -1)
    wg = w.reshape(groups, cin // groups, cout_g, *kernel)
    for tap in np.ndindex(*kernel):
        contrib = np.einsum("ngip,gio->ngop", xg, wg[(..., *tap)]).reshape(n, groups, cout_g, *size)
        window = tuple(slice(d * t, d * t + s * (l - 1) + 1, s) for t, l, s, d in zip(tap, size, stride, dilation))
        full[(..., *window)] += contrib
    out = full[(..., *[slice(lo, lo + o) for (lo, _), o in zip(padding, out_len)])].reshape(n, -1, *out_len)
    return out if b is None else out + b.reshape(1, -1, *[1] * len(size))


def reference_vjp(x, w, b, g_out, stride, padding, output_padding, groups, dilation):
    """(grad_x, grad_w, grad_b) of reference() for the output cotangent g_out."""
    if x.ndim == w.ndim - 1:
        gx, gw, gb = reference_vjp(x[None], w, b, g_out[None], stride, padding, output_padding, groups, dilation)
        return gx[0], gw, gb
    n, cin, *size = x.shape
    cout_g, kernel = w.shape[1], w.shape[2:]
    full_len = [(l - 1) * s + d * (k - 1) + 1 + op
                for l, k, s, d, op in zip(size, kernel, stride, dilation, output_padding)]
    full = np.zeros((n, groups, cout_g, *full_len))
    full[(..., *[slice(lo, lo + o) for (lo, _), o in zip(padding, g_out.shape[2:])])] = g_out.reshape(
        n, groups, cout_g, *g_out.shape[2:])
    xg = x.reshape(n, groups, cin // groups, -1)
    wg = w.reshape(groups, cin // groups, cout_g, *kernel)
    grad_xg, grad_wg = np.zeros_like(xg), np.zeros_like(wg)
    for tap in np.ndindex(*kernel):
        window = tuple(slice(d * t, d * t + s * (l - 1) + 1, s) for t, l, s, d in zip(tap, size, stride, dilation))
        gathered = full[(..., *window)].reshape(n, groups, cout_g, -1)
        grad_xg += np.einsum("ngop,gio->ngip", gathered, wg[(..., *tap)])
        grad_wg[(..., *tap)] = np.einsum("ngip,ngop->gio", xg, gathered)
    grad_b = None if b is None else g_out.sum(axis=(0, *range(2, g_out.ndim)))
    return grad_xg.reshape(x.shape), grad_wg.reshape(w.shape), grad_b
'''

# Per built-in adapter: imports, and the code that sets `out` (forward) or `grads` (vjp) from the
# float32 NumPy arrays x, w, b, g_out and the per-axis parameters, plus `used` = the float64 values
# the framework actually computed with (after rounding to the case's dtype).
TORCH_SETUP = """
import torch
dtype = getattr(torch, DTYPE)
MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


def as_layout(t, channel_axis=1):
    \"\"\"LAYOUT's strides: a channels_last memory format (channel axis innermost), or a sliced view.\"\"\"
    if LAYOUT == "channels_last":
        if t.dim() in MEMORY_FORMATS and channel_axis == 1:
            return t.contiguous(memory_format=MEMORY_FORMATS[t.dim()])
        return t.movedim(channel_axis, -1).contiguous().movedim(-1, channel_axis)
    if LAYOUT == "strided":
        big = t.new_zeros(*t.shape[:-1], 2 * t.shape[-1])
        big[..., ::2] = t
        return big[..., ::2]
    return t


xt = as_layout(torch.from_numpy(x).to(dtype), 1 if x.ndim == w.ndim else 0)
wt = as_layout(torch.from_numpy(w).to(dtype))
bt = None if b is None else torch.from_numpy(b).to(dtype)
used = [t.double().numpy() if t is not None else None for t in (xt, wt, bt)]
"""
TORCH_CALL = {
    "torch": "torch.nn.functional.{op}(xt, wt, bt, stride=stride, padding=TORCH_PADDING, "
    "output_padding=TORCH_OUTPUT_PADDING, groups=groups, dilation=dilation)",
    "torch.nn": "layer(xt)",
    "torch.nn-sized": "layer(xt, output_size=OUTPUT_SIZE)",
}
TORCH_LAYER = """
layer = torch.nn.ConvTranspose{ndim}d(IN_CHANNELS, OUT_CHANNELS, w.shape[2:], stride=stride, padding=TORCH_PADDING,
                                   output_padding=TORCH_OUTPUT_PADDING, groups=groups, bias=b is not None,
                                   dilation=dilation).to(dtype)
if LAYOUT == "channels_last" and wt.dim() in MEMORY_FORMATS:
    layer = layer.to(memory_format=MEMORY_FORMATS[wt.dim()])
layer.load_state_dict({{"weight": wt, **({{"bias": bt}} if bt is not None else {{}})}})
"""
MLX_SETUP = """
import mlx.core as mx
import mlx.nn as nn
dtype = getattr(mx, DTYPE)
cin_g = w.shape[0] // groups
# channels-last data (N, *L, C); weight (C_out, *K, C_in/groups), from torch's (C_in, C_out/groups, *K)
w_mx = np.moveaxis(w.reshape(groups, cin_g, w.shape[1], *w.shape[2:]), 1, -1).reshape(-1, *w.shape[2:], cin_g)
xm, wm = mx.array(np.moveaxis(x, 1, -1)).astype(dtype), mx.array(w_mx).astype(dtype)
bm = None if b is None else mx.array(b).astype(dtype)


def to_np(a):
    return np.array(a if a.dtype == mx.float64 else a.astype(mx.float32)).astype(np.float64)


def weight_to_torch_layout(a):
    return np.moveaxis(a.reshape(groups, -1, *a.shape[1:-1], a.shape[-1]), -1, 1).reshape(-1, a.shape[0] // groups, *a.shape[1:-1])


used = [np.moveaxis(to_np(xm), -1, 1), weight_to_torch_layout(to_np(wm)), None if bm is None else to_np(bm)]


def arg(v):
    return v[0] if len(v) == 1 else v  # conv_transpose1d / ConvTranspose1d take plain ints
"""
MLX_CALL = {
    "mlx": "mx.conv_transpose{ndim}d(xm_, wm_, stride=arg(stride), padding=arg(TORCH_PADDING), "
    "dilation=arg(dilation), output_padding=arg(TORCH_OUTPUT_PADDING), groups=groups) + (0 if bm_ is None else bm_)",
    # (lo, hi) padding with no symmetric form: the correlation of the zero-inserted input, flipped kernel
    "mlx-general": "mx.conv_general(xm_, wm_, stride=1, padding=GENERAL_PADDING, kernel_dilation=dilation, "
    "input_dilation=stride, groups=groups, flip=True) + (0 if bm_ is None else bm_)",
    "mlx.nn": "layer(xm_)",
}
MLX_LAYER = """
layer = nn.ConvTranspose{ndim}d(IN_CHANNELS, OUT_CHANNELS, arg(list(w.shape[2:])), stride=arg(stride),
                              padding=arg(TORCH_PADDING), dilation=arg(dilation),
                              output_padding=arg(TORCH_OUTPUT_PADDING), bias=b is not None)
layer.load_weights([("weight", wm)] + ([("bias", bm)] if bm is not None else []))
"""


def _header(case: Case, result: Result, version: str) -> str:
    return textwrap.dedent(f'''\
        """Reproducer: {result.framework} {version} diverges from PyTorch's conv_transpose semantics.

        Check: {result.check}. Observed: {result.message[:300]}
        Configuration: {case.op} input_shape={list(case.input_shape)} out_channels={case.params.out_channels}
          kernel_size={list(case.params.kernel_size)} stride={list(case.params.stride)}
          padding={case.params.written_padding()!r} output_padding={case.params.written_output_padding()}
          {_extras(case)}dilation={list(case.params.dilation)} groups={case.params.groups} bias={case.params.bias}
          dtype={case.dtype}{" (invalid: " + ", ".join(v.rule for v in case.violations) + ")" if case.violations else ""}
        Needs only NumPy and the framework. Run: python this_file.py
        """
        ''')


def _extras(case: Case) -> str:
    p, parts = case.params, []
    if p.output_size is not None:
        parts.append(f"output_size={list(p.output_size)}")
    if case.layout != "contiguous":
        parts.append(f"layout={case.layout}")
    return " ".join(parts) + ("\n          " if parts else "")


def _inputs(case: Case) -> str:
    p = case.params
    bias = f"rng.standard_normal({p.out_channels}).astype(np.float32)" if p.bias else "None"
    form = p.symmetric_padding
    if p.output_size is not None:  # torch.nn's forward derives output_padding from output_size
        form = (p.padding, (0,) * p.ndim)
    torch_padding, torch_output_padding = (list(v) for v in form) if form else (None, None)
    general = [
        [d * (k - 1) - lo, d * (k - 1) - hi + op]
        for (lo, hi), k, d, op in zip(p.padding_pairs, p.kernel_size, p.dilation, p.output_padding)
    ]
    return textwrap.dedent(f"""
        DTYPE = {case.dtype!r}
        LAYOUT = {case.layout!r}  # memory layout of x and w: contiguous, channels_last or strided
        IN_CHANNELS, OUT_CHANNELS = {p.in_channels}, {p.out_channels}
        # (lo, hi) per axis, cropped from the start and the end of the full output, and the
        # output_padding added at the end ({"written as padding=" + repr(p.written_padding()) if not p.is_symmetric or p.padding_mode else "symmetric"}{", output_size=" + str(list(p.output_size)) if p.output_size else ""})
        stride, padding = {list(p.stride)}, {[list(pair) for pair in p.padding_pairs]}
        output_padding, dilation, groups = {list(p.output_padding)}, {list(p.dilation)}, {p.groups}
        # the same in PyTorch's (padding, output_padding) form (None: there is none)
        TORCH_PADDING, TORCH_OUTPUT_PADDING = {torch_padding}, {torch_output_padding}
        OUTPUT_SIZE = {None if p.output_size is None else list(p.output_size)}
        GENERAL_PADDING = ({[g[0] for g in general]}, {[g[1] for g in general]})  # mlx.core.conv_general's
        rng = np.random.default_rng({case.seed})
        x = rng.standard_normal({tuple(case.input_shape)}).astype(np.float32)
        w = rng.standard_normal({tuple(p.weight_shape())}).astype(np.float32)
        b = {bias}
        """)


def _compare_forward(call: str, to_numpy: str) -> str:
    return textwrap.dedent(f"""
        out = {to_numpy.format(expr=call)}
        expected = reference(*used, stride, padding, output_padding, groups, dilation)
        print("output shape", out.shape, "expected", expected.shape)
        if out.shape == expected.shape:
            bound = reference(*[None if a is None else np.abs(a) for a in used], stride, padding,
                              output_padding, groups, dilation)
            err = np.abs(out - expected)
            print("max |error|", err.max(), "max |error| / magnitude bound", (err / np.maximum(bound, 1e-300)).max())
        """)


def _compare_error(call: str) -> str:
    return textwrap.dedent(f"""
        try:
            out = {call}
        except Exception as exc:
            print("rejected, as PyTorch does:", type(exc).__name__, exc)
        else:
            print("BUG: accepted an invalid configuration and returned shape", tuple(out.shape))
        """)


def script(case: Case, result: Result, version: str = "") -> str:
    """The standalone reproducer for ``result`` (a non-pass result of ``case``)."""
    ndim, op = case.params.ndim, case.op
    name = result.framework
    parts = [_header(case, result, version), "import numpy as np\n", REFERENCE, _inputs(case)]
    if name in ("torch", "torch.nn"):
        parts.append(TORCH_SETUP)
        if name == "torch.nn":
            parts.append(TORCH_LAYER.format(ndim=ndim))
        sized = name == "torch.nn" and case.params.output_size is not None
        call = TORCH_CALL["torch.nn-sized" if sized else name].format(op=op)
        if case.expect == "error":
            parts.append(_compare_error(call))
        elif result.check == "forward":
            parts.append(_compare_forward(call, "{expr}.detach().double().numpy()"))
        else:
            parts.append(_torch_gradients(call))
    elif name in MLX_CALL:
        parts.append(MLX_SETUP)
        if name == "mlx.nn":
            parts.append(MLX_LAYER.format(ndim=ndim))
        call = _mlx_call(case, name).replace("xm_", "xm").replace("wm_", "wm").replace("bm_", "bm")
        if case.expect == "error":
            parts.append(_compare_error(call))
        elif result.check == "forward":
            parts.append(_compare_forward(call, "np.moveaxis(to_np({expr}), -1, 1)"))
        else:
            parts.append(_mlx_gradients(case, name))
    else:
        parts.append(_generic(case, result))
    return "".join(parts)


def _torch_gradients(call: str) -> str:
    return textwrap.dedent(f"""
        g_out = np.random.default_rng(1).standard_normal(
            reference(*used, stride, padding, output_padding, groups, dilation).shape).astype(np.float32)
        leaves = [t.requires_grad_() for t in (xt, wt, bt) if t is not None]
        out = {call}
        gt = torch.from_numpy(g_out).to(dtype)
        try:
            (out * gt).sum().backward()  # as the adapters do: a scalar loss's backward
        except Exception as exc:
            raise SystemExit(f"BUG: backward raised {{type(exc).__name__}}: {{exc}}")
        grads = [leaves[0].grad, (layer.weight.grad if "layer" in globals() else leaves[1].grad),
                 (None if bt is None else (layer.bias.grad if "layer" in globals() else leaves[2].grad))]
        want = reference_vjp(*used, gt.double().numpy(), stride, padding, output_padding, groups, dilation)
        for name, got, exp in zip(("grad_input", "grad_weight", "grad_bias"), grads, want):
            if exp is None:
                continue
            got = got.double().numpy()
            print(name, "shape", got.shape, "expected", exp.shape,
                  "max |error|", np.abs(got - exp).max() if got.shape == exp.shape else "(shapes differ)")
        """)


def _mlx_call(case: Case, name: str) -> str:
    general = name == "mlx" and case.params.symmetric_padding is None
    return MLX_CALL["mlx-general" if general else name].format(ndim=case.params.ndim)


def _mlx_gradients(case: Case, name: str) -> str:
    call = _mlx_call(case, name)
    update = '    layer.update({"weight": wm_, **({"bias": bm_} if bm_ is not None else {})})\n'
    return (
        textwrap.dedent("""
        g_out = np.random.default_rng(1).standard_normal(
            reference(*used, stride, padding, output_padding, groups, dilation).shape).astype(np.float32)
        gm = mx.array(np.moveaxis(g_out, 1, -1)).astype(dtype)


        def fn(xm_, wm_, bm_=None):
        """)
        + (update if name == "mlx.nn" else "")
        + f"    return {call}\n"
        + textwrap.dedent("""

        primals = [xm, wm] + ([bm] if bm is not None else [])
        try:
            _, grads = mx.vjp(fn, primals, [gm])
        except Exception as exc:
            raise SystemExit(f"BUG: mx.vjp raised {type(exc).__name__}: {exc}")
        want = reference_vjp(*used, g_out.astype(np.float64), stride, padding, output_padding, groups, dilation)
        got = [np.moveaxis(to_np(grads[0]), -1, 1), weight_to_torch_layout(to_np(grads[1])),
               to_np(grads[2]) if bm is not None else None]
        for name, g, exp in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
            if exp is None:
                continue
            print(name, "shape", g.shape, "expected", exp.shape,
                  "max |error|", np.abs(g - exp).max() if g.shape == exp.shape else "(shapes differ)")
        """)
    )


def _generic(case: Case, result: Result) -> str:
    """No template for this adapter: run the case through it with the harness. The case is embedded
    as its fields, and so is the source of an adapter given as a file, so the script needs no path
    of the machine that ran it (only the harness and what the adapter itself imports)."""
    tokens = shlex.split(result.rerun) if result.rerun else []
    spec = tokens[-1] if len(tokens) > 1 and tokens[-2] in ("--framework", "--adapter") else result.framework
    target, _, attr = split_variant(spec)[0].rpartition(":")
    fields = case_fields(case)
    if target.endswith(".py") and Path(target).is_file():
        source = Path(target).read_text(encoding="utf-8")
        quote = "'" * 3
        raw = quote not in source and not source.endswith("\\")
        literal = f"r{quote}{source}{quote}" if raw else repr(source)
        load = (
            f"# The adapter {Path(target).name} as it was when this ran, loaded as the harness loads it. What\n"
            "# it imports (your layer) is found from the directory you run this script in.\n"
            "sys.path.append(os.getcwd())\n"
            f"ADAPTER_SOURCE = {literal}\n"
            f"adapter_file = Path(tempfile.mkdtemp()) / {Path(target).name!r}\n"
            "adapter_file.write_text(ADAPTER_SOURCE)\n"
            f'adapter = load_adapter(f"{{adapter_file}}:{attr}")\n'
        )
    else:
        load = f"adapter = load_adapter({spec!r})\n"
    return (
        textwrap.dedent(f"""
        # No standalone template for {result.framework!r}: this runs the case through its adapter with the
        # conformance harness (pip install conformance), which calls the framework exactly as its users do.
        import os
        import sys
        import tempfile
        from pathlib import Path

        from conformance.adapters import load_adapter
        from conformance.cases import make_case
        from conformance.checks import run_checks

        case = make_case({fields!r}, {case.id!r})
        """)
        + load
        + textwrap.dedent("""
        for r in run_checks(case, adapter):
            print(r.check, r.status, r.message)
        """)
    )


#: results that get a script on every run: those that fail the gate (an xpass has nothing to show)
FAILING_REPRODUCED = frozenset({"fail", "error", "crash", "timeout"})
#: with known divergences too (``conformance run --reproducers divergent``, ``conformance repro``)
DIVERGENT_REPRODUCED = FAILING_REPRODUCED | {"xfail"}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_all(
    results: Iterable[Result],
    cases: Mapping[tuple[str, str], Case],
    versions: Mapping[str, str],
    report_dir: str | Path,
    statuses: frozenset[str] = FAILING_REPRODUCED,
) -> int:
    """Write a script per (case, framework, check) whose status is in ``statuses`` under
    ``report_dir/reproducers`` and set each result's ``reproducer`` to its relative path; the gradient
    checks of a case share one script. Known divergences get theirs only when asked: hundreds of
    scripts nobody opens were most of a run's report-writing time."""
    root = Path(report_dir)
    written = 0
    for r in results:
        case = cases.get((r.file, r.case))
        if r.status not in statuses or case is None:
            continue
        which = "gradients" if r.check.startswith("grad_") else r.check
        relative = (
            Path("reproducers")
            / _slug(r.framework)
            / _slug(Path(r.file).stem)
            / f"{_slug(r.case)}--{which}.py"
        )
        path = root / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script(case, r, versions.get(r.framework, "")))
            written += 1
        r.reproducer = relative.as_posix()
    return written
