"""report.html: one offline file (inline CSS, JS and SVG, nothing fetched) with the matrices, the
divergences and a filterable, sortable table of every result. Renders views only (:mod:`.views`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import operator
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from conformance import changes
from conformance.layer_api import report_tables
from conformance.reports import svg
from conformance.reports.jsondoc import finite_json, to_json
from conformance.reports.views import (
    HTML_MARKS,
    LISTED,
    SEVERITY,
    STATUSES,
    TITLE,
    Cause,
    Family,
    causes,
    check_matrix,
    closest_to_tolerance,
    comparison_by_family,
    counts_text,
    document_results,
    environment_rows,
    error_parity_matrix,
    families_of,
    fmt_number,
    frameworks_of,
    headroom,
    inactive_rows,
    machine_rows,
    marked,
    matrix_cell,
    numeric_diff_text,
    parameter_maps,
    params_text,
    safe_link,
    shape_diff_text,
    summary_rows,
    verdict,
)
from conformance.results import FAILING, Result


class _CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, in Jinja's own per-user folder: compiling the report's
    template took a tenth of the page's time, on the path after a run's last case. A cache that
    cannot be written is skipped, never fatal (the template is compiled again next time)."""

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


@functools.lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    try:
        compiled: jinja2.BytecodeCache | None = _CompiledTemplates()
    except (OSError, RuntimeError):  # no private folder to be had in the temporary directory
        compiled = None
    return jinja2.Environment(
        loader=jinja2.PackageLoader("conformance.reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        bytecode_cache=compiled,
    )


def script_json(value: Any, finite: bool = False) -> Markup:
    """JSON safe inside <script>: no "</script>", "<!--" or entity can close or confuse the tag.
    ``finite``: ``value`` holds no non-finite float by construction (:func:`.jsondoc.finite_json`)."""
    text = (finite_json if finite else to_json)(value)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _short(value: Any) -> Any:
    """A float with 3 significant digits (17 digits told nobody anything and tripled the page)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return float(f"{value:.3g}")
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")  # as to_json writes them
    return value


def _shape(shape: list[int] | None) -> str | None:
    return None if shape is None else ",".join(map(str, shape))


#: the table's columns, in the order a row lists them; INTERNED ones refer to the strings table
_KEYS = (
    "s", "c", "f", "fw", "k", "fa", "op", "dt", "pt", "r", "rp", "t", "es", "as", "ed", "ad",
    "ae", "re", "eb", "et", "tw", "mm", "el", "wi", "x", "rb", "m", "dv", "d", "ex",
)  # fmt: skip
_INTERNED = frozenset(
    ("c", "f", "fw", "k", "fa", "op", "dt", "pt", "r", "rp", "t", "es", "as", "ed", "ad",
     "x", "rb", "m", "dv")
)  # fmt: skip


#: the Result fields the table shows, read from each result in one call (see _columns)
_TABLE_FIELDS = (
    "status", "case", "file", "framework", "check", "family", "params", "rerun", "reproducer",
    "tags", "expected_shape", "actual_shape", "expected_dtype", "actual_dtype", "max_abs_err",
    "max_rel_err", "max_err_over_bound", "max_err_over_tolerance", "tolerance_at_worst",
    "mismatched", "elements", "worst_index", "exception", "raised_by", "message", "divergence",
    "duration_s", "expect",
)  # fmt: skip
_table_fields = operator.attrgetter(*_TABLE_FIELDS)


def _columns(ordered: list[Result]) -> dict[str, list]:
    """The results for the HTML table, a list per _KEYS (a column at a time: what follows works on
    whole columns at C speed). Short keys, interned strings (case ids, shapes, tags, messages,
    baseline entries), 3-digit floats and no empty or derivable fields keep ~16,000 rows near two
    megabytes; the template's script expands them (see INTERNED there)."""
    # Each result's fields are read in one pass, then turned into columns: a pass over the results
    # per field missed the CPU's caches on every result every time where results lie far apart in
    # memory, as results unpickled a job at a time do (reading the fields of 20,000 such results
    # took 0.25-0.40 s of CPU, against 0.03-0.08 s read this way).
    rows = list(map(_table_fields, ordered))
    field = dict(zip(_TABLE_FIELDS, map(list, zip(*rows)))) if rows else {name: [] for name in _TABLE_FIELDS}
    params, case, file, framework = field["params"], field["case"], field["file"], field["framework"]
    expected_dtype, mismatched = field["expected_dtype"], field["mismatched"]
    dtypes = [p.get("dtype") or dtype for p, dtype in zip(params, expected_dtype)]
    # the results of a case share one params record (and in a loaded document, the results of a
    # baseline entry one divergence): each worked out once
    shared = {id(p): p for p in params}
    texts = {key: params_text(p) for key, p in shared.items()}
    divergences = {id(d): d for d in field["divergence"] if d}
    divergence_texts = {key: to_json(d) for key, d in divergences.items()}
    status_index = {s: i for i, s in enumerate(STATUSES)}

    return {
        "s": list(map(status_index.__getitem__, field["status"])),
        "c": case,
        "f": file,
        "fw": framework,
        "k": field["check"],
        "fa": [family if family and family != c else None for family, c in zip(field["family"], case)],
        "op": [p.get("op") for p in params],
        "dt": dtypes,
        "pt": [texts[id(p)] for p in params],
        # the script rebuilds the usual re-run line
        "r": [
            rerun if rerun != f"conformance run {f} --case '{c}' --framework {fw}" else None
            for rerun, f, c, fw in zip(field["rerun"], file, case, framework)
        ],
        "rp": field["reproducer"],
        "t": list(map(",".join, field["tags"])),
        "es": list(map(_shape, field["expected_shape"])),
        # 1: the expected shape
        "as": [
            1 if actual is not None and actual == expected else _shape(actual)
            for actual, expected in zip(field["actual_shape"], field["expected_shape"])
        ],
        "ed": [expected if expected != dtype else None for expected, dtype in zip(expected_dtype, dtypes)],
        "ad": [
            actual if actual != (expected or dtype) else None
            for actual, expected, dtype in zip(field["actual_dtype"], expected_dtype, dtypes)
        ],
        "ae": _shorts(field["max_abs_err"]),
        "re": _shorts(field["max_rel_err"]),
        "eb": _shorts(field["max_err_over_bound"]),
        "et": _shorts(field["max_err_over_tolerance"]),
        "tw": _shorts(field["tolerance_at_worst"]),
        "mm": mismatched,
        "el": field["elements"],
        "wi": [index if m else None for index, m in zip(field["worst_index"], mismatched)],
        "x": field["exception"],
        "rb": field["raised_by"],
        "m": field["message"],
        "dv": [divergence_texts[id(d)] if d else None for d in field["divergence"]],
        "d": _shorts(field["duration_s"]),
        "ex": [expect if expect != "ok" else None for expect in field["expect"]],
    }


def _shorts(values: list[Any]) -> list[Any]:
    """_short of each value. A value repeats (20,000 results hold ~5,000 of each error), so each
    distinct float is worked out once, the finite ones in one %-format call ("%.3g" is the format
    above): one by one, these were the table's slowest columns."""
    if not set(map(type, values)) <= {float, type(None)}:
        return [_short(v) for v in values]
    distinct = set(values)
    distinct.discard(None)
    # a zero is its own _short: left out, as -0.0 == 0.0 would take the other's sign
    finite = [v for v in distinct if v and math.isfinite(v)]
    known: dict[float, Any] = dict(zip(finite, map(float, ("%.3g " * len(finite) % tuple(finite)).split())))
    known.update((v, _short(v)) for v in distinct if not math.isfinite(v))
    return list(map(known.get, values, values))


def _string_index(columns: dict[str, list]) -> dict[str, int]:
    """The distinct strings of the INTERNED columns, numbered in the order that reading the table a
    row at a time meets them."""
    interned = [columns[key] for key in _KEYS if key in _INTERNED]
    try:  # every value, strings or not, in that order at C speed
        met = dict.fromkeys(itertools.chain.from_iterable(zip(*interned)))
    except TypeError:  # a value that cannot be a key, so no string
        met = dict.fromkeys(v for row in zip(*interned) for v in row if isinstance(v, str))
    return {value: i for i, value in enumerate(v for v in met if v and isinstance(v, str))}


def _interned(column: list, index: dict[str, int], lookup: dict[Any, int | None]) -> tuple[list, bool]:
    """A column with each string replaced by its number in the strings table, empty ones by null;
    and whether null is its only empty value (numbers and nulls only). ``lookup`` is the index
    with "" and 0 (what ``v or None`` makes null) added."""
    if set(map(type, column)) <= {str, int, type(None)}:  # at C speed, where no value needs a question
        return list(map(lookup.get, column, column)), True
    return [index[v] if v and isinstance(v, str) else (v or None) for v in column], False


def _present_rows(column: list, only_null_empty: bool = False) -> tuple[int, Iterator[int]]:
    """How many rows have the column's field (a value that is not null, "", [] or {}), and which,
    in order (lazily: of a dense column only the first is read)."""
    if not only_null_empty:
        kinds = set(map(type, column))
        only_null_empty = kinds <= {type(None), bool, int, float, str, list, dict} and not any(
            column.count(empty) for kind, empty in ((str, ""), (list, []), (dict, {})) if kind in kinds
        )
    if only_null_empty:  # at C speed
        rows = itertools.compress(range(len(column)), map(operator.is_not, column, itertools.repeat(None)))
        return len(column) - column.count(None), rows
    present = [i for i, v in enumerate(column) if v is not None and v != "" and v != [] and v != {}]
    return len(present), iter(present)


def _table_data(results: list[Result]) -> Markup:
    # failures first, as the table opens: crash, timeout, error, fail, xpass, xfail, then the rest
    ordered = sorted(results, key=lambda r: SEVERITY.get(r.status, 99))
    n = len(ordered)
    values = _columns(ordered)
    # one table of distinct strings
    index = _string_index(values)
    lookup: dict[Any, int | None] = {**index, "": None, 0: None}
    # by column, not by row: the keys are written once, not once per row (a third of the page);
    # a field most rows have is a list (null where absent), a rare one an object by row index
    found: list[tuple[int, int, str, Any]] = []  # (first row with it, place in a row, key, column)
    for place, key in enumerate(_KEYS):
        column, only_null_empty = (
            _interned(values[key], index, lookup) if key in _INTERNED else (values[key], False)
        )
        count, rows = _present_rows(column, only_null_empty)
        if count:
            first = next(rows)
            kept = column if 2 * count >= n else {str(i): column[i] for i in (first, *rows)}
            found.append((first, place, key, kept))
    columns = {key: column for _, _, key, column in sorted(found, key=lambda f: f[:2])}
    # (finite: every float column went through _shorts, which writes non-finite ones as strings)
    table = {"statuses": STATUSES, "strings": list(index), "n": n, "columns": columns}
    return script_json(table, finite=True)


def _result_view(r: Result) -> dict[str, Any]:
    divergence = r.divergence or {}
    return {
        "status": r.status,
        "framework": r.framework,
        "case": r.case,
        "file": r.file,
        "label": f"{Path(r.file).name}::{r.case}",
        "check": r.check,
        "params": params_text(r.params),
        "shape": shape_diff_text(r),
        "numeric": numeric_diff_text(r),
        "message": r.message,
        "reason": divergence.get("reason", ""),
        "link": safe_link(divergence.get("link")),
        "raw_link": divergence.get("link") or "",
        "rerun": r.rerun,
        "reproducer": r.reproducer,
    }


def _cause_view(cause: Cause, examples: int) -> dict[str, Any]:
    n = len(cause.results)
    return {
        "status": cause.representative.status,
        "framework": cause.framework,
        "check": cause.check,
        "kind": cause.kind,
        "count": n,
        "statuses": counts_text((s, cause.statuses[s]) for s in LISTED if cause.statuses[s]),
        "variants": ", ".join(cause.variants),
        "region": cause.region,
        "reason": cause.reason,
        "link": safe_link(cause.link),
        "checks": ", ".join(dict.fromkeys(r.check for r in cause.results)),
        "cases": len({(r.file, r.case) for r in cause.results}),
        "examples": [_result_view(r) for r in cause.examples(examples)],
    }


def _marked_cells(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**c, "text": marked((c["kind"], c["text"]), HTML_MARKS)} for c in cells]


def _changes_view(document: dict[str, Any], results: list[Result]) -> dict[str, Any] | None:
    found = document.get("changes")
    if not found:
        return None
    by_key = {r.key: r for r in results}
    lists = []
    for kind, title in (
        ("new_failures", "New failures"),
        ("fixed", "Fixed"),
        ("status_changes", "Other status changes"),
        ("drift", "Numeric drift"),
    ):
        records = found.get(kind) or []
        rows = []
        for record in records[:500]:
            r = by_key.get((record["file"], record["case"], record["framework"], record["check"]))
            rows.append({**record, "label": f"{Path(record['file']).name}::{record['case']}",
                         "message": r.message if r else "", "base_eb": fmt_number(record["base_eb"]),
                         "head_eb": fmt_number(record["head_eb"])})  # fmt: skip
        lists.append({"kind": kind, "title": title, "count": len(records), "rows": rows})
    return {
        "line": changes.counts_line(found),
        "base": found.get("base") or {},
        "lists": lists,
        "added": [f"{Path(r['file']).name}::{r['case']}" for r in found.get("added") or []][:500],
        "removed": [f"{Path(r['file']).name}::{r['case']}" for r in found.get("removed") or []][:500],
        "n_added": len(found.get("added") or []),
        "n_removed": len(found.get("removed") or []),
    }


def render_html(document: dict[str, Any]) -> str:
    results = document_results(document)
    frameworks = frameworks_of(document, results)
    word, line = verdict(results, bool(document.get("interrupted")))
    families = families_of(results)
    versions = document.get("frameworks") or {}
    check_columns, check_rows = check_matrix(frameworks, results)
    failing_first = lambda f: not any(c[s] for c in f.counts.values() for s in FAILING)  # noqa: E731
    shown = sorted((f for f in families if f.diverges), key=failing_first)
    error_parity = [
        {**row, "cells": _marked_cells(row["cells"])} for row in error_parity_matrix(frameworks, results)
    ]
    comparison = [
        {**row, "cells": _marked_cells(row["cells"])} for row in comparison_by_family(frameworks, results)
    ]
    maps = parameter_maps(frameworks, results)
    context = {
        "title": TITLE,
        "verdict": word,
        "verdict_line": line,
        "interrupted": bool(document.get("interrupted")),
        "changes": _changes_view(document, results),
        "causes": [_cause_view(c, 3) for c in causes(results)],
        "known": [_cause_view(c, 5) for c in causes(results, known=True)],
        "versions": [(name, versions.get(name, "?")) for name in frameworks],
        "environments": environment_rows(document),
        "machines": machine_rows(document),
        "inactive": inactive_rows(document),
        "statuses": STATUSES,
        "summary": summary_rows(frameworks, results),
        "frameworks": frameworks,
        "check_columns": check_columns,
        "check_rows": [
            {"framework": name, "cells": [{"kind": c[0], "text": marked(c, HTML_MARKS)} for c in cells]}
            for name, *cells in check_rows
        ],
        "error_parity": error_parity,
        "comparison": comparison,
        "shown_families": [_html_family(f, frameworks) for f in shown],
        "folded_families": [_html_family(f, frameworks) for f in families if not f.diverges],
        "maps": [
            {"framework": name, "svgs": [Markup(svg.parameter_map(m)) for m in maps if m.framework == name]}
            for name in frameworks
            if any(m.framework == name for m in maps)
        ],
        "headroom": Markup(svg.headroom_chart(headroom(frameworks, results))),
        "closest": [
            _result_view(r) | {"et": fmt_number(r.max_err_over_tolerance)}
            for r in closest_to_tolerance(results)
        ],
        "warnings": document.get("warnings") or [],
        "layer_tables": report_tables(document.get("layer_api") or []),
        "total": len(results),
        "data": _table_data(results),
    }
    return _templates().get_template("report.html.j2").render(**context)


def _html_family(family: Family, frameworks: list[str]) -> dict[str, Any]:
    cells = []
    for name in frameworks:
        cell = matrix_cell(family.counts.get(name))
        cells.append({"kind": cell[0], "text": marked(cell, HTML_MARKS)})
    return {"label": family.label, "checks": ", ".join(family.checks), "cells": cells}
