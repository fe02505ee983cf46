"""Verdicts that hold beside any adapter and on any machine: input isolation, error attribution,
repeatability, kernel-path variants, machine facts and scoped baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import runner
from conformance.adapters import AdapterLoadError, load_adapter
from conformance.divergences import RunFacts, apply, load_divergences
from conformance.machine import machine_facts
from conformance.results import Result
from tests.helpers.pytest_helpers import ROOT, load_slice, run_cli

pytest.importorskip("torch")

SLICE = """
    op: conv_transpose2d
    defaults: {input_shape: [2, 4, 5, 5], out_channels: 6, kernel_size: 3, stride: 2}
    cases:
      - id: plain
      - id: grouped
        groups: 2
      - id: rank-mismatch
        input_shape: [4, 5]
        expect: error
      - id: op-too-large
        output_padding: 2
        expect: error
"""
PLANTED = "tests.adapters.misbehaving"


def _records(outcome: runner.RunOutcome, framework: str) -> list[dict]:
    rows = [r.to_dict() for r in outcome.results if r.framework == framework]
    for row in rows:
        row.pop("duration_s")
    return rows


def _by(outcome: runner.RunOutcome, framework: str) -> dict[tuple[str, str], Result]:
    return {(r.case, r.check): r for r in outcome.results if r.framework == framework}


def test_an_adapter_writing_into_its_inputs_fails_and_changes_nothing_else(tmp_path: Path) -> None:
    cases = load_slice(tmp_path, SLICE)
    writer = f"{PLANTED}:WritesIntoInputs"
    first = runner.run(cases, [writer, "torch"])
    second = runner.run(cases, ["torch", writer])
    assert _records(first, "torch") == _records(second, "torch"), "torch's records depend on the order"
    assert {r.status for r in first.results if r.framework == "torch"} <= {"pass", "unsupported"}
    for outcome in (first, second):
        mine = _by(outcome, "writes-inputs")
        forward = mine[("plain", "forward")]
        assert forward.status == "fail" and "modified its inputs in place: x (" in forward.message, forward
        assert "weight (" in forward.message, forward.message
        assert mine[("plain", "grad_input")].status == "pass", "its vjp does not write: it passes"
    assert _records(first, "writes-inputs") == _records(second, "writes-inputs")


def test_an_adapters_own_exception_is_an_adapter_error_not_a_rejection(tmp_path: Path) -> None:
    outcome = runner.run(load_slice(tmp_path, SLICE), [f"{PLANTED}:PicksOpByRank", "torch"])
    mine, torch_ = _by(outcome, "picks-by-rank"), _by(outcome, "torch")
    rank = mine[("rank-mismatch", "error_parity")]
    assert rank.status == "error" and rank.raised_by == "adapter", rank
    assert "KeyError" in rank.message and "misbehaving.py:" in rank.message, rank.message
    rejected = mine[("op-too-large", "error_parity")]
    assert rejected.status == "pass" and rejected.raised_by == "framework", "torch raised: a rejection"
    assert torch_[("rank-mismatch", "error_parity")].raised_by == "framework"
    assert mine[("plain", "forward")].status == "pass"


def test_one_ulp_between_two_calls_fails_repeatability_only(tmp_path: Path) -> None:
    outcome = runner.run(load_slice(tmp_path, SLICE), [f"{PLANTED}:OneUlpJitter", "torch"])
    mine = _by(outcome, "ulp-jitter")
    for case in ("plain", "grouped"):
        assert mine[(case, "forward")].status == "pass", "one ulp is inside the tolerance"
        repeat = mine[(case, "repeatability")]
        assert repeat.status == "fail" and repeat.mismatched == 1, repeat
        assert "× the tolerance" in repeat.message, repeat.message
    assert {r.status for (c, check), r in _by(outcome, "torch").items() if check == "repeatability"} == {
        "pass"
    }


def test_torch_variants_load_and_name_their_results(tmp_path: Path) -> None:
    outcome = runner.run(load_slice(tmp_path, SLICE), ["torch", "torch[native]", "torch[avx2]"])
    assert set(outcome.frameworks) == {"torch", "torch[native]", "torch[avx2]"}
    assert outcome.framework_facts["torch[native]"]["onednn_enabled"] is False
    assert outcome.framework_facts["torch"]["onednn_enabled"] is True
    assert outcome.framework_facts["torch[avx2]"]["variant_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    for name in outcome.frameworks:
        assert {r.status for r in outcome.results if r.framework == name} <= {"pass", "unsupported"}, name
    with pytest.raises(AdapterLoadError, match="unknown variant 'gpu'"):
        load_adapter("torch[gpu]")


BASELINE = """
divergences:
  - framework: "torch[*]"
    case: plain
    check: forward
    reason: wrong on AMX machines only
    when: {cpu_flags: [amx_bf16], version: ">=2.13"}
  - framework: torch
    case: grouped
    reason: only with clang 14
    when: {facts: {compiler: "clang version 14*"}}
"""


def _failing(case: str, framework: str = "torch") -> Result:
    return Result(case=case, file="x.yaml", framework=framework, check="forward", status="fail")


def test_scoped_entries_apply_only_where_their_conditions_hold(tmp_path: Path) -> None:
    path = tmp_path / "known.yaml"
    path.write_text(BASELINE)
    entries = load_divergences(path)
    amx = RunFacts(
        frozenset({"avx512f", "amx_bf16"}), "x86_64", "Linux", "2.13.0", {"compiler": "clang version 14.0.6"}
    )
    plain = RunFacts(
        frozenset({"avx512f"}), "x86_64", "Linux", "2.13.0", {"compiler": "clang version 19.1.0"}
    )
    on_amx = [_failing("plain"), _failing("plain", "torch[native]"), _failing("grouped")]
    applied = apply(on_amx, entries, facts={"torch": amx, "torch[native]": amx})
    assert [r.status for r in on_amx] == ["xfail", "xfail", "xfail"] and not applied.inactive
    elsewhere = [_failing("plain"), _failing("grouped")]
    applied = apply(elsewhere, entries, facts={"torch": plain})
    assert [r.status for r in elsewhere] == ["fail", "fail"], "an inactive entry is not applied"
    assert applied.warnings == [], "an inactive entry is never stale"
    whys = {entry["entry"]: entry["why"] for entry in applied.inactive}
    assert whys == {
        "plain": "the CPU has no amx_bf16",
        "grouped": "compiler is 'clang version 19.1.0', not 'clang version 14*'",
    }


@pytest.mark.parametrize(
    ("when", "field"),
    [("{cpu_flag: amx}", "when.cpu_flag"), ("{version: 'two'}", "when.version"), ("[amx]", "when")],
)
def test_bad_when_is_a_usage_error(tmp_path: Path, when: str, field: str) -> None:
    path = tmp_path / "known.yaml"
    path.write_text(f"divergences:\n  - framework: torch\n    case: x\n    reason: r\n    when: {when}\n")
    proc = run_cli("validate", ROOT / "cases" / "errors.yaml", "--known-divergences", path)
    assert proc.returncode == 2 and f"field {field!r}" in proc.stderr and "Traceback" not in proc.stderr, (
        proc.stderr
    )


@pytest.mark.parametrize("kind", ["case file", "baseline"])
def test_a_file_that_is_not_utf8_is_a_usage_error(tmp_path: Path, kind: str) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("cases:\n  - id: caf\xe9\n".encode("latin-1"))
    args = [bad] if kind == "case file" else [ROOT / "cases" / "errors.yaml", "--known-divergences", bad]
    proc = run_cli("validate", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "latin1.yaml:2: not UTF-8" in proc.stderr, proc.stderr


def test_results_name_the_machine_and_the_frameworks_build(tmp_path: Path) -> None:
    cases = tmp_path / "slice.yaml"
    cases.write_text(SLICE.replace("\n    ", "\n"))
    proc = run_cli("run", cases, "--framework", "torch", "--report-dir", tmp_path / "r", "-q")
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "r" / "results.json").read_text())["runs"][0]
    assert run["machine"]["cpu"] == machine_facts()["cpu"] and run["machine"]["cores"] >= 1
    assert isinstance(run["machine"]["kernel_features"], list) and run["machine"]["libc"]
    assert run["framework_facts"]["torch"]["cpu_capability"]


def test_a_variant_does_not_change_what_the_default_computes(tmp_path: Path) -> None:
    # torch.backends.mkldnn.enabled is process state: torch[native] must not switch torch's default off.
    zero = load_slice(
        tmp_path,
        """
        op: conv_transpose1d
        defaults: {input_shape: [2, 4, 3], out_channels: 4, kernel_size: 2}
        cases:
          - {id: output-zero, padding: 2, expect: error}
        """,
    )
    before = runner.run(zero, ["torch", "torch[native]"])
    after = runner.run(zero, ["torch[native]", "torch"])
    assert _records(before, "torch") == _records(after, "torch")
    assert _by(after, "torch")[("output-zero", "error_parity")].status == "fail", "oneDNN accepts length 0"
    assert _by(after, "torch[native]")[("output-zero", "error_parity")].status == "pass", "ATen raises"
