"""conformance.oracle against jax.lax in float64 for what PyTorch cannot express: string padding
(``same`` / ``valid`` through ``lax.conv_transpose``) and asymmetric (lo, hi) padding (through
``lax.conv_general_dilated``). Runs in the jax-onnxruntime environment (skips without JAX)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from conformance import oracle
from tests.helpers.hypothesis_helpers import ConvConfig, asymmetric_configs


@pytest.mark.parametrize("mode", ["same", "valid"])
@pytest.mark.parametrize(
    ("kernel", "stride", "dilation"), [(3, 2, 1), (4, 2, 1), (2, 3, 1), (1, 2, 1), (3, 1, 2), (5, 3, 1)]
)
def test_string_padding_matches_jax_float64(mode: str, kernel: int, stride: int, dilation: int) -> None:
    """'same' / 'valid' are jax.lax.conv_transpose's (the TensorFlow convention), in float64."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(kernel * 100 + stride * 10 + dilation)
    x = rng.standard_normal((2, 3, 5, 4))
    w = rng.standard_normal((3, 2, kernel, kernel))  # torch layout (C_in, C_out, *K)
    got = oracle.conv_transpose(x, w, None, stride, mode, 0, 1, dilation)
    # transpose_kernel=True: the gradient of a forward convolution whose kernel (O=C_in, I=C_out)
    # is this weight, which is torch's transposed convolution.
    want = jax.lax.conv_transpose(
        x,
        w,
        (stride, stride),
        mode.upper(),
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        transpose_kernel=True,
    )
    assert got.shape == want.shape, (
        f"{mode}, k={kernel}, s={stride}, d={dilation}: {got.shape} vs {want.shape}"
    )
    np.testing.assert_allclose(
        got, np.asarray(want), rtol=1e-12, atol=1e-12, err_msg=f"{mode}, k={kernel}, s={stride}, d={dilation}"
    )


@settings(max_examples=60, deadline=None)
@given(asymmetric_configs())
def test_asymmetric_padding_matches_jax_float64(config: ConvConfig) -> None:
    """Explicit (lo, hi) crops as JAX users write them: conv_general_dilated on the zero-inserted input
    padded by (d·(k−1) − lo, d·(k−1) − hi + op) with the flipped kernel."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    x, w, b = config.arrays()
    got = oracle.conv_transpose(x, w, b, **config.kwargs())
    g = config.groups
    cin_g, cout_g = config.in_channels // g, config.out_channels // g
    oi = w.reshape(g, cin_g, cout_g, *config.kernel_size).swapaxes(1, 2)
    oi = oi.reshape(g * cout_g, cin_g, *config.kernel_size)
    rhs = np.flip(oi, axis=tuple(range(2, oi.ndim)))
    spatial = "DHW"[-config.ndim :]
    want = jax.lax.conv_general_dilated(
        x,
        rhs,
        (1,) * config.ndim,
        [
            (d * (k - 1) - lo, d * (k - 1) - hi + op)
            for (lo, hi), k, d, op in zip(
                config.padding, config.kernel_size, config.dilation, config.output_padding
            )
        ],
        lhs_dilation=config.stride,
        rhs_dilation=config.dilation,
        dimension_numbers=(f"NC{spatial}", f"OI{spatial}", f"NC{spatial}"),
        feature_group_count=g,
    )
    if b is not None:
        want = want + b.reshape(-1, *(1,) * config.ndim)
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-10, atol=1e-10, err_msg=f"{config} vs jax")
