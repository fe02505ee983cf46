"""Deterministic inputs for a case: x, weight and bias drawn from the case's seed and distribution.

Values are drawn in float64 and rounded once to the case's dtype; the oracle then computes on
exactly those rounded values, so input quantisation never counts against an implementation.
x and weight get the case's memory layout (:func:`conformance.layouts.with_layout`): the values
(and so the oracle's result) are the layout's business of no one but the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conformance.cases import Case
from conformance.dtypes import numpy_dtype
from conformance.layouts import with_layout


@dataclass(frozen=True)
class Inputs:
    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None


def _draw(rng: np.random.Generator, shape: tuple[int, ...], values: str) -> np.ndarray:
    if values == "normal":
        return rng.standard_normal(shape)
    if values == "uniform":
        return rng.uniform(-1.0, 1.0, shape)
    if values == "integers":
        # Small integers: every partial sum is exact in float32 (and in float16 up to 2048).
        return rng.integers(-2, 3, shape).astype(np.float64)
    raise ValueError(f"unknown value distribution {values!r}")


def draw_inputs(case: Case) -> Inputs:
    """x, weight and bias as drawn, C-contiguous: :func:`make_inputs` before the case's layout."""
    rng = np.random.default_rng(case.seed)
    dtype = numpy_dtype(case.dtype)
    x = _draw(rng, case.input_shape, case.values).astype(dtype)
    weight = _draw(rng, case.params.weight_shape(), case.values).astype(dtype)
    bias = _draw(rng, (case.params.out_channels,), case.values).astype(dtype) if case.params.bias else None
    return Inputs(x, weight, bias)


def laid_out(case: Case, drawn: Inputs) -> Inputs:
    """``drawn`` with the case's memory layout: the same values, other strides."""
    return Inputs(
        with_layout(drawn.x, case.layout, channel_axis=1 if case.batched else 0),
        with_layout(drawn.weight, case.layout),
        drawn.bias,
    )


def make_inputs(case: Case) -> Inputs:
    return laid_out(case, draw_inputs(case))


def make_cotangent(case: Case) -> np.ndarray:
    """The output cotangent for gradient checks: its own stream of the case's seed, in the case's dtype."""
    shape = case.expected_shape
    if shape is None:
        raise ValueError(f"case {case.id!r} is invalid and has no output to differentiate")
    rng = np.random.default_rng([case.seed, 1])
    return _draw(rng, shape, case.values).astype(numpy_dtype(case.dtype))
