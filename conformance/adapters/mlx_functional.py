"""MLX's ``mlx.core.conv_transpose{1,2,3}d``: channels-last, weight ``(C_out, *K, C_in/groups)``.

MLX is channels-last natively: whatever the canonical array's strides, the adapter hands MLX the
channels-last array an MLX user holds. Asymmetric padding with a (padding, output_padding) form goes
to ``conv_transpose*d``; other pairs go where MLX users write them, ``mlx.core.conv_general`` (the
transposed convolution as a correlation of the zero-inserted input, ``input_dilation = stride``,
padded by ``(d·(k−1) − lo, d·(k−1) − hi + output_padding)``, kernel flipped), as far as those pads
are >= 0. MLX has no unbatched inputs, string padding or output_size.
"""

from __future__ import annotations

import ml_dtypes
import mlx.core as mx
import numpy as np

from conformance import layouts
from conformance.adapters import Adapter
from conformance.cases import Case
from conformance.dtypes import dtype_name
from conformance.spec import ConvParams

FUNCTIONS = {1: mx.conv_transpose1d, 2: mx.conv_transpose2d, 3: mx.conv_transpose3d}
MX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16, "float64": mx.float64}


def to_mlx(a: np.ndarray) -> mx.array:
    # Name the dtype: mx.array turns a float64 NumPy array into float32 unless told otherwise.
    return mx.array(np.ascontiguousarray(a), dtype=MX_DTYPES[dtype_name(a.dtype)])


def to_numpy(a: mx.array) -> np.ndarray:
    if a.dtype == mx.bfloat16:  # no buffer-protocol format for bfloat16: widen exactly, then narrow
        return np.array(a.astype(mx.float32)).astype(ml_dtypes.bfloat16)
    return np.array(a)


def mlx_weight(weight: np.ndarray, params: ConvParams) -> np.ndarray:
    """The channels-last weight an MLX user passes for this configuration.

    Valid groupings convert value for value; a grouping that breaks a divisibility rule has no
    such conversion, so the weight gets the shape an MLX user would write and MLX judges it.
    """
    g = params.groups
    if g >= 1 and params.in_channels % g == 0 and params.out_channels % g == 0:
        return layouts.torch_weight_to_channels_last(weight, g)
    shape = layouts.channels_last_weight_shape(params.in_channels, params.out_channels, params.kernel_size, g)
    return np.resize(weight, shape)


def general_padding(params: ConvParams) -> tuple[list[int], list[int]]:
    """``conv_general``'s (low, high) input padding for the transposed convolution of ``params``."""
    low, high = [], []
    for (lo, hi), k, d, op in zip(
        params.padding_pairs, params.kernel_size, params.dilation, params.output_padding
    ):
        low.append(d * (k - 1) - lo)
        high.append(d * (k - 1) - hi + op)
    return low, high


class MlxFunctional(Adapter):
    name = "mlx"
    api = "mlx.core.conv_transpose*d"
    distribution = "mlx"
    # (declared: finding the distribution's modules reads every installed package's file list)
    framework_modules = ("mlx",)
    expresses_out_channels = True  # the weight's first axis is C_out
    takes_padding_pairs = True  # through conv_general where there is no symmetric form

    def version(self) -> str:
        return mx.__version__

    def inexpressible(self, case: Case) -> str | None:
        p = case.params
        if not p.is_symmetric and p.symmetric_padding is None:
            if min(min(general_padding(p))) < 0:
                return (
                    f"(lo, hi) = {list(p.padding_pairs)} has no (padding, output_padding) form for "
                    f"{self.api}, and mlx.core.conv_general would need negative padding {general_padding(p)}"
                )
            if min(min(pair) for pair in p.padding_pairs) < 0:
                # conv_general sees ordinary padding: nothing there for MLX to reject
                return (
                    f"(lo, hi) = {list(p.padding_pairs)} has a negative entry and no (padding, "
                    f"output_padding) form; through mlx.core.conv_general it is the valid padding "
                    f"{general_padding(p)}, so MLX cannot be asked to reject it"
                )
        return super().inexpressible(case)

    @staticmethod
    def _call(x: mx.array, weight: mx.array, bias: mx.array | None, params: ConvParams) -> mx.array:
        # mx.conv_transpose1d takes plain ints; the 2-d and 3-d functions take tuples.
        def arg(values: tuple[int, ...]) -> int | tuple[int, ...]:
            return values[0] if params.ndim == 1 else values

        form = params.symmetric_padding
        if form is None:
            out = mx.conv_general(
                x,
                weight,
                stride=1,
                padding=general_padding(params),
                kernel_dilation=list(params.dilation),
                input_dilation=list(params.stride),
                groups=params.groups,
                flip=True,
            )
        else:
            out = FUNCTIONS[params.ndim](
                x,
                weight,
                stride=arg(params.stride),
                padding=arg(form[0]),
                dilation=arg(params.dilation),
                output_padding=arg(form[1]),
                groups=params.groups,
            )
        # bias is added by the caller, as mlx.nn.ConvTranspose does
        return out if bias is None else out + bias

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        out = self._call(
            to_mlx(layouts.channels_first_to_last(x)),
            to_mlx(mlx_weight(weight, params)),
            None if bias is None else to_mlx(bias),
            params,
        )
        mx.eval(out)
        return np.ascontiguousarray(layouts.channels_last_to_first(to_numpy(out)))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        primals = [to_mlx(layouts.channels_first_to_last(x)), to_mlx(mlx_weight(weight, params))]
        if bias is not None:
            primals.append(to_mlx(bias))

        def fn(*args: mx.array) -> mx.array:
            return self._call(args[0], args[1], args[2] if bias is not None else None, params)

        _, grads = mx.vjp(fn, primals, [to_mlx(layouts.channels_first_to_last(grad_out))])
        mx.eval(grads)
        grad_x = np.ascontiguousarray(layouts.channels_last_to_first(to_numpy(grads[0])))
        grad_w = layouts.channels_last_weight_to_torch(to_numpy(grads[1]), params.groups)
        return grad_x, grad_w, to_numpy(grads[2]) if bias is not None else None
