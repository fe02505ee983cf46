"""GitHub Actions workflow commands for the first failures of a run: ``::error file=...,line=...,
title=...::message`` lines, which GitHub shows on the pull request's diff and checks page.

A case file inside the workspace gets a line number (where its case family is defined), so the
annotation lands on the YAML line; a case of the shipped library still shows, without a location.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conformance.results import FAILING


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _case_line(file: str, family: str) -> int | None:
    """1-based line of ``- id: family`` in ``file``, when the file is readable here."""
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    pattern = re.compile(rf"^\s*-?\s*id:\s*['\"]?{re.escape(family)}['\"]?\s*(#.*)?$")
    return next((n for n, line in enumerate(lines, 1) if pattern.match(line)), None)


def _workspace_relative(file: str) -> str:
    """GitHub places an annotation by a path relative to the repository (the working directory)."""
    path = Path(file)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        return path.relative_to(Path.cwd()).as_posix()
    return file


def annotation(record: Mapping[str, Any]) -> str:
    """One ``::error`` line for a failing results.json record."""
    file = str(record.get("file", ""))
    properties = {"file": _workspace_relative(file)}
    line = _case_line(file, str(record.get("family") or record.get("case", "")))
    if line is not None:
        properties["line"] = str(line)
    properties["title"] = (
        f"conformance {record.get('status', '?')}: {record.get('framework')} "
        f"{Path(file).name}::{record.get('case')} [{record.get('check')}]"
    )
    message = str(record.get("message", ""))
    if record.get("rerun"):
        message += f"\nre-run: {record['rerun']}"
    fields = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items())
    return f"::error {fields}::{_escape_data(message)}"


def annotations(document: Mapping[str, Any], limit: int = 10) -> list[str]:
    """``::error`` lines for the first ``limit`` results that fail the gate, in the document's order,
    and a ``::warning`` counting the rest (GitHub shows at most 10 errors per step anyway)."""
    failing = [r for r in document.get("results", []) if r.get("status") in FAILING]
    lines = [annotation(r) for r in failing[: max(limit, 0)]]
    if len(failing) > len(lines):
        rest = len(failing) - len(lines)
        lines.append(f"::warning title=conformance::{rest} more failing results: see the report")
    return lines


def load_results(path: str | Path) -> dict[str, Any]:
    """The results document at ``path`` (full records); ValueError naming the file when it is not one."""
    from conformance.reports.jsondoc import load_document

    try:
        return load_document(path)
    except OSError as exc:
        raise ValueError(f"{path}: not a readable results.json ({exc})") from None
