"""A second, independent NumPy implementation, and copies of it with one plausible bug each.

``DirectNumpy`` is the textbook formulation (zero-insert the input by the stride, pad by
``d·(k-1) - p`` — plus ``output_padding`` at the end — and correlate with the flipped, dilated
kernel), written without the oracle. It must pass the whole library; each subclass plants one bug
that people really write, and the library must catch every one of them.
"""

from __future__ import annotations

import itertools

import numpy as np

from conformance.adapters import Adapter
from conformance.spec import ConvParams, violations


class DirectNumpy(Adapter):
    name = "numpy-direct"
    expresses_out_channels = False

    # Bug switches: each subclass flips one.
    flip_kernel = True
    use_output_padding = True
    use_dilation = True
    use_bias = True
    symmetric_padding = True
    group_weight_in_major = True  # weight is (C_in, C_out/g): per group (C_in/g, C_out/g)
    accumulate_dtype: type | None = np.float64
    drop_last_tap = False
    check_output_padding = True

    def validate(self, x: np.ndarray, params: ConvParams) -> None:
        for v in violations(x.shape, params):
            if v.rule == "output_padding_bound" and not self.check_output_padding:
                continue
            raise ValueError(str(v))

    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams) -> np.ndarray:
        self.validate(x, params)
        acc = self.accumulate_dtype
        xs, ws = x.astype(acc), weight.astype(acc)
        n, cin = x.shape[:2]
        g = params.groups
        cin_g, cout_g = cin // g, weight.shape[1]
        kernel = weight.shape[2:]
        dilation = params.dilation if self.use_dilation else (1,) * params.ndim
        out_pad = params.output_padding if self.use_output_padding else (0,) * params.ndim

        # 1. zero-insertion by the stride
        spatial = x.shape[2:]
        z = np.zeros((n, cin, *[(length - 1) * s + 1 for length, s in zip(spatial, params.stride)]), acc)
        z[(..., *[slice(None, None, s) for s in params.stride])] = xs
        # 2. pad (or crop) each side by d·(k-1) - p; output_padding extends the end
        for axis, (k, d, p, op) in enumerate(zip(kernel, dilation, params.padding, out_pad)):
            before = d * (k - 1) - p
            after = d * (k - 1) - (p if self.symmetric_padding else 0) + op
            z = _pad_or_crop(z, axis + 2, before, after)
        # 3. correlation with the flipped, dilated kernel, per group
        if self.group_weight_in_major:
            wg = ws.reshape(g, cin_g, cout_g, *kernel)
        else:  # the bug: takes group j's rows as j, j+g, j+2g... (interleaved) instead of a block
            wg = ws.reshape(cin_g, g, cout_g, *kernel).swapaxes(0, 1)
        if self.flip_kernel:
            wg = np.flip(wg, axis=tuple(range(3, 3 + params.ndim)))
        out_spatial = [size - d * (k - 1) for size, d, k in zip(z.shape[2:], dilation, kernel)]
        zg = z.reshape(n, g, cin_g, *z.shape[2:])
        out = np.zeros((n, g, cout_g, *out_spatial), acc)
        taps = list(itertools.product(*(range(k) for k in kernel)))
        if self.drop_last_tap and len(taps) > 1:
            taps = taps[:-1]
        for tap in taps:
            window = zg[(..., *[slice(t * d, t * d + size) for t, d, size in zip(tap, dilation, out_spatial)])]
            out += np.einsum("ngi...,gio->ngo...", window, wg[(..., *tap)]).astype(acc)
        out = out.reshape(n, g * cout_g, *out_spatial)
        if bias is not None and self.use_bias:
            out = out + bias.astype(acc).reshape(1, -1, *([1] * params.ndim))
        return out.astype(x.dtype)


def _pad_or_crop(a: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    if before < 0:
        a = np.take(a, range(-before, a.shape[axis]), axis=axis)
    if after < 0:
        a = np.take(a, range(0, a.shape[axis] + after), axis=axis)
    widths = [(0, 0)] * a.ndim
    widths[axis] = (max(before, 0), max(after, 0))
    return np.pad(a, widths)


class IgnoresOutputPadding(DirectNumpy):
    name = "bug-output-padding-ignored"
    use_output_padding = False


class MisreadsGroupWeight(DirectNumpy):
    name = "bug-group-weight-layout"
    group_weight_in_major = False


class KernelNotFlipped(DirectNumpy):
    name = "bug-kernel-not-flipped"
    flip_kernel = False


class BiasMissing(DirectNumpy):
    name = "bug-bias-missing"
    use_bias = False


class DilationIgnored(DirectNumpy):
    name = "bug-dilation-ignored"
    use_dilation = False


class PaddingOneSided(DirectNumpy):
    name = "bug-padding-one-sided"
    symmetric_padding = False


class HalfPrecisionInternally(DirectNumpy):
    """Computes in float16 whatever the input dtype: silent precision loss for float32."""

    name = "bug-half-precision"
    accumulate_dtype = np.float16


class DropsLastKernelTap(DirectNumpy):
    name = "bug-drops-last-tap"
    drop_last_tap = True


class AcceptsLargeOutputPadding(DirectNumpy):
    """Never rejects output_padding >= stride (and >= dilation)."""

    name = "bug-accepts-large-output-padding"
    check_output_padding = False


BUGGY = [
    IgnoresOutputPadding,
    MisreadsGroupWeight,
    KernelNotFlipped,
    BiasMissing,
    DilationIgnored,
    PaddingOneSided,
    HalfPrecisionInternally,
    DropsLastKernelTap,
    AcceptsLargeOutputPadding,
]
