"""report.html in a real browser (headless Chromium, Debian's ``chromium`` package): no console
errors, failures shown first and coloured, a filter and a sort (kept in the address) change the rows.
Skipped where no Chromium is installed; ``.ci/run`` installs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conformance.reports import render_html
from tests.test_report import document, result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CONFORMANCE_REQUIRE_BROWSER"):
    raise RuntimeError("CONFORMANCE_REQUIRE_BROWSER is set (.ci/run) but no chromium is on PATH")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


def _chromium(page: Path, fragment: str = "", *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, "--virtual-time-budget=4000", *extra, page.as_uri() + fragment],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _dom(page: Path, fragment: str = "") -> tuple[str, list[str]]:
    """The page's DOM after its script ran, and every console message it logged."""
    run = _chromium(page, fragment, "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, re.findall(r":CONSOLE[^\]]*\] (.*)", run.stderr)


def _rows(dom: str) -> list[dict[str, str]]:
    """The rows of the table of all results: status, framework, case, check and err/bound."""
    body = dom[dom.index('<table id="all">') :]
    rows = []
    for tr in re.findall(r'<tr class="row[^"]*"[^>]*>(.*?)</tr>', body):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
        rows.append({"s": cells[0], "fw": cells[1], "c": cells[2], "k": cells[3], "eb": cells[6]})
    return rows


def _page(tmp_path: Path) -> Path:
    """600 passing results, then one planted failure last in the document."""
    results = [
        result(f"ok-{i:03d}", ("torch", "mlx")[i % 2], "pass", max_err_over_tolerance=0.001 * (i % 97))
        for i in range(600)
    ]
    results.append(
        result(
            "planted",
            "mlx",
            "fail",
            max_err_over_tolerance=3.5,
            message="12 of 2048 elements outside tolerance",
        )
    )
    page = tmp_path / "report.html"
    page.write_text(render_html(document(results)), encoding="utf-8")
    return page


def test_report_loads_without_console_errors_and_shows_the_failure_first(tmp_path: Path) -> None:
    page = _page(tmp_path)
    dom, console = _dom(page)
    assert console == [], f"console messages: {console}"
    assert re.search(r'data-ready-ms="\d+"', dom), "the script ran to its end"
    rows = _rows(dom)
    assert len(rows) == 500, "the first page of rows"
    assert rows[0]["c"] == "planted" and rows[0]["s"] == "fail", rows[0]
    assert '<tr class="row gate"' in dom, "a failing row is marked"
    first_cause = dom[dom.index('id="causes"') :]
    assert '<div class="cause fail"><b>mlx</b> · forward · values: 1 result' in first_cause
    family = re.search(r'<tr data-family="conv_transpose2d.yaml::planted">(.*?)</tr>', dom, re.S)
    assert family and '<td class="cell bad">✗ 1 fail / 1</td>' in family.group(1)
    checks = dom[dom.index('id="checks"') :]
    check_row = re.search(r"<tr><td>mlx</td>(.*?)</tr>", checks).group(1)
    assert '<td class="bad">✗ 1 fail / 301</td>' in check_row, check_row

    shot = tmp_path / "report.png"
    run = _chromium(page, "", f"--screenshot={shot}", "--window-size=1280,900")
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]


def test_filter_and_sort_from_the_address_change_the_rows(tmp_path: Path) -> None:
    page = _page(tmp_path)
    dom, console = _dom(page, "#fw=torch")
    assert console == []
    rows = _rows(dom)
    assert rows and {r["fw"] for r in rows} == {"torch"}
    assert '<option value="torch" selected' in dom or re.search(r'id="f-fw"', dom)
    dom, _ = _dom(page, "#s=!gate")
    assert [r["c"] for r in _rows(dom)] == ["planted"]
    dom, _ = _dom(page, "#sort=et&dir=1")
    ascending = [float(r["eb"]) for r in _rows(dom) if r["eb"]]
    assert ascending == sorted(ascending) and ascending[0] == 0.0, ascending[:5]
    assert _rows(dom)[0]["c"] != "planted", "the sort changed the order"


def test_the_browser_check_sees_a_page_that_throws(tmp_path: Path) -> None:
    page = _page(tmp_path)
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace('"use strict";', '"use strict"; null.x;', 1))
    _, console = _dom(broken)
    assert any("Uncaught TypeError" in line for line in console), console


PROBE = """<script>
window.addEventListener("load", function () {
  var root = document.documentElement;
  root.setAttribute("data-overflow", String(root.scrollWidth > window.innerWidth));
  // scroll the page to the results, then down through them
  var controls = document.getElementById("controls"), box = document.getElementById("all-wrap");
  controls.scrollIntoView();
  box.scrollTop = 300;
  window.scrollBy(0, 200);
  var th = document.getElementById("all").tHead.rows[0].cells[0].getBoundingClientRect();
  var top = Math.max(box.getBoundingClientRect().top, 0);
  var covered = th.top < controls.getBoundingClientRect().bottom - 1 || th.top > top + 2;
  covered = covered || box.scrollTop === 0;
  root.setAttribute("data-header-covered", String(covered));
});
</script>"""


@pytest.mark.parametrize("width", [1024, 1280, 1440])
def test_no_page_wide_overflow_and_sticky_controls_leave_headers_readable(tmp_path: Path, width: int) -> None:
    results = [
        result(f"long-{i}", "mlx", "fail", message="a very long framework message " * 40) for i in range(40)
    ]
    page = tmp_path / "report.html"
    page.write_text(render_html(document(results)).replace("</body>", PROBE + "</body>"), encoding="utf-8")
    run = _chromium(page, "", "--dump-dom", f"--window-size={width},900")
    assert run.returncode == 0, run.stderr[-2000:]
    assert 'data-overflow="false"' in run.stdout, f"the page is wider than a {width} px window"
    assert 'data-header-covered="false"' in run.stdout, f"the controls cover the column headers at {width} px"
