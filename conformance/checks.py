"""One case against one adapter: the checks that apply, each producing a Result.

``forward`` (valid cases): the call must succeed and match the oracle in shape, dtype and values.
``error_parity`` (``expect: error`` cases): the call must raise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from conformance import oracle
from conformance.adapters import Adapter
from conformance.cases import Case
from conformance.compare import compare
from conformance.inputs import Inputs, make_inputs
from conformance.results import Result
from conformance.spec import reduction_length

MAX_MESSAGE = 600


def checks_for(case: Case) -> list[str]:
    return ["forward"] if case.expect == "ok" else ["error_parity"]


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
        params=case.params_record(),
        tags=list(case.tags),
        expected_shape=None if expected is None else list(expected),
        expected_dtype=case.dtype,
        message=message,
    )


def run_checks(case: Case, adapter: Adapter, reference: Reference | None = None) -> list[Result]:
    """Every applicable check of ``case`` on ``adapter``. Exceptions from the adapter become results."""
    reference = reference or Reference(case)
    checks = checks_for(case)
    try:
        reason = adapter.unsupported(case)
    except Exception as exc:
        return [base_result(case, adapter.name, c, "error", f"unsupported() raised {exc!r}") for c in checks]
    if reason:
        return [base_result(case, adapter.name, c, "unsupported", reason) for c in checks]
    return [_run_one(case, adapter, reference, check) for check in checks]


def _run_one(case: Case, adapter: Adapter, ref: Reference, check: str) -> Result:
    result = base_result(case, adapter.name, check, "pass")
    inputs = ref.inputs
    started = time.perf_counter()
    try:
        actual = adapter.forward(inputs.x, inputs.weight, inputs.bias, case.params)
    except Exception as exc:
        result.duration_s = time.perf_counter() - started
        result.exception = type(exc).__name__
        if check == "error_parity":
            result.message = _short(f"raised {type(exc).__name__}: {exc}")
        else:
            result.status = "error"
            result.message = _short(f"raised {type(exc).__name__} on a valid configuration: {exc}")
        return result
    result.duration_s = time.perf_counter() - started

    if check == "error_parity":
        shape = list(getattr(actual, "shape", ()))
        result.actual_shape = shape
        result.status = "fail"
        rules = ", ".join(v.rule for v in case.violations)
        result.message = f"returned shape {tuple(shape)} instead of raising (configuration breaks: {rules})"
        return result

    comparison = compare(
        ref.output, ref.bound, actual, case.dtype, reduction_length(case.params), case.tolerance
    )
    for name in (
        "actual_shape", "actual_dtype", "max_abs_err", "max_rel_err", "max_err_over_bound",
        "tolerance_at_worst", "mismatched", "elements", "worst_index",
    ):  # fmt: skip
        setattr(result, name, getattr(comparison, name))
    if not comparison.ok:
        result.status = "fail"
        result.message = _short(comparison.message)
    return result
