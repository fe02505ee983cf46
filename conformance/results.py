"""Result records: one per case x framework x check, the unit every report is built from."""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("pass", "fail", "error", "crash", "timeout", "xfail", "xpass", "unsupported")
#: statuses that fail the gate
FAILING = frozenset({"fail", "error", "crash", "timeout", "xpass"})
#: statuses that show a divergence from the reference (the known ones included)
DIVERGENT = frozenset({"fail", "error", "crash", "timeout", "xfail"})
#: how the runner's messages for results that never came back begin: a worker that died, one past
#: its time limit, a job whose results never arrived, a run interrupted first. A known divergence's
#: xfail replaces the status and keeps the message, from which the kind of failure it was (a crash,
#: a hang) is read back (:func:`lost_status`).
WORKER_DIED = "worker process "
NO_RESULT_WITHIN = "no result within the "
NO_RESULT = "no result came back"
INTERRUPTED = "the run was interrupted before this case ran"
LOST_MESSAGES = {"crash": (WORKER_DIED, NO_RESULT, INTERRUPTED), "timeout": (NO_RESULT_WITHIN,)}


def lost_status(message: str) -> str | None:
    """The status ("crash" or "timeout") whose runner message ``message`` is, else None."""
    for status, starts in LOST_MESSAGES.items():
        if message.startswith(starts):
            return status
    return None


@dataclass
class Result:
    case: str
    file: str
    framework: str
    check: str
    status: str
    family: str = ""
    expect: str = "ok"
    rules: list[str] = field(default_factory=list)  # validity rules an expect: error case breaks
    params: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    expected_shape: list[int] | None = None
    actual_shape: list[int] | None = None
    expected_dtype: str | None = None
    actual_dtype: str | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    max_err_over_bound: float | None = None
    tolerance_at_worst: float | None = None
    max_err_over_tolerance: float | None = None  # err/tol at the worst element: 1 is the tolerance
    mismatched: int | None = None
    elements: int | None = None
    worst_index: list[int] | None = None
    exception: str | None = None
    raised_by: str | None = None  # who raised `exception`: "framework" or "adapter" (its own code)
    message: str = ""
    divergence: dict[str, str] | None = None  # the known-divergence entry that matched
    duration_s: float | None = None
    rerun: str = ""
    reproducer: str = ""  # standalone script, relative to the report directory

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.file, self.case, self.framework, self.check)

    def to_dict(self) -> dict[str, Any]:
        # A shallow copy (its lists and dicts are shared with the record), not dataclasses.asdict:
        # asdict's recursive deep copy was most of a results document's cost.
        return dict(self.__dict__)

    def __reduce__(self) -> tuple[type[Result], tuple]:
        # Pickled as its fields' values, by position (workers send every result to the parent):
        # read back in under half the time of the instance dict pickle writes by default
        return (type(self), _FIELD_GETTER(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        try:  # a full record (every document's, in memory): its fields by position, in their order
            values = _FIELD_VALUES(data)
        except KeyError:
            return cls(**{k: v for k, v in data.items() if k in _FIELD_SET})
        # a third of the cost of 29 keyword arguments (documents of 20,000 records are common);
        # __init__ itself still sets them, so the object keeps its compact attribute storage, which
        # the views read three times as fast as a __dict__ filled in afterwards
        return cls(*values)


_FIELDS = tuple(f.name for f in dataclasses.fields(Result))
_FIELD_SET = frozenset(_FIELDS)
_FIELD_VALUES = operator.itemgetter(*_FIELDS)
_FIELD_GETTER = operator.attrgetter(*_FIELDS)


# --- results.json documents ---------------------------------------------------------------------

SCHEMA = "conformance.results/1"


def environment() -> dict[str, str]:
    import platform

    import numpy

    from conformance import __version__

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "conformance": __version__,
        "numpy": numpy.__version__,
    }


def summarize(results: list[Result]) -> dict[str, dict[str, int]]:
    """framework -> status -> count, every status present (zeros included)."""
    summary: dict[str, dict[str, int]] = {}
    for r in results:
        counts = summary.setdefault(r.framework, dict.fromkeys(STATUSES, 0))
        counts[r.status] = counts.get(r.status, 0) + 1
    return summary


def make_document(
    results: list[Result],
    frameworks: dict[str, str],
    warnings: list[str] | None = None,
    interrupted: bool = False,
    command: str = "",
    layer_api: list[dict[str, Any]] | None = None,
    framework_facts: dict[str, dict[str, Any]] | None = None,
    inactive_divergences: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    from conformance.machine import machine_facts

    env = environment()
    return {
        "schema": SCHEMA,
        "environment": env,
        "frameworks": dict(frameworks),
        "runs": [
            {
                "environment": env,
                "machine": machine_facts(),
                "frameworks": dict(frameworks),
                "framework_facts": dict(framework_facts or {}),
                "command": command,
                "interrupted": interrupted,
            }
        ],
        "interrupted": interrupted,
        "warnings": list(warnings or []),
        "inactive_divergences": list(inactive_divergences or []),
        "summary": summarize(results),
        "layer_api": list(layer_api or []),
        "results": [r.to_dict() for r in results],
    }


def results_of(document: dict[str, Any]) -> list[Result]:
    return [Result.from_dict(d) for d in document.get("results", [])]


def merge_documents(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One document from runs made in different environments; a later result for the same
    (file, case, framework, check) replaces an earlier one, with a warning."""
    if len(documents) == 1:
        return documents[0]
    merged: dict[tuple, Result] = {}
    frameworks: dict[str, str] = {}
    runs: list[dict] = []
    warnings: list[str] = []
    inactive: list[dict] = []
    for doc in documents:
        for name, version in doc.get("frameworks", {}).items():
            if name in frameworks and frameworks[name] != version:
                warnings.append(f"framework {name} appears with versions {frameworks[name]} and {version}")
            frameworks[name] = version
        runs.extend(
            doc.get("runs")
            or [
                {
                    "environment": doc.get("environment", {}),
                    "frameworks": doc.get("frameworks", {}),
                    "command": "",
                }
            ]
        )
        warnings.extend(doc.get("warnings", []))
        inactive.extend(doc.get("inactive_divergences", []))
        for r in results_of(doc):
            if r.key in merged:
                warnings.append(
                    f"result {r.framework}/{r.case}/{r.check} appears in more than one input; kept the last"
                )
            merged[r.key] = r
    results = list(merged.values())
    interrupted = any(doc.get("interrupted") for doc in documents)
    layers = {entry["framework"]: entry for doc in documents for entry in doc.get("layer_api") or []}
    return {
        "schema": SCHEMA,
        "environment": environment(),
        "frameworks": frameworks,
        "runs": runs,
        "interrupted": interrupted,
        "warnings": warnings,
        "inactive_divergences": inactive,
        "summary": summarize(results),
        "layer_api": list(layers.values()),
        "results": [r.to_dict() for r in results],
    }
