"""Results kept by one run are reused by the next only while everything they depend on is unchanged,
and a reused result is the record the framework gave."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conformance import machine, reuse, runner
from conformance.cases import Case, load_cases
from conformance.checks import base_result
from tests.test_cli import results_by_framework, run_cli

pytest.importorskip("torch")

LIBRARY = """
op: conv_transpose2d
defaults: {input_shape: [1, 2, 5, 5], out_channels: 3, kernel_size: 3}
cases:
  - id: plain
  - id: strided
    stride: 2
    bias: false
  - id: seeded
    seed: 1
  - id: rejects
    stride: 1
    output_padding: 1
    expect: error
"""


def _cases(tmp_path: Path, text: str = LIBRARY) -> list[Case]:
    path = tmp_path / "library.yaml"
    path.write_text(text)
    return load_cases([path])


def _run(cases: list[Case], store_dir: Path, specs: tuple[str, ...] = ("torch",)) -> runner.RunOutcome:
    store = reuse.Store(store_dir, None)
    return runner.Runner(runner.describe(list(specs)), workers=1, store=store).run(cases)


def _records(outcome: runner.RunOutcome) -> list[dict]:
    return [r.to_dict() for r in outcome.results]


def test_a_second_run_reuses_every_record_as_the_framework_gave_it(tmp_path: Path) -> None:
    cases = _cases(tmp_path)
    # torch.nn's description samples its layers' initial weights afresh: it must not be in the key
    first = _run(cases, tmp_path / "store", ("torch", "torch.nn"))
    second = _run(cases, tmp_path / "store", ("torch", "torch.nn"))
    assert first.reused == 0
    assert second.reused == len(second.results) == len(first.results)
    assert _records(second) == _records(first), "a reused record is the computed one, duration included"
    assert second.framework_facts == first.framework_facts, "no worker ran: the facts come from the store"
    fresh = runner.Runner(runner.describe(["torch", "torch.nn"]), workers=1).run(cases)
    volatile = {"duration_s"}
    assert [{k: v for k, v in r.items() if k not in volatile} for r in _records(second)] == [
        {k: v for k, v in r.to_dict().items() if k not in volatile} for r in fresh.results
    ]


def test_a_changed_case_is_computed_again_and_the_others_reused(tmp_path: Path) -> None:
    _run(_cases(tmp_path), tmp_path / "store")
    changed = _cases(tmp_path, LIBRARY.replace("    seed: 1\n", "    seed: 2\n"))
    outcome = _run(changed, tmp_path / "store")
    seeded = [r for r in outcome.results if r.case == "seeded"]
    assert outcome.reused == len(outcome.results) - len(seeded)
    fresh = runner.Runner(runner.describe(["torch"]), workers=1).run(changed)
    assert [r.max_abs_err for r in seeded] == [r.max_abs_err for r in fresh.results if r.case == "seeded"]


@pytest.mark.parametrize(
    "change",
    ["harness", "installed", "machine", "kernel-selecting variable", "checks", "adapter version"],
)
def test_nothing_is_reused_when_what_results_depend_on_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    cases = _cases(tmp_path)
    _run(cases, tmp_path / "store")
    checks = None
    if change == "harness":
        monkeypatch.setattr(reuse, "harness_digest", lambda: "an edited oracle")
    elif change == "installed":
        monkeypatch.setattr(reuse, "installed_digest", lambda: "torch upgraded")
    elif change == "machine":
        monkeypatch.setattr(reuse, "machine_digest", lambda: "another CPU")
    elif change == "kernel-selecting variable":
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    elif change == "checks":
        checks = ["forward", "error_parity"]
    infos = runner.describe(["torch"])
    if change == "adapter version":
        infos[0].version += "+local"
    outcome = runner.Runner(
        infos, workers=1, checks=checks, store=reuse.Store(tmp_path / "store", checks)
    ).run(cases)
    assert outcome.reused == 0


def test_a_terminal_session_or_harness_switch_variable_does_not_change_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = reuse.environment_digest()
    monkeypatch.setenv("TERM", "something-else")
    monkeypatch.setenv("OLDPWD", "/elsewhere")
    assert reuse.environment_digest() == before
    # the harness's switches that change no result (.ci/run sets the browser one)
    monkeypatch.setenv("CONFORMANCE_REQUIRE_BROWSER", "1")
    monkeypatch.setenv("CONFORMANCE_CACHE_DIR", str(tmp_path))
    assert reuse.environment_digest() == before
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert reuse.environment_digest() != before


def test_the_machine_digest_follows_the_cpu_but_not_its_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    info = {"model name": "Some CPU", "flags": "avx2 avx512f", "cpu MHz": "2000.0"}
    monkeypatch.setattr(machine, "_cpuinfo", lambda: dict(info))
    before = reuse.machine_digest()
    info["cpu MHz"] = "3100.5"
    assert reuse.machine_digest() == before
    info["flags"] = "avx2 avx512f amx_bf16"
    assert reuse.machine_digest() != before


def test_the_machine_digest_follows_the_system_package_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = tmp_path / "status"
    status.write_text("Package: clang-14\nVersion: 1:14.0.6-12\n")
    monkeypatch.setattr(reuse, "SYSTEM_PACKAGES", (str(status),))
    before = reuse.machine_digest()
    status.write_text("Package: clang-14\nVersion: 1:14.0.6-13\n")  # an upgraded compiler
    assert reuse.machine_digest() != before


def _fake_distribution(site: Path, record: str, editable: bool = False, name: str = "fakeframework") -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text(record)
    if editable:
        (info / "direct_url.json").write_text(
            json.dumps({"url": "file:///src", "dir_info": {"editable": True}})
        )


def test_the_installed_digest_follows_every_record_and_file_and_refuses_editable_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    _fake_distribution(tmp_path, "fakeframework/kernel.so,sha256=aaaa,10\n")
    before = reuse.installed_digest()
    _fake_distribution(tmp_path, "fakeframework/kernel.so,sha256=bbbb,10\n")  # a rebuilt kernel
    assert reuse.installed_digest() != before
    source = tmp_path / "fakeframework" / "functional.py"
    source.parent.mkdir()
    source.write_text("def conv_transpose(x): ...\n")
    _fake_distribution(tmp_path, "fakeframework/functional.py,sha256=cccc,27\n")
    installed = reuse.installed_digest()
    source.write_text("def conv_transpose(x): ...  # patched in place\n")  # its RECORD unchanged
    assert reuse.installed_digest() != installed
    _fake_distribution(tmp_path, "fakeframework/kernel.so,sha256=bbbb,10\n", editable=True)
    with pytest.raises(reuse.NotKeyable, match="fakeframework is an editable install"):
        reuse.installed_digest()


def test_pythonpath_makes_results_unkeyable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    store = reuse.Store(tmp_path / "store", None)
    assert "PYTHONPATH" in store.why_not
    cases = _cases(tmp_path)
    assert runner.Runner(runner.describe(["torch"]), workers=1, store=store).run(cases).reused == 0
    assert not (tmp_path / "store").exists(), "nothing is kept either"


def test_crashes_timeouts_harness_errors_and_custom_adapters_are_never_kept(tmp_path: Path) -> None:
    case = _cases(tmp_path)[0]
    shelf = reuse.Shelf(tmp_path / "shelf.json", {"spec": "torch"})
    for status, message in [("crash", "worker killed"), ("timeout", ""), ("error", "harness error: boom")]:
        shelf.put(case, [base_result(case, "torch", "forward", status, message)])
        assert not shelf.entries, status
    shelf.put(
        case, [base_result(case, "torch", "forward", "error", "raised ValueError on a valid configuration")]
    )
    assert shelf.entries, "a framework's own error is its verdict, and kept"
    assert not reuse.reusable("tests/adapters/numpy_direct.py:DirectNumpy")
    assert reuse.reusable("torch") and reuse.reusable("torch[native]")
    spec = "tests/adapters/numpy_direct.py:DirectNumpy"
    outcome = _run(_cases(tmp_path), tmp_path / "store", (spec,))
    assert outcome.reused == 0 and not (tmp_path / "store").exists()


def test_only_the_latest_key_of_an_adapter_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _cases(tmp_path)
    _run(cases, tmp_path / "store")
    monkeypatch.setattr(reuse, "harness_digest", lambda: "edited")
    _run(cases, tmp_path / "store")
    assert len(list((tmp_path / "store" / "torch").glob("*.json"))) == 1


def test_the_command_line_counts_reused_results_in_the_document(tmp_path: Path) -> None:
    library = tmp_path / "library.yaml"
    library.write_text(LIBRARY)
    store = tmp_path / "store"
    common = ("run", library, "--framework", "torch", "-q", "--reuse-results", store)
    first = run_cli(*common, "--report-dir", tmp_path / "a")
    second = run_cli(*common, "--report-dir", tmp_path / "b")
    assert first.returncode == second.returncode == 0, second.stderr
    assert "reused 15 of 15 results" in second.stderr
    a, b = results_by_framework(tmp_path / "a"), results_by_framework(tmp_path / "b")  # schema-valid
    assert a == b
    runs = json.loads((tmp_path / "b" / "results.json").read_text())["runs"]
    assert runs[0]["reused"] == {"results": 15, "of": 15, "store": str(store)}
    assert "15 of 15 results reused" in (tmp_path / "b" / "report.md").read_text()


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"format": "conformance.reuse/1"}'])
def test_an_unreadable_shelf_holds_nothing(tmp_path: Path, content: str) -> None:
    path = tmp_path / "shelf.json"
    path.write_text(content)
    shelf = reuse.Shelf(path, {"spec": "torch"})
    case = _cases(tmp_path)[0]
    assert shelf.get(case, "torch", ["forward"]) is None


def test_reinstalling_this_project_in_place_keeps_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each nox session runs `pip install -e .`, which writes this project's install files anew:
    their times must not change the key (its source is keyed by harness_digest)."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    finder = tmp_path / "__editable___conformance_finder.py"
    finder.write_text("# finder\n")
    _fake_distribution(tmp_path, "__editable___conformance_finder.py,sha256=dddd,9\n", True, "conformance")
    before = reuse.installed_digest()
    finder.write_text("# finder\n")  # written again, as pip does
    os.utime(finder, ns=(1, 1))
    assert reuse.installed_digest() == before
