"""JAX's ``jax.lax.conv_general_dilated`` written as a transposed convolution, channels-first.

JAX has no grouped transposed-convolution function (``jax.lax.conv_transpose`` takes no groups), so
JAX users write it as the adjoint of a strided convolution: zero-insert the input by the stride
(``lhs_dilation``), pad each axis by ``(d·(k−1)−p, d·(k−1)−p+output_padding)`` (negative: crop) and
correlate with the spatially flipped kernel in grouped OI layout ``(C_out, C_in/groups, *K)``.
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
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, d, p, op in zip(params.kernel_size, params.dilation, params.padding, params.output_padding)
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
    if bias is None:
        return out
    return out + bias.reshape(-1, *(1,) * params.ndim)


class JaxLax(Adapter):
    name = "jax"
    distribution = "jax"
    expresses_out_channels = True  # the kernel's O axis is C_out

    def version(self) -> str:
        return jax.__version__

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        out = conv_transpose(
            jnp.asarray(x),
            jnp.asarray(jax_weight(weight, params)),
            None if bias is None else jnp.asarray(bias),
            params,
        )
        return np.asarray(out)

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        primals = [jnp.asarray(x), jnp.asarray(jax_weight(weight, params))]
        if bias is not None:
            primals.append(jnp.asarray(bias))

        def fn(*args: jax.Array) -> jax.Array:
            return conv_transpose(args[0], args[1], args[2] if bias is not None else None, params)

        _, pullback = jax.vjp(fn, *primals)
        grads = [np.asarray(g) for g in pullback(jnp.asarray(grad_out))]
        grad_bias = grads[2] if bias is not None else None
        return grads[0], torch_grad_weight(grads[1], params), grad_bias
