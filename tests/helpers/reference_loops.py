"""A slow, definitional transposed convolution: the gather form, written without the oracle.

For every output element the definition is read literally::

    out[n, co, o] = b[co] + Σ x[n, ci, i] · w[ci, co mod (C_out/g), k]

summed over the input channels ``ci`` of ``co``'s group and over every pair (input position ``i``,
kernel tap ``k``) with ``o == i·s − p + k·d`` on every axis. For a given ``o`` and ``k`` there is at
most one such ``i`` (``(o + p − k·d) / s`` when that is an integer inside the input), so the loop
runs over kernel taps and solves for ``i``: no zero-insertion, no kernel flip, no scatter. The
oracle (:mod:`conformance.oracle`) scatters instead; agreement of the two is the point.

Only for small shapes: it is plain Python, one multiply-add at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

IntOrTuple = int | Sequence[int]


def _axes(value: IntOrTuple, ndim: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * ndim
    values = tuple(int(v) for v in value)
    assert len(values) == ndim, f"expected {ndim} values, got {values}"
    return values


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _padding_pairs(value: object, ndim: int) -> list[tuple[int, int]]:
    """An int, or per axis an int or a pair ``(lo, hi)``."""
    if isinstance(value, int):
        return [(value, value)] * ndim
    pairs = [_pair(v) for v in value]  # type: ignore[union-attr]
    assert len(pairs) == ndim, f"expected {ndim} padding entries, got {pairs}"
    return pairs


def output_length_loops(
    length: int, kernel: int, stride: int, padding: int | Sequence[int], output_padding: int, dilation: int
) -> int:
    """The largest reachable position plus one, cropped by padding, extended by output_padding.

    Input position ``length − 1`` with tap ``kernel − 1`` lands at ``(length−1)·s − lo + (kernel−1)·d``;
    the output starts ``lo`` after position 0 of the full extent and ends ``hi`` before its end,
    then ``output_padding`` after it. An int padding is ``lo = hi``.
    """
    lo, hi = _pair(padding)
    last = (length - 1) * stride + (kernel - 1) * dilation  # last position of the uncropped output
    return last + 1 - lo - hi + output_padding


def conv_transpose_loops(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: object = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> np.ndarray:
    """``x (N, C_in, *L)``, ``weight (C_in, C_out/groups, *K)`` -> float64 ``(N, C_out, *L_out)``."""
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    ndim = weight.ndim - 2
    s, op, d = (_axes(v, ndim) for v in (stride, output_padding, dilation))
    pairs = _padding_pairs(padding, ndim)
    p = [lo for lo, _ in pairs]
    n_batch, c_in, *in_len = x.shape
    assert weight.shape[0] == c_in and c_in % groups == 0, (x.shape, weight.shape, groups)
    cout_g = weight.shape[1]
    kernel = weight.shape[2:]
    c_out, cin_g = cout_g * groups, c_in // groups
    out_len = [output_length_loops(*a) for a in zip(in_len, kernel, s, pairs, op, d, strict=True)]
    assert all(v >= 1 for v in out_len), out_len
    out = np.zeros((n_batch, c_out, *out_len), dtype=np.float64)
    taps = list(itertools.product(*(range(k) for k in kernel)))

    for n, co in itertools.product(range(n_batch), range(c_out)):
        group, co_in_group = divmod(co, cout_g)
        channels = range(group * cin_g, (group + 1) * cin_g)
        for o in itertools.product(*(range(v) for v in out_len)):
            acc = 0.0 if bias is None else float(bias[co])
            for k in taps:
                # the input position i with o == i·s − p + k·d on every axis, if there is one
                i = []
                for axis in range(ndim):
                    numerator = o[axis] + p[axis] - k[axis] * d[axis]
                    if numerator % s[axis] or not 0 <= numerator // s[axis] < in_len[axis]:
                        break
                    i.append(numerator // s[axis])
                else:
                    for ci in channels:
                        acc += x[(n, ci, *i)] * weight[(ci, co_in_group, *k)]
            out[(n, co, *o)] = acc
    return out


def multiply_adds(
    input_shape: Sequence[int], weight_shape: Sequence[int], groups: int, out_spatial: Sequence[int]
) -> int:
    """How many inner-loop iterations :func:`conv_transpose_loops` runs (an upper bound)."""
    n, _c_in, *_ = input_shape
    cin_per_group = weight_shape[0] // max(groups, 1)
    c_out = weight_shape[1] * max(groups, 1)
    total = n * c_out * cin_per_group
    for v in (*out_spatial, *weight_shape[2:]):
        total *= v
    return total
