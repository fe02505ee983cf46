"""The comparator: judges an implementation's output against the oracle's.

Tolerances are derived from the numerics, not tuned. Any summation order of ``n`` products in a
format with unit roundoff ``u`` errs by at most about ``n·u·B`` where ``B = |x| ⊛ |w| + |b|`` is
the per-element magnitude bound; rounding errors of real kernels are not adversarial and grow like
``sqrt(n)``, so the allowance is ``u·(3·sqrt(n) + 2)·B`` (the ``+2`` covers rounding the result
and the bias add), plus the same for the float64 oracle itself. This passes a correct float32,
float16 or bfloat16 implementation, and fails a wrong index, a dropped tap (an error of order
``B/n``, far above ``u·sqrt(n)·B`` in float32) or a float32 result computed in half precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from conformance.cases import Tolerance
from conformance.dtypes import UNIT_ROUNDOFF, dtype_name


def tolerance(
    bound: np.ndarray, dtype: str, reduction_length: int, override: Tolerance | None = None
) -> np.ndarray:
    """Per-element allowed absolute error for a result of ``dtype``."""
    override = override or Tolerance()
    growth = 3.0 * math.sqrt(reduction_length) + 2.0
    unit = UNIT_ROUNDOFF[dtype] + UNIT_ROUNDOFF["float64"]
    return override.factor * unit * growth * bound + override.atol


@dataclass
class Comparison:
    ok: bool
    message: str
    actual_shape: list[int] | None = None
    actual_dtype: str | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    max_err_over_bound: float | None = None
    tolerance_at_worst: float | None = None
    max_err_over_tolerance: float | None = None  # 1 is the tolerance: the headroom of a pass
    mismatched: int | None = None
    elements: int | None = None
    worst_index: list[int] | None = None


def shape_diff(expected: tuple[int, ...], actual: tuple[int, ...]) -> str:
    if len(expected) != len(actual):
        return f"rank {len(actual)} instead of {len(expected)}"
    axes = [f"axis {i}: {a} vs {e}" for i, (e, a) in enumerate(zip(expected, actual)) if e != a]
    return ", ".join(axes)


class Expected:
    """What one check's results are judged against: the oracle's values, their magnitude bound and
    the tolerance, with the masks every comparison needs, worked out once per case and check and
    shared by every adapter."""

    def __init__(
        self,
        values: np.ndarray,
        bound: np.ndarray,
        dtype: str,
        reduction_length: int,
        override: Tolerance | None = None,
    ) -> None:
        self.values, self.bound, self.dtype = values, bound, dtype
        self.tolerance = tolerance(bound, dtype, reduction_length, override)
        self.magnitude = np.abs(values)
        # where a divisor is zero, err/divisor is 0 for no error and inf for any
        self.divisors = []
        for divisor in (self.tolerance, self.magnitude, bound):
            positive = divisor > 0
            self.divisors.append((divisor, positive, bool(positive.all())))

    def ratios(self, err: np.ndarray) -> list[np.ndarray]:
        """err / tolerance, err / |expected|, err / bound."""
        out = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for divisor, positive, all_positive in self.divisors:
                if all_positive:  # the usual case, in a third of the time: no mask to apply
                    out.append(err / divisor)
                    continue
                ratio = np.divide(err, divisor, out=np.zeros_like(err), where=positive)
                ratio[~positive & (err > 0)] = np.inf
                out.append(ratio)
        return out


def compare(
    expected: np.ndarray,
    bound: np.ndarray,
    actual: object,
    dtype: str,
    reduction_length: int,
    override: Tolerance | None = None,
) -> Comparison:
    """Compare ``actual`` with the float64 ``expected``: shape, dtype, then values."""
    return compare_to(Expected(expected, bound, dtype, reduction_length, override), actual)


def compare_to(target: Expected, actual: object) -> Comparison:
    """Compare ``actual`` with ``target`` (see :func:`compare`)."""
    expected, dtype = target.values, target.dtype
    if not isinstance(actual, np.ndarray):
        return Comparison(False, f"returned {type(actual).__name__}, not a NumPy array")
    actual_shape = list(actual.shape)
    actual_dtype = dtype_name(actual.dtype)
    if actual.shape != expected.shape:
        return Comparison(
            False,
            f"shape {tuple(actual.shape)} instead of {tuple(expected.shape)} "
            f"({shape_diff(expected.shape, actual.shape)})",
            actual_shape,
            actual_dtype,
        )
    try:
        values = actual.astype(np.float64)
    except (TypeError, ValueError):
        return Comparison(
            False, f"returned dtype {actual.dtype} that is not a float", actual_shape, actual_dtype
        )
    err = np.subtract(values, expected)
    np.abs(err, out=err)
    tol = target.tolerance
    # NaN and inf errors count as mismatches (they are never <= a tolerance)
    mismatched = err.size - int(np.count_nonzero(err <= tol))
    if mismatched:  # a NaN where the oracle has a number is an infinite error
        err = np.where(np.isnan(values) & ~np.isnan(expected), np.inf, err)
    over_tol, rel, over_bound = target.ratios(err)
    # (the worst element by its flat index: every array here is the oracle's shape, in C order)
    worst = int(over_tol.argmax()) if err.size else 0
    result = Comparison(
        ok=mismatched == 0 and actual_dtype == dtype,
        message="",
        actual_shape=actual_shape,
        actual_dtype=actual_dtype,
        max_abs_err=float(err.max()) if err.size else 0.0,
        max_rel_err=float(rel.max()) if err.size else 0.0,
        max_err_over_bound=float(over_bound.max()) if err.size else 0.0,
        tolerance_at_worst=float(tol.item(worst)) if err.size else 0.0,
        max_err_over_tolerance=float(over_tol.item(worst)) if err.size else 0.0,
        mismatched=mismatched,
        elements=int(err.size),
        worst_index=[int(i) for i in np.unravel_index(worst, err.shape)] if err.size else [],
    )
    problems = []
    if actual_dtype != dtype:
        problems.append(f"dtype {actual_dtype} instead of {dtype}")
    if mismatched:
        problems.append(
            f"{mismatched} of {err.size} elements outside tolerance; worst at {tuple(result.worst_index)}: "
            f"got {values.item(worst):.6g}, expected {expected.item(worst):.6g} "
            f"(|err| {err.item(worst):.3g} > tol {tol.item(worst):.3g}, "
            f"err/bound {result.max_err_over_bound:.3g})"
        )
    result.message = "; ".join(problems)
    return result
