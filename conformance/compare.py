"""The comparator: judges an implementation's output against the oracle's.

Tolerances are derived from the numerics, not tuned. Any summation order of ``n`` products in a
format with unit roundoff ``u`` errs by at most about ``n·u·B`` where ``B = |x| ⊛ |w| + |b|`` is
the per-element magnitude bound; rounding errors of real kernels are not adversarial and grow like
``sqrt(n)``, so the allowance is ``u·(3·sqrt(n) + 2)·B`` (the ``+2`` covers rounding the result
and the bias add), plus the same for the float64 oracle itself. In the subnormal range rounding
errs by up to half the smallest subnormal ``η`` whatever ``B`` is, so where ``B > 0`` the allowance
has an absolute part ``η/2·(3·sqrt(n) + 2)`` too: without it a correctly rounded float16 result
below 2**-14 could fail (found by fuzzing Lucid: 116·2**-24 for 115.6·2**-24). Where ``B = 0`` every
product is exactly 0 and so must the result be. This passes a correct float32, float16 or bfloat16
implementation, and fails a wrong index, a dropped tap (an error of order ``B/n``, far above
``u·sqrt(n)·B`` in float32) or a float32 result computed in half precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from conformance.cases import Tolerance
from conformance.dtypes import SMALLEST_SUBNORMAL, UNIT_ROUNDOFF, dtype_name


def tolerance(
    bound: np.ndarray, dtype: str, reduction_length: int, override: Tolerance | None = None
) -> np.ndarray:
    """Per-element allowed absolute error for a result of ``dtype``."""
    override = override or Tolerance()
    allowed = tolerance_scale(dtype, reduction_length, override) * bound
    np.add(allowed, underflow_allowance(dtype, reduction_length, override), out=allowed, where=bound > 0)
    # (adding a zero atol would change no bit, bounds being >= +0: it is left out)
    return allowed + override.atol if override.atol else allowed


def tolerance_scale(dtype: str, reduction_length: int, override: Tolerance | None = None) -> float:
    """The factor :func:`tolerance` multiplies the magnitude bound by."""
    override = override or Tolerance()
    unit = UNIT_ROUNDOFF[dtype] + UNIT_ROUNDOFF["float64"]
    return override.factor * unit * _growth(reduction_length)


def underflow_allowance(dtype: str, reduction_length: int, override: Tolerance | None = None) -> float:
    """The absolute part of the allowance where the magnitude bound is positive (module docstring)."""
    override = override or Tolerance()
    half_step = (SMALLEST_SUBNORMAL[dtype] + SMALLEST_SUBNORMAL["float64"]) / 2
    return override.factor * half_step * _growth(reduction_length)


def _growth(reduction_length: int) -> float:
    return 3.0 * math.sqrt(reduction_length) + 2.0


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

    An error is divided by three arrays, stacked in :attr:`divisors` (3, *shape): the tolerance,
    |values| and the bound, so that one division and one reduction serve all three ratios. A target
    read back from the reference cache (:mod:`conformance.reference_cache`) is made by
    :meth:`stored` from its values, divisors, scale and which divisors are positive everywhere,
    with nothing worked out again."""

    def __init__(
        self,
        values: np.ndarray,
        bound: np.ndarray,
        dtype: str,
        reduction_length: int,
        override: Tolerance | None = None,
    ) -> None:
        scale = tolerance_scale(dtype, reduction_length, override)
        divisors = np.empty((3, *values.shape))
        divisors[0] = tolerance(bound, dtype, reduction_length, override)
        np.abs(values, out=divisors[1])
        divisors[2] = bound
        # where a divisor is zero, err/divisor is 0 for no error and inf for any
        positive = tuple(bool(d.size == 0 or np.minimum.reduce(d, axis=None) > 0) for d in divisors)
        self._set(values, divisors, dtype, scale, positive)

    @classmethod
    def stored(
        cls, values: np.ndarray, divisors: np.ndarray, dtype: str, scale: float, positive: tuple[bool, ...]
    ) -> Expected:
        """The target whose divisors, scale and positivity were worked out before (and stored)."""
        target = cls.__new__(cls)
        target._set(values, divisors, dtype, scale, tuple(positive))
        return target

    def _set(
        self, values: np.ndarray, divisors: np.ndarray, dtype: str, scale: float, positive: tuple[bool, ...]
    ) -> None:
        self.values, self.divisors, self.dtype, self.scale = values, divisors, dtype, scale
        self.tolerance, self.magnitude, self.bound = divisors
        self.positive = positive
        self.all_positive = all(positive)
        self._zero: list[np.ndarray | None] = [None, None, None]  # where a divisor is not positive

    def divide(self, err: np.ndarray, out: np.ndarray) -> None:
        """err / tolerance, err / |expected|, err / bound into ``out`` (3, *shape)."""
        if self.all_positive:  # the usual case: no zero to divide by (nor 0/0), no mask to apply
            np.divide(err, self.divisors, out=out)
            return
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(err, self.divisors, out=out)
            for i, positive in enumerate(self.positive):
                if not positive:
                    zero = self._zero[i]
                    if zero is None:
                        zero = self._zero[i] = ~(self.divisors[i] > 0)
                    np.copyto(out[i], np.where(err > 0, np.inf, 0.0), where=zero)


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
    expected = target.values
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
    else:
        try:
            values = actual.astype(np.float64)
        except (TypeError, ValueError):
            return Comparison(
                False, f"returned dtype {actual.dtype} that is not a float", actual_shape, actual_dtype
            )
    if not expected.size:
        return _judged(target, values, actual_shape, actual_dtype, None, 0, 0)
    # |err| and its three ratios (target.divide) in one array: one reduction gives their maxima
    work = np.empty((4, *expected.shape))
    err, over_tol = work[0], work[1]
    if values.dtype == expected.dtype:
        np.subtract(values, expected, out=err)
    else:  # widened first: a ufunc on mixed dtypes casts through buffers, at a third more per call
        np.copyto(err, values)
        np.subtract(err, expected, out=err)
    np.abs(err, out=err)
    target.divide(err, work[1:])
    # (the worst element by its flat index: every array here is the oracle's shape, in C order)
    worst = int(over_tol.argmax())
    mismatched = 0
    # Every err <= tol where the largest err/tol is clearly below 1 (a ratio that rounds to at most
    # 1 - 2**-20 is one of an err below its tol; where tol is 0, err/tol is 0 only for err 0): the
    # elements are counted only where that does not settle it (a NaN's ratio is NaN, never below).
    if not over_tol.item(worst) <= _CLEARLY_BELOW_ONE:
        # NaN and inf errors count as mismatches (they are never <= a tolerance)
        mismatched = err.size - int(np.count_nonzero(err <= target.tolerance))
        if mismatched:  # a NaN where the oracle has a number is an infinite error
            np.copyto(err, np.inf, where=np.isnan(values) & ~np.isnan(expected))
            target.divide(err, work[1:])
            worst = int(over_tol.argmax())
    return _judged(target, values, actual_shape, actual_dtype, work, worst, mismatched)


def _judged(
    target: Expected,
    values: np.ndarray,
    actual_shape: list[int],
    actual_dtype: str,
    work: np.ndarray | None,
    worst: int,
    mismatched: int,
) -> Comparison:
    """The comparison's figures, from |err| and its ratios (``work``; None for empty arrays)."""
    dtype = target.dtype
    if work is not None:
        err, over_tol = work[0], work[1]
        worst_index = _unravel(worst, err.shape)
        # |err|'s, err/|expected|'s and err/bound's maxima at once (NaN wins, as in ndarray.max())
        max_abs_err, _, max_rel_err, max_err_over_bound = np.maximum.reduce(
            work.reshape(4, -1), axis=1
        ).tolist()
        tolerance_at_worst = float(target.tolerance.item(worst))
        max_err_over_tolerance = float(over_tol.item(worst))
        elements = int(err.size)
    else:
        worst_index = []
        max_abs_err = max_rel_err = max_err_over_bound = tolerance_at_worst = max_err_over_tolerance = 0.0
        elements = 0
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
        elements,
        worst_index,
    )
    problems = []
    if actual_dtype != dtype:
        problems.append(f"dtype {actual_dtype} instead of {dtype}")
    if mismatched:
        assert work is not None
        problems.append(
            f"{mismatched} of {elements} elements outside tolerance; worst at {tuple(worst_index)}: "
            f"got {float(values.item(worst)):.6g}, expected {target.values.item(worst):.6g} "
            f"(|err| {work[0].item(worst):.3g} > tol {target.tolerance.item(worst):.3g}, "
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
