"""report.md: for a PR comment or a CI job summary. Renders views only (:mod:`.views`).

Case ids, messages and links come from user files and exception texts: every text is escaped for
Markdown, and only http(s) links ever become links.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tabulate import tabulate

from conformance.layer_api import report_tables
from conformance.reports.views import (
    ICONS,
    LISTED,
    MD_MARKS,
    MD_MESSAGE_CHARS,
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

# Backslash-escape what would otherwise become HTML, an entity, code, emphasis or a table column,
# and the "](" of an inline link; lone brackets, as in shapes, stay readable in the raw text.
_MD_SPECIAL = re.compile(r"([\\`*<>|&]|(?<=\])\()")


def md_text(text: Any, limit: int | None = None) -> str:
    text = " ".join(str(text).split())
    if limit is not None:
        text = shorten(text, limit)
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(text: str) -> str:
    """A code span that survives a table cell: no newlines, escaped pipes, a long enough fence."""
    text = " ".join(text.split()).replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_link(text: str, link: Any) -> str:
    url = safe_link(link)
    return f"[{md_text(text)}]({url})" if url else md_text(link)


def _md_table(rows: list[list[Any]], headers: list[str]) -> str:
    # disable_numparse keeps versions such as "2.10" and ids such as "1e3" exactly as written
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _md_details(summary: str, body: str, opened: bool = False) -> str:
    # GitHub renders Markdown inside <details> only with blank lines around it
    return f"<details{' open' if opened else ''}>\n<summary>{summary}</summary>\n\n{body}\n\n</details>"


def render_markdown(document: dict[str, Any]) -> str:
    results = results_of(document)
    frameworks = frameworks_of(document, results)
    sections = [
        _md_verdict(document, results),
        _md_versions(document, frameworks),
        _md_summary(frameworks, results),
        _md_check_matrix(frameworks, results),
        _md_error_parity(frameworks, results),
        _md_comparison(frameworks, results),
        _md_matrix(frameworks, results),
        _md_divergences(frameworks, results),
        _md_layer_api(document),
        _md_warnings(document),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _md_verdict(document: dict[str, Any], results: list[Result]) -> str:
    word, line = verdict(results, bool(document.get("interrupted")))
    icon = "✅" if word == "PASS" else "❌"
    return f"# {TITLE}: {word}\n\n{icon} **{word}** — {md_text(line)}"


def _md_versions(document: dict[str, Any], frameworks: list[str]) -> str:
    versions = document.get("frameworks") or {}
    rows = [[md_text(name), md_text(versions.get(name, "?"))] for name in frameworks]
    columns = ["run", "python", "platform", "machine", "conformance", "numpy", "frameworks"]
    env_rows = environment_rows(document)
    for row in env_rows:
        row["run"] += " (interrupted)" if row["interrupted"] else ""
    env = _md_table([[md_text(row[c]) for c in columns] for row in env_rows], columns)
    commands = [f"- run {row['run']}: {md_code(row['command'])}" for row in env_rows if row["command"]]
    label = "Environment" + (" (one row per merged run)" if len(env_rows) > 1 else "")
    parts = ["## Versions", _md_table(rows, ["framework", "version"]), label, env]
    if commands:
        parts.append("\n".join(commands))
    return "\n\n".join(parts)


def _md_summary(frameworks: list[str], results: list[Result]) -> str:
    rows = [[md_text(row[0]), *map(str, row[1:])] for row in summary_rows(frameworks, results)]
    return "## Summary\n\n" + _md_table(rows, ["framework", *STATUSES, "total"])


def _md_check_matrix(frameworks: list[str], results: list[Result]) -> str:
    checks, rows = check_matrix(frameworks, results)
    if not rows:
        return ""
    table = [[md_text(name), *(marked(cell, MD_MARKS) for cell in cells)] for name, *cells in rows]
    return "## Parity by check\n\n" + _md_table(table, ["framework", *checks])


def _md_error_parity(frameworks: list[str], results: list[Result]) -> str:
    rows = error_parity_matrix(frameworks, results)
    if not rows:
        return ""
    table = [
        [md_code(row["rule"]), *(md_text(f"{MD_MARKS[c['kind']]} {c['text']}".strip()) for c in row["cells"])]
        for row in rows
    ]
    legend = (
        "How each framework treats configurations that break each validity rule (`expect: error` cases): "
        "✅ every one rejected · ❌/⚠️ some accepted, crashed or hung (⚠️: a known divergence)."
    )
    return "## Error parity by rule\n\n" + legend + "\n\n" + _md_table(table, ["rule", *frameworks])


def _md_comparison(frameworks: list[str], results: list[Result]) -> str:
    rows = comparison_by_family(frameworks, results)
    if not any(c["kind"] not in ("none",) for row in rows for c in row["cells"]):
        return ""
    table = [
        [
            md_text(row["family"]),
            *(md_text(f"{MD_MARKS[c['kind']]} {c['text']}".strip()) for c in row["cells"]),
        ]
        for row in rows
    ]
    reasons = []
    for row in rows:
        for name, cell in zip(frameworks, row["cells"]):
            if cell["reasons"]:
                reasons.append(
                    f"- **{md_text(row['family'])} · {md_text(name)}**: {md_text('; '.join(cell['reasons']))}"
                )
    legend = (
        "Valid configurations with each parameter feature: divergent results (fail, error, crash, timeout, "
        "xfail) over those that ran, per framework; reasons below."
    )
    parts = ["## Framework comparison by parameter family", legend, _md_table(table, ["family", *frameworks])]
    if reasons:
        parts.append(_md_details(f"reasons ({len(reasons)})", "\n".join(reasons)))
    return "\n\n".join(parts)


def _md_matrix(frameworks: list[str], results: list[Result]) -> str:
    families = families_of(results)
    if not families:
        return ""
    headers = ["family", "checks", *(md_text(f) for f in frameworks)]

    def rows(selected: list[Family]) -> list[list[str]]:
        return [
            [
                md_text(f.label),
                md_text(", ".join(f.checks)),
                *(marked(matrix_cell(f.counts.get(name)), MD_MARKS) for name in frameworks),
            ]
            for f in selected
        ]

    shown = [f for f in families if f.diverges]
    folded = [f for f in families if not f.diverges]
    parts = [
        "## Parity by case family",
        "✅ all pass · ❌ failing (fail, error, crash, timeout, or xpass: a known divergence that no longer "
        "reproduces) · ⚠️ known divergence (xfail) · — declared unsupported · cells count results "
        "(case × check) of the family.",
    ]
    if shown:
        parts.append(_md_table(rows(shown), headers))
    else:
        parts.append("No family diverges on any framework.")
    if folded:
        summary = f"{len(folded)} famil{'ies' if len(folded) != 1 else 'y'} without divergences"
        parts.append(_md_details(summary, _md_table(rows(folded), headers)))
    return "\n\n".join(parts)


def _md_divergence_row(r: Result) -> list[str]:
    diff = "; ".join(t for t in (shape_diff_text(r), numeric_diff_text(r)) if t)
    message = md_text(r.message, MD_MESSAGE_CHARS)
    if r.divergence:
        known = "**known divergence:** " + md_text(r.divergence.get("reason", ""), MD_MESSAGE_CHARS)
        if r.divergence.get("link"):
            known += " (" + md_link("link", r.divergence["link"]) + ")"
        message = f"{message}<br>{known}" if message else known
    return [
        f"{ICONS.get(r.status, '')} {r.status}",
        md_code(f"{Path(r.file).name}::{r.case}"),
        md_text(r.check),
        md_text(params_text(r.params)),
        md_text(diff),
        message,
        (md_code(r.rerun) if r.rerun else "")
        + (f"<br>[script]({r.reproducer})" if r.reproducer else ""),  # slugged path we wrote,
    ]


def _md_divergences(frameworks: list[str], results: list[Result]) -> str:
    grouped = divergent(results)
    if not grouped:
        return "## Divergences\n\nNone: every result passes or is declared unsupported."
    parts = ["## Divergences"]
    headers = ["status", "case", "check", "params", "diff", "message", "rerun"]
    for name in frameworks:
        listed = grouped.get(name)
        if not listed:
            continue
        counts = Counter(r.status for r in listed)
        summary = (
            f"<b>{html.escape(name)}</b>: {len(listed)} divergence{'s' * (len(listed) != 1)} "
            f"({counts_text((s, counts[s]) for s in LISTED if counts[s])})"
        )
        table = _md_table([_md_divergence_row(r) for r in listed], headers)
        # open what fails the gate; known divergences stay folded
        parts.append(_md_details(summary, table, opened=any(r.status in FAILING for r in listed)))
    return "\n\n".join(parts)


def _md_layer_api(document: dict[str, Any]) -> str:
    tables = report_tables(document.get("layer_api") or [])
    if not tables:
        return ""
    parts = ["## Layer API parity"]
    for table in tables:
        parts.append(f"### {table['title']}")
        if table["note"]:
            parts.append(md_text(table["note"]))
        parts.append(_md_table([[md_text(c) for c in row] for row in table["rows"]], table["headers"]))
    return "\n\n".join(parts)


def _md_warnings(document: dict[str, Any]) -> str:
    warnings = document.get("warnings") or []
    if not warnings:
        return ""
    return "## Warnings\n\n" + "\n".join(f"- {md_text(w)}" for w in warnings)
