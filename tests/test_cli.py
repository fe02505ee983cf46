"""The gate end to end: `conformance run` as CI uses it, on the default library and on small files.

The planted-bug test is the harness checking itself: a correct independent implementation must
pass the default library, and every copy of it carrying one plausible bug must be caught.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from conformance.reports import load_document
from conformance.results import Result
from conformance.signatures import failure_kind
from tests.adapters.numpy_direct import BUGGY, DirectNumpy
from tests.helpers.pytest_helpers import DIRECT, ROOT, run_cli

CRASHY = ROOT / "tests" / "adapters" / "crashy.py"

SMALL_CASES = """
op: conv_transpose2d
defaults: {input_shape: [1, 2, 4, 4], out_channels: 2, kernel_size: 3}
cases:
  - id: plain
  - id: abort-here
    stride: 2
  - id: exit-here
    stride: 3
  - id: hang-here
    stride: 4
  - id: after
    padding: 1
  - id: rejects
    stride: 1
    output_padding: 1
    expect: error
"""


RESULTS_SCHEMA = json.loads((ROOT / "conformance" / "schema" / "results.schema.json").read_text())


def results_by_framework(report_dir: Path) -> dict[str, list[dict]]:
    """The run's records by framework; the file on disk must validate against the results schema."""
    path = report_dir / "results.json"
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(path.read_text()), RESULTS_SCHEMA)
    doc = load_document(path)
    grouped: dict[str, list[dict]] = {}
    for r in doc["results"]:
        grouped.setdefault(r["framework"], []).append(r)
    return grouped


def test_library_passes_correct_adapter_and_catches_every_planted_bug(tmp_path: Path) -> None:
    adapters = [f"{DIRECT}:{cls.__name__}" for cls in [DirectNumpy, *BUGGY]]
    args = [a for spec in adapters for a in ("--adapter", spec)]
    proc = run_cli("run", "cases", *args, "-n", "2", "-q", "--report-dir", tmp_path)
    assert proc.returncode == 1, f"planted bugs must fail the gate\n{proc.stdout}\n{proc.stderr}"
    grouped = results_by_framework(tmp_path)

    correct = Counter(r["status"] for r in grouped[DirectNumpy.name])
    assert set(correct) <= {"pass", "unsupported"}, f"the correct implementation diverged: {correct}"
    assert correct["pass"] >= 500
    for cls in BUGGY:
        caught = [r for r in grouped[cls.name] if r["status"] == "fail"]
        assert caught, f"planted bug {cls.name} ({cls.__doc__ or cls.__name__}) was not caught by the library"


def test_half_precision_bug_is_caught_on_float32_values(tmp_path: Path) -> None:
    spec = f"{DIRECT}:HalfPrecisionInternally"
    proc = run_cli("run", "cases", "--adapter", spec, "-k", "float32", "-q", "--report-dir", tmp_path)
    assert proc.returncode == 1
    fails = [r for r in results_by_framework(tmp_path)["bug-half-precision"] if r["status"] == "fail"]
    assert any(r["params"]["dtype"] == "float32" and r["max_abs_err"] > 0 for r in fails)


def test_correct_adapter_exits_zero(tmp_path: Path) -> None:
    proc = run_cli(
        "run",
        "cases/errors.yaml",
        "cases/conv_transpose1d.yaml",
        "--adapter",
        f"{DIRECT}:DirectNumpy",
        "-q",
        "--report-dir",
        tmp_path,
        "--timings",
        tmp_path / "timings.json",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("results.json", "report.md", "report.html"):
        assert (tmp_path / name).is_file(), name
    # what the benchmark reads: the command's phases, its own CPU time and its workers' costs
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert {"load cases", "run", "baselines", "document", "reports"} <= set(timings["phases_s"]), timings
    assert timings["cpu_s"] > 0, timings
    # where each phase began, on the clock the benchmark reads too (its idle time stretch by stretch)
    starts, phases = timings["phase_starts_s"], timings["phases_s"]
    # (those of the formats another process wrote have no start here)
    assert {"load cases", "run", "baselines", "document", "reports"} <= set(starts) <= set(phases), timings
    for before, after in [("load cases", "run"), ("run", "baselines"), ("document", "reports")]:
        assert starts[before] + phases[before] <= starts[after] + 1e-6, (before, after, timings)
    assert timings["clock_s"] > 0 and starts["reports"] + phases["reports"] <= timings["wall_s"], timings
    workers = timings["workers_s"]
    assert {"checks_s", "oracle_s", "send_s", "wait_s", "cpu_s"} <= set(workers), workers
    assert 0 < workers["oracle_s"] < workers["checks_s"] and workers["cpu_s"] > 0, workers


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("cases: [\n  {id: a, op: conv_transpose2d\n", "YAML error"),
        (
            "op: conv_transpose2d\ncases:\n  - id: a\n    input_shape: [1, 2, 3, 3]\n    out_channels: 2\n"
            "    kernel_size: 3\n    strides: 2\n",
            "unknown key 'strides'",
        ),
        (
            "op: conv_transpose2d\ncases:\n  - id: a\n    input_shape: [1, 2, 3, 3]\n    out_channels: 2\n"
            "    kernel_size: 3\n    stride: 1\n    output_padding: 1\n",
            "output_padding",
        ),
        (
            "op: conv_transpose2d\ncases:\n  - id: a\n    input_shape: [1, 2, 3, 3]\n    out_channels: 2\n"
            "    kernel_size: 3\n    padding: [[1, 2, 3], 0]\n",
            "bad.yaml:7: case 'a': field 'padding': entry #1 must be an integer or a pair [lo, hi]",
        ),
        (
            "op: conv_transpose2d\ncases:\n  - id: a\n    input_shape: [1, 2, 3, 3]\n    out_channels: 2\n"
            "    kernel_size: 3\n    padding: SAME\n",
            "bad.yaml:7: case 'a': field 'padding': unknown padding 'SAME'",
        ),
    ],
    ids=["syntax", "unknown-key", "ok-case-breaks-rule", "bad-pair", "unknown-padding-string"],
)
def test_malformed_case_file_exits_2_with_a_clear_message(
    tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    proc = run_cli("run", bad, "--framework", "torch", "--report-dir", tmp_path / "r")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and expected in proc.stderr, proc.stderr
    assert not (tmp_path / "r" / "results.json").exists(), "nothing may run before the files are valid"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--framework", "no-such-framework"], "unknown framework"),
        (["--adapter", "nowhere.py:Cls"], "does not exist"),
        (["-k", "stride and (or"], "-k"),
        (["--known-divergences", "missing.yaml"], "does not exist"),
        (["--case", "no-case-has-this-id"], "no case matches"),
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str], expected: str) -> None:
    proc = run_cli("run", "cases/errors.yaml", *args, "--report-dir", tmp_path)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_bad_usage_after_the_frameworks_started_importing_leaves_nothing_running_or_behind(
    tmp_path: Path,
) -> None:
    """``run --framework`` starts the frameworks' servers before the line is parsed for real: a
    usage error found later stops them and removes their log folder."""
    pytest.importorskip("mlx")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = run_cli("run", "cases/errors.yaml", "--framework", "mlx", "--check", "bogus", tmpdir=scratch)
    assert proc.returncode == 2 and "--check" in proc.stderr, proc.stderr
    assert list(scratch.iterdir()) == [], "the servers' log folder is left behind"


def test_crashing_and_hanging_adapter_leaves_every_other_result(tmp_path: Path) -> None:
    cases = tmp_path / "small.yaml"
    cases.write_text(SMALL_CASES)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = run_cli(
        "run",
        cases,
        "--adapter",
        f"{CRASHY}:Crashy",
        "--framework",
        "torch",
        "--timeout",
        "30",  # the hang costs this long; shorter, a loaded machine's first torch call can exceed it
        "--report-dir",
        tmp_path / "r",
        "-q",
        tmpdir=scratch,
    )
    assert proc.returncode == 1
    # (what stays is the HTML report's compiled template, kept on purpose in Jinja's own cache folder)
    left = [p for p in scratch.iterdir() if not p.name.startswith("_jinja2-cache-")]
    assert left == [], "the workers' log folder is removed after the run"
    grouped = results_by_framework(tmp_path / "r")
    status = {r["case"]: r for r in grouped["crashy"] if r["check"] in ("forward", "error_parity")}
    assert status["abort-here"]["status"] == "crash" and "SIGABRT" in status["abort-here"]["message"]
    assert "about to abort" in status["abort-here"]["message"], "the worker's stderr tail is quoted"
    assert "finished a call" not in status["abort-here"]["message"], "only the crashed case's own output"
    assert status["exit-here"]["status"] == "crash" and "code 0" in status["exit-here"]["message"]
    assert status["hang-here"]["status"] == "timeout"
    assert status["plain"]["status"] == "pass" and status["after"]["status"] == "pass"
    assert status["rejects"]["status"] == "pass"
    assert {r["status"] for r in grouped["torch"]} == {"pass"}, "other frameworks are unaffected"
    hung = [r for r in grouped["crashy"] if r["case"] == "hang-here"]
    checks = {"forward", "grad_input", "grad_weight", "grad_bias", "repeatability"}
    assert {r["check"] for r in hung} == checks
    assert {r["status"] for r in hung} == {"timeout"}, "every check of the lost case is reported, none passes"
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "abort-here" in markdown and "hang-here" in markdown
    # known, the same results become xfail, which keeps their messages and not their statuses: the
    # reports still tell a known crash or hang from a wrong value by the runner's wording
    for case, kind in (("abort-here", "crash"), ("exit-here", "crash"), ("hang-here", "timeout")):
        known = Result.from_dict({**status[case], "status": "xfail"})
        assert failure_kind(known) == kind, known.message


def test_known_divergence_turns_failure_into_xfail_and_fixed_entry_into_xpass(tmp_path: Path) -> None:
    spec = f"{DIRECT}:AcceptsLargeOutputPadding"
    known = tmp_path / "known.yaml"
    known.write_text(
        textwrap.dedent("""
        divergences:
          - framework: bug-accepts-large-output-padding
            case: "op-*"
            check: error_parity
            reason: accepts output_padding >= stride and >= dilation
            link: https://example.invalid/issue/1
    """)
    )
    cases = tmp_path / "c.yaml"
    cases.write_text(
        textwrap.dedent("""
        op: conv_transpose1d
        defaults: {input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, expect: error}
        cases:
          - {id: op-equal-stride, stride: 2, output_padding: 2}
          - {id: op-beyond, stride: 1, output_padding: 3}
    """)
    )
    proc = run_cli(
        "run", cases, "--adapter", spec, "--known-divergences", known, "--report-dir", tmp_path / "a"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    statuses = {
        r["case"]: r for r in results_by_framework(tmp_path / "a")["bug-accepts-large-output-padding"]
    }
    assert {r["status"] for r in statuses.values()} == {"xfail"}
    assert statuses["op-beyond"]["divergence"]["link"] == "https://example.invalid/issue/1"
    # known divergences get reproducer scripts only when asked for: on the run, or one case on demand
    assert not (tmp_path / "a" / "reproducers").exists()
    assert all(not r["reproducer"] for r in statuses.values())
    proc = run_cli(
        "run",
        cases,
        "--adapter",
        spec,
        "--known-divergences",
        known,
        "--reproducers",
        "divergent",
        "--report-dir",
        tmp_path / "a2",
    )
    scripts = sorted(p.name for p in (tmp_path / "a2" / "reproducers").rglob("*.py"))
    assert scripts == ["op-beyond--error_parity.py", "op-equal-stride--error_parity.py"], scripts
    proc = run_cli("repro", cases, "--case", "op-beyond", "--adapter", spec, "--out", tmp_path / "on-demand")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (script,) = (tmp_path / "on-demand" / "reproducers").rglob("*.py")
    assert script.name == "op-beyond--error_parity.py" and str(script) in proc.stdout

    proc = run_cli(
        "run",
        cases,
        "--adapter",
        f"{DIRECT}:DirectNumpy",
        "--known-divergences",
        known,
        "--report-dir",
        tmp_path / "b",
    )
    # the entry names another framework, so it neither matches nor counts as stale here
    assert proc.returncode == 0, proc.stdout + proc.stderr

    fixed = known.read_text().replace("bug-accepts-large-output-padding", "numpy-direct")
    known.write_text(fixed)
    proc = run_cli(
        "run",
        cases,
        "--adapter",
        f"{DIRECT}:DirectNumpy",
        "--known-divergences",
        known,
        "--report-dir",
        tmp_path / "c",
    )
    assert proc.returncode == 1, "a known divergence that no longer reproduces must fail the gate"
    assert {r["status"] for r in results_by_framework(tmp_path / "c")["numpy-direct"]} == {"xpass"}


def test_report_merges_runs_from_different_environments(tmp_path: Path) -> None:
    for name, adapter in (("one", "DirectNumpy"), ("two", "BiasMissing")):
        run_cli(
            "run",
            "cases/conv_transpose1d.yaml",
            "--adapter",
            f"{DIRECT}:{adapter}",
            "-q",
            "--report-dir",
            tmp_path / name,
        )
    proc = run_cli(
        "report",
        tmp_path / "one/results.json",
        tmp_path / "two/results.json",
        "--report-dir",
        tmp_path / "merged",
    )
    assert proc.returncode == 1, "the merged report still gates on the bias bug"
    doc = json.loads((tmp_path / "merged/results.json").read_text())
    assert set(doc["frameworks"]) == {"numpy-direct", "bug-bias-missing"}
    assert len(doc["runs"]) == 2
    assert "bug-bias-missing" in (tmp_path / "merged/report.md").read_text()


def test_report_rejects_a_file_that_is_not_results(tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text('{"hello": 1}')
    proc = run_cli("report", bogus, "--report-dir", tmp_path / "r")
    assert proc.returncode == 2 and str(bogus) in proc.stderr and "Traceback" not in proc.stderr


def test_every_run_option_the_readme_lists_is_one_the_command_takes() -> None:
    from conformance.cli import _parser

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\nconformance run \[PATH \.\.\.\](.*?)\nconformance repro", readme, re.S)
    assert block, "README lists no `conformance run` options"
    listed = re.findall(r"^\s+(-{1,2}[a-z][\w-]*)", block.group(1), re.M)
    run = next(
        action.choices["run"]
        for action in _parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    taken = {option for action in run._actions for option in action.option_strings}
    assert "--reuse-results" in listed and len(listed) > 10
    assert set(listed) <= taken, (
        f"README lists options `conformance run` does not take: {set(listed) - taken}"
    )


def test_the_command_starts_with_its_workers_thread_limits(monkeypatch) -> None:
    """The ``conformance`` command (script and ``python -m``) sets the workers' thread limits in its
    own process before NumPy loads, where the user set none: OpenBLAS otherwise starts a thread
    per core there, which spins for nothing. A limit the user set is kept."""
    from importlib.metadata import entry_points

    from conformance import launch

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "conformance"]
    assert script.value == "conformance.launch:main", "the command must start in conformance.launch"
    assert "conformance.launch import main" in (ROOT / "conformance" / "__main__.py").read_text()

    for variable in launch.THREAD_LIMITS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    launch.limit_threads()
    assert os.environ["OMP_NUM_THREADS"] == "4", "the user's own limit is kept"
    assert os.environ["OPENBLAS_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"

    if (os.cpu_count() or 1) < 2 or not Path("/proc/self/task").is_dir():
        pytest.skip("one CPU (OpenBLAS starts no thread pool to tell apart), or no /proc to count threads")
    # this process's threads once NumPy is loaded
    threads_after_numpy = "import os{}; import numpy; print(len(os.listdir('/proc/self/task')))"
    clean = {k: v for k, v in os.environ.items() if k not in launch.THREAD_LIMITS}
    counts = {
        limited: int(
            subprocess.run(
                [sys.executable, "-c", threads_after_numpy.format(
                    "; from conformance import launch; launch.limit_threads()" if limited else ""
                )],
                env=clean, capture_output=True, text=True, check=True,
            ).stdout
        )
        for limited in (False, True)
    }  # fmt: skip
    assert counts[True] == 1 < counts[False], counts


def test_the_command_entry_imports_nothing_heavy_before_it_starts_the_frameworks() -> None:
    """conformance.launch runs before NumPy loads (to set thread limits that NumPy reads at import,
    and to start the frameworks' imports first): importing it must not import NumPy."""
    probe = "import sys, conformance.launch; print(sorted({'numpy', 'yaml', 'torch'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_a_run_in_process_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    """``conformance run`` writes its reports with the cyclic collector off (the command ends right
    after); called in a process that goes on (the API, a test), it turns the collector back on."""
    import gc

    from conformance import cli

    cases = tmp_path / "small.yaml"
    cases.write_text(SMALL_CASES.split("  - id: abort-here")[0])
    assert gc.isenabled()
    code = cli.main(
        ["run", str(cases), "--adapter", "tests/adapters/numpy_direct.py:DirectNumpy", "-q",
         "--report-dir", str(tmp_path / "reports")]
    )  # fmt: skip
    left_on = gc.isenabled()
    gc.enable()  # (for the tests after this one, whatever happened)
    assert code == 0 and (tmp_path / "reports" / "results.json").is_file()
    assert left_on, "the collector was left off"


EXITING_WITHOUT_TEARDOWN = """
import atexit, sys
from conformance import launch

class Noted:
    def __del__(self):  # (a teardown's work: never done)
        sys.stdout.write("torn down\\n")

kept = Noted()
atexit.register(lambda: sys.stdout.write("exit function ran\\n"))
sys.stdout.write("written, not flushed\\n")
launch.exit_without_teardown(int(sys.argv[1]))
sys.stdout.write("after the exit\\n")
"""


@pytest.mark.parametrize("code", [0, 1, 2])
def test_a_run_exits_without_teardown_yet_as_the_interpreter_would(code: int) -> None:
    """``conformance run`` skips the interpreter's teardown (freeing a run's objects one by one kept
    it 30-40 ms longer), but keeps its exit code, its exit functions (coverage's, for one) and the
    output still in the streams' buffers."""
    proc = subprocess.run(
        [sys.executable, "-c", EXITING_WITHOUT_TEARDOWN, str(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "written, not flushed\nexit function ran\n", proc.stdout


def test_the_run_command_exits_from_its_entry_point_and_other_commands_return(tmp_path: Path) -> None:
    """``run`` ends the process in the entry point with the command's exit code (see above); any
    other command returns its code to the caller."""
    (tmp_path / "one.yaml").write_text(SMALL_CASES.split("  - id: abort-here")[0])
    script = (
        "import sys\nfrom conformance.launch import main\nsys.argv = ['conformance', *sys.argv[1:]]\n"
        "code = main()\nprint('returned', code)\n"
    )
    for command, returns in (("run", False), ("validate", True)):
        proc = subprocess.run(
            [sys.executable, "-c", script, command, str(tmp_path / "one.yaml"),
             *(["--adapter", f"{DIRECT}:DirectNumpy"] if command == "run" else []),
             *(["--report-dir", str(tmp_path / "r")] if command == "run" else [])],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert ("returned 0" in proc.stdout) == returns, (command, proc.stdout)
