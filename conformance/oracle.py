"""The ground truth: transposed convolution in pure NumPy, computed in float64.

Same argument order and layouts as ``torch.nn.functional.conv_transpose{1,2,3}d``. By definition
every input element ``i``, times every kernel tap ``k``, lands at position ``f = i·stride +
k·dilation`` of a zero-extended "full" output, which is then cropped by ``lo`` at the start and
``hi`` at the end of each axis (``padding`` gives ``(lo, hi)`` pairs or symmetric ints) and
extended by ``output_padding``, exactly as the output-length formula says. An unbatched input
``(C_in, *L)`` is computed as a batch of one.

The forward kernel computes that sum phase by phase ("sub-pixel" form). Write each full position
as ``f = u·s + r`` (phase ``r < s``) and each tap offset as ``k·d = q·s + r_k``: tap ``k`` only
reaches phase ``r_k``, where it adds ``w_k · x[u - q]`` at position ``u``. So, per phase, the full
output is a stride-1 correlation of ``x`` with the taps of that phase, and all phases together are
one matrix product: the input stacked at every shift ``q`` times a weight matrix that holds tap
``k`` at ``(phase r_k, shift q)`` and zeros where no tap lands. Interleaving the phases gives the
full output. The gradients gather instead of scatter: each tap reads back the strided window of
the full output it wrote, and one matrix product over all taps gives each gradient. Inputs are
taken to be finite: those structural zeros would turn an inf into NaN where no product exists.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from conformance.spec import ConvParams, Padding, output_shape

IntOrTuple = int | Sequence[int]


def params_for(
    x_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    bias: bool = True,
) -> ConvParams:
    """The ConvParams a functional call describes; dimensionality comes from the weight's rank."""
    ndim = len(weight_shape) - 2
    if ndim not in (1, 2, 3):
        raise ValueError(
            f"weight must have rank 3, 4 or 5 (C_in, C_out/groups, *kernel), got {len(weight_shape)}"
        )
    channel_axis = 0 if len(x_shape) == ndim + 1 else 1
    if len(x_shape) > channel_axis and x_shape[channel_axis] != weight_shape[0]:
        raise ValueError(
            f"input has C_in={x_shape[channel_axis]} channels but weight.shape[0]={weight_shape[0]}"
        )
    return ConvParams.make(
        ndim,
        in_channels=weight_shape[0],
        out_channels=weight_shape[1] * groups,
        kernel_size=tuple(weight_shape[2:]),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


@dataclass(frozen=True)
class _Geometry:
    """Sizes shared by the forward kernel and its adjoint, per spatial axis where a tuple.

    ``full``: length of the zero-extended output (``(L-1)·s + d·(K-1) + 1 + output_padding``);
    ``shifts``: ``Q = d·(K-1) // s + 1``, the shifts ``q`` of the input (``k·d = q·s + r``, so
    ``q < Q``); ``phase``: ``U = L + Q - 1`` positions per phase, which the taps reach (``U·s``
    may fall short of ``full`` by output_padding, which only adds zeros); ``crop``: where the
    real output sits in the full one. None of it depends on padding or output_padding except
    ``full`` and ``crop``, so every config with the same taps computes each full-output element
    with the same operations, bit for bit.
    """

    n: int
    groups: int
    cin_g: int
    cout_g: int
    spatial: tuple[int, ...]
    full: tuple[int, ...]
    phase: tuple[int, ...]
    shifts: tuple[int, ...]
    crop: tuple[slice, ...]


def _geometry(x_shape: tuple[int, ...], p: ConvParams, out_shape: tuple[int, ...]) -> _Geometry:
    spatial = tuple(x_shape[2:])
    full = tuple(
        (length - 1) * s + d * (k - 1) + 1 + op
        for length, k, s, d, op in zip(spatial, p.kernel_size, p.stride, p.dilation, p.output_padding)
    )
    shifts = tuple(d * (k - 1) // s + 1 for k, s, d in zip(p.kernel_size, p.stride, p.dilation))
    return _Geometry(
        n=x_shape[0],
        groups=p.groups,
        cin_g=p.in_channels // p.groups,
        cout_g=p.out_channels // p.groups,
        spatial=spatial,
        full=full,
        phase=tuple(length + q - 1 for length, q in zip(spatial, shifts)),
        shifts=shifts,
        crop=tuple(slice(lo, lo + size) for lo, size in zip(p.padding, out_shape[2:])),
    )


def _phase_weight(weight: np.ndarray, p: ConvParams, geo: _Geometry) -> np.ndarray:
    """The weight as one matrix per group, ``(g, C_out/g · s^D, Q^D · C_in/g)``: row ``(c_out, r)``,
    column ``(q, c_in)`` holds tap ``k`` where ``k·d = q·s + r`` on every axis, else zero."""
    g, ndim = p.groups, p.ndim
    dilated = np.zeros((g, geo.cin_g, geo.cout_g, *(q * s for q, s in zip(geo.shifts, p.stride))))
    taps = tuple(slice(0, d * (k - 1) + 1, d) for k, d in zip(p.kernel_size, p.dilation))
    dilated[(..., *taps)] = weight.reshape(g, geo.cin_g, geo.cout_g, *p.kernel_size)
    # offset k·d -> (q, r) on each axis: (g, C_in/g, C_out/g, Q_1, s_1, ..., Q_D, s_D)
    split = dilated.reshape(g, geo.cin_g, geo.cout_g, *itertools.chain(*zip(geo.shifts, p.stride)))
    rows = (2, *range(4, 3 + 2 * ndim, 2))  # c_out, r_1..r_D
    cols = (*range(3, 3 + 2 * ndim, 2), 1)  # q_1..q_D, c_in
    return split.transpose(0, *rows, *cols).reshape(
        g, geo.cout_g * math.prod(p.stride), math.prod(geo.shifts) * geo.cin_g
    )


def conv_transpose(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> np.ndarray:
    """Transposed convolution of ``x (N, C_in, *L)`` with ``weight (C_in, C_out/groups, *K)``.

    Returns float64 ``(N, C_out, *L_out)``. Raises ValueError naming the broken rule.
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    p = params_for(x.shape, weight.shape, stride, padding, output_padding, groups, dilation, bias is not None)
    output_shape(x.shape, p)  # validity, batched or not
    if x.ndim == p.ndim + 1:
        return conv_transpose(x[None], weight, bias, stride, padding, output_padding, groups, dilation)[0]
    out_shape = output_shape(x.shape, p)
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != (p.out_channels,):
            raise ValueError(f"bias must have shape ({p.out_channels},), got {bias.shape}")

    geo = _geometry(x.shape, p, out_shape)
    n, g, cin_g, cout_g, strides = geo.n, geo.groups, geo.cin_g, geo.cout_g, p.stride
    w_phase = _phase_weight(weight, p, geo)
    xg = x.reshape(n, g, cin_g, *geo.spatial)
    placements = [  # shift q: the input lands at phase positions q .. q + L - 1
        (q, tuple(slice(qi, qi + length) for qi, length in zip(q, geo.spatial)))
        for q in itertools.product(*(range(count) for count in geo.shifts))
    ]
    # where each phase lands in the output: phase r's position u is full-output u·s + r, which is
    # output u·s + r - padding (the rest of the full output, cropped away, is never written)
    landings = []  # (r, the phase's positions that land, where they land)
    for r in itertools.product(*(range(s) for s in strides)):
        axes = zip(r, strides, geo.phase, p.padding, out_shape[2:])
        sources, targets = zip(*(_landing(*axis) for axis in axes))
        landings.append((r, sources, targets))
    # every output element a tap reaches is written below; the others (output_padding, or a stride
    # past the kernel's reach) are zeros
    out = np.zeros(out_shape)
    out_g = out.reshape(n, g, cout_g, *out_shape[2:])
    # One image at a time, so the temporaries stay in cache and are allocated once:
    # shifted[g, q, c_in, u] = x[g, c_in, u - q], the input at every shift q (the zeros around it
    # are the same for every image), and phases[g, (c_out, r), u] = full[g, c_out, u·s + r].
    shifted = np.zeros((g, *geo.shifts, cin_g, *geo.phase))
    columns = shifted.reshape(g, -1, math.prod(geo.phase))
    phases = np.empty((g, cout_g * math.prod(strides), math.prod(geo.phase)))
    for image in range(n):
        for q, at in placements:
            shifted[(slice(None), *q, slice(None), *at)] = xg[image]
        np.matmul(w_phase, columns, out=phases)
        by_phase = phases.reshape(g, cout_g, *strides, *geo.phase)
        for r, sources, targets in landings:
            landed = by_phase[(slice(None), slice(None), *r, *sources)]
            out_g[(image, slice(None), slice(None), *targets)] = landed
    if bias is not None:
        out += bias.reshape(1, -1, *([1] * p.ndim))
    return out


def _landing(r: int, s: int, positions: int, padding: int, length: int) -> tuple[slice, slice]:
    """On one axis, which positions ``u`` of phase ``r`` land in the output (``u·s + r - padding``
    in ``[0, length)``, ``u < positions``), and where: (source slice, output slice)."""
    first = max(0, -((r - padding) // s))  # the least u with u·s + r >= padding
    end = min(positions, -((r - padding - length) // s))  # past the last u with u·s + r - padding < length
    if end <= first:
        return slice(0, 0), slice(0, 0)
    start = first * s + r - padding
    return slice(first, end), slice(start, start + (end - first - 1) * s + 1, s)


def magnitude_bound(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> np.ndarray:
    """Per-element ``|x| ⊛ |w| + |b|``: the sum of magnitudes each output element adds up.

    Rounding error of any summation order is proportional to this, so tolerances scale with it.
    """
    abs_bias = None if bias is None else np.abs(np.asarray(bias, dtype=np.float64))
    return conv_transpose(
        np.abs(np.asarray(x, dtype=np.float64)),
        np.abs(np.asarray(weight, dtype=np.float64)),
        abs_bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )


def conv_transpose_vjp(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    grad_out: np.ndarray,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Vector-Jacobian product: ``(grad_x, grad_weight, grad_bias)`` for cotangent ``grad_out``.

    The adjoint of the scatter form: ``grad_out`` is placed back into the zero-extended full
    output, each kernel tap gathers the strided window it wrote (input position ``i`` reads
    ``i·s + k·d``), and, with the windows of all taps stacked as the rows of one matrix, one
    matmul per image gives ``grad_x`` and another adds that image's share of ``grad_weight``.
    ``grad_bias`` is None when ``bias`` is None.
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    p = params_for(x.shape, weight.shape, stride, padding, output_padding, groups, dilation, bias is not None)
    out_shape = output_shape(x.shape, p)
    if grad_out.shape != out_shape:
        raise ValueError(f"grad_out must have the output's shape {out_shape}, got {grad_out.shape}")
    if x.ndim == p.ndim + 1:
        gx, gw, gb = conv_transpose_vjp(
            x[None], weight, bias, grad_out[None], stride, padding, output_padding, groups, dilation
        )
        return gx[0], gw, gb
    if grad_out.shape != out_shape:
        raise ValueError(f"grad_out must have the output's shape {out_shape}, got {grad_out.shape}")

    geo = _geometry(x.shape, p, out_shape)
    n, g, cin_g, cout_g = geo.n, geo.groups, geo.cin_g, geo.cout_g
    kernel, ndim, spatial = p.kernel_size, p.ndim, math.prod(geo.spatial)
    taps = math.prod(kernel) * cout_g
    # weight as (g, C_in/g, K^D · C_out/g), columns (k, c_out) like the rows of gathered below
    w_taps = weight.reshape(g, cin_g, cout_g, *kernel).transpose(0, 1, *range(3, 3 + ndim), 2)
    w_taps = w_taps.reshape(g, cin_g, taps)
    xg = x.reshape(n, g, cin_g, spatial)  # explicit sizes: N may be 0
    grad_outg = grad_out.reshape(n, g, cout_g, *out_shape[2:])

    grad_x = np.empty((n, g, cin_g, spatial))
    grad_w = np.zeros((g, cin_g, taps))
    # one image at a time, so the temporaries stay in cache: grad_out in the zero-extended full
    # output (the zeros outside the crop are the same for every image), and
    # gathered[g, k, c_out, i] = full[g, c_out, i·s + k·d], what tap k of input i wrote to
    full = np.zeros((g, cout_g, *geo.full))
    # (every tap's window at once is one strided view of full, tap k stepping k·d elements along
    # an axis and input i stepping i·s: one copy gathers them, where a copy per tap was a quarter
    # of a 16x16 kernel's VJP and half of a 4x4x4 one's)
    along = full.strides[2:]
    windows = np.lib.stride_tricks.as_strided(
        full,
        (g, *kernel, cout_g, *geo.spatial),
        (
            full.strides[0],
            *(d * step for d, step in zip(p.dilation, along)),
            full.strides[1],
            *(s * step for s, step in zip(p.stride, along)),
        ),
        writeable=False,
    )
    gathered = np.empty((g, *kernel, cout_g, *geo.spatial))
    columns = gathered.reshape(g, taps, spatial)
    for image in range(n):
        full[(..., *geo.crop)] = grad_outg[image]
        np.copyto(gathered, windows)
        np.matmul(w_taps, columns, out=grad_x[image])
        grad_w += np.matmul(xg[image], columns.swapaxes(-1, -2))

    grad_x = grad_x.reshape(x.shape)
    grad_weight = grad_w.reshape(g, cin_g, *kernel, cout_g).transpose(0, 1, 2 + ndim, *range(2, 2 + ndim))
    grad_weight = grad_weight.reshape(weight.shape)
    grad_bias = None if bias is None else grad_out.sum(axis=(0, *range(2, grad_out.ndim)))
    return grad_x, grad_weight, grad_bias


def vjp_magnitude_bound(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    grad_out: np.ndarray,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-element sums of magnitudes behind each gradient: the VJP of the absolute values."""
    return conv_transpose_vjp(
        np.abs(np.asarray(x, dtype=np.float64)),
        np.abs(np.asarray(weight, dtype=np.float64)),
        None if bias is None else np.abs(np.asarray(bias, dtype=np.float64)),
        np.abs(np.asarray(grad_out, dtype=np.float64)),
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )
