"""Reports from a results document: ``results.json`` for machines, ``summary.md`` for a PR comment,
``report.md`` for a CI job summary, ``report.html`` (one offline file) and ``results.junit.xml`` for
CI test tabs.

:mod:`.views` computes what every format shows; one small module per format only renders it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conformance.reports.html import render_html
from conformance.reports.jsondoc import load_document, pack, to_json
from conformance.reports.junit import render_junit
from conformance.reports.markdown import render_markdown
from conformance.reports.summary import render_summary
from conformance.reports.views import rendering
from conformance.timings import Timings, maybe

__all__ = [
    "load_document",
    "render_html",
    "render_junit",
    "render_markdown",
    "render_summary",
    "to_json",
    "write_reports",
]


def write_reports(
    document: dict[str, Any], report_dir: str | Path, timings: Timings | None = None
) -> dict[str, Path]:
    """Write every report into ``report_dir``; return their paths by format. ``timings`` gets a
    phase per format."""
    directory = Path(report_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "results.json",
        "markdown": directory / "report.md",
        "html": directory / "report.html",
        "summary": directory / "summary.md",
        "junit": directory / "results.junit.xml",
    }
    renderers = {
        "json": lambda: to_json(pack(document)) + "\n",
        "markdown": lambda: render_markdown(document),
        "html": lambda: render_html(document),
        "summary": lambda: render_summary(document),
        "junit": lambda: render_junit(document),
    }
    with rendering():
        for name, render in renderers.items():
            with maybe(timings, f"report {name}"):
                paths[name].write_text(render(), encoding="utf-8")
    return paths
