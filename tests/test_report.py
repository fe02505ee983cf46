"""Reports: results.json (strict JSON), report.md (PR comment / job summary), report.html (offline)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from pathlib import Path

import pytest

from conformance import reports
from conformance.reports import load_document, render_html, render_markdown, write_reports
from conformance.results import FAILING, STATUSES, Result, make_document, merge_documents, results_of

FILE = "cases/conv_transpose2d.yaml"
PARAMS = {
    "op": "conv_transpose2d",
    "input_shape": [1, 4, 8, 8],
    "out_channels": 8,
    "kernel_size": [3, 3],
    "stride": [2, 2],
    "padding": [1, 1],
    "output_padding": [1, 1],
    "dilation": [1, 1],
    "groups": 1,
    "bias": True,
    "dtype": "float32",
}
INJECTION = "</script><script>alert(1)</script>"
LINK = "https://github.com/ml-explore/mlx/issues/1234"


def result(case: str, framework: str, status: str, check: str = "forward", **fields) -> Result:
    fields.setdefault("family", case.removesuffix("-s1"))  # a matrix-expanded id names its family
    fields.setdefault("expected_shape", [1, 8, 16, 16])
    return Result(
        case=case,
        file=FILE,
        framework=framework,
        check=check,
        status=status,
        params=dict(PARAMS),
        expected_dtype="float32",
        rerun=f"conformance run {FILE} --case '{case}' --framework {framework}",
        **fields,
    )


def sample_results() -> list[Result]:
    return [
        result("plain-s1", "torch", "pass", actual_shape=[1, 8, 16, 16], max_abs_err=1e-7, mismatched=0),
        result("plain-s1", "mlx", "pass", actual_shape=[1, 8, 16, 16]),
        result("plain-s1", "torch", "pass", check="grad_input"),
        result("plain-s1", "mlx", "pass", check="grad_input"),
        result(
            "wrong-shape",
            "mlx",
            "fail",
            actual_shape=[1, 8, 15, 15],
            message="shape (1, 8, 15, 15) instead of (1, 8, 16, 16) (axis 2: 15 vs 16, axis 3: 15 vs 16)",
        ),
        result(
            "wrong-values",
            "mlx",
            "fail",
            actual_shape=[1, 8, 16, 16],
            max_abs_err=0.0123,
            max_rel_err=math.inf,
            max_err_over_bound=0.5,
            tolerance_at_worst=2.5e-6,
            mismatched=12,
            elements=2048,
            worst_index=[0, 3, 4, 5],
            message="12 of 2048 elements outside tolerance",
        ),
        result(
            "raises",
            "torch",
            "error",
            exception="RuntimeError",
            message="raised RuntimeError on a valid configuration: " + INJECTION,
        ),
        result("dies", "mlx", "crash", message="worker process killed by signal SIGABRT while running it"),
        result("hangs", "torch", "timeout", message="no result within the 120 s per-case timeout"),
        result(
            "op-ge-stride",
            "mlx",
            "xfail",
            check="error_parity",
            expect="error",
            expected_shape=None,
            actual_shape=[1, 8, 17, 17],
            message="returned shape (1, 8, 17, 17) instead of raising",
            divergence={"reason": "mlx accepts output_padding >= stride", "link": LINK, "entry": "op-*"},
        ),
        result(
            "fixed-now",
            "torch",
            "xpass",
            divergence={"reason": "was broken in 2.1", "entry": "fixed-*"},
            message="known divergence no longer reproduces; remove the entry",
        ),
        result("half-only", "mlx", "unsupported", message="mlx has no float64 on this device"),
    ]


def document(results: list[Result] | None = None, **kwargs) -> dict:
    kwargs.setdefault("warnings", ["known divergence at line 7 (mlx: 'gone-*') matches no result"])
    return make_document(results or sample_results(), {"torch": "2.13.0", "mlx": "0.32.4"}, **kwargs)


def section(markdown: str, title: str) -> str:
    """The text of one '## title' section of the Markdown."""
    start = markdown.index(f"## {title}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row whose first cell is ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row starting with {first_cell!r} in:\n{text}")


def strict_json(text: str) -> object:
    def reject(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


# --- results.json -------------------------------------------------------------------------------


def test_write_reports_writes_every_format(tmp_path: Path) -> None:
    paths = write_reports(document(), tmp_path / "new" / "dir")
    assert set(paths) == {"json", "markdown", "html", "summary", "junit"}
    names = ["results.json", "report.md", "report.html", "summary.md", "results.junit.xml"]
    assert [p.name for p in paths.values()] == names
    for path in paths.values():
        assert path.parent == tmp_path / "new" / "dir" and path.stat().st_size > 0


def test_reports_from_the_run_s_result_objects_are_those_from_its_records(tmp_path: Path) -> None:
    """A run hands write_reports the Result objects its document's records were made from (not
    made again from the records): every report is the same, byte for byte."""
    results = sample_results()
    doc = make_document(results, {"torch": "2.4.0", "mlx": "0.20.0"})
    from_records = write_reports(doc, tmp_path / "records", parallel=False)
    from_objects = write_reports(doc, tmp_path / "objects", parallel=False, results=results)
    for name, path in from_records.items():
        assert from_objects[name].read_bytes() == path.read_bytes(), name
    with pytest.raises(ValueError, match="are not those the document"):
        write_reports(doc, tmp_path / "wrong", results=results[:-1])
    # the objects are what the reports read (planted: one that differs from its record shows)
    planted = [dataclasses.replace(r) for r in results]
    planted[0].status = "crash"
    shown = write_reports(doc, tmp_path / "planted", parallel=False, results=planted)
    assert shown["html"].read_bytes() != from_records["html"].read_bytes()


def test_reports_written_aside_are_the_same_and_a_failed_writer_loses_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = document()
    alone = write_reports(doc, tmp_path / "alone", parallel=False)
    aside = write_reports(doc, tmp_path / "aside")
    for name, path in alone.items():
        assert aside[name].read_bytes() == path.read_bytes(), name
    parent, real_write = os.getpid(), reports._write

    def dies_when_forked(path: Path, text: str) -> None:
        if os.getpid() != parent:
            os._exit(3)  # the forked writer dies before writing anything
        real_write(path, text)

    monkeypatch.setattr(reports, "_write", dies_when_forked)
    again = write_reports(doc, tmp_path / "again")
    for name, path in alone.items():
        assert again[name].read_bytes() == path.read_bytes(), f"{name} lost with the forked writer"
    assert not list((tmp_path / "again").glob(".*partial")), "no half-written file is left"


def test_a_forked_writer_that_hangs_is_killed_at_its_limit_and_loses_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = document()
    alone = write_reports(doc, tmp_path / "alone", parallel=False)
    parent, real_write = os.getpid(), reports._write

    def hangs_when_forked(path: Path, text: str) -> None:
        if os.getpid() != parent:
            time.sleep(60)  # the forked writer never finishes
        real_write(path, text)

    monkeypatch.setattr(reports, "_write", hangs_when_forked)
    monkeypatch.setattr(reports, "ASIDE_TIMEOUT", 1.0)
    started = time.monotonic()
    again = write_reports(doc, tmp_path / "again")
    assert time.monotonic() - started < 30, "the hung writer was waited for, not killed at its limit"
    for name, path in alone.items():
        assert again[name].read_bytes() == path.read_bytes(), f"{name} lost with the hung writer"


def test_the_two_writing_processes_share_the_formats_each_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each process takes the next format nobody has taken: while one writes a slow HTML page
    (and the summary with it), the other writes all the rest; no format is written twice."""
    parent, real_write, real_html = os.getpid(), reports._write, reports.render_html
    log = tmp_path / "writes.log"

    def noted(path: Path, text: str) -> None:
        with open(log, "a") as f:  # (appends of one short line are whole, whoever writes them)
            f.write(f"{'parent' if os.getpid() == parent else 'aside'} {path.name}\n")
        real_write(path, text)

    def slow(doc: dict) -> str:
        time.sleep(0.5)
        return real_html(doc)

    monkeypatch.setattr(reports, "_write", noted)
    monkeypatch.setattr(reports, "render_html", slow)
    paths = write_reports(document(), tmp_path / "r")
    writes = dict(reversed(line.split()) for line in log.read_text().splitlines())
    lines = log.read_text().splitlines()
    assert len(lines) == len(paths) and set(writes) == {p.name for p in paths.values()}, lines
    html_writer = writes.pop("report.html")
    assert writes.pop("summary.md") == html_writer, "the summary goes with the page (shared views)"
    assert set(writes.values()) == {"parent", "aside"} - {html_writer}, lines


def test_results_json_is_strict_and_round_trips(tmp_path: Path) -> None:
    results = sample_results()
    results[0].max_rel_err = math.nan
    results[1].max_err_over_bound = -math.inf
    paths = write_reports(document(results), tmp_path)
    text = paths["json"].read_text()
    strict_json(text)
    assert not re.search(r"\b(NaN|Infinity)\b", text)

    loaded = load_document(paths["json"])
    again = results_of(loaded)
    assert [r.key for r in again] == [r.key for r in results]
    assert again[5].max_rel_err == math.inf and again[1].max_err_over_bound == -math.inf
    assert math.isnan(again[0].max_rel_err)
    # apart from the NaN (never equal to itself) every record comes back exactly
    assert again[1:] == results[1:]
    assert loaded["frameworks"] == {"torch": "2.13.0", "mlx": "0.32.4"}


def test_every_float_field_non_finite_is_written_as_a_string_by_either_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orjson writes a NaN as null, never refusing it as the standard library does: results.json
    and the page's table must turn every float field that may be non-finite into a string before
    it encodes them (jsondoc.finite_json), with orjson and without."""
    from conformance.reports import jsondoc

    results = sample_results()
    for r, value in zip(results, (math.nan, math.inf, -math.inf, math.nan, math.inf)):
        for name in jsondoc.FLOAT_FIELDS:
            setattr(r, name, value)
    written = {}
    for encoder in (jsondoc.orjson, None):
        monkeypatch.setattr(jsondoc, "orjson", encoder)
        paths = write_reports(document(results), tmp_path / str(encoder is None), parallel=False)
        text = paths["json"].read_text()
        strict_json(text)
        written[encoder is None] = json.loads(text)
        again = results_of(load_document(paths["json"]))
        for before, after in zip(results[:5], again[:5]):
            for name in jsondoc.FLOAT_FIELDS:
                value, back = getattr(before, name), getattr(after, name)
                assert back == value or (math.isnan(value) and math.isnan(back)), (name, value, back)
        rows = embedded_rows(paths["html"].read_text())
        first = (results[0].case, results[0].framework)
        nan_row = next(row for row in rows if (row["c"], row["fw"]) == first)
        assert nan_row["ae"] == "nan" and nan_row["d"] == "nan", nan_row
    assert written[True] == written[False], "the same document, whichever encoder wrote it"


def test_a_null_in_packed_records_sends_the_whole_document_through_the_strict_encoder() -> None:
    """A packed record holds no null: one in the fast encoder's text (a float nobody made finite, in
    a field added later) makes results.json's writer fall back to the encoder that refuses NaN."""
    from conformance.reports import jsondoc

    packed = {"schema": "s", "results": [{"case": 0, "status": "fail", "max_abs_err": math.nan}]}
    text = jsondoc.document_json(packed)
    assert strict_json(text)["results"][0]["max_abs_err"] == "nan", text
    clean = {"schema": "s", "results": [{"case": 0, "status": "pass", "message": "a null in words"}]}
    assert json.loads(jsondoc.document_json(clean)) == clean


def _measured(case: str, framework: str, check: str, expected: list[int], **fields) -> Result:
    r = result(case, framework, "pass", check=check, elements=math.prod(expected), mismatched=0, **fields)
    r.expected_shape = expected
    return r


def test_a_result_pickles_and_copies_as_itself() -> None:
    """Workers send results pickled, by their fields' values: every field comes back."""
    import copy
    import dataclasses
    import pickle

    values = {}
    for i, f in enumerate(dataclasses.fields(Result)):  # every field away from its default
        values[f.name] = {"status": "fail", "params": {"stride": [2]}, "rules": ["r"], "tags": ["t"]}.get(
            f.name, [i] if f.name.endswith(("shape", "index")) else float(i) if "err" in f.name else f"v{i}"
        )
    values["mismatched"] = values["elements"] = 3
    original = Result(**values)
    for back in (pickle.loads(pickle.dumps(original)), copy.copy(original), copy.deepcopy(original)):
        assert dataclasses.asdict(back) == dataclasses.asdict(original)
        assert type(back) is Result


def test_results_json_stores_each_case_once_validates_and_reads_versions_1_and_2(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = Path(__file__).parents[1] / "conformance" / "schema" / "results.schema.json"
    results = [
        *sample_results(),
        # a gradient's expected shape is not the output's; measured shapes and dtypes as expected
        # are left out on disk, unexpected ones kept (a float64 result of a float32 case)
        _measured(
            "grads", "torch", "forward", [1, 8, 16, 16], actual_shape=[1, 8, 16, 16], actual_dtype="float32"
        ),
        _measured(
            "grads", "torch", "grad_weight", [4, 8, 3, 3], actual_shape=[4, 8, 3, 3], actual_dtype="float64"
        ),
        _measured(
            "grads", "mlx", "grad_weight", [4, 8, 3, 3], actual_shape=[4, 8, 3, 3], actual_dtype="float32"
        ),
    ]
    for r in results[-3:]:
        r.expected_dtype = "float32"
    doc = document(results)
    path = write_reports(doc, tmp_path)["json"]
    on_disk = json.loads(path.read_text())
    jsonschema.validate(on_disk, json.loads(schema_path.read_text()))
    assert on_disk["schema"] == "conformance.results/3"
    assert len(on_disk["cases"]) == len({(r.file, r.case) for r in results})
    assert all("params" not in record and "file" not in record for record in on_disk["results"])
    grads = [r for r in on_disk["results"] if on_disk["cases"][r["case"]]["id"] == "grads"]
    assert [("actual_shape" in r, r.get("actual_dtype")) for r in grads] == [
        (False, None),
        (False, "float64"),
        (False, None),
    ]
    assert results_of(load_document(path)) == results

    version_1 = tmp_path / "v1.json"  # full records, as earlier releases wrote them
    version_1.write_text(json.dumps({**doc, "schema": "conformance.results/1"}))
    assert results_of(load_document(version_1)) == results

    # conformance.results/2: cases keyed FILE::ID (one expected shape per case), records naming both
    case_fields = ("family", "expect", "rules", "params", "tags", "expected_shape", "expected_dtype")
    v2_cases, v2_records = {}, []
    for record in doc["results"]:
        v2_cases.setdefault(f"{record['file']}::{record['case']}", {k: record[k] for k in case_fields})
        v2_records.append({k: v for k, v in record.items() if k not in case_fields})
    version_2 = tmp_path / "v2.json"
    version_2.write_text(
        json.dumps({**doc, "schema": "conformance.results/2", "cases": v2_cases, "results": v2_records})
    )
    back = results_of(load_document(version_2))
    assert [r for r in back if r.case != "grads"] == [r for r in results if r.case != "grads"]
    assert [r.actual_shape for r in back] == [r.actual_shape for r in results]


def test_load_document_rejects_what_is_not_a_results_document(tmp_path: Path) -> None:
    cases = {
        "hello.json": ('{"hello": 1}', "no 'results' list"),
        "list.json": ("[1, 2]", "not an object"),
        "broken.json": ("{not json", "invalid JSON"),
        "no-status.json": (
            '{"results": [{"case": "a", "file": "f", "framework": "t", "check": "forward"}]}',
            "results[0] lacks status",
        ),
        "odd-status.json": (
            '{"results": [{"case": "a", "file": "f", "framework": "t", "check": "forward", '
            '"status": "maybe"}]}',
            "unknown status 'maybe'",
        ),
    }
    for name, (text, why) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError) as info:
            load_document(path)
        assert str(path) in str(info.value) and why in str(info.value)


# --- Markdown -----------------------------------------------------------------------------------


def test_markdown_verdict_counts_what_fails_the_gate() -> None:
    markdown = render_markdown(document())
    first = markdown.splitlines()[0]
    assert first.endswith(": FAIL")
    verdict = markdown.split("## Versions")[0]
    assert "6 failing results (2 fail, 1 error, 1 crash, 1 timeout, 1 xpass) of 12" in verdict
    assert "1 known divergence (xfail)" in verdict and "interrupted" not in verdict

    passing = [r for r in sample_results() if r.status in ("pass", "xfail", "unsupported")]
    markdown = render_markdown(document(passing))
    assert markdown.splitlines()[0].endswith(": PASS") and "FAIL" not in markdown


def test_markdown_mentions_an_interrupted_run() -> None:
    passing = [r for r in sample_results() if r.status == "pass"]
    markdown = render_markdown(document(passing, interrupted=True))
    assert markdown.splitlines()[0].endswith(": FAIL")
    assert "interrupted" in markdown.split("## Versions")[0]


def test_markdown_versions_environment_and_summary() -> None:
    doc = document()
    markdown = render_markdown(doc)
    versions = section(markdown, "Versions")
    assert table_row(versions, "torch")[1] == "2.13.0" and table_row(versions, "mlx")[1] == "0.32.4"
    env = doc["environment"]
    run = table_row(versions, "1")
    assert env["python"] in run and env["numpy"] in run and env["conformance"] in run

    summary = section(markdown, "Summary")
    header = table_row(summary, "framework")
    assert header == ["framework", *STATUSES, "total"]
    for framework, counts in doc["summary"].items():
        row = table_row(summary, framework)
        assert row[1:] == [str(counts[s]) for s in header[1:-1]] + [str(sum(counts.values()))]
    assert table_row(summary, "mlx")[1:] == ["2", "2", "0", "1", "0", "1", "0", "1", "7"]


def test_markdown_lists_every_failing_result_with_its_rerun_command() -> None:
    results = sample_results()
    failing = section(render_markdown(document(results)), "All failing results")
    listed = [r for r in results if r.status in FAILING]
    assert len(listed) == 6
    for r in listed:
        assert f"`conv_transpose2d.yaml::{r.case}`" in failing
        assert f"`{r.rerun}`" in failing
    assert failing.count("conformance run ") == len(listed)
    for r in results:
        if r.status not in FAILING:
            assert f"::{r.case}`" not in failing, f"{r.status} result listed as failing"


def test_markdown_divergence_rows_show_params_shapes_numbers_and_reason() -> None:
    markdown = render_markdown(document())
    failing = section(markdown, "All failing results")
    lines = {
        case: next(line for line in failing.splitlines() if f"::{case}`" in line)
        for case in ("wrong-shape", "wrong-values")
    }
    assert "shape expected [1, 8, 16, 16], got [1, 8, 15, 15]" in lines["wrong-shape"]
    assert "conv\\_transpose2d" not in lines["wrong-shape"], "underscores need no escaping"
    assert "conv_transpose2d in=1x4x8x8 co=8 k=3x3 s=2 p=1 op=1 d=1 g=1 bias float32" in lines["wrong-shape"]
    numeric = lines["wrong-values"]
    for text in (
        "max_abs_err 0.0123",
        "max_rel_err inf",
        "max_err_over_bound 0.5",
        "mismatched 12/2048",
        "worst_index [0, 3, 4, 5]",
        "tolerance_at_worst 2.5e-06",
    ):
        assert text in numeric
    known = section(markdown, "Known divergences (1 reasons, 1 results)")
    row = table_row(known, "mlx")
    assert row[1] == f"mlx accepts output_padding \\>= stride ([link]({LINK}))"
    assert row[2:5] == ["1", "mlx", "error_parity"] and row[5] == "`conv_transpose2d.yaml::op-ge-stride`"


def test_markdown_groups_failing_results_by_cause_first() -> None:
    markdown = render_markdown(document())
    causes = section(markdown, "Failing results by cause")
    assert markdown.index("## Failing results by cause") < markdown.index("## Summary")
    first = causes.split("\n- ")[1]
    assert first.startswith("💥 **mlx** · forward · crash: 1 result (1 crash)"), first
    assert "`conformance run cases/conv_transpose2d.yaml --case 'dies' --framework mlx`" in first
    assert "variants: mlx" in first


def test_markdown_escapes_user_text_and_keeps_tables_intact() -> None:
    results = sample_results()
    results[4].message = "a | b <details> `tick` [click](https://evil.invalid) " + "x" * 500
    results[9].divergence = {"reason": "r", "link": "javascript:alert(1)"}
    markdown = render_markdown(document(results))
    assert "<script>" not in markdown and "<details> `tick`" not in markdown
    assert "](javascript:" not in markdown and "](https://evil" not in markdown
    divergences = section(markdown, "All failing results")
    rows = [line for line in divergences.splitlines() if line.startswith("|") and "---" not in line]
    widths = {len(re.split(r"(?<!\\)\|", line)) for line in rows}
    assert len(widths) == 1, "an unescaped pipe would add a column"
    long_row = next(line for line in rows if "::wrong-shape`" in line)
    assert "x" * 100 in long_row and "x" * 200 not in long_row, "long messages are truncated"
    assert "x…" in long_row


def test_markdown_matrix_shows_diverging_families_and_folds_passing_ones() -> None:
    matrix = section(render_markdown(document()), "Parity by case family")
    shown, _, folded = matrix.partition("<details>")
    assert table_row(shown, "family")[2:] == ["torch", "mlx"]
    assert table_row(shown, "conv_transpose2d.yaml::wrong-shape")[2:] == ["·", "❌ 1 fail / 1"]
    assert table_row(shown, "conv_transpose2d.yaml::op-ge-stride")[2:] == ["·", "⚠️ 1 xfail / 1"]
    assert table_row(shown, "conv_transpose2d.yaml::fixed-now")[2:] == ["❌ 1 xpass / 1", "·"]
    assert "conv_transpose2d.yaml::plain" not in shown
    assert "2 families without divergences" in folded, "declared limits are no divergence"
    assert table_row(folded, "conv_transpose2d.yaml::half-only")[2:] == ["·", "— unsupported"]
    row = table_row(folded, "conv_transpose2d.yaml::plain")
    assert row[1] == "forward, grad_input"
    assert row[2:] == ["✅ 2/2", "✅ 2/2"]


def test_markdown_warnings() -> None:
    warnings = section(render_markdown(document()), "Warnings")
    assert "- known divergence at line 7 (mlx: 'gone-\\*') matches no result" in warnings
    assert "## Warnings" not in render_markdown(document(warnings=[]))


# --- HTML ---------------------------------------------------------------------------------------


def embedded_rows(page: str) -> list[dict]:
    """The table rows embedded in the page, with interned strings looked up."""
    match = re.search(r'<script type="application/json" id="results-data">(.*?)</script>', page, re.S)
    assert match, "the results are embedded as JSON"
    data = strict_json(match.group(1))
    interned = (
        "c",
        "f",
        "fw",
        "k",
        "fa",
        "op",
        "dt",
        "pt",
        "r",
        "rp",
        "t",
        "es",
        "ed",
        "ad",
        "x",
        "rb",
        "m",
        "dv",
    )
    rows = []
    columns = data["columns"]
    for i in range(data["n"]):
        row = {}
        for key, column in columns.items():
            value = column[i] if isinstance(column, list) else column.get(str(i))
            if value is not None:
                row[key] = value
        row = {k: data["strings"][v] if k in interned else v for k, v in row.items()}
        row["s"] = data["statuses"][row["s"]]
        if row.get("as") == 1:
            row["as"] = row["es"]
        elif "as" in row:
            row["as"] = data["strings"][row["as"]]
        rows.append(row)
    return rows


def test_html_is_self_contained_and_complete() -> None:
    results = sample_results()
    page = render_html(document(results))
    assert page.startswith("<!DOCTYPE html>")
    # nothing is fetched: no external (or any) script, stylesheet, image or frame source
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b[^>]*\b(src|href)\s*=", page, re.I)
    assert not re.search(r"@import|url\(", page)
    for match in re.finditer(r"""(\w+)\s*=\s*["']https?://""", page):
        assert match.group(1) == "href", match.group(0)
    hrefs = [h for h in re.findall(r'<a\b[^>]*href="([^"]*)"', page) if not h.startswith("#")]
    assert hrefs == [LINK], "the only link (besides the contents) is the known divergence's"
    for r in results:
        assert r.case in page
    rows = embedded_rows(page)
    assert len(rows) == len(results)
    severity = ["crash", "timeout", "error", "fail", "xpass", "xfail", "pass", "unsupported"]
    ordered = sorted(results, key=lambda r: severity.index(r.status))
    assert [(row["c"], row["fw"], row["k"], row["s"]) for row in rows] == [
        (r.case, r.framework, r.check, r.status) for r in ordered
    ], "failures first"
    wrong = next(row for row in rows if row["c"] == "wrong-values")
    assert wrong["re"] == "inf", "inf travels as a string inside strict JSON"
    assert wrong["ae"] == 0.0123 and wrong["tw"] == 2.5e-06
    for text in ("2.13.0", "0.32.4", "FAIL", "mlx accepts output_padding &gt;= stride", "wrong-values"):
        assert text in page
    for control in ('id="q"', 'id="f-fw"', 'id="f-s"', 'id="f-k"'):
        assert control in page


def test_html_escapes_messages_and_ids() -> None:
    results = sample_results()
    results[0].case = 'evil"><img src=x onerror=alert(1)>'
    results[9].divergence = {"reason": INJECTION, "link": "javascript:alert(1)"}
    page = render_html(document(results))
    assert INJECTION not in page
    assert "<img" not in page and 'href="javascript:' not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2
    rows = embedded_rows(page)
    assert results[0].case in [row["c"] for row in rows], "escaping loses nothing"
    assert any(INJECTION in row.get("m", "") for row in rows)


def test_html_renders_thousands_of_results_compactly() -> None:
    results = []
    for i in range(5000):
        status = "fail" if i % 50 == 0 else "pass"
        results.append(
            result(
                f"case-{i:04d}-s1",
                ("torch", "mlx")[i % 2],
                status,
                max_abs_err=1e-7 * i,
                mismatched=i % 3,
                elements=2048,
                actual_shape=[1, 8, 16, 16],
            )
        )
    page = render_html(document(results))
    assert len(page.encode()) < 3_000_000, "a few MB at most"
    assert len(embedded_rows(page)) == 5000


def test_merged_document_shows_both_frameworks_and_both_runs() -> None:
    torch_results = [r for r in sample_results() if r.framework == "torch"]
    mlx_results = [r for r in sample_results() if r.framework == "mlx"]
    first = make_document(torch_results, {"torch": "2.13.0"}, command="conformance run cases -f torch")
    second = make_document(mlx_results, {"mlx": "0.32.4"}, command="conformance run cases -f mlx")
    mac = {"python": "3.12.9", "platform": "macOS-15-arm64"}
    second["runs"][0]["environment"] = {**second["environment"], **mac}
    merged = merge_documents([first, second])
    markdown = render_markdown(merged)
    assert table_row(section(markdown, "Parity by case family"), "family")[2:] == ["torch", "mlx"]
    summary = section(markdown, "Summary")
    assert table_row(summary, "torch")[-1] == "5" and table_row(summary, "mlx")[-1] == "7"
    versions = section(markdown, "Versions")
    assert "one row per merged run" in versions
    assert table_row(versions, "1")[1] == first["environment"]["python"]
    assert table_row(versions, "2")[1:3] == ["3.12.9", "macOS-15-arm64"]
    assert "`conformance run cases -f torch`" in versions and "`conformance run cases -f mlx`" in versions
    page = render_html(merged)
    assert "macOS-15-arm64" in page and first["environment"]["platform"] in page
    assert re.search(r"<th[^>]*>torch</th><th[^>]*>mlx</th>", page)
