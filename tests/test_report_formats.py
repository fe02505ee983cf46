"""summary.md and report.md stay within their limits whatever the run; results.junit.xml has the
structure CI test tabs read; every report shows machines, build facts, inactive baseline entries,
where rejections came from and which variants have a divergence."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.changes import compare
from conformance.reports import render_html, render_junit, render_markdown, render_summary
from conformance.reports.markdown import MARKDOWN_LIMIT
from conformance.reports.summary import SUMMARY_LIMIT
from conformance.reports.svg import headroom_chart, parameter_map
from conformance.reports.views import headroom, parameter_maps
from conformance.results import Result, make_document
from tests.test_report import PARAMS, document, result, sample_results

FIRST_SCREEN = 3000  # characters: what a reviewer sees before scrolling


def _many_failures(n: int) -> list[Result]:
    """``n`` failing results over many causes, with long messages: a broken adapter, no baseline."""
    results = []
    for i in range(n):
        status = ("fail", "error", "crash", "timeout")[i % 4]
        params = {**PARAMS, "groups": 1 + i % 2, "dilation": [1 + i % 3] * 2}
        results.append(
            Result(
                case=f"case-{i:05d}-" + "x" * 40,
                file=f"cases/generated_{i % 7}.yaml",
                framework=("broken", "broken[native]", "other")[i % 3],
                check=("forward", "grad_input", "grad_weight", "error_parity")[i % 4],
                status=status,
                params=params,
                exception=f"Error{i % 50}" if status == "error" else None,
                message=f"cause {i % 97}: " + "a long framework message " * 30,
                rerun=f"conformance run cases/generated.yaml --case 'case-{i:05d}' --framework broken",
                reproducer=f"reproducers/broken/case-{i:05d}.py",
                max_abs_err=0.1 * i,
                max_err_over_bound=2.0 + i,
            )
        )
    return results


def test_summary_and_report_fit_their_limits_for_thousands_of_failures() -> None:
    failures = _many_failures(20_000)
    base = make_document(failures[:10_000], {"broken": "1", "other": "1"})
    doc = make_document(failures, {"broken": "1", "broken[native]": "1", "other": "1"})
    doc["changes"] = compare(base, doc)
    summary = render_summary(doc)
    assert len(summary) <= SUMMARY_LIMIT, len(summary)
    assert "more causes" in summary and "in the full report" in summary
    first = summary[:FIRST_SCREEN]
    assert "FAIL" in first and "Changes since the base run" in first
    assert "10000 new failures" in first
    markdown = render_markdown(doc)
    assert len(markdown.encode()) <= MARKDOWN_LIMIT, len(markdown.encode())
    first = markdown[:FIRST_SCREEN]
    assert "## Changes since the base run" in first and "10000 new failures" in first
    assert "💥 **broken** · " in markdown[: markdown.index("## Summary")], "the causes come first"


def test_summary_names_causes_with_a_representative_and_its_rerun() -> None:
    summary = render_summary(document())
    assert summary.startswith("# Transposed-convolution conformance: FAIL")
    causes = summary[summary.index("## Failing results by cause") :]
    assert "💥 **mlx** · forward · crash: 1 result" in causes
    assert "`conformance run cases/conv_transpose2d.yaml --case 'wrong-values' --framework mlx`" in causes
    assert "max_err_over_bound 0.5" in causes and "k=3x3 s=2 p=1 op=1" in causes
    assert "## Known divergences (1 reasons, 1 results)" in summary


def test_variants_of_a_framework_share_a_cause() -> None:
    results = [
        result("odd", name, "fail", actual_shape=[1, 8, 15, 15], message="shape (1, 8, 15, 15) instead of x")
        for name in ("torch", "torch[native]", "torch[avx512]")
    ]
    summary = render_summary(document(results))
    assert "**torch** · forward · shape: 3 results (3 fail)" in summary
    assert "variants: torch, torch\\[native\\], torch\\[avx512\\]" in summary or (
        "variants: torch, torch[native], torch[avx512]" in summary
    )


def _with_machine_and_inactive() -> dict:
    doc = document(framework_facts={"torch": {"cpu_capability": "AVX512", "onednn_enabled": True}})
    doc["runs"][0]["machine"] = {
        "cpu": "Planted Xeon",
        "microarchitecture": "sapphirerapids",
        "kernel_features": ["avx512f", "amx_bf16"],
        "cores": 8,
        "usable_cores": 4,
        "system": "Linux",
        "release": "6.1",
        "machine": "x86_64",
        "libc": "glibc 2.36",
        "env": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    }
    doc["inactive_divergences"] = [
        {
            "framework": "torch",
            "entry": "amx-bf16-grad",
            "reason": "oneDNN AMX bf16 grad_input wrong",
            "when": {"cpu_flags": ["amx_bf16", "amx_tile"]},
            "file": "known_divergences.yaml",
            "line": 950,
            "why": "cpu_flags: amx_tile missing",
        }
    ]
    return doc


def test_every_report_shows_machine_build_facts_and_inactive_entries() -> None:
    doc = _with_machine_and_inactive()
    for name, text in (("summary", render_summary(doc)), ("report.md", render_markdown(doc))):
        for fact in ("Planted Xeon (sapphirerapids)", "avx512f amx_bf16", "4 of 8", "glibc 2.36"):
            assert fact in text, f"{name} lacks {fact!r}"
        assert (
            "ONEDNN_MAX_CPU_ISA=AVX512_CORE" in text and "cpu_capability=AVX512, onednn_enabled=yes" in text
        )
        assert "Not applicable on this machine (1)" in text, name
        assert "cpu_flags: amx_bf16 amx_tile" in text and "amx-bf16-grad" in text, name
    page = render_html(doc)
    for fact in (
        "Planted Xeon (sapphirerapids)",
        "ONEDNN_MAX_CPU_ISA=AVX512_CORE",
        "Not applicable on this machine",
    ):
        assert fact in page
    assert "cpu_flags: amx_bf16 amx_tile" in page


def test_error_parity_says_who_raised() -> None:
    results = [
        result("rank", "torch", "pass", check="error_parity", expect="error", expected_shape=None,
               exception="RuntimeError", raised_by="framework", rules=["input_rank"]),
        result("rank", "mine", "error", check="error_parity", expect="error", expected_shape=None,
               exception="KeyError", raised_by="adapter", rules=["input_rank"],
               message="the adapter's own KeyError at adapter.py:12"),
    ]  # fmt: skip
    markdown = render_markdown(document(results))
    row = next(line for line in markdown.splitlines() if line.startswith("| `input_rank`"))
    assert "✅ raises RuntimeError (framework) ×1" in row
    assert "❌ raises KeyError (adapter's own code) ×1" in row
    page = render_html(document(results))
    assert "raises KeyError (adapter&#39;s own code) ×1" in page


def test_junit_has_one_testcase_per_result_and_the_structure_ci_reads() -> None:
    results = sample_results()
    root = ET.fromstring(render_junit(document(results)))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["torch", "mlx"]
    cases = root.findall("testsuite/testcase")
    assert len(cases) == len(results) == int(root.get("tests"))
    by_name = {(c.get("classname"), c.get("name")): c for c in cases}
    wrong = by_name[("mlx.conv_transpose2d", "wrong-values[forward]")]
    assert wrong.find("failure") is not None and "12 of 2048" in wrong.find("failure").get("message")
    assert by_name[("torch.conv_transpose2d", "raises[forward]")].find("error").get("type") == "RuntimeError"
    assert by_name[("mlx.conv_transpose2d", "dies[forward]")].find("error") is not None
    assert by_name[("torch.conv_transpose2d", "fixed-now[forward]")].find("failure") is not None, "xpass"
    skipped = by_name[("mlx.conv_transpose2d", "op-ge-stride[error_parity]")].find("skipped")
    assert "mlx accepts output_padding >= stride" in skipped.get("message")
    passed = by_name[("torch.conv_transpose2d", "plain-s1[forward]")]
    assert list(passed) == []
    for suite in suites:
        mine = suite.findall("testcase")
        assert int(suite.get("tests")) == len(mine)
        assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in mine)
        assert int(suite.get("errors")) == sum(c.find("error") is not None for c in mine)
        assert int(suite.get("skipped")) == sum(c.find("skipped") is not None for c in mine)
    results[4].message = "bad \x00 byte </testcase>"
    assert ET.fromstring(render_junit(document(results))) is not None, "control characters are replaced"


def test_parameter_maps_and_pictures_place_a_planted_failure() -> None:
    grouped = dict(PARAMS, groups=2, input_shape=[1, 4, 8, 8])
    planted = result("grouped", "mlx", "fail", message="12 of 2048 elements outside tolerance")
    planted.params = grouped
    results = [
        planted,
        result("plain", "mlx", "pass", max_err_over_tolerance=0.3),
        result("plain", "torch", "pass", max_err_over_tolerance=2e-4),
    ]
    maps = {(m.framework, m.title): m for m in parameter_maps(["torch", "mlx"], results)}
    cells = maps[("mlx", "groups × dimensionality")].cells
    assert cells[("groups > 1", "2-d")].kind == "bad" and cells[("groups > 1", "2-d")].text == "1/1"
    assert cells[("groups 1", "2-d")].kind == "ok"
    assert ("groups > 1", "2-d") not in maps[("torch", "groups × dimensionality")].cells
    picture = parameter_map(maps[("mlx", "groups × dimensionality")])
    assert "groups &gt; 1 · 2-d: 1 of 1 diverge (1 failing)" in picture and 'fill="rgb(207,34,46)"' in picture
    assert headroom(["torch", "mlx"], results) == {("torch", "float32"): [2e-4], ("mlx", "float32"): [0.3]}
    chart = headroom_chart(headroom(["torch", "mlx"], results))
    assert "torch · float32 (1)" in chart and "tolerance" in chart
    page = render_html(document(results))
    assert page.count('<svg class="map"') == 8 and '<svg class="headroom"' in page
    summary = render_summary(document(results))
    assert "| mlx | " in summary[summary.index("## Where frameworks diverge") :]


def test_changes_come_first_in_the_html() -> None:
    doc = document()
    base = document([r for r in sample_results() if r.case != "wrong-values"])
    doc["changes"] = compare(base, doc)
    page = render_html(doc)
    assert page.index('id="changes"') < page.index('id="causes"') < page.index('id="summary"')
    assert "1 new failure, 0 fixed" in page


def test_every_report_renders_string_padding_pairs_and_unbatched_inputs(tmp_path) -> None:
    # the parameter space of cases/padding_layouts.yaml, as results records hold it
    written = [
        {"padding": "same"},
        {"padding": [[2, 1], 0]},
        {"padding": [[0, 3], [1, 1]], "input_shape": [4, 8, 8], "groups": 2},
    ]
    results = []
    for i, fields in enumerate(written):
        for status in ("pass", "fail"):
            r = result(f"space-{i}-{status}", "torch", status)
            r.params.update(fields)
            results.append(r)
    doc = make_document(results, {"torch": "2.13.0"})
    for render in (render_markdown, render_summary, render_html, render_junit):
        assert render(doc), render.__name__
    columns = {
        c for m in parameter_maps(["torch"], results) if m.title == "stride × padding" for c in m.columns
    }
    assert "padding 'same'" in columns and "p > d·(k−1)" in columns, columns
    rows = {
        r
        for m in parameter_maps(["torch"], results)
        if m.title == "groups × dimensionality"
        for r in m.columns
    }
    assert rows == {"2-d"}, "an unbatched 2-d input is still 2-d"


def test_the_html_page_is_written_whether_or_not_its_compiled_template_can_be_kept(
    tmp_path: Path, monkeypatch
) -> None:
    """report.html's compiled template is kept between runs (Jinja's bytecode cache); a cache
    folder that cannot be had, or a cache file that cannot be written, costs a compile, never the
    page."""
    import jinja2

    from conformance.reports import html

    doc = document(sample_results())
    expected = render_html(doc)
    try:
        html._templates.cache_clear()
        assert render_html(doc) == expected
        kept = html._templates().bytecode_cache
        assert kept is not None and any(Path(kept.directory).glob("__jinja2_*.cache")), "nothing kept"

        def no_room(self, bucket) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(jinja2.FileSystemBytecodeCache, "dump_bytecode", no_room)
        monkeypatch.setattr(jinja2.FileSystemBytecodeCache, "load_bytecode", lambda self, bucket: None)
        html._templates.cache_clear()
        assert render_html(doc) == expected, "an unwritable cache file cost the page"

        not_a_folder = tmp_path / "file"
        not_a_folder.write_text("")
        monkeypatch.setattr("tempfile.tempdir", str(not_a_folder))
        html._templates.cache_clear()
        assert html._templates().bytecode_cache is None
        assert render_html(doc) == expected, "no cache folder cost the page"
    finally:
        monkeypatch.undo()
        html._templates.cache_clear()
