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
from typing import Any

import numpy as np

from conformance.cases import Tolerance
from conformance.dtypes import UNIT_ROUNDOFF, dtype_name


def tolerance(
    bound: np.ndarray, dtype: str, reduction_length: int, override: Tolerance | None = None
) -> np.ndarray:
    """Per-element allowed absolute error for a result of ``dtype``."""
    override = override or Tolerance()
    return _scaled(tolerance_scale(dtype, reduction_length, override), bound, override.atol)


def tolerance_scale(dtype: str, reduction_length: int, override: Tolerance | None = None) -> float:
    """The factor :func:`tolerance` multiplies the magnitude bound by."""
    override = override or Tolerance()
    growth = 3.0 * math.sqrt(reduction_length) + 2.0
    unit = UNIT_ROUNDOFF[dtype] + UNIT_ROUNDOFF["float64"]
    return override.factor * unit * growth


def _scaled(scale: float, bound: np.ndarray, atol: float) -> np.ndarray:
    # (adding a zero atol would change no bit, bounds being >= +0: it is left out)
    scaled = scale * bound
    return scaled + atol if atol else scaled


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
    the tolerance, worked out once per case and check and shared by every adapter.

    ``scale`` and ``positive`` are what :meth:`facts` gives, stored with the oracle's arrays
    (:mod:`conformance.reference_cache`): a case read back from there skips working them out."""

    def __init__(
        self,
        values: np.ndarray,
        bound: np.ndarray,
        dtype: str,
        reduction_length: int | None = None,
        override: Tolerance | None = None,
        scale: float | None = None,
        positive: tuple[bool, bool, bool] | None = None,
    ) -> None:
        self.values, self.bound, self.dtype = values, bound, dtype
        override = override or Tolerance()
        if scale is None:
            if reduction_length is None:
                raise TypeError("Expected needs the reduction length, or the scale it gives")
            scale = tolerance_scale(dtype, reduction_length, override)
        self.scale = scale
        self.tolerance = _scaled(scale, bound, override.atol)  # (what tolerance() gives, bit for bit)
        self.magnitude = np.abs(values)
        divisors = (self.tolerance, self.magnitude, bound)
        if positive is None:
            # where a divisor is zero, err/divisor is 0 for no error and inf for any
            positive = tuple(bool(d.size == 0 or np.minimum.reduce(d, axis=None) > 0) for d in divisors)
        self.positive: tuple[bool, ...] = tuple(positive)
        self.divisors = list(zip(divisors, self.positive))

    def facts(self) -> dict[str, Any]:
        """What a read-back Expected is given instead of working it out (see the class)."""
        return {"scale": self.scale, "positive": list(self.positive)}

    def ratios(self, err: np.ndarray) -> list[np.ndarray]:
        """err / tolerance, err / |expected|, err / bound."""
        out = []
        with np.errstate(divide="ignore", invalid="ignore"):
            for divisor, all_positive in self.divisors:
                if all_positive:  # the usual case, in a third of the time: no mask to apply
                    out.append(err / divisor)
                    continue
                positive = divisor > 0
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
    if actual.dtype in _EXACT_IN_FLOAT64:  # subtracted in float64 as they are: no float64 copy first
        values = actual
        err = np.subtract(actual, expected, dtype=np.float64)
    else:
        try:
            values = actual.astype(np.float64)
        except (TypeError, ValueError):
            return Comparison(
                False, f"returned dtype {actual.dtype} that is not a float", actual_shape, actual_dtype
            )
        err = np.subtract(values, expected)
    np.abs(err, out=err)
    tol = target.tolerance
    over_tol, rel, over_bound = target.ratios(err)
    # (the worst element by its flat index: every array here is the oracle's shape, in C order)
    worst = int(over_tol.argmax()) if err.size else 0
    mismatched = 0
    # Every err <= tol where the largest err/tol is clearly below 1 (a ratio that rounds to at most
    # 1 - 2**-20 is one of an err below its tol; where tol is 0, err/tol is 0 only for err 0): the
    # elements are counted only where that does not settle it (a NaN's ratio is NaN, never below).
    if err.size and not over_tol.item(worst) <= _CLEARLY_BELOW_ONE:
        # NaN and inf errors count as mismatches (they are never <= a tolerance)
        mismatched = err.size - int(np.count_nonzero(err <= tol))
        if mismatched:  # a NaN where the oracle has a number is an infinite error
            err = np.where(np.isnan(values) & ~np.isnan(expected), np.inf, err)
            over_tol, rel, over_bound = target.ratios(err)
            worst = int(over_tol.argmax())
    if err.size:
        worst_index = _unravel(worst, err.shape)
        largest = np.maximum.reduce  # (what ndarray.max() calls, without its Python wrapper)
        max_abs_err = float(largest(err, axis=None))
        max_rel_err = float(largest(rel, axis=None))
        max_err_over_bound = float(largest(over_bound, axis=None))
        tolerance_at_worst = float(tol.item(worst))
        max_err_over_tolerance = float(over_tol.item(worst))
    else:
        worst, worst_index = 0, []
        max_abs_err = max_rel_err = max_err_over_bound = tolerance_at_worst = max_err_over_tolerance = 0.0
    result = Comparison(
        mismatched == 0 and actual_dtype == dtype,
        "",
        actual_shape,
        actual_dtype,
        max_abs_err,
        max_rel_err,
        max_err_over_bound,
        tolerance_at_worst,
        max_err_over_tolerance,
        mismatched,
        int(err.size),
        worst_index,
    )
    problems = []
    if actual_dtype != dtype:
        problems.append(f"dtype {actual_dtype} instead of {dtype}")
    if mismatched:
        problems.append(
            f"{mismatched} of {err.size} elements outside tolerance; worst at {tuple(worst_index)}: "
            f"got {float(values.item(worst)):.6g}, expected {expected.item(worst):.6g} "
            f"(|err| {err.item(worst):.3g} > tol {tol.item(worst):.3g}, "
            f"err/bound {result.max_err_over_bound:.3g})"
        )
    result.message = "; ".join(problems)
    return result


_CLEARLY_BELOW_ONE = 1.0 - 2.0**-20

#: dtypes that NumPy subtracts from a float64 array exactly as their float64 copies
_EXACT_IN_FLOAT64 = frozenset(np.dtype(t) for t in ("float16", "float32", "float64"))


def _unravel(flat: int, shape: tuple[int, ...]) -> list[int]:
    """``np.unravel_index(flat, shape)`` (C order) as a list, without its per-call cost."""
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    index.reverse()
    return index
