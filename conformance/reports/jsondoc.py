"""results.json: strict JSON out (no NaN/Infinity tokens), a checked document in.

On disk (schema ``conformance.results/2``, described by ``conformance/schema/results.schema.json``)
a case's parameters are stored once, in ``cases``, not in each of its records, and a record leaves
out the fields that hold their defaults; :func:`load_document` gives back the in-memory form, one
full record per result, and reads ``conformance.results/1`` files (full records) as well.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from conformance.results import STATUSES, Result

SCHEMA = "conformance.results/2"
#: record fields that belong to the case, stored once per case in ``cases``
CASE_FIELDS = ("family", "expect", "rules", "params", "tags", "expected_shape", "expected_dtype")
_DEFAULTS = Result(case="", file="", framework="", check="", status="pass").to_dict()

#: result fields that may hold inf/nan, written to JSON as these strings and read back as floats
FLOAT_FIELDS = (
    "max_abs_err",
    "max_rel_err",
    "max_err_over_bound",
    "tolerance_at_worst",
    "max_err_over_tolerance",
    "duration_s",
)
#: measured errors, stored to 7 significant digits (more than any verdict or drift needs)
ERROR_FIELDS = (
    "max_abs_err",
    "max_rel_err",
    "max_err_over_bound",
    "tolerance_at_worst",
    "max_err_over_tolerance",
)
NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
REQUIRED_RESULT_FIELDS = ("case", "file", "framework", "check", "status")


def to_json(value: Any, indent: int | None = None) -> str:
    """Strict JSON (no NaN/Infinity tokens, which JSON.parse and many tools reject)."""
    separators = (",", ": ") if indent is not None else (",", ":")  # compact where nobody reads it
    return json.dumps(
        _finite(value), indent=indent, separators=separators, allow_nan=False, ensure_ascii=False
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(value)  # a NumPy float64 becomes a plain float
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a NumPy scalar
        return _finite(value.item())
    return value


def case_key(record: dict[str, Any]) -> str:
    return f"{record['file']}::{record['case']}"


def _rerun_prefix(record: dict[str, Any]) -> str:
    return f"conformance run {record['file']} --case '{record['case']}' "


def pack(document: dict[str, Any]) -> dict[str, Any]:
    """The on-disk form of an in-memory document: case fields once per case, defaults left out,
    each framework's re-run selector once (a record keeps a re-run line of any other form), errors
    to 7 significant digits, times to the microsecond."""
    cases: dict[str, dict[str, Any]] = {}
    selectors: dict[str, str] = {}
    records = []
    for record in document.get("results", []):
        key = case_key(record)
        if key not in cases:
            cases[key] = {name: record[name] for name in CASE_FIELDS if name in record}
        packed = {
            name: value
            for name, value in record.items()
            if name not in CASE_FIELDS and (name in REQUIRED_RESULT_FIELDS or value != _DEFAULTS.get(name))
        }
        rerun, prefix = packed.get("rerun", ""), _rerun_prefix(record)
        if rerun.startswith(prefix):
            selector = selectors.setdefault(record["framework"], rerun[len(prefix) :])
            if selector == rerun[len(prefix) :]:
                del packed["rerun"]
        for name in ERROR_FIELDS:
            if isinstance(packed.get(name), float) and math.isfinite(packed[name]):
                packed[name] = float(f"{packed[name]:.7g}")
        if isinstance(packed.get("duration_s"), float):
            packed["duration_s"] = round(packed["duration_s"], 6)
        records.append(packed)
    return {**document, "schema": SCHEMA, "cases": cases, "rerun_selectors": selectors, "results": records}


def unpack(document: dict[str, Any]) -> dict[str, Any]:
    """The in-memory form of a packed document (full records); a version-1 document is already it."""
    cases = document.pop("cases", None)
    selectors = document.pop("rerun_selectors", {})
    if cases is None:
        return document
    records = []
    for record in document["results"]:
        full = {**_DEFAULTS, **cases.get(case_key(record), {}), **record}
        if "rerun" not in record and record["framework"] in selectors:
            full["rerun"] = _rerun_prefix(record) + selectors[record["framework"]]
        records.append(full)
    document["results"] = records
    return document


def load_document(path: str | Path) -> dict[str, Any]:
    """Read a results.json written by :func:`write_reports`; ValueError naming the file otherwise."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a results document: invalid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a results document: not UTF-8 text") from None
    problem = _document_problem(document)
    if problem:
        raise ValueError(f"{path}: not a results document: {problem}")
    unpack(document)
    for record in document["results"]:
        for name in FLOAT_FIELDS:
            if record.get(name) in NON_FINITE:
                record[name] = NON_FINITE[record[name]]
    document.setdefault("frameworks", {})
    document.setdefault("warnings", [])
    document.setdefault("runs", [])
    document.setdefault("interrupted", False)
    return document


def _document_problem(document: Any) -> str | None:
    if not isinstance(document, dict):
        return f"the top level is a JSON {type(document).__name__}, not an object"
    schema = document.get("schema")
    if schema is not None and not (isinstance(schema, str) and schema.startswith("conformance.results/")):
        return f"unknown schema {schema!r}"
    results = document.get("results")
    if not isinstance(results, list):
        return "no 'results' list"
    if not isinstance(document.get("cases", {}), dict):
        return "'cases' is not an object"
    if not isinstance(document.get("frameworks", {}), dict):
        return "'frameworks' is not an object"
    for index, record in enumerate(results):
        if not isinstance(record, dict):
            return f"results[{index}] is not an object"
        missing = [k for k in REQUIRED_RESULT_FIELDS if not isinstance(record.get(k), str)]
        if missing:
            return f"results[{index}] lacks {', '.join(missing)}"
        if record["status"] not in STATUSES:
            return f"results[{index}] has unknown status {record['status']!r}"
        if not isinstance(record.get("params", {}), dict):
            return f"results[{index}].params is not an object"
    return None
