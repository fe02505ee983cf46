"""summary.md: what a reviewer reads in a minute, sized for a PR comment (GitHub takes 65,536
characters). Verdict, changes since the base run, counts per framework, failing results grouped by
cause (one representative each, with parameters, numbers and re-run command), known divergences by
reason, where in parameter space each framework diverges, the machines; whatever does not fit is
counted and left to report.md / report.html. Renders views only (:mod:`.views`).
"""

from __future__ import annotations

from typing import Any

from conformance.reports.markdown import (
    _md_table,
    _md_verdict,
    md_causes,
    md_changes,
    md_inactive,
    md_known,
    md_machines,
    md_text,
)
from conformance.reports.views import (
    STATUSES,
    document_results,
    frameworks_of,
    parameter_maps,
    summary_rows,
)
from conformance.results import Result

SUMMARY_LIMIT = 60_000
#: causes shown in full before "N more in the full report"; halved until the summary fits
CAUSES = 25


def render_summary(document: dict[str, Any]) -> str:
    results = document_results(document)
    frameworks = frameworks_of(document, results)
    cap = CAUSES
    while True:
        text = _summary(document, results, frameworks, cap)
        if len(text) <= SUMMARY_LIMIT or cap <= 1:
            break
        cap //= 2
    if len(text) > SUMMARY_LIMIT:  # only pathological texts (thousands of machines) get here
        note = "\n\n… cut to fit a PR comment; report.md holds the rest.\n"
        text = text[: SUMMARY_LIMIT - len(note)]
        text = text[: text.rfind("\n")] + note
    return text


def _summary(document: dict[str, Any], results: list[Result], frameworks: list[str], cap: int) -> str:
    more = "in the full report (report.md, report.html)"
    sections = [
        _md_verdict(document, results),
        md_changes(document, results, cap),
        _counts(frameworks, results),
        md_causes(results, cap, examples=1, more=more),
        md_known(results, cap, examples=2, reason_chars=240),
        _maps(frameworks, results, cap),
        md_machines(document),
        md_inactive(document),
        "The full report: report.md and report.html next to this file; every result in results.json.",
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _counts(frameworks: list[str], results: list[Result]) -> str:
    rows = summary_rows(frameworks, results)
    shown = [s for i, s in enumerate(STATUSES, 1) if any(row[i] for row in rows)]  # no all-zero columns
    index = {s: i for i, s in enumerate(STATUSES, 1)}
    table = [[md_text(row[0]), *(str(row[index[s]]) for s in shown), str(row[-1])] for row in rows]
    return "## Results per framework\n\n" + _md_table(table, ["framework", *shown, "total"])


def _maps(frameworks: list[str], results: list[Result], cap: int) -> str:
    """The report's parameter-space pictures as a table: each framework's hot spots per map."""
    maps = parameter_maps(frameworks, results)
    titles = list(dict.fromkeys(m.title for m in maps))
    rows = []
    for name in frameworks:
        cells = []
        for title in titles:
            found = next((m for m in maps if m.framework == name and m.title == title), None)
            spots = found.hot_spots(2) if found else []
            cells.append(
                "; ".join(f"{md_text(r)} · {md_text(c)}: {cell.text}" for r, c, cell in spots) or "none"
            )
        if any(c != "none" for c in cells):
            rows.append([md_text(name), *cells])
    if not rows:
        return ""
    return (
        "## Where frameworks diverge\n\nThe cells of the report's parameter maps with the highest "
        "divergence rate (divergent / ran, valid configurations).\n\n"
        + _md_table(rows[: max(cap, 1) * 4], ["framework", *map(md_text, titles)])
    )
