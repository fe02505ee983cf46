"""results.junit.xml: one testcase per result, for the test tabs of GitLab, Jenkins and others.

A suite per framework; a testcase is ``file::case[check]`` with classname ``framework.file``. fail and
xpass are failures, error, crash and timeout errors, xfail and unsupported skips (with the known
divergence's reason). Renders views only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.reports.views import (
    document_results,
    frameworks_of,
    numeric_diff_text,
    params_text,
    shape_diff_text,
)
from conformance.results import Result

FAILURE = frozenset({"fail", "xpass"})
ERROR = frozenset({"error", "crash", "timeout"})
SKIPPED = frozenset({"xfail", "unsupported"})
# XML 1.0 cannot carry most control characters, even escaped; exception texts sometimes hold them
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


#: what _clean replaces or _attribute escapes: a name without any is written as it is
_UNSAFE_ATTRIBUTE = re.compile('[&<>"\r\n\t\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')


def _clean(text: Any) -> str:
    return _NOT_XML.sub("?", str(text))


def _details(r: Result) -> str:
    return "\n".join(
        x
        for x in (
            params_text(r.params),
            shape_diff_text(r),
            numeric_diff_text(r),
            r.message,
            f"re-run: {r.rerun}",
        )
        if x and x != "re-run: "
    )


#: what ElementTree escapes in character data, and what it escapes besides in an attribute value
_TEXT_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
_ATTRIBUTE_ESCAPES = (*_TEXT_ESCAPES, ('"', "&quot;"), ("\r", "&#13;"), ("\n", "&#10;"), ("\t", "&#09;"))


def _escaped(text: str, escapes: tuple[tuple[str, str], ...]) -> str:
    for char, entity in escapes:
        if char in text:  # (most texts hold none: a scan, not a copy)
            text = text.replace(char, entity)
    return text


def _text(text: str) -> str:
    """Character data escaped as ElementTree writes it."""
    return _escaped(text, _TEXT_ESCAPES)


def _attribute(text: str) -> str:
    """An attribute value escaped as xml.etree.ElementTree writes one (which this module used to,
    at three times the cost)."""
    return _escaped(text, _ATTRIBUTE_ESCAPES)


def _element(
    tag: str, attributes: dict[str, str], text: str = "", children: Sequence[str] = (), depth: int = 0
) -> str:
    """One element as ElementTree writes it once ET.indent(space=" ") has laid it out ``depth``
    levels down: an empty one closes itself; each child on a line of its own, one space deeper."""
    opened = f"<{tag}" + "".join(f' {name}="{_attribute(value)}"' for name, value in attributes.items())
    if children:
        line = "\n" + " " * (depth + 1)
        return f"{opened}>{line}{line.join(children)}\n{' ' * depth}</{tag}>"
    return f"{opened}>{_text(text)}</{tag}>" if text else f"{opened} />"


def _testcase(r: Result, classname: str, file: str) -> str:
    """One <testcase> (depth 2), with its failure, error or skip; classname and file come escaped.
    Written out rather than by _element: there is one per result."""
    name = f"{r.case}[{r.check}]"
    if _UNSAFE_ATTRIBUTE.search(name):
        name = _attribute(_clean(name))
    opened = f'<testcase name="{name}" classname="{classname}" file="{file}" time="{r.duration_s or 0:.3f}"'
    if r.status in FAILURE:
        inner = _element(
            "failure", {"message": _clean(r.message or r.status), "type": r.status}, _clean(_details(r))
        )
    elif r.status in ERROR:
        kind = r.exception or r.status
        inner = _element(
            "error", {"message": _clean(r.message or r.status), "type": _clean(kind)}, _clean(_details(r))
        )
    elif r.status in SKIPPED:
        why = (r.divergence or {}).get("reason") or r.message or r.status
        inner = _element("skipped", {"message": _clean(f"{r.status}: {why}")})
    else:
        return f"{opened} />"
    return f"{opened}>\n   {inner}\n  </testcase>"


def render_junit(document: dict[str, Any]) -> str:
    """The XML that ElementTree wrote (ET.indent with one space), written as text: building and
    serialising its elements took most of the time for 20,000 results."""
    results = document_results(document)
    totals: Counter = Counter()
    suites = []
    by_framework: dict[str, list[Result]] = {}
    for r in results:
        by_framework.setdefault(r.framework, []).append(r)
    for name in frameworks_of(document, results):
        mine = by_framework.get(name, [])
        counts = Counter(
            "failures" if r.status in FAILURE else "errors" if r.status in ERROR else "skipped"
            for r in mine
            if r.status not in ("pass",)
        )
        # by file: a suite holds thousands of one file's results
        classnames: dict[str, tuple[str, str]] = {}
        for r in mine:
            if r.file not in classnames:
                classname = _clean(f"{r.framework}.{Path(r.file).stem}")
                classnames[r.file] = (_attribute(classname), _attribute(_clean(r.file)))
        attributes = {
            "name": _clean(name),
            "tests": str(len(mine)),
            "failures": str(counts["failures"]),
            "errors": str(counts["errors"]),
            "skipped": str(counts["skipped"]),
            "time": f"{sum(r.duration_s or 0 for r in mine):.3f}",
        }
        cases = [_testcase(r, *classnames[r.file]) for r in mine]
        suites.append(_element("testsuite", attributes, children=cases, depth=1))
        totals.update(counts)
        totals["tests"] += len(mine)
    totals_text = {key: str(totals[key]) for key in ("tests", "failures", "errors", "skipped")}
    root = _element("testsuites", {"name": "conformance", **totals_text}, children=suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + root + "\n"
