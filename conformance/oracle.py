"""The ground truth: transposed convolution in pure NumPy, computed in float64.

Same argument order and layouts as ``torch.nn.functional.conv_transpose{1,2,3}d``. The kernel is
the scatter form of the definition: every input element, times every kernel tap, lands at output
position ``i·stride + k·dilation - lo``. One matmul per kernel tap computes all products for
that tap at once, and a strided slice adds them into a zero-extended "full" output, which is then
cropped by ``lo`` at the start and ``hi`` at the end of each axis (``padding`` gives ``(lo, hi)``
pairs or symmetric ints) and extended by ``output_padding``, exactly as the output-length formula
says. An unbatched input ``(C_in, *L)`` is computed as a batch of one.
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
class _Layout:
    """Shared geometry of the forward kernel and its adjoint.

    ``xg``: input as ``(N, g, C_in/g, P)``; ``wg``: weight as ``(g, C_out/g, C_in/g, *K)``, one matrix
    per group and tap; ``full``: shape of the zero-extended output; ``crop``: where the real output
    sits in it; ``windows``: per kernel tap, the strided slice of ``full`` that tap writes.
    """

    xg: np.ndarray
    wg: np.ndarray
    full: tuple[int, ...]
    crop: tuple[slice, ...]
    windows: list[tuple[tuple[int, ...], tuple[slice, ...]]]


def _layout(x: np.ndarray, weight: np.ndarray, p: ConvParams, out_shape: tuple[int, ...]) -> _Layout:
    n, g = x.shape[0], p.groups
    spatial = x.shape[2:]
    cin_g, cout_g = p.in_channels // g, p.out_channels // g
    full_len = [
        (length - 1) * s + d * (k - 1) + 1 + op
        for length, k, s, d, op in zip(spatial, p.kernel_size, p.stride, p.dilation, p.output_padding)
    ]
    windows = [
        (
            tap,
            tuple(
                slice(d * t, d * t + s * (length - 1) + 1, s)
                for t, length, s, d in zip(tap, spatial, p.stride, p.dilation)
            ),
        )
        for tap in itertools.product(*(range(k) for k in p.kernel_size))
    ]
    return _Layout(
        xg=x.reshape(n, g, cin_g, math.prod(spatial)),  # explicit sizes: N may be 0
        wg=weight.reshape(g, cin_g, cout_g, *p.kernel_size).swapaxes(1, 2),
        full=(n, g, cout_g, *full_len),
        crop=tuple(slice(lo, lo + size) for lo, size in zip(p.padding, out_shape[2:])),
        windows=windows,
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

    geo = _layout(x, weight, p, out_shape)
    full = np.zeros(geo.full, dtype=np.float64)
    for tap, window in geo.windows:
        full[(..., *window)] += np.matmul(geo.wg[(..., *tap)], geo.xg).reshape(*geo.full[:3], *x.shape[2:])
    out = full[(..., *geo.crop)].reshape(out_shape)
    if bias is not None:
        out = out + bias.reshape(1, -1, *([1] * p.ndim))
    return out


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

    The adjoint of the forward kernel: ``grad_out`` is placed back into the zero-extended full
    output, each kernel tap gathers the strided window the forward scattered into, and one matmul
    per tap gives that tap's contribution to ``grad_x`` and its slice of ``grad_weight``.
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

    geo = _layout(x, weight, p, out_shape)
    xg, wg = geo.xg, geo.wg
    full = np.zeros(geo.full, dtype=np.float64)
    full[(..., *geo.crop)] = grad_out.reshape(*geo.full[:3], *out_shape[2:])

    grad_xg = np.zeros_like(xg)
    grad_wg = np.zeros_like(wg)
    for tap, window in geo.windows:
        gathered = full[(..., *window)].reshape(*geo.full[:3], xg.shape[3])  # (N, g, C_out/g, P)
        w_tap = wg[(..., *tap)]  # (g, C_out/g, C_in/g)
        grad_xg += np.matmul(w_tap.swapaxes(-1, -2), gathered)
        grad_wg[(..., *tap)] = np.matmul(gathered, xg.swapaxes(-1, -2)).sum(axis=0)

    grad_x = grad_xg.reshape(x.shape)
    grad_weight = grad_wg.swapaxes(1, 2).reshape(weight.shape)
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
