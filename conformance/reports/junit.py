"""results.junit.xml: one testcase per result, for the test tabs of GitLab, Jenkins and others.

A suite per framework; a testcase is ``file::case[check]`` with classname ``framework.file``. fail and
xpass are failures, error, crash and timeout errors, xfail and unsupported skips (with the known
divergence's reason). Renders views only.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
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


def _testcase(suite: ET.Element, r: Result, classname: str) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=_clean(f"{r.case}[{r.check}]"),
        classname=classname,
        file=_clean(r.file),
        time=f"{r.duration_s or 0:.3f}",
    )
    if r.status in FAILURE:
        ET.SubElement(case, "failure", message=_clean(r.message or r.status), type=r.status).text = _clean(
            _details(r)
        )
    elif r.status in ERROR:
        kind = r.exception or r.status
        ET.SubElement(case, "error", message=_clean(r.message or r.status), type=_clean(kind)).text = _clean(
            _details(r)
        )
    elif r.status in SKIPPED:
        why = (r.divergence or {}).get("reason") or r.message or r.status
        ET.SubElement(case, "skipped", message=_clean(f"{r.status}: {why}"))


def render_junit(document: dict[str, Any]) -> str:
    results = document_results(document)
    root = ET.Element("testsuites", name="conformance")
    totals: Counter = Counter()
    for name in frameworks_of(document, results):
        mine = [r for r in results if r.framework == name]
        counts = Counter(
            "failures" if r.status in FAILURE else "errors" if r.status in ERROR else "skipped"
            for r in mine
            if r.status not in ("pass",)
        )
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_clean(name),
            tests=str(len(mine)),
            failures=str(counts["failures"]),
            errors=str(counts["errors"]),
            skipped=str(counts["skipped"]),
            time=f"{sum(r.duration_s or 0 for r in mine):.3f}",
        )
        classnames: dict[str, str] = {}  # by file: a suite holds thousands of one file's results
        for r in mine:
            if r.file not in classnames:
                classnames[r.file] = _clean(f"{r.framework}.{Path(r.file).stem}")
            _testcase(suite, r, classnames[r.file])
        totals.update(counts)
        totals["tests"] += len(mine)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(totals[key]))
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
