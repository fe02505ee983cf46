"""A second, independent NumPy implementation, and copies of it with one plausible bug each.

``DirectNumpy`` is the textbook formulation (zero-insert the input by the stride, pad by
``d·(k-1) - p`` — plus ``output_padding`` at the end — and correlate with the flipped, dilated
kernel), written without the oracle. It must pass the whole library; each subclass plants one bug
that people really write, and the library must catch every one of them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from conformance.adapters import Adapter
from conformance.spec import ConvParams, violations


class DirectNumpy(Adapter):
    name = "numpy-direct"
    expresses_out_channels = False
    takes_padding_pairs = True  # (lo, hi): pad the zero-inserted input by d·(k−1) − lo and d·(k−1) − hi
    framework_modules = (__name__,)  # the implementation under test lives in this module

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
    # gradient bug switches
    grad_weight_group_shift = 0
    grad_out_keeps_output_padding_rows = True
    grad_bias_sums_batch = True

    def validate(self, x: np.ndarray, params: ConvParams) -> None:
        for v in violations(x.shape, params):
            if v.rule == "output_padding_bound" and not self.check_output_padding:
                continue
            raise ValueError(str(v))

    def _geometry(self, params: ConvParams) -> tuple[tuple[int, ...], list[tuple[int, int]]]:
        """Dilation and, per axis, how much to pad (negative: crop) the zero-inserted input."""
        dilation = params.dilation if self.use_dilation else (1,) * params.ndim
        out_pad = params.output_padding if self.use_output_padding else (0,) * params.ndim
        pads = [
            (d * (k - 1) - lo, d * (k - 1) - (hi if self.symmetric_padding else 0) + op)
            for k, d, (lo, hi), op in zip(params.kernel_size, dilation, params.padding_pairs, out_pad)
        ]
        return dilation, pads

    def _expand(self, x: np.ndarray, params: ConvParams) -> np.ndarray:
        """Zero-insert by the stride, then pad (or crop) each axis: the input the correlation sees."""
        spatial = x.shape[2:]
        z = np.zeros(
            (*x.shape[:2], *[(length - 1) * s + 1 for length, s in zip(spatial, params.stride)]), x.dtype
        )
        z[(..., *[slice(None, None, s) for s in params.stride])] = x
        for axis, (before, after) in enumerate(self._geometry(params)[1]):
            z = _pad_or_crop(z, axis + 2, before, after)
        return z

    def _grouped_weight(self, weight: np.ndarray, g: int) -> np.ndarray:
        """(g, C_in/g, C_out/g, *K), flipped: the correlation kernel."""
        cin_g, cout_g, kernel = weight.shape[0] // g, weight.shape[1], weight.shape[2:]
        if self.group_weight_in_major:
            wg = weight.reshape(g, cin_g, cout_g, *kernel)
        else:  # the bug: takes group j's rows as j, j+g, j+2g... (interleaved) instead of a block
            wg = weight.reshape(cin_g, g, cout_g, *kernel).swapaxes(0, 1)
        return np.flip(wg, axis=tuple(range(3, wg.ndim))) if self.flip_kernel else wg

    def _taps(self, kernel: tuple[int, ...]) -> list[tuple[int, ...]]:
        taps = list(itertools.product(*(range(k) for k in kernel)))
        return taps[:-1] if self.drop_last_tap and len(taps) > 1 else taps

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        self.validate(x, params)
        acc = self.accumulate_dtype
        g, kernel = params.groups, weight.shape[2:]
        dilation, _ = self._geometry(params)
        z = self._expand(x.astype(acc), params)
        wg = self._grouped_weight(weight.astype(acc), g)
        out_spatial = [size - d * (k - 1) for size, d, k in zip(z.shape[2:], dilation, kernel)]
        zg = z.reshape(z.shape[0], g, z.shape[1] // g, *z.shape[2:])  # explicit sizes: N may be 0
        out = np.zeros((z.shape[0], g, wg.shape[2], *out_spatial), acc)
        for tap in self._taps(kernel):
            window = zg[
                (..., *[slice(t * d, t * d + size) for t, d, size in zip(tap, dilation, out_spatial)])
            ]
            out += np.einsum("ngi...,gio->ngo...", window, wg[(..., *tap)]).astype(acc)
        out = out.reshape(z.shape[0], g * wg.shape[2], *out_spatial)
        if bias is not None and self.use_bias:
            out = out + bias.astype(acc).reshape(1, -1, *([1] * params.ndim))
        return out.astype(x.dtype)

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Adjoint of forward(): each tap's window gather becomes a scatter, then the padding,
        cropping and zero-insertion are undone in reverse order."""
        self.validate(x, params)
        acc = self.accumulate_dtype
        n, g, kernel = x.shape[0], params.groups, weight.shape[2:]
        dilation, pads = self._geometry(params)
        go = grad_out.astype(acc)
        go_x = go.copy()  # what grad_input is computed from
        if not self.grad_out_keeps_output_padding_rows:  # the bug: output_padding rows carry no gradient
            for axis, op in enumerate(params.output_padding):
                if op:
                    index = [slice(None)] * go.ndim
                    index[axis + 2] = slice(go.shape[axis + 2] - op, None)
                    go_x[tuple(index)] = 0
        z = self._expand(x.astype(acc), params)
        zg = z.reshape(n, g, z.shape[1] // g, *z.shape[2:])
        wg = self._grouped_weight(weight.astype(acc), g)
        gog = go.reshape(n, g, wg.shape[2], *go.shape[2:])
        gog_x = go_x.reshape(gog.shape)
        out_spatial = go.shape[2:]
        grad_zg = np.zeros_like(zg)
        grad_wg = np.zeros_like(wg)
        for tap in self._taps(kernel):
            window = (..., *[slice(t * d, t * d + size) for t, d, size in zip(tap, dilation, out_spatial)])
            grad_zg[window] += np.einsum("ngo...,gio->ngi...", gog_x, wg[(..., *tap)])
            positions = math.prod(out_spatial)
            flat = zg[window].reshape(n, g, zg.shape[2], positions)
            grad_wg[(..., *tap)] = np.einsum(
                "ngip,ngop->gio", flat, gog.reshape(n, g, gog.shape[2], positions)
            )
        if self.grad_weight_group_shift:  # the bug: group j's gradient lands in another group's block
            grad_wg = np.roll(grad_wg, self.grad_weight_group_shift, axis=0)
        # undo: flip, grouping; crop the padding back off; take the strided (non-inserted) entries
        if self.flip_kernel:
            grad_wg = np.flip(grad_wg, axis=tuple(range(3, grad_wg.ndim)))
        if self.group_weight_in_major:
            grad_w = grad_wg.reshape(weight.shape)
        else:
            grad_w = grad_wg.swapaxes(0, 1).reshape(weight.shape)
        grad_z = grad_zg.reshape(z.shape)
        for axis, (before, after) in enumerate(pads):
            grad_z = _pad_or_crop(grad_z, axis + 2, -before, -after)
        grad_x = grad_z[(..., *[slice(None, None, s) for s in params.stride])]
        grad_b = None
        if bias is not None:
            batch = go if self.grad_bias_sums_batch else go[:1]  # the bug: only the first sample counts
            grad_b = batch.sum(axis=(0, *range(2, go.ndim))).astype(bias.dtype)
        return grad_x.astype(x.dtype), grad_w.astype(weight.dtype), grad_b


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


class GradWeightWrongGroup(DirectNumpy):
    """grad_weight of group j is written into group j+1's block."""

    name = "bug-grad-weight-wrong-group"
    grad_weight_group_shift = 1


class GradInputDropsOutputPaddingRows(DirectNumpy):
    """grad_input treats the output_padding rows of grad_out as carrying no gradient."""

    name = "bug-grad-input-output-padding"
    grad_out_keeps_output_padding_rows = False


class GradBiasFirstSampleOnly(DirectNumpy):
    """grad_bias reduces over the spatial axes but not over the batch axis."""

    name = "bug-grad-bias-batch-axis"
    grad_bias_sums_batch = False


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
    GradWeightWrongGroup,
    GradInputDropsOutputPaddingRows,
    GradBiasFirstSampleOnly,
]
