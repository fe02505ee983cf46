"""results.json: strict JSON out (no NaN/Infinity tokens), a checked document in."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from conformance.results import STATUSES

#: result fields that may hold inf/nan, written to JSON as these strings and read back as floats
FLOAT_FIELDS = ("max_abs_err", "max_rel_err", "max_err_over_bound", "tolerance_at_worst", "duration_s")
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
