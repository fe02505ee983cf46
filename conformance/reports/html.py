"""report.html: one offline file (inline CSS, JS and SVG, nothing fetched) with the matrices, the
divergences and a filterable, sortable table of every result. Renders views only (:mod:`.views`).
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from conformance.layer_api import report_tables
from conformance.reports.jsondoc import to_json
from conformance.reports.views import (
    HTML_MARKS,
    HTML_MESSAGE_CHARS,
    LISTED,
    STATUSES,
    TITLE,
    Family,
    check_matrix,
    comparison_by_family,
    counts_text,
    divergent,
    environment_rows,
    error_parity_matrix,
    families_of,
    frameworks_of,
    marked,
    matrix_cell,
    numeric_diff_text,
    params_text,
    safe_link,
    shape_diff_text,
    shorten,
    summary_rows,
    verdict,
)
from conformance.results import FAILING, Result, results_of


@functools.lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("conformance.reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def script_json(value: Any) -> Markup:
    """JSON safe inside <script>: no "</script>", "<!--" or entity can close or confuse the tag."""
    text = to_json(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


class _Strings:
    """A table of distinct strings: rows refer to repeated values (file, params, rerun) by index."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, value: str | None) -> int | None:
        if not value:
            return None
        if value not in self._index:
            self._index[value] = len(self.values)
            self.values.append(value)
        return self._index[value]


def _row_record(r: Result, strings: _Strings) -> dict[str, Any]:
    """One result for the HTML table. Short keys, interned strings and no empty fields keep ~5,000
    rows around a megabyte; the template's script expands them (see INTERNED there)."""
    fields = {
        "s": r.status,
        "c": r.case,
        "f": strings(r.file),
        "fw": strings(r.framework),
        "k": strings(r.check),
        "fa": strings(r.family if r.family and r.family != r.case else None),
        "op": strings(r.params.get("op")),
        "dt": strings(r.params.get("dtype") or r.expected_dtype),
        "pt": strings(params_text(r.params)),
        "r": strings(r.rerun),
        "t": r.tags,
        "es": r.expected_shape,
        "as": r.actual_shape,
        "ed": r.expected_dtype,
        "ad": r.actual_dtype,
        "ae": r.max_abs_err,
        "re": r.max_rel_err,
        "eb": r.max_err_over_bound,
        "tw": r.tolerance_at_worst,
        "mm": r.mismatched,
        "el": r.elements,
        "wi": r.worst_index,
        "x": r.exception,
        "m": r.message,
        "dv": r.divergence,
        "d": None if r.duration_s is None else round(r.duration_s, 4),
        "ex": r.expect if r.expect != "ok" else None,
    }
    if fields["ed"] == r.params.get("dtype"):
        fields["ed"] = None  # the same as "dt"
    return {k: v for k, v in fields.items() if v not in (None, "", [], {})}


def _table_data(results: list[Result]) -> Markup:
    strings = _Strings()
    rows = [_row_record(r, strings) for r in results]
    return script_json({"statuses": STATUSES, "strings": strings.values, "rows": rows})


def _html_divergence(r: Result) -> dict[str, Any]:
    divergence = r.divergence or {}
    return {
        "status": r.status,
        "case": r.case,
        "file": r.file,
        "label": f"{Path(r.file).name}::{r.case}",
        "check": r.check,
        "params": params_text(r.params),
        "shape": shape_diff_text(r),
        "numeric": numeric_diff_text(r),
        "message": shorten(r.message, HTML_MESSAGE_CHARS) if r.message else "",
        "full_message": r.message,
        "reason": divergence.get("reason", ""),
        "link": safe_link(divergence.get("link")),
        "raw_link": divergence.get("link") or "",
        "rerun": r.rerun,
        "reproducer": r.reproducer,
    }


def _html_divergence_group(framework: str, listed: list[Result]) -> dict[str, Any]:
    counts = Counter(r.status for r in listed)
    return {
        "framework": framework,
        "results": [_html_divergence(r) for r in listed],
        "counts": counts_text((s, counts[s]) for s in LISTED if counts[s]),
        "failing": any(r.status in FAILING for r in listed),
    }


def _html_family(family: Family, frameworks: list[str]) -> dict[str, Any]:
    cells = []
    for name in frameworks:
        cell = matrix_cell(family.counts.get(name))
        cells.append({"kind": cell[0], "text": marked(cell, HTML_MARKS)})
    return {"label": family.label, "checks": ", ".join(family.checks), "cells": cells}


def render_html(document: dict[str, Any]) -> str:
    results = results_of(document)
    frameworks = frameworks_of(document, results)
    word, line = verdict(results, bool(document.get("interrupted")))
    families = families_of(results)
    grouped = divergent(results)
    versions = document.get("frameworks") or {}
    context = {
        "title": TITLE,
        "verdict": word,
        "verdict_line": line,
        "interrupted": bool(document.get("interrupted")),
        "versions": [(name, versions.get(name, "?")) for name in frameworks],
        "environments": environment_rows(document),
        "statuses": STATUSES,
        "summary": summary_rows(frameworks, results),
        "frameworks": frameworks,
        "check_columns": check_matrix(frameworks, results)[0],
        "check_rows": [
            {"framework": name, "cells": [{"kind": c[0], "text": marked(c, HTML_MARKS)} for c in cells]}
            for name, *cells in check_matrix(frameworks, results)[1]
        ],
        "error_parity": error_parity_matrix(frameworks, results),
        "comparison": comparison_by_family(frameworks, results),
        "shown_families": [_html_family(f, frameworks) for f in families if f.diverges],
        "folded_families": [_html_family(f, frameworks) for f in families if not f.diverges],
        "divergences": [_html_divergence_group(n, grouped[n]) for n in frameworks if n in grouped],
        "warnings": document.get("warnings") or [],
        "layer_tables": report_tables(document.get("layer_api") or []),
        "total": len(results),
        "data": _table_data(results),
    }
    return _templates().get_template("report.html.j2").render(**context)
