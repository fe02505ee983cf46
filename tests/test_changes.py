"""Changes since a base run: ``conformance diff``, ``run --compare-to`` and ``--fail-on new``."""

from __future__ import annotations

import json
from pathlib import Path

from conformance.changes import compare, drifted
from conformance.reports import load_document
from conformance.results import FAILING, Result, make_document
from tests.helpers.pytest_helpers import DIRECT, run_cli

SLICE = """\
op: conv_transpose1d
defaults: {input_shape: [1, 2, 9], out_channels: 2, kernel_size: 3}
cases:
  - id: plain
    matrix: {stride: [1, 2], dilation: [1, 2]}
  - id: grouped
    groups: 2
    dilation: 2
  - id: op-too-large
    output_padding: 3
    expect: error
"""
# the planted bug keeps the correct adapter's name, as a regression on a branch would
PLANTED = f"""\
import sys
sys.path.insert(0, {str(DIRECT.parent)!r})
from numpy_direct import DilationIgnored

class Regressed(DilationIgnored):
    name = "numpy-direct"
"""


def _key(record: dict) -> tuple:
    return (record["file"], record["case"], record["framework"], record["check"])


def test_diff_finds_exactly_the_planted_bugs_records_as_new(tmp_path: Path) -> None:
    cases = tmp_path / "slice.yaml"
    cases.write_text(SLICE)
    (tmp_path / "regressed.py").write_text(PLANTED)
    base = run_cli("run", cases, "--adapter", f"{DIRECT}:DirectNumpy", "--report-dir", tmp_path / "base")
    assert base.returncode == 0, base.stderr
    base_json = tmp_path / "base" / "results.json"
    head = run_cli(
        "run", cases, "--adapter", f"{tmp_path / 'regressed.py'}:Regressed",
        "--report-dir", tmp_path / "head", "--compare-to", base_json,
    )  # fmt: skip
    assert head.returncode == 1, head.stderr
    document = load_document(tmp_path / "head" / "results.json")
    failing = {_key(r) for r in document["results"] if r["status"] in FAILING}
    assert failing, "the planted bug (dilation ignored) must fail some results"
    new = {_key(r) for r in document["changes"]["new_failures"]}
    assert new == failing, "exactly the planted bug's records are new"
    for record in document["results"]:
        if _key(record) in new:
            assert max(record["params"]["dilation"]) > 1, f"a result without dilation is new: {record}"
    assert not document["changes"]["fixed"] and not document["changes"]["added"]
    assert not document["changes"]["removed"]

    diff = run_cli("diff", base_json, tmp_path / "head" / "results.json")
    assert diff.returncode == 1 and f"{len(new)} new failures, 0 fixed" in diff.stdout, diff.stdout
    same = run_cli("diff", base_json, base_json)
    assert same.returncode == 0, same.stdout
    assert "0 new failures, 0 fixed, 0 other status changes, 0 numeric drift, 0 cases added" in same.stdout

    # a base that already fails: --fail-on new gates only on what this branch broke
    again = run_cli(
        "report", tmp_path / "head" / "results.json", "--report-dir", tmp_path / "again",
        "--compare-to", tmp_path / "head" / "results.json", "--fail-on", "new",
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    merged = run_cli(
        "report", tmp_path / "head" / "results.json", "--report-dir", tmp_path / "merged",
        "--compare-to", base_json, "--fail-on", "new",
    )  # fmt: skip
    assert merged.returncode == 1
    assert json.loads((tmp_path / "merged" / "results.json").read_text())["changes"]["new_failures"]
    usage = run_cli("report", base_json, "--report-dir", tmp_path / "x", "--fail-on", "new")
    assert usage.returncode == 2 and "--fail-on new needs --compare-to" in usage.stderr


def _doc(*results: Result) -> dict:
    return make_document(list(results), {"fw": "1"})


def test_compare_sorts_status_changes_drift_added_and_removed() -> None:
    def r(case: str, status: str, eb: float | None = None, check: str = "forward") -> Result:
        return Result(case, "f.yaml", "fw", check, status, max_err_over_tolerance=eb)

    base = _doc(r("a", "pass", 0.01), r("b", "fail"), r("c", "pass"), r("d", "pass", 0.2), r("gone", "pass"))
    head = _doc(r("a", "pass", 0.2), r("b", "pass"), r("c", "xfail"), r("d", "pass", 0.6), r("new", "fail"))
    changes = compare(base, head)
    names = {kind: [x["case"] for x in changes[kind]] for kind in ("new_failures", "fixed", "status_changes")}
    assert names == {"new_failures": ["new"], "fixed": ["b"], "status_changes": ["c"]}
    assert [x["case"] for x in changes["drift"]] == ["a", "d"], "tenfold, and crossing half the tolerance"
    assert changes["added"] == [{"file": "f.yaml", "case": "new"}]
    assert changes["removed"] == [{"file": "f.yaml", "case": "gone"}]
    assert not drifted(1e-5, 5e-4), "below DRIFT_FLOOR growth is rounding noise"
    assert not drifted(0.3, 0.45) and drifted(0.3, 0.5)
