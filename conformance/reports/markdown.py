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

from conformance import changes
from conformance.layer_api import report_tables
from conformance.reports.views import (
    ICONS,
    LISTED,
    MD_MARKS,
    MD_MESSAGE_CHARS,
    STATUSES,
    TITLE,
    Cause,
    Family,
    causes,
    check_matrix,
    comparison_by_family,
    counts_text,
    divergent,
    document_results,
    environment_rows,
    error_parity_matrix,
    families_of,
    fmt_number,
    frameworks_of,
    inactive_rows,
    machine_rows,
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
from conformance.results import FAILING, Result

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
    """A GitHub table without column padding (padding was 29 % of a large report). Cells must be
    escaped already (md_text / md_code): an unescaped pipe would add a column."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_details(summary: str, body: str, opened: bool = False) -> str:
    # GitHub renders Markdown inside <details> only with blank lines around it
    return f"<details{' open' if opened else ''}>\n<summary>{summary}</summary>\n\n{body}\n\n</details>"


#: report.md stays under this whatever the run (GitHub's job summary takes 1 MiB per step, and
#: drops the whole summary beyond it)
MARKDOWN_LIMIT = 1_000_000
#: rows of failing results listed per framework, and of families in each matrix, before folding
#: the rest into "N more"; halved until the report fits MARKDOWN_LIMIT
ROW_CAP = 400


def render_markdown(document: dict[str, Any]) -> str:
    """report.md: failing causes and changes first, then every matrix, then the divergences; long
    lists are capped so the report stays under MARKDOWN_LIMIT bytes whatever the run."""
    results = document_results(document)
    frameworks = frameworks_of(document, results)
    cap = ROW_CAP
    while True:
        text = _markdown(document, results, frameworks, cap)
        if len(text.encode()) <= MARKDOWN_LIMIT or cap <= 1:
            return text if len(text.encode()) <= MARKDOWN_LIMIT else _cut(text, MARKDOWN_LIMIT)
        cap //= 2


def _cut(text: str, limit: int) -> str:
    """The last resort of a size limit: cut at a line, say so."""
    note = "\n\n… cut here to stay within the size limit; report.html and results.json hold everything.\n"
    head = text.encode()[: limit - len(note.encode()) - 4].decode(errors="ignore")
    return head[: head.rfind("\n")] + note


def _markdown(document: dict[str, Any], results: list[Result], frameworks: list[str], cap: int) -> str:
    sections = [
        _md_verdict(document, results),
        md_changes(document, results, cap),
        md_causes(results, cap // 20 or 1, examples=3),
        _md_summary(frameworks, results),
        _md_versions(document, frameworks),
        md_machines(document),
        md_inactive(document),
        _md_check_matrix(frameworks, results),
        _md_error_parity(frameworks, results),
        _md_comparison(frameworks, results),
        _md_matrix(frameworks, results, cap),
        md_known(results, cap, examples=5),
        _md_divergences(frameworks, results, cap),
        _md_layer_api(document),
        _md_warnings(document, cap),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


# --- sections the summary shares ----------------------------------------------------------------


def _key_text(record: dict[str, Any]) -> str:
    return f"{Path(record['file']).name}::{record['case']}"


def md_changes(document: dict[str, Any], results: list[Result], cap: int) -> str:
    """What changed since the base run (``--compare-to``): new failures first."""
    found = document.get("changes")
    if not found:
        return ""
    base = found.get("base") or {}
    parts = [
        "## Changes since the base run",
        f"**{md_text(changes.counts_line(found))}** against the base run"
        + (f" ({md_code(base['command'])})" if base.get("command") else "")
        + f" of {base.get('results', '?')} results.",
    ]
    by_key = {r.key: r for r in results}
    for kind, title in (
        ("new_failures", "New failures"),
        ("fixed", "Fixed"),
        ("status_changes", "Other status changes"),
        ("drift", "Numeric drift (err/tol grew tenfold or crossed half the tolerance)"),
    ):
        records = found.get(kind) or []
        if not records:
            continue
        lines = []
        for record in records[:cap]:
            r = by_key.get((record["file"], record["case"], record["framework"], record["check"]))
            line = (
                f"- {md_text(record['framework'])} {md_code(_key_text(record))} {md_text(record['check'])}: "
                f"{record['base'] or 'absent'} → {record['head']}"
            )
            if kind == "drift":
                line += f" (err/tol {fmt_number(record['base_eb'])} → {fmt_number(record['head_eb'])})"
            elif r is not None and r.message and record["head"] not in ("pass", None):
                line += f": {md_text(r.message, 160)}"
            lines.append(line)
        if len(records) > cap:
            lines.append(f"- … {len(records) - cap} more in results.json (`changes.{kind}`)")
        body = "\n".join(lines)
        opened = kind == "new_failures"
        parts.append(_md_details(f"{title} ({len(records)})", body, opened=opened))
    for kind, title in (("added", "Cases added"), ("removed", "Cases removed")):
        records = found.get(kind) or []
        if records:
            shown = ", ".join(md_code(_key_text(r)) for r in records[:cap])
            more = f" … and {len(records) - cap} more" if len(records) > cap else ""
            parts.append(f"{title} ({len(records)}): {shown}{more}")
    return "\n\n".join(parts)


def cause_title(cause: Cause) -> str:
    statuses = counts_text((s, cause.statuses[s]) for s in LISTED if cause.statuses[s])
    n = len(cause.results)
    return (
        f"{ICONS.get(cause.representative.status, '')} **{md_text(cause.framework)}** · "
        f"{md_text(cause.check)} · {md_text(cause.kind)}: {n} result{'s' * (n != 1)} ({statuses})"
    )


def cause_block(cause: Cause, examples: int) -> str:
    """One cause: which variants have it, its region, and representative results with their
    parameters, numbers and re-run command."""
    lines = [
        f"- {cause_title(cause)}",
        f"  - variants: {md_text(', '.join(cause.variants))} · "
        f"region (every one has): {md_text(cause.region)}",
    ]
    for r in cause.examples(examples):
        numbers = "; ".join(x for x in (shape_diff_text(r), numeric_diff_text(r)) if x)
        lines.append(
            f"  - {md_code(f'{Path(r.file).name}::{r.case}')} on {md_text(r.framework)}: "
            f"{md_text(params_text(r.params))}"
            + (f"; {md_text(numbers)}" if numbers else "")
            + (f"  \n    {md_text(r.message, MD_MESSAGE_CHARS)}" if r.message else "")
            + (f"  \n    re-run: {md_code(r.rerun)}" if r.rerun else "")
            + (f" · script: {md_code(r.reproducer)} in the report directory" if r.reproducer else "")
        )
    return "\n".join(lines)


def md_causes(results: list[Result], limit: int, examples: int = 1, more: str = "below") -> str:
    """Failing results grouped by cause, the most severe and most frequent first."""
    found = causes(results)
    if not found:
        return ""
    total = sum(len(c.results) for c in found)
    parts = [f"## Failing results by cause ({len(found)} cause{'s' * (len(found) != 1)}, {total} results)"]
    parts += [cause_block(c, examples) for c in found[:limit]]
    if len(found) > limit:
        rest = found[limit:]
        n = sum(len(c.results) for c in rest)
        parts.append(f"{len(rest)} more causes ({n} results) {more}.")
    return "\n\n".join(parts)


def md_known(results: list[Result], cap: int, examples: int = 3, reason_chars: int | None = None) -> str:
    """Known divergences: one row per baseline reason, with its count and example cases."""
    found = causes(results, known=True)
    if not found:
        return ""
    rows = []
    for c in found[:cap]:
        cases = ", ".join(md_code(f"{Path(r.file).name}::{r.case}") for r in c.examples(examples))
        unique = len({(r.file, r.case) for r in c.results})
        more = f" … {unique - examples} more" if unique > examples else ""
        reason = md_text(c.reason, reason_chars) + (
            f" ({md_link('link', c.link)})" if safe_link(c.link) else ""
        )
        checks = ", ".join(dict.fromkeys(r.check for r in c.results))
        rows.append([md_text(c.framework), reason, str(len(c.results)), md_text(", ".join(c.variants)),
                     md_text(checks), cases + more])  # fmt: skip
    total = sum(len(c.results) for c in found)
    parts = [
        f"## Known divergences ({len(found)} reasons, {total} results)",
        "One row per reason in the baseline (`cases/known_divergences*.yaml`); "
        "xfail results do not fail the gate.",
        _md_table(rows, ["framework", "reason", "results", "variants", "checks", "example cases"]),
    ]
    if len(found) > cap:
        parts.append(f"… {len(found) - cap} more reasons in report.html.")
    return "\n\n".join(parts)


def md_machines(document: dict[str, Any]) -> str:
    rows = machine_rows(document)
    if not rows:
        return ""
    columns = ["run", "cpu", "features", "cores", "os", "env", "builds"]
    return (
        "## Machines\n\nWhat selects kernels on each run: CPU and its ISA features, cores, OS and libc, "
        + (
            "kernel environment variables, and each framework's build.\n\n"
            + _md_table([[md_text(row[c]) for c in columns] for row in rows], columns)
        )
    )


def md_inactive(document: dict[str, Any]) -> str:
    rows = inactive_rows(document)
    if not rows:
        return ""
    columns = ["framework", "entry", "when", "why not", "where", "reason"]
    keys = ["framework", "entry", "when", "why", "where", "reason"]
    table = _md_table([[md_text(row[k]) for k in keys] for row in rows], columns)
    title = f"## Not applicable on this machine ({len(rows)})"
    return f"{title}\n\nBaseline entries whose `when:` does not hold on this run.\n\n{table}"


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
    commands = [
        f"- run {row['run']}: {md_code(row['command'])}" + (f" ({row['reused']})" if row["reused"] else "")
        for row in env_rows
        if row["command"]
    ]
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


def _capped(items: list, cap: int, what: str) -> tuple[list, str]:
    if len(items) <= cap:
        return items, ""
    return items[:cap], f"… {len(items) - cap} more {what} in report.html and results.json."


def _md_matrix(frameworks: list[str], results: list[Result], cap: int) -> str:
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
    # the failing families first, then the known ones
    shown.sort(key=lambda f: not any(c[s] for c in f.counts.values() for s in FAILING))
    if shown:
        listed, more = _capped(shown, cap, "families")
        parts.append(_md_table(rows(listed), headers) + (f"\n\n{more}" if more else ""))
    else:
        parts.append("No family diverges on any framework.")
    if folded:
        summary = f"{len(folded)} famil{'ies' if len(folded) != 1 else 'y'} without divergences"
        listed, more = _capped(folded, cap, "families")
        parts.append(_md_details(summary, _md_table(rows(listed), headers) + (f"\n\n{more}" if more else "")))
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
        # a relative link is dead in a PR comment or job summary: name the file instead
        (md_code(r.rerun) if r.rerun else "")
        + (f"<br>script: {md_code(r.reproducer)} in the report directory" if r.reproducer else ""),
    ]


def _md_divergences(frameworks: list[str], results: list[Result], cap: int) -> str:
    """Every failing result, per framework (known divergences are listed by reason above)."""
    grouped = {
        name: [r for r in listed if r.status in FAILING] for name, listed in divergent(results).items()
    }
    grouped = {name: listed for name, listed in grouped.items() if listed}
    if not grouped:
        known = (
            " (known divergences are listed by reason above)"
            if any(r.status == "xfail" for r in results)
            else ""
        )
        return f"## All failing results\n\nNone{known}."
    parts = ["## All failing results"]
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
        shown, more = _capped(listed, cap, "failing results")
        table = _md_table([_md_divergence_row(r) for r in shown], headers) + (f"\n\n{more}" if more else "")
        parts.append(_md_details(summary, table, opened=True))
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


def _md_warnings(document: dict[str, Any], cap: int) -> str:
    warnings = document.get("warnings") or []
    if not warnings:
        return ""
    shown, more = _capped(warnings, cap, "warnings")
    return (
        "## Warnings\n\n" + "\n".join(f"- {md_text(w, 500)}" for w in shown) + (f"\n\n{more}" if more else "")
    )
