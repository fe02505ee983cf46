"""JAX's ``jax.lax.conv_general_dilated`` written as a transposed convolution, channels-first.

JAX has no grouped transposed-convolution function (``jax.lax.conv_transpose`` takes no groups), so
JAX users write it as the adjoint of a strided convolution: zero-insert the input by the stride
(``lhs_dilation``), pad each axis by ``(d·(k−1)−p, d·(k−1)−p+output_padding)`` (negative: crop) and
correlate with the spatially flipped kernel in grouped OI layout ``(C_out, C_in/groups, *K)``.
Asymmetric ``(lo, hi)`` padding is the same call with ``(d·(k−1)−lo, d·(k−1)−hi+output_padding)``.
String padding ``same`` / ``valid`` goes to ``jax.lax.conv_transpose(padding="SAME" | "VALID",
transpose_kernel=True)`` as JAX users write it (the torch weight is then the forward convolution's
OI kernel); that function takes no groups. JAX has no unbatched inputs and no output_size.
JAX checks shapes, not PyTorch's validity rules: whatever it accepts is reported as accepted.
"""

from __future__ import annotations

import jax
import numpy as np

# float64 cases must run in float64: without this flag JAX silently computes them in float32.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after the x64 switch, as JAX documents)

from conformance import layouts  # noqa: E402
from conformance.adapters import Adapter  # noqa: E402
from conformance.cases import Case  # noqa: E402
from conformance.spec import ConvParams  # noqa: E402


def jax_weight(weight: np.ndarray, params: ConvParams) -> np.ndarray:
    """The flipped ``(C_out, C_in/groups, *K)`` kernel a JAX user passes as ``rhs``.

    A grouping that breaks a divisibility rule has no value-preserving conversion; the kernel then
    gets the shape a JAX user would write and JAX judges the configuration.
    """
    g = params.groups
    if g >= 1 and params.in_channels % g == 0 and params.out_channels % g == 0:
        oi = layouts.torch_weight_to_grouped_oi(weight, g)
    else:
        shape = (params.out_channels, params.in_channels // max(g, 1), *params.kernel_size)
        oi = np.resize(weight, shape)
    return np.ascontiguousarray(np.flip(oi, axis=tuple(range(2, oi.ndim))))


def torch_grad_weight(grad: np.ndarray, params: ConvParams) -> np.ndarray:
    """Inverse of :func:`jax_weight` for a valid configuration (a permutation: exact)."""
    unflipped = np.flip(grad, axis=tuple(range(2, grad.ndim)))
    return layouts.grouped_oi_weight_to_torch(unflipped, params.groups)


def conv_transpose(x: jax.Array, rhs: jax.Array, bias: jax.Array | None, params: ConvParams) -> jax.Array:
    """The transposed convolution on JAX arrays; ``rhs`` as made by :func:`jax_weight`."""
    padding = [
        (d * (k - 1) - lo, d * (k - 1) - hi + op)
        for k, d, (lo, hi), op in zip(
            params.kernel_size, params.dilation, params.padding_pairs, params.output_padding
        )
    ]
    spatial = "DHW"[-params.ndim :]
    out = jax.lax.conv_general_dilated(
        x,
        rhs,
        window_strides=(1,) * params.ndim,
        padding=padding,
        lhs_dilation=params.stride,
        rhs_dilation=params.dilation,
        dimension_numbers=(f"NC{spatial}", f"OI{spatial}", f"NC{spatial}"),
        feature_group_count=params.groups,
    )
    return _add_bias(out, bias, params)


def _add_bias(out: jax.Array, bias: jax.Array | None, params: ConvParams) -> jax.Array:
    return out if bias is None else out + bias.reshape(-1, *(1,) * params.ndim)


def conv_transpose_string(
    x: jax.Array, weight: jax.Array, bias: jax.Array | None, params: ConvParams
) -> jax.Array:
    """``padding: same | valid`` through ``jax.lax.conv_transpose``; ``weight`` in torch's layout."""
    spatial = "DHW"[-params.ndim :]
    out = jax.lax.conv_transpose(
        x,
        weight,
        params.stride,
        params.padding_mode.upper(),
        rhs_dilation=params.dilation,
        dimension_numbers=(f"NC{spatial}", f"OI{spatial}", f"NC{spatial}"),
        transpose_kernel=True,
    )
    return _add_bias(out, bias, params)


class JaxLax(Adapter):
    name = "jax"
    api = "jax.lax.conv_general_dilated / conv_transpose"
    distribution = "jax"
    expresses_out_channels = True  # the kernel's O axis is C_out
    takes_padding_pairs = True
    padding_modes = frozenset({"same", "valid"})

    def version(self) -> str:
        return jax.__version__

    def inexpressible(self, case: Case) -> str | None:
        if case.params.padding_mode is not None and case.params.groups != 1:
            return "jax.lax.conv_transpose (the function that takes padding='SAME' / 'VALID') takes no groups"
        return super().inexpressible(case)

    @staticmethod
    def _primals(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams) -> list:
        w = weight if params.padding_mode is not None else jax_weight(weight, params)
        return [jnp.asarray(a) for a in (x, w, bias) if a is not None]

    @staticmethod
    def _fn(params: ConvParams, has_bias: bool):
        call = conv_transpose_string if params.padding_mode is not None else conv_transpose
        return lambda *args: call(args[0], args[1], args[2] if has_bias else None, params)

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        return np.asarray(self._fn(params, bias is not None)(*self._primals(x, weight, bias, params)))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        _, pullback = jax.vjp(self._fn(params, bias is not None), *self._primals(x, weight, bias, params))
        grads = [np.asarray(g) for g in pullback(jnp.asarray(grad_out))]
        grad_bias = grads[2] if bias is not None else None
        grad_weight = grads[1] if params.padding_mode is not None else torch_grad_weight(grads[1], params)
        return grads[0], grad_weight, grad_bias
