"""conformance.compare: a correct implementation passes in every dtype; planted bugs are caught."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings

from conformance import compare, oracle, spec
from conformance.cases import Tolerance
from conformance.dtypes import UNIT_ROUNDOFF, numpy_dtype
from tests.helpers.hypothesis_helpers import ConvConfig, conv_configs

DTYPES = ("float32", "float16", "bfloat16", "float64")


def cfg(
    input_shape: tuple[int, ...],
    out_channels: int,
    kernel: tuple[int, ...],
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
) -> ConvConfig:
    n = len(kernel)
    return ConvConfig(
        n,
        input_shape,
        out_channels,
        kernel,
        (stride,) * n,
        (padding,) * n,
        (output_padding,) * n,
        (dilation,) * n,
        groups,
        bias,
    )


CONFIGS = {
    "big-reduction-cin32-k5x5": cfg((2, 32, 6, 6), 8, (5, 5), stride=2, padding=1, output_padding=1),
    "cin64-k5x5-pad2": cfg((1, 64, 4, 4), 4, (5, 5), padding=2),
    "cin256-k3x3": cfg((1, 256, 3, 3), 4, (3, 3)),
    "grouped-1d-dilated": cfg(
        (1, 8, 5), 6, (3,), stride=2, padding=1, output_padding=1, dilation=2, groups=2
    ),
    "depthwise-2d": cfg((2, 6, 5, 5), 12, (3, 3), stride=2, groups=6),
    "3d": cfg((1, 4, 3, 3, 3), 4, (3, 3, 3), stride=2, padding=1, output_padding=1, groups=2),
    "no-bias": cfg((1, 16, 4, 4), 4, (4, 4), stride=2, padding=1, bias=False),
}


class Run:
    """One configuration's inputs in ``dtype``, the oracle's answer and its magnitude bound."""

    def __init__(self, config: ConvConfig, dtype: str, seed: int = 0) -> None:
        self.config, self.dtype = config, dtype
        rng = np.random.default_rng(seed)
        draw = (
            rng.standard_normal(s).astype(numpy_dtype(dtype))
            for s in (config.input_shape, config.weight_shape)
        )
        self.x, self.w = draw
        self.b = rng.standard_normal(config.out_channels).astype(numpy_dtype(dtype)) if config.bias else None
        self.expected = oracle.conv_transpose(self.x, self.w, self.b, **config.kwargs())
        self.bound = oracle.magnitude_bound(self.x, self.w, self.b, **config.kwargs())
        self.n = spec.reduction_length(config.params())

    def compare(self, actual: object, override: Tolerance | None = None) -> compare.Comparison:
        return compare.compare(self.expected, self.bound, actual, self.dtype, self.n, override)

    def torch(self, dtype: str | None = None) -> np.ndarray:
        """torch's own result, computed in ``dtype`` (default: the run's dtype)."""
        pytest.importorskip("torch")
        from conformance.adapters.torch_functional import TorchFunctional

        dt = numpy_dtype(dtype or self.dtype)
        b = None if self.b is None else self.b.astype(dt)
        return TorchFunctional().forward(self.x.astype(dt), self.w.astype(dt), b, self.config.params())

    def tolerance(self) -> np.ndarray:
        return compare.tolerance(self.bound, self.dtype, self.n)


# --- assertion helpers ----------------------------------------------------------------------------


def assert_passes(result: compare.Comparison, what: str) -> None:
    __tracebackhide__ = True
    assert result.ok, f"compare() rejected {what}: {result.message}"
    assert result.message == "", f"compare() passed {what} but left a message: {result.message!r}"
    assert result.mismatched == 0, f"compare() passed {what} with {result.mismatched} mismatches"


def assert_caught(result: compare.Comparison, what: str, *fragments: str) -> None:
    __tracebackhide__ = True
    assert not result.ok, f"compare() did not catch {what} (max err/bound {result.max_err_over_bound})"
    for fragment in fragments:
        assert fragment in result.message, (
            f"compare() message for {what} lacks {fragment!r}: {result.message!r}"
        )


# --- a correct implementation passes -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_torch_passes(name: str, dtype: str) -> None:
    run = Run(CONFIGS[name], dtype)
    actual = run.torch()
    result = run.compare(actual)
    assert_passes(result, f"torch {CONFIGS[name].op} {name} in {dtype}")
    assert result.actual_dtype == dtype and result.actual_shape == list(run.expected.shape)
    assert result.elements == run.expected.size
    assert result.max_err_over_bound is not None and result.max_err_over_bound < 3 * UNIT_ROUNDOFF[
        dtype
    ] * math.sqrt(run.n), (
        f"{name} {dtype}: err/bound {result.max_err_over_bound} larger than a correct kernel's"
    )


@settings(max_examples=12, deadline=None)
@given(conv_configs(max_size=3000, max_work=10**6, max_per_group=8))
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_passes_drawn_configs(dtype: str, config: ConvConfig) -> None:
    run = Run(config, dtype, seed=3)
    assert_passes(run.compare(run.torch()), f"torch {config} in {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_oracle_rounded_once_passes(dtype: str) -> None:
    run = Run(CONFIGS["big-reduction-cin32-k5x5"], dtype)
    assert_passes(run.compare(run.expected.astype(numpy_dtype(dtype))), f"the oracle rounded to {dtype}")


def test_negative_zero_passes() -> None:
    # stride 3 with a 1-tap kernel and no bias leaves exact zeros between the input positions
    run = Run(cfg((1, 2, 4, 4), 2, (1, 1), stride=3, bias=False), "float32")
    zeros = run.expected == 0
    assert zeros.any() and not np.signbit(run.expected[zeros]).any()
    actual = run.expected.astype(np.float32)
    actual[zeros] = -0.0
    assert np.signbit(actual).any()
    result = run.compare(actual)
    assert_passes(result, "-0.0 where the oracle has 0.0")
    assert result.max_abs_err < 1e-6


# --- planted bugs are caught -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["big-reduction-cin32-k5x5", "grouped-1d-dilated", "3d", "cin256-k3x3"])
def test_dropped_kernel_tap_is_caught(name: str) -> None:
    config = CONFIGS[name]
    run = Run(config, "float32")
    taps = list(itertools.product(*(range(k) for k in config.kernel_size)))
    for tap in (taps[0], taps[len(taps) // 2], taps[-1]):
        w = run.w.copy()
        w[(..., *tap)] = 0
        buggy = oracle.conv_transpose(run.x, w, run.b, **config.kwargs()).astype(np.float32)
        result = run.compare(buggy)
        assert_caught(result, f"dropping tap {tap} of {name}", "outside tolerance")
        affected = np.abs(buggy - run.expected) > run.tolerance()
        assert result.mismatched == int(affected.sum()), f"tap {tap}: mismatched {result.mismatched}"
        assert affected[tuple(result.worst_index)], (
            f"tap {tap}: worst_index {result.worst_index} not affected"
        )


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["big-reduction-cin32-k5x5", "cin64-k5x5-pad2", "depthwise-2d"])
def test_silent_precision_loss_is_caught(name: str, low: str) -> None:
    run = Run(CONFIGS[name], "float32")
    computed_low = run.torch(low).astype(np.float32)  # computed in half precision, returned as float32
    result = run.compare(computed_low)
    assert_caught(result, f"a float32 result computed in {low} ({name})", "outside tolerance")
    assert result.actual_dtype == "float32"
    assert result.max_err_over_bound > 10 * UNIT_ROUNDOFF["float32"] * math.sqrt(run.n)


def test_inputs_rounded_to_half_are_caught() -> None:
    run = Run(CONFIGS["cin64-k5x5-pad2"], "float32")
    x16 = run.x.astype(np.float16).astype(np.float32)
    w16 = run.w.astype(np.float16).astype(np.float32)
    actual = oracle.conv_transpose(x16, w16, run.b, **run.config.kwargs()).astype(np.float32)
    assert_caught(run.compare(actual), "inputs quantised to float16", "outside tolerance")


@pytest.mark.parametrize(
    ("dtype", "wrong"),
    [
        ("float32", "float64"),
        ("float16", "float32"),
        ("bfloat16", "float16"),
        ("float32", "bfloat16"),
        ("float64", "float32"),
    ],
)
def test_wrong_dtype_is_caught_with_right_values(dtype: str, wrong: str) -> None:
    # integer-valued inputs: the exact result is representable in every dtype
    config = CONFIGS["grouped-1d-dilated"]
    run = Run(config, dtype)
    run.x, run.w, run.b = (
        np.round(a.astype(np.float64)).astype(numpy_dtype(dtype)) for a in (run.x, run.w, run.b)
    )
    run.expected = oracle.conv_transpose(run.x, run.w, run.b, **config.kwargs())
    run.bound = oracle.magnitude_bound(run.x, run.w, run.b, **config.kwargs())
    actual = run.expected.astype(numpy_dtype(wrong))
    assert np.array_equal(actual.astype(np.float64), run.expected)
    result = run.compare(actual)
    assert_caught(result, f"a {wrong} result for a {dtype} case", f"dtype {wrong} instead of {dtype}")
    assert result.mismatched == 0 and result.max_abs_err == 0.0
    assert "outside tolerance" not in result.message


def test_integer_dtype_is_caught() -> None:
    run = Run(cfg((1, 1, 3), 1, (1,), bias=False), "float32")
    run.x[:] = 1
    run.w[:] = 2
    run.expected = oracle.conv_transpose(run.x, run.w, None)
    result = run.compare(run.expected.astype(np.int32))
    assert_caught(result, "an int32 result", "dtype int32 instead of float32")


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ((2, 8, 14, 13), "axis 3: 13 vs 14"),
        ((2, 8, 15, 14), "axis 2: 15 vs 14"),
        ((2, 4, 14, 14), "axis 1: 4 vs 8"),
        ((1, 8, 14, 14), "axis 0: 1 vs 2"),
        ((2, 8, 14, 14, 1), "rank 5 instead of 4"),
        ((8, 14, 14), "rank 3 instead of 4"),
    ],
)
def test_wrong_shape_names_the_axis(shape: tuple[int, ...], fragment: str) -> None:
    run = Run(CONFIGS["big-reduction-cin32-k5x5"], "float32")
    assert run.expected.shape == (2, 8, 14, 14)
    result = run.compare(np.zeros(shape, dtype=np.float32))
    assert_caught(result, f"shape {shape}", fragment, str(shape))
    assert result.actual_shape == list(shape) and result.actual_dtype == "float32"
    assert result.mismatched is None, "values compared despite a shape mismatch"


def test_transposed_output_is_caught() -> None:
    # square spatial dims: a layout bug keeps the shape, so only the values can catch it
    run = Run(CONFIGS["big-reduction-cin32-k5x5"], "float32")
    assert_caught(
        run.compare(run.expected.swapaxes(2, 3).astype(np.float32)), "H/W swapped", "outside tolerance"
    )


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_nan_in_output_is_caught(dtype: str) -> None:
    run = Run(CONFIGS["grouped-1d-dilated"], dtype)
    actual = run.expected.astype(numpy_dtype(dtype))
    actual[0, 4, 7] = np.nan
    result = run.compare(actual)
    assert_caught(result, f"a NaN in a {dtype} output", "1 of", "nan")
    assert result.mismatched == 1 and result.worst_index == [0, 4, 7]
    assert result.max_abs_err == math.inf


def test_inf_in_output_is_caught() -> None:
    run = Run(CONFIGS["3d"], "float32")
    actual = run.expected.astype(np.float32)
    actual[0, 1, 2, 3, 4] = -np.inf
    result = run.compare(actual)
    assert_caught(result, "an inf in the output", "outside tolerance")
    assert result.worst_index == [0, 1, 2, 3, 4]


def test_one_planted_error_stats() -> None:
    run = Run(CONFIGS["depthwise-2d"], "float32")
    actual = run.expected.astype(np.float32)
    index = (1, 7, 3, 5)
    planted = 0.01 * float(run.bound[index])
    actual[index] += planted
    result = run.compare(actual)
    assert_caught(result, "one element off by 1% of its bound", "1 of", str(index))
    assert result.mismatched == 1, result.mismatched
    assert result.elements == actual.size
    assert result.worst_index == list(index)
    assert result.max_abs_err == pytest.approx(planted, rel=1e-3)
    assert result.max_err_over_bound == pytest.approx(0.01, rel=1e-3)
    assert result.tolerance_at_worst == pytest.approx(float(run.tolerance()[index]))
    assert result.max_rel_err >= result.max_abs_err / np.abs(run.expected).max()


@pytest.mark.parametrize(("fraction", "ok"), [(0.9, True), (1.1, False)])
def test_tolerance_threshold(fraction: float, ok: bool) -> None:
    run = Run(CONFIGS["cin64-k5x5-pad2"], "float64")
    actual = run.expected.copy()
    index = (0, 2, 1, 3)
    actual[index] += fraction * run.tolerance()[index]
    result = run.compare(actual)
    assert result.ok is ok, f"error of {fraction}·tol judged ok={result.ok}: {result.message}"
    assert result.worst_index == list(index)


def test_override_widens_the_tolerance() -> None:
    run = Run(CONFIGS["cin64-k5x5-pad2"], "float32")
    actual = run.expected.astype(np.float32)
    index = (0, 1, 2, 2)
    actual[index] += 5 * run.tolerance()[index]
    assert_caught(run.compare(actual), "an error of 5·tol", "outside tolerance")
    assert_passes(run.compare(actual, Tolerance(factor=6.0)), "an error of 5·tol with factor 6")
    assert_passes(
        run.compare(actual, Tolerance(atol=5 * float(run.tolerance()[index]))), "an error of 5·tol, atol"
    )


def test_tolerance_formula() -> None:
    bound = np.array([0.0, 1.0, 2.0])
    tol = compare.tolerance(bound, "float32", 16)
    unit = UNIT_ROUNDOFF["float32"] + UNIT_ROUNDOFF["float64"]
    np.testing.assert_allclose(tol, unit * (3 * 4 + 2) * bound, rtol=1e-15)
    np.testing.assert_allclose(compare.tolerance(bound, "float32", 16, Tolerance(2.0, 0.5)), 2 * tol + 0.5)
    assert (compare.tolerance(bound, "bfloat16", 16)[1:] > compare.tolerance(bound, "float16", 16)[1:]).all()
    assert (compare.tolerance(bound, "float32", 64)[1:] > tol[1:]).all(), (
        "tolerance must grow with the reduction"
    )


def test_correctly_rounded_float16_subnormal_passes_and_a_wrong_one_fails() -> None:
    """Below 2**-14 float16 values are 2**-24 apart whatever their size: a correctly rounded result
    errs by up to half of that, which u·(3·sqrt(n)+2)·B alone did not allow (found by fuzzing Lucid:
    116·2**-24 for 115.6·2**-24, with B about 6.9e-6). Where B = 0 the result must still be 0."""
    eta = 2.0**-24
    expected = np.array([[[-115.59 * eta, 0.0]]])
    bound = np.array([[[115.59 * eta, 0.0]]])
    rounded = expected.astype(np.float16)
    assert float(rounded[0, 0, 0]) == -116 * eta
    assert_passes(compare.compare(expected, bound, rounded, "float16", 1), "a correctly rounded subnormal")
    wrong = rounded.copy()
    wrong[0, 0, 0] = -120 * eta
    assert_caught(compare.compare(expected, bound, wrong, "float16", 1), "four subnormal steps off", "1 of 2")
    stray = rounded.copy()
    stray[0, 0, 1] = eta
    assert_caught(compare.compare(expected, bound, stray, "float16", 1), "a subnormal where B = 0", "1 of 2")


def test_not_an_array_is_caught() -> None:
    run = Run(CONFIGS["grouped-1d-dilated"], "float32")
    result = run.compare(run.expected.tolist())
    assert_caught(result, "a list instead of an array", "list", "not a NumPy array")


def test_zero_size_and_exact_zero_bound() -> None:
    # all-zero inputs: bound 0, tolerance 0, so the result must be exactly 0
    expected = np.zeros((1, 2, 3))
    result = compare.compare(expected, expected, np.zeros((1, 2, 3), np.float32), "float32", 4)
    assert_passes(result, "exact zeros")
    result = compare.compare(expected, expected, np.full((1, 2, 3), 1e-30, np.float32), "float32", 4)
    assert_caught(result, "a tiny error where the bound is 0", "6 of 6")


def test_ratios_at_zero_divisors_are_zero_without_error_and_inf_with_one() -> None:
    """err / |expected|, err / bound and err / tolerance where the divisor is exactly 0: no error
    there is a ratio of 0 (not 0/0), any error an infinite one."""
    expected = np.array([[[0.0, 1.5, 0.0, -2.0]]])
    bound = np.array([[[0.0, 2.0, 0.0, 3.0]]])
    exact = compare.compare(expected, bound, expected.astype(np.float32), "float32", 4)
    assert_passes(exact, "zeros where the bound is 0")
    assert (exact.max_rel_err, exact.max_err_over_bound, exact.max_err_over_tolerance) == (0.0, 0.0, 0.0)
    off = expected.astype(np.float32)
    off[0, 0, 2] = 1e-30
    caught = compare.compare(expected, bound, off, "float32", 4)
    assert_caught(caught, "a tiny error where the bound is 0", "1 of 4")
    assert math.isinf(caught.max_rel_err) and math.isinf(caught.max_err_over_bound), caught
    assert math.isinf(caught.max_err_over_tolerance) and caught.worst_index == [0, 0, 2], caught


def test_errors_at_the_tolerance_edge_are_counted_exactly() -> None:
    """An error of exactly the tolerance passes and one a rounding step above it fails, however
    err/tol rounds: the count of elements within tolerance is never skipped for a ratio near 1."""
    expected = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    bound = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    tol = compare.tolerance(bound, "float64", 4)
    for k in range(4):
        at = expected.copy()
        err = tol[0, 0, k]
        at[0, 0, k] = expected[0, 0, k] + err
        if np.abs(at - expected)[0, 0, k] > err:  # (the sum rounded up: come back below)
            at[0, 0, k] = np.nextafter(at[0, 0, k], -np.inf)
        judged = compare.compare(expected, bound, at, "float64", 4)
        assert judged.ok and judged.mismatched == 0, (k, judged)
        above = at.copy()
        above[0, 0, k] = np.nextafter(at[0, 0, k], np.inf)
        judged = compare.compare(expected, bound, above, "float64", 4)
        assert not judged.ok and judged.mismatched == 1 and judged.worst_index == [0, 0, k], (k, judged)
        assert judged.max_err_over_tolerance >= 1.0, judged
