"""One case against one adapter: the checks that apply, each producing a Result.

``forward`` (valid cases): the call must succeed and match the oracle in shape, dtype and values.
``grad_input`` / ``grad_weight`` / ``grad_bias`` (valid cases; bias only with a bias): the adapter's
vector-Jacobian product for the case's deterministic cotangent must match the oracle's.
``repeatability`` (valid cases): a second forward call on identical fresh inputs must give the
same outcome bit for bit (CPU kernels are deterministic unless they race or read uninitialised memory).
``error_parity`` (``expect: error`` cases): the framework must raise; an exception from the
adapter's own code is an adapter error (:mod:`conformance.attribution`).

Every call gets its own copies of the inputs (:mod:`conformance.isolation`); a call that writes into
them fails, whatever it returned, and the oracle only ever sees the pristine arrays.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from conformance import isolation, oracle, reference_cache
from conformance.adapters import Adapter
from conformance.attribution import ADAPTER, Attributor, Outcome, attributor
from conformance.cases import Case
from conformance.compare import Expected, compare_to
from conformance.inputs import Inputs, draw_inputs, laid_out, make_cotangent, make_inputs
from conformance.results import Result
from conformance.spec import gradient_reduction_lengths, reduction_length

MAX_MESSAGE = 600


FORWARD, REPEATABILITY, ERROR_PARITY = "forward", "repeatability", "error_parity"
GRADIENTS = ("grad_input", "grad_weight", "grad_bias")
CHECKS = (FORWARD, *GRADIENTS, REPEATABILITY, ERROR_PARITY)


def checks_for(case: Case, selected: Sequence[str] | None = None) -> list[str]:
    """The checks that apply to ``case``, restricted to ``selected`` when given."""
    if case.expect == "error":
        applicable = [ERROR_PARITY]
    else:
        applicable = [FORWARD, "grad_input", "grad_weight"] + (["grad_bias"] if case.params.bias else [])
        applicable.append(REPEATABILITY)
    return [c for c in applicable if selected is None or c in selected]


#: the checks judged against an oracle target (conformance.compare.Expected), and the array each
#: target's values are
TARGETS = (FORWARD, *GRADIENTS)
_VALUES = {FORWARD: "output", **{g: g for g in GRADIENTS}}
#: a valid case's arrays, kept in the reference cache as one file: its inputs as drawn (before the
#: case's layout), the output cotangent, the oracle's output and gradients, each target's divisors
#: (Expected.divisors: its tolerance, |values| and magnitude bound) and, in "target_facts", a row
#: per target of what Expected.stored() is given besides: the tolerance's scale and which of the
#: divisors are positive everywhere
STORED = (
    "x", "weight", "bias", "cotangent", "output", *GRADIENTS,
    *(f"divisors_{c}" for c in TARGETS), "target_facts",
)  # fmt: skip


@dataclass
class Reference:
    """A case's inputs and oracle output, computed once and shared by every adapter. A valid
    case's inputs and cotangent are stored with the oracle's arrays (:mod:`reference_cache`): read
    back, not drawn again."""

    case: Case
    #: seconds spent drawing inputs and computing (or reading) the oracle's arrays, for benchmarks
    oracle_s: float = 0.0

    def _timed(self, compute):
        start = time.perf_counter()
        try:
            return compute()
        finally:
            self.oracle_s += time.perf_counter() - start

    @cached_property
    def _stored(self) -> dict[str, np.ndarray | None] | None:
        """A valid case's arrays (STORED), read from the reference cache in one file, or all
        computed and written there at once; None when the cache is off (each group is then
        computed when first needed)."""
        if reference_cache.cache_dir() is None:
            return None

        def compute() -> dict[str, np.ndarray | None]:
            forward, inputs = self._compute_forward()
            arrays = {**forward, **self._compute_vjp(inputs)}
            stored = {name: arrays.get(name) for name in STORED}
            facts = np.full((len(TARGETS), 4), np.nan)
            for row, check in enumerate(TARGETS):
                if arrays[_VALUES[check]] is not None:
                    target = self._targets[check] = self._expected(check, arrays)
                    stored[f"divisors_{check}"] = target.divisors
                    facts[row] = (target.scale, *target.positive)
            stored["target_facts"] = facts
            return stored

        return self._timed(lambda: reference_cache.load_or_compute(self.case, "reference", STORED, compute))

    @cached_property
    def inputs(self) -> Inputs:
        if self.case.expect == "error":  # no oracle arrays to store them with
            inputs = self._timed(lambda: make_inputs(self.case))
        else:
            stored = self._forward_arrays
            drawn = Inputs(stored["x"], stored["weight"], stored["bias"])
            inputs = self._timed(lambda: laid_out(self.case, drawn))
        for array in (inputs.x, inputs.weight, inputs.bias):
            if array is not None:
                isolation.frozen(array)
        return inputs

    @property
    def forward_inputs(self) -> dict[str, np.ndarray | None]:
        i = self.inputs
        return {"x": i.x, "weight": i.weight, "bias": i.bias}

    def _call(self, fn, i: Inputs) -> np.ndarray:
        p = self.case.params
        return fn(i.x, i.weight, i.bias, p.stride, p.padding_pairs, p.output_padding, p.groups, p.dilation)

    def _compute_forward(self) -> tuple[dict[str, np.ndarray | None], Inputs]:
        drawn = draw_inputs(self.case)
        inputs = laid_out(self.case, drawn)
        arrays = {
            "x": drawn.x,
            "weight": drawn.weight,
            "bias": drawn.bias,
            "output": self._call(oracle.conv_transpose, inputs),
            "bound": self._call(oracle.magnitude_bound, inputs),
        }
        return arrays, inputs

    @cached_property
    def _forward_arrays(self) -> dict[str, np.ndarray | None]:
        stored = self._stored
        if stored is not None:
            return stored
        return self._timed(lambda: self._compute_forward()[0])

    @cached_property
    def output(self) -> np.ndarray:
        return self._forward_arrays["output"]

    @property
    def bound(self) -> np.ndarray:
        if self._stored is not None:
            return self.target(FORWARD).bound
        return self._forward_arrays["bound"]

    @cached_property
    def cotangent(self) -> np.ndarray:
        return isolation.frozen(self._vjp_arrays["cotangent"])

    def _vjp(self, fn, cotangent: np.ndarray, i: Inputs) -> dict[str, np.ndarray | None]:
        p = self.case.params
        grads = fn(
            i.x,
            i.weight,
            i.bias,
            cotangent,
            p.stride,
            p.padding_pairs,
            p.output_padding,
            p.groups,
            p.dilation,
        )
        return dict(zip(GRADIENTS, grads))

    def _compute_vjp(self, inputs: Inputs) -> dict[str, np.ndarray | None]:
        cotangent = make_cotangent(self.case)
        found = self._vjp(oracle.vjp_magnitude_bound, cotangent, inputs)
        return {
            "cotangent": cotangent,
            **self._vjp(oracle.conv_transpose_vjp, cotangent, inputs),
            **{f"bound_{g}": found[g] for g in GRADIENTS},
        }

    @cached_property
    def _vjp_arrays(self) -> dict[str, np.ndarray | None]:
        stored = self._stored
        if stored is not None:
            return stored
        inputs = self.inputs  # (read outside the vjp's own time)
        return self._timed(lambda: self._compute_vjp(inputs))

    @cached_property
    def gradients(self) -> dict[str, np.ndarray | None]:
        return {g: self._vjp_arrays[g] for g in GRADIENTS}

    @cached_property
    def gradient_bounds(self) -> dict[str, np.ndarray | None]:
        if self._stored is not None:
            return {g: None if self.gradients[g] is None else self.target(g).bound for g in GRADIENTS}
        return {g: self._vjp_arrays[f"bound_{g}"] for g in GRADIENTS}

    @cached_property
    def _targets(self) -> dict[str, Expected]:
        return {}

    def _expected(self, check: str, arrays: dict[str, np.ndarray | None]) -> Expected:
        case = self.case
        if check in GRADIENTS:
            values, bound = arrays[check], arrays[f"bound_{check}"]
            n = gradient_reduction_lengths(case.input_shape, case.params)[check]
        else:
            values, bound = arrays["output"], arrays["bound"]
            n = reduction_length(case.params)
        return Expected(values, bound, case.dtype, n, case.tolerance)

    def target(self, check: str) -> Expected:
        """What ``check``'s results are judged against, worked out once for every adapter."""
        found = self._targets.get(check)
        if found is None:
            stored = self._stored
            if stored is not None:
                scale, *positive = stored["target_facts"][TARGETS.index(check)].tolist()
                found = Expected.stored(
                    stored[_VALUES[check]],
                    stored[f"divisors_{check}"],
                    self.case.dtype,
                    scale,
                    tuple(p == 1.0 for p in positive),
                )
            else:
                arrays = {**self._forward_arrays, **(self._vjp_arrays if check in GRADIENTS else {})}
                found = self._expected(check, arrays)
            self._targets[check] = found
        return found


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


class _CaseFields:
    """The record fields every result of a case shares, worked out once per case (a case has up to
    six results per adapter, and results of one case share these objects)."""

    case: ClassVar[Case | None] = None
    fields: ClassVar[dict] = {}

    @classmethod
    def of(cls, case: Case) -> dict:
        if cls.case is not case:
            expected = case.expected_shape
            cls.case, cls.fields = (
                case,
                {
                    "rules": tuple(v.rule for v in case.violations),
                    "params": case.params_record(),
                    "expected_shape": None if expected is None else list(expected),
                },
            )
        return cls.fields


def base_result(case: Case, framework: str, check: str, status: str, message: str = "") -> Result:
    shared = _CaseFields.of(case)
    return Result(
        case=case.id,
        file=case.file,
        framework=framework,
        check=check,
        status=status,
        family=case.family,
        expect=case.expect,
        rules=list(shared["rules"]),
        params=shared["params"],
        tags=list(case.tags),
        expected_shape=shared["expected_shape"],
        expected_dtype=case.dtype,
        message=message,
    )


def run_checks(
    case: Case, adapter: Adapter, reference: Reference | None = None, selected: Sequence[str] | None = None
) -> list[Result]:
    """Every applicable (and selected) check of ``case`` on ``adapter``: :func:`call_checks`, then
    :func:`judge`. Exceptions from the adapter become results; nothing the adapter does escapes as
    an exception."""
    return judge(call_checks(case, adapter, reference, selected))


class _Call:
    """One adapter call on fresh copies of its inputs; whether it wrote into them is asked when it
    is judged (:meth:`settled`)."""

    def __init__(self, who: Attributor, call, pristine: dict[str, np.ndarray | None]) -> None:
        self.pristine = pristine
        self.handed = isolation.fresh(pristine)
        self.outcome = who.call(call, self.handed)

    def settled(self) -> Outcome:
        """The outcome, with the inputs the call changed (conformance.isolation.modified)."""
        self.outcome.modified = isolation.modified(self.pristine, self.handed)
        return self.outcome


@dataclass
class Calls:
    """One adapter's calls for a case's checks, made and not yet judged. A worker makes all of a
    job's calls, every adapter's, before it judges any: judging between two framework calls ran
    with the caches cold from the framework's work, at twice the cost."""

    case: Case
    framework: str  # the adapter's name
    has_vjp: bool
    reference: Reference
    checks: list[str]
    decided: list[Result] | None = None  # results that need no judging (an unsupported case)
    error_parity: _Call | None = None
    first: _Call | None = None  # the forward call
    vjp: _Call | None = None
    second: _Call | None = None  # the forward call again (repeatability)


def call_checks(
    case: Case, adapter: Adapter, reference: Reference | None = None, selected: Sequence[str] | None = None
) -> Calls:
    """The adapter's calls for every applicable (and selected) check of ``case``, in the order they
    are made: error parity, forward, vector-Jacobian product, forward again."""
    ref = reference or Reference(case)
    checks = checks_for(case, selected)
    has_vjp = adapter.has_vjp
    calls = Calls(case, adapter.name, has_vjp, ref, checks)
    try:
        reason = adapter.unsupported(case)
    except Exception as exc:
        message = f"unsupported() raised {exc!r}"
        calls.decided = [base_result(case, adapter.name, c, "error", message) for c in checks]
        return calls
    if reason:
        calls.decided = [base_result(case, adapter.name, c, "unsupported", reason) for c in checks]
        return calls
    who = attributor(adapter)
    params = case.params

    def forward(a: dict[str, np.ndarray | None]) -> object:
        return adapter.forward(a["x"], a["weight"], a["bias"], params)

    if ERROR_PARITY in checks:
        calls.error_parity = _Call(who, forward, ref.forward_inputs)
    if FORWARD in checks or REPEATABILITY in checks:
        calls.first = _Call(who, forward, ref.forward_inputs)
    if has_vjp and any(c in GRADIENTS for c in checks):
        calls.vjp = _Call(
            who,
            lambda a: adapter.vjp(a["x"], a["weight"], a["bias"], params, a["grad_out"]),
            {**ref.forward_inputs, "grad_out": ref.cotangent},
        )
    if REPEATABILITY in checks:
        calls.second = _Call(who, forward, ref.forward_inputs)
    return calls


def judge(calls: Calls) -> list[Result]:
    """The results of ``calls``: what each call returned against the oracle, its inputs checked
    for writes."""
    if calls.decided is not None:
        return calls.decided
    checks = calls.checks
    results = []
    first = calls.first.settled() if calls.first is not None else None
    if calls.error_parity is not None:
        results.append(_error_parity(calls, calls.error_parity.settled()))
    if FORWARD in checks:
        assert first is not None
        results.append(_forward(calls, first))
    gradient_checks = [c for c in checks if c in GRADIENTS]
    if gradient_checks:
        results.extend(_gradients(calls, gradient_checks))
    if REPEATABILITY in checks:
        assert first is not None and calls.second is not None
        results.append(_repeatability(calls, first, calls.second.settled()))
    return results


def _modified(result: Result, outcome: Outcome) -> bool:
    """Fail a call that wrote into its inputs, whatever it returned."""
    if not outcome.modified:
        return False
    result.status = "fail"
    result.message = _short(f"modified its inputs in place: {outcome.modified}")
    return True


def _raised(result: Result, outcome: Outcome, valid: bool) -> Result:
    exc = outcome.exception
    result.exception = type(exc).__name__
    result.raised_by = outcome.raised_by
    if outcome.raised_by == ADAPTER:
        result.status = "error"
        result.message = _short(
            f"adapter error: the adapter's own code raised {type(exc).__name__} at {outcome.where} "
            f"before the framework did: {exc}"
        )
    elif valid:
        result.status = "error"
        result.message = _short(f"raised {type(exc).__name__} on a valid configuration: {exc}")
    else:
        result.message = _short(f"raised {type(exc).__name__}: {exc}")
    return result


def _error_parity(calls: Calls, outcome: Outcome) -> Result:
    case = calls.case
    result = base_result(case, calls.framework, ERROR_PARITY, "pass")
    result.duration_s = outcome.seconds
    if outcome.exception is not None:
        _raised(result, outcome, valid=False)
        _modified(result, outcome)
        return result
    result.actual_shape = list(getattr(outcome.value, "shape", ()))
    result.status = "fail"
    rules = ", ".join(v.rule for v in case.violations)
    result.message = (
        f"returned shape {tuple(result.actual_shape)} instead of raising (configuration breaks: {rules})"
    )
    return result


def _judge(result: Result, target: Expected, actual: object) -> Result:
    comparison = compare_to(target, actual)
    result.actual_shape, result.actual_dtype = comparison.actual_shape, comparison.actual_dtype
    result.max_abs_err, result.max_rel_err = comparison.max_abs_err, comparison.max_rel_err
    result.max_err_over_bound = comparison.max_err_over_bound
    result.tolerance_at_worst = comparison.tolerance_at_worst
    result.max_err_over_tolerance = comparison.max_err_over_tolerance
    result.mismatched, result.elements = comparison.mismatched, comparison.elements
    result.worst_index = comparison.worst_index
    if not comparison.ok:
        result.status = "fail"
        result.message = _short(comparison.message)
    return result


def _forward(calls: Calls, outcome: Outcome) -> Result:
    result = base_result(calls.case, calls.framework, FORWARD, "pass")
    result.duration_s = outcome.seconds
    if outcome.exception is not None:
        _raised(result, outcome, valid=True)
    else:
        _judge(result, calls.reference.target(FORWARD), outcome.value)
    _modified(result, outcome)
    return result


def _repeatability(calls: Calls, first: Outcome, second: Outcome) -> Result:
    """The second forward call must give what the first gave, bit for bit (or raise alike)."""
    result = base_result(calls.case, calls.framework, REPEATABILITY, "pass")
    result.duration_s = second.seconds
    if _modified(result, second):
        return result
    if first.exception is not None or second.exception is not None:
        kinds = [type(o.exception).__name__ if o.exception else "a result" for o in (first, second)]
        if kinds[0] != kinds[1]:
            result.status = "fail"
            result.message = f"the first call gave {kinds[0]}, the second {kinds[1]}"
        else:
            result.exception, result.raised_by = kinds[0], second.raised_by
            result.message = f"raised {kinds[0]} both times"
        return result
    a, b = first.value, second.value
    if (
        not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray))
        or a.shape != b.shape
        or a.dtype != b.dtype
    ):
        describe = [
            f"{getattr(v, 'shape', type(v).__name__)} {getattr(v, 'dtype', '')}".strip() for v in (a, b)
        ]
        result.status = "fail"
        result.message = f"the first call returned {describe[0]}, the second {describe[1]}"
        return result
    result.actual_shape, result.elements = list(b.shape), int(b.size)
    result.actual_dtype = _dtype_text(b.dtype)
    width = np.dtype(f"u{a.itemsize}")
    if not a.dtype.hasobject and a.tobytes() == b.tobytes():  # the usual answer, from one memcmp
        result.mismatched, result.max_abs_err = 0, 0.0
        return result
    differ = np.ascontiguousarray(a).view(width) != np.ascontiguousarray(b).view(width)
    result.mismatched = int(np.count_nonzero(differ))
    if not result.mismatched:
        result.max_abs_err = 0.0
        return result
    with np.errstate(invalid="ignore"):
        delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
    delta = np.where(differ & ~(delta > 0), np.inf, delta)  # NaN in one call only
    tol = calls.reference.target(FORWARD).tolerance
    if delta.shape != tol.shape:  # a wrong-shaped output: the forward check says so
        tol = np.full(delta.shape, np.nan)
    worst = np.unravel_index(int(np.argmax(delta)), delta.shape)
    result.max_abs_err, result.tolerance_at_worst = float(delta[worst]), float(tol[worst])
    result.worst_index = [int(i) for i in worst]
    result.status = "fail"
    result.message = _short(
        f"two calls on identical inputs differ in {result.mismatched} of {b.size} elements; largest "
        f"difference {result.max_abs_err:.3g} at {tuple(result.worst_index)}, "
        f"{result.max_abs_err / result.tolerance_at_worst:.3g} × the tolerance there"
    )
    return result


@functools.lru_cache(maxsize=64)
def _dtype_text(dtype: np.dtype) -> str:
    """``str(dtype)``, which NumPy works out in Python code on every call."""
    return str(dtype)


def _gradients(calls: Calls, checks: list[str]) -> list[Result]:
    ref = calls.reference
    results = []
    for check in checks:
        result = base_result(calls.case, calls.framework, check, "pass")
        result.expected_shape = list(ref.gradients[check].shape)
        results.append(result)
    if calls.vjp is None:
        for r in results:
            r.status, r.message = "unsupported", f"adapter {calls.framework!r} implements no vjp()"
        return results
    outcome = calls.vjp.settled()
    grads = outcome.value
    if outcome.exception is None and not (isinstance(grads, (tuple, list)) and len(grads) == 3):
        outcome.exception = TypeError(
            f"vjp() must return (grad_x, grad_weight, grad_bias), got {type(grads).__name__}"
        )
        outcome.raised_by, outcome.where = ADAPTER, "its return value"
    for result in results:
        result.duration_s = outcome.seconds
        if outcome.exception is not None:
            _raised(result, outcome, valid=True)
        else:
            _judge(result, ref.target(result.check), grads[GRADIENTS.index(result.check)])
        _modified(result, outcome)
    return results
