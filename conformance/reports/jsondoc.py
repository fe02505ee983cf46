"""results.json: strict JSON out (no NaN/Infinity tokens), a checked document in.

On disk (schema ``conformance.results/3``, described by ``conformance/schema/results.schema.json``)
a case is stored once, in the ``cases`` list, and a record names it by its index there; a record
leaves out the fields that hold their defaults, its shape and dtype when they are the expected
ones, and names its known divergence by its index in ``divergences``. :func:`load_document` gives
back the in-memory form, one full record per result, and reads ``conformance.results/2`` (cases
keyed ``FILE::ID``, records naming case and file) and ``/1`` files (full records) as well.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from conformance.results import STATUSES, Result

try:  # a C encoder, 7 times the standard library's speed on a results document's records
    import orjson
except ImportError:  # (a CPython-only dependency: elsewhere the standard library writes the same JSON)
    orjson = None

SCHEMA = "conformance.results/3"
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
    """Strict JSON (no NaN/Infinity tokens, which JSON.parse and many tools reject): non-finite
    floats become "nan" / "inf" / "-inf", NumPy scalars plain numbers."""
    options: dict[str, Any] = {
        "indent": indent,
        "separators": (",", ": ") if indent is not None else (",", ":"),  # compact where nobody reads it
        "allow_nan": False,
        "ensure_ascii": False,
        # documents and views are trees: no need to track every container (7 % of the encoding)
        "check_circular": False,
    }
    try:  # most documents hold neither: encoded as they are, and the encoder checks that
        return json.dumps(value, **options)
    except (ValueError, TypeError):
        pass
    return json.dumps(_finite(value), **options)


def finite_json(value: Any) -> str:
    """Compact JSON of ``value``, which holds no non-finite float by construction (a packed
    document's records, the page's table: both write such floats as strings first). orjson where
    installed: it would write a NaN as null where :func:`to_json` refuses it, hence "by construction"."""
    if orjson is None:
        return to_json(value)
    return orjson.dumps(value).decode()


def document_json(packed: dict[str, Any]) -> str:
    """results.json's text of a :func:`pack`-ed document: its records (nearly all of it) by
    :func:`finite_json`, the rest by :func:`to_json`. A packed record never holds a null (it leaves
    out what is None), so one in the records' text means a float that was not finite, or a string
    that says null: then all of it by :func:`to_json`, which says which."""
    if orjson is None:  # one encoder for all of it
        return to_json(packed)
    records = finite_json(packed["results"])
    if "null" in records:
        return to_json(packed)
    rest = to_json({name: value for name, value in packed.items() if name != "results"})
    return f'{rest[:-1]},"results":{records}}}'  # (the records are the packed document's last field)


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


#: what a packed record compares each field of a record with, to leave it out where equal: its
#: default, or _ALWAYS (which nothing equals) for a field every record keeps; _CASE for the fields
#: of its case, which it never keeps (a field not named here is compared with None)
_ALWAYS, _CASE = object(), object()
_PACKING = {
    **_DEFAULTS,
    **dict.fromkeys(REQUIRED_RESULT_FIELDS, _ALWAYS),
    **dict.fromkeys((*CASE_FIELDS, "case", "file"), _CASE),
}


def pack(document: dict[str, Any]) -> dict[str, Any]:
    """The on-disk form of an in-memory document (see the module's docstring): errors to 7
    significant digits, times to the microsecond, each framework's re-run selector once (a record
    keeps a re-run line of any other form)."""
    cases: list[dict[str, Any]] = []
    index_of: dict[str, int] = {}
    divergences: list[dict[str, Any]] = []
    divergence_index: dict[str, int] = {}
    divergence_texts: dict[int, str] = {}  # by id: a loaded document's records share their entries
    selectors: dict[str, str] = {}
    leave_out = _PACKING.get
    rounded: dict[float, float] = {}  # errors repeat: each nonzero one rounded once
    records = []
    for record in document.get("results", []):
        key = case_key(record)
        at = index_of.get(key)
        if at is None:
            at = index_of[key] = len(cases)
            case = {"file": record["file"], "id": record["case"]}
            case.update((name, record[name]) for name in CASE_FIELDS if name in record)
            cases.append(case)
        else:
            case = cases[at]
        packed: dict[str, Any] = {"case": at}
        packed.update(
            {
                name: v
                for name, v in record.items()
                if (default := leave_out(name)) is not _CASE and v != default
            }
        )
        expected_shape = record.get("expected_shape")
        if expected_shape != case.get("expected_shape"):  # a gradient's shape is its own: once per case
            shapes = case.setdefault("check_shapes", {})
            if shapes.setdefault(record["check"], expected_shape) != expected_shape:
                packed["expected_shape"] = expected_shape
        if record.get("elements") is not None:  # measured: shape and dtype only where unexpected
            for name, expected in (
                ("actual_shape", expected_shape),
                ("actual_dtype", record.get("expected_dtype")),
            ):
                if record.get(name) == expected:
                    packed.pop(name, None)
                else:
                    packed[name] = record.get(name)
        divergence = packed.get("divergence")
        if divergence:
            text = divergence_texts.get(id(divergence))
            if text is None:
                text = divergence_texts[id(divergence)] = json.dumps(divergence, sort_keys=True)
            if text not in divergence_index:
                divergence_index[text] = len(divergences)
                divergences.append(divergence)
            packed["divergence"] = divergence_index[text]
        rerun = packed.get("rerun")
        if rerun:
            prefix = _rerun_prefix(record)
            if rerun.startswith(prefix):
                selector = selectors.setdefault(record["framework"], rerun[len(prefix) :])
                if selector == rerun[len(prefix) :]:
                    del packed["rerun"]
        for name in ERROR_FIELDS:
            value = packed.get(name)
            if isinstance(value, float):  # non-finite errors as strings here, so the encoder never meets them
                if value and math.isfinite(value):  # a zero stays out: 0.0 == -0.0
                    short = rounded.get(value)
                    if short is None:
                        short = rounded[value] = float(f"{value:.7g}")
                    packed[name] = short
                else:
                    packed[name] = float(f"{value:.7g}") if math.isfinite(value) else _finite(value)
        duration = packed.get("duration_s")
        if isinstance(duration, float):
            packed["duration_s"] = round(duration, 6) if math.isfinite(duration) else _finite(duration)
        records.append(packed)
    return {
        **document,
        "schema": SCHEMA,
        "cases": cases,
        "divergences": divergences,
        "rerun_selectors": selectors,
        "results": records,
    }


def unpack(document: dict[str, Any]) -> dict[str, Any]:
    """The in-memory form of a packed document (full records); a version-1 document is already it."""
    cases = document.pop("cases", None)
    selectors = document.pop("rerun_selectors", {})
    divergences = document.pop("divergences", [])
    if cases is None:
        return document
    records = []
    if isinstance(cases, dict):  # conformance.results/2: cases keyed FILE::ID, records name both
        for record in document["results"]:
            full = {**_DEFAULTS, **cases.get(case_key(record), {}), **record}
            if "rerun" not in record and record["framework"] in selectors:
                full["rerun"] = _rerun_prefix(full) + selectors[record["framework"]]
            records.append(full)
        document["results"] = records
        return document
    for record in document["results"]:
        case = cases[record["case"]]
        full = {**_DEFAULTS, **case, **record, "case": case["id"], "file": case["file"]}
        del full["id"]
        shapes = full.pop("check_shapes", {})
        if "expected_shape" not in record and record["check"] in shapes:
            full["expected_shape"] = shapes[record["check"]]
        if record.get("elements") is not None:
            full.setdefault("actual_shape", None)
            if "actual_shape" not in record:
                full["actual_shape"] = full.get("expected_shape")
            if "actual_dtype" not in record:
                full["actual_dtype"] = full.get("expected_dtype")
        if isinstance(record.get("divergence"), int):
            full["divergence"] = divergences[record["divergence"]]
        if "rerun" not in record and record["framework"] in selectors:
            full["rerun"] = _rerun_prefix(full) + selectors[record["framework"]]
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
    cases = document.get("cases", {})
    if not isinstance(cases, (dict, list)):
        return "'cases' is neither a list nor an object"
    if isinstance(cases, list) and not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("file"), str) for c in cases
    ):
        return "a 'cases' entry lacks its id or file"
    if not isinstance(document.get("divergences", []), list):
        return "'divergences' is not a list"
    if not isinstance(document.get("frameworks", {}), dict):
        return "'frameworks' is not an object"
    for index, record in enumerate(results):
        if not isinstance(record, dict):
            return f"results[{index}] is not an object"
        required = REQUIRED_RESULT_FIELDS
        if isinstance(cases, list):  # conformance.results/3: the case by its index
            at = record.get("case")
            if not (isinstance(at, int) and 0 <= at < len(cases)):
                return f"results[{index}].case is not an index into 'cases'"
            divergence = record.get("divergence")
            if isinstance(divergence, int) and not 0 <= divergence < len(document.get("divergences", [])):
                return f"results[{index}].divergence is not an index into 'divergences'"
            required = tuple(k for k in REQUIRED_RESULT_FIELDS if k not in ("case", "file"))
        missing = [k for k in required if not isinstance(record.get(k), str)]
        if missing:
            return f"results[{index}] lacks {', '.join(missing)}"
        if record["status"] not in STATUSES:
            return f"results[{index}] has unknown status {record['status']!r}"
        if not isinstance(record.get("params", {}), dict):
            return f"results[{index}].params is not an object"
    return None
