"""One case against one adapter: the checks that apply, each producing a Result.

``forward`` (valid cases): the call must succeed and match the oracle in shape, dtype and values.
``grad_input`` / ``grad_weight`` / ``grad_bias`` (valid cases; bias only with a bias): the adapter's
vector-Jacobian product for the case's deterministic cotangent must match the oracle's.
``error_parity`` (``expect: error`` cases): the call must raise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from conformance import oracle
from conformance.adapters import Adapter
from conformance.cases import Case
from conformance.compare import compare
from conformance.inputs import Inputs, make_cotangent, make_inputs
from conformance.results import Result
from conformance.spec import gradient_reduction_lengths, reduction_length

MAX_MESSAGE = 600


FORWARD, ERROR_PARITY = "forward", "error_parity"
GRADIENTS = ("grad_input", "grad_weight", "grad_bias")
CHECKS = (FORWARD, *GRADIENTS, ERROR_PARITY)


def checks_for(case: Case, selected: Sequence[str] | None = None) -> list[str]:
    """The checks that apply to ``case``, restricted to ``selected`` when given."""
    if case.expect == "error":
        applicable = [ERROR_PARITY]
    else:
        applicable = [FORWARD, "grad_input", "grad_weight"] + (["grad_bias"] if case.params.bias else [])
    return [c for c in applicable if selected is None or c in selected]


@dataclass
class Reference:
    """A case's inputs and oracle output, computed once and shared by every adapter."""

    case: Case

    @cached_property
    def inputs(self) -> Inputs:
        return make_inputs(self.case)

    def _call(self, fn) -> np.ndarray:
        p, i = self.case.params, self.inputs
        return fn(i.x, i.weight, i.bias, p.stride, p.padding, p.output_padding, p.groups, p.dilation)

    @cached_property
    def output(self) -> np.ndarray:
        return self._call(oracle.conv_transpose)

    @cached_property
    def bound(self) -> np.ndarray:
        return self._call(oracle.magnitude_bound)

    @cached_property
    def cotangent(self) -> np.ndarray:
        return make_cotangent(self.case)

    def _vjp(self, fn) -> dict[str, np.ndarray | None]:
        p, i = self.case.params, self.inputs
        grads = fn(
            i.x, i.weight, i.bias, self.cotangent, p.stride, p.padding, p.output_padding, p.groups, p.dilation
        )
        return dict(zip(GRADIENTS, grads))

    @cached_property
    def gradients(self) -> dict[str, np.ndarray | None]:
        return self._vjp(oracle.conv_transpose_vjp)

    @cached_property
    def gradient_bounds(self) -> dict[str, np.ndarray | None]:
        return self._vjp(oracle.vjp_magnitude_bound)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def base_result(case: Case, framework: str, check: str, status: str, message: str = "") -> Result:
    expected = case.expected_shape
    return Result(
        case=case.id,
        file=case.file,
        framework=framework,
        check=check,
        status=status,
        family=case.family,
        expect=case.expect,
        rules=[v.rule for v in case.violations],
        params=case.params_record(),
        tags=list(case.tags),
        expected_shape=None if expected is None else list(expected),
        expected_dtype=case.dtype,
        message=message,
    )


def run_checks(
    case: Case, adapter: Adapter, reference: Reference | None = None, selected: Sequence[str] | None = None
) -> list[Result]:
    """Every applicable (and selected) check of ``case`` on ``adapter``.

    Exceptions from the adapter become results; nothing the adapter does escapes as an exception.
    """
    ref = reference or Reference(case)
    checks = checks_for(case, selected)
    try:
        reason = adapter.unsupported(case)
    except Exception as exc:
        return [base_result(case, adapter.name, c, "error", f"unsupported() raised {exc!r}") for c in checks]
    if reason:
        return [base_result(case, adapter.name, c, "unsupported", reason) for c in checks]
    results = []
    if ERROR_PARITY in checks:
        results.append(_error_parity(case, adapter, ref))
    if FORWARD in checks:
        results.append(_forward(case, adapter, ref))
    gradient_checks = [c for c in checks if c in GRADIENTS]
    if gradient_checks:
        results.extend(_gradients(case, adapter, ref, gradient_checks))
    return results


def _call(fn, *args):
    """(value, exception, seconds) of one adapter call."""
    started = time.perf_counter()
    try:
        return fn(*args), None, time.perf_counter() - started
    except Exception as exc:
        return None, exc, time.perf_counter() - started


def _raised(result: Result, exc: Exception, valid: bool) -> Result:
    result.exception = type(exc).__name__
    if valid:
        result.status = "error"
        result.message = _short(f"raised {type(exc).__name__} on a valid configuration: {exc}")
    else:
        result.message = _short(f"raised {type(exc).__name__}: {exc}")
    return result


def _error_parity(case: Case, adapter: Adapter, ref: Reference) -> Result:
    result = base_result(case, adapter.name, ERROR_PARITY, "pass")
    i = ref.inputs
    actual, exc, result.duration_s = _call(adapter.forward, i.x, i.weight, i.bias, case.params)
    if exc is not None:
        return _raised(result, exc, valid=False)
    result.actual_shape = list(getattr(actual, "shape", ()))
    result.status = "fail"
    rules = ", ".join(v.rule for v in case.violations)
    result.message = (
        f"returned shape {tuple(result.actual_shape)} instead of raising (configuration breaks: {rules})"
    )
    return result


def _judge(
    result: Result, expected: np.ndarray, bound: np.ndarray, actual: object, case: Case, n: int
) -> Result:
    comparison = compare(expected, bound, actual, case.dtype, n, case.tolerance)
    for name in (
        "actual_shape",
        "actual_dtype",
        "max_abs_err",
        "max_rel_err",
        "max_err_over_bound",
        "tolerance_at_worst",
        "mismatched",
        "elements",
        "worst_index",
    ):
        setattr(result, name, getattr(comparison, name))
    if not comparison.ok:
        result.status = "fail"
        result.message = _short(comparison.message)
    return result


def _forward(case: Case, adapter: Adapter, ref: Reference) -> Result:
    result = base_result(case, adapter.name, FORWARD, "pass")
    i = ref.inputs
    actual, exc, result.duration_s = _call(adapter.forward, i.x, i.weight, i.bias, case.params)
    if exc is not None:
        return _raised(result, exc, valid=True)
    return _judge(result, ref.output, ref.bound, actual, case, reduction_length(case.params))


def _gradients(case: Case, adapter: Adapter, ref: Reference, checks: list[str]) -> list[Result]:
    results = []
    for check in checks:
        result = base_result(case, adapter.name, check, "pass")
        result.expected_shape = list(ref.gradients[check].shape)
        results.append(result)
    if not adapter.has_vjp:
        for r in results:
            r.status, r.message = "unsupported", f"adapter {adapter.name!r} implements no vjp()"
        return results
    i = ref.inputs
    grads, exc, seconds = _call(adapter.vjp, i.x, i.weight, i.bias, case.params, ref.cotangent)
    if exc is None and not (isinstance(grads, (tuple, list)) and len(grads) == 3):
        exc = TypeError(f"vjp() must return (grad_x, grad_weight, grad_bias), got {type(grads).__name__}")
    lengths = gradient_reduction_lengths(case.input_shape, case.params)
    for result in results:
        result.duration_s = seconds
        if exc is not None:
            _raised(result, exc, valid=True)
            continue
        actual = grads[GRADIENTS.index(result.check)]
        _judge(
            result,
            ref.gradients[result.check],
            ref.gradient_bounds[result.check],
            actual,
            case,
            lengths[result.check],
        )
    return results
