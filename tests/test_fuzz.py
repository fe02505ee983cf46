"""`conformance fuzz` checked against planted bugs: each is found, shrunk, written as a case that
reproduces it (and passes on torch) and as a reproducer script; a correct adapter yields nothing."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cases import load_case_file, make_case
from conformance.results import Result
from conformance.signatures import Signature, base_framework, failure_kind, region, signature
from tests.adapters.numpy_direct import BUGGY
from tests.helpers.pytest_helpers import DIRECT, ROOT, run_cli


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    work = tmp_path_factory.mktemp("fuzz")
    adapters = [a for cls in BUGGY for a in ("--adapter", f"{DIRECT}:{cls.__name__}")]
    proc = run_cli("fuzz", *adapters, "--max-examples", "300", "--seed", "0", "--out", "found", cwd=work)
    return work, proc


def test_every_planted_bug_is_found_within_a_few_hundred_examples(planted) -> None:
    work, proc = planted
    assert proc.returncode == 1, proc.stdout + proc.stderr
    files = sorted(p.name for p in (work / "found").glob("*.yaml"))
    for cls in BUGGY:
        assert any(name.startswith(cls.name + "-") for name in files), f"{cls.name} not found: {files}"


def test_found_cases_reproduce_the_bug_and_pass_on_torch(planted) -> None:
    work, _ = planted
    for cls in BUGGY[:4]:
        path = next((work / "found").glob(f"{cls.name}-*.yaml"))
        (case,) = load_case_file(path)
        assert "found" in case.tags
        bug = run_cli(
            "run", path, "--adapter", f"{DIRECT}:{cls.__name__}", "--report-dir", "r1", "-q", cwd=work
        )
        assert bug.returncode == 1, f"{path.name} no longer reproduces\n{bug.stdout}{bug.stderr}"
        torch = run_cli("run", path, "--framework", "torch", "--report-dir", "r2", "-q", cwd=work)
        assert torch.returncode == 0, f"{path.name} fails on torch\n{torch.stdout}{torch.stderr}"


def test_reproducer_scripts_run_and_show_the_divergence(planted) -> None:
    work, _ = planted
    script = next((work / "found").glob("bug-kernel-not-flipped-forward-*.py"))
    text = script.read_text()
    assert str(ROOT) not in text and str(work) not in text, (
        "a plugin adapter's reproducer names machine paths"
    )
    elsewhere = work / "elsewhere"  # standalone: the adapter's source is embedded, not loaded from its path
    elsewhere.mkdir()
    moved = elsewhere / script.name
    moved.write_text(text)
    proc = subprocess.run([sys.executable, moved], capture_output=True, text=True, cwd=elsewhere, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "forward fail" in proc.stdout


def test_rerun_line_of_a_plugin_finding_names_its_adapter(planted) -> None:
    work, _ = planted
    path = next((work / "found").glob("bug-kernel-not-flipped-forward-*.yaml"))
    line = next(x for x in path.read_text().splitlines() if x.startswith("# Re-run: "))
    command = shlex.split(line.removeprefix("# Re-run: "))
    assert command[:2] == ["conformance", "run"] and "--adapter" in command, line
    proc = run_cli(*command[1:], "--report-dir", "r3", "-q", cwd=work)
    assert proc.returncode == 1, f"{line} does not reproduce:\n{proc.stdout}{proc.stderr}"


def test_findings_are_minimal(planted) -> None:
    work, _ = planted
    (case,) = load_case_file(next((work / "found").glob("bug-kernel-not-flipped-forward-*.yaml")))
    # a kernel that is not flipped shows with two taps and one input element: nothing else is needed
    assert case.params.ndim == 1 and case.params.kernel_size == (2,) and case.input_shape == (1, 1, 1)


def test_correct_adapter_yields_no_finding_and_exits_zero(tmp_path: Path) -> None:
    proc = run_cli(
        "fuzz",
        "--adapter",
        f"{DIRECT}:DirectNumpy",
        "--max-examples",
        "60",
        "--seed",
        "3",
        "--out",
        "found",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not list((tmp_path / "found").glob("*.yaml")) if (tmp_path / "found").exists() else True


def test_same_seed_same_findings(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        run_cli(
            "fuzz",
            "--adapter",
            f"{DIRECT}:DilationIgnored",
            "--max-examples",
            "100",
            "--seed",
            "7",
            "--out",
            "found",
            cwd=tmp_path / name,
        )
        runs.append(sorted(p.read_text() for p in (tmp_path / name / "found").glob("*.yaml")))
    assert runs[0] and runs[0] == runs[1]


def test_signature_regions_deduplicate() -> None:
    small = make_case(
        {
            "op": "conv_transpose1d",
            "input_shape": [1, 1, 2],
            "out_channels": 1,
            "kernel_size": 2,
            "stride": 2,
        },
        "a",
    )
    big = make_case(
        {
            "op": "conv_transpose2d",
            "input_shape": [2, 4, 3, 3],
            "out_channels": 4,
            "kernel_size": 3,
            "stride": 2,
            "groups": 2,
            "dilation": 2,
            "dtype": "float16",
        },
        "b",
    )
    assert region(small.params_record()) == {"stride", "bias"}
    assert {
        "2d",
        "stride",
        "groups",
        "cout-per-group-gt-1",
        "dilation",
        "float16",
        "bias",
        "batch",
    } <= region(big.params_record())
    found = Signature("x", "forward", "values", region(small.params_record()))
    assert found.explains(Signature("x", "forward", "values", region(big.params_record())))
    assert not found.explains(Signature("x", "grad_input", "values", region(big.params_record())))
    assert not Signature("x", "forward", "values", region(big.params_record())).explains(found)


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        ("fail", "shape (1, 2) instead of (1, 3)", "shape"),
        ("fail", "3 of 9 elements outside tolerance", "values"),
        ("fail", "dtype float32 instead of float16", "dtype"),
        ("fail", "returned shape (1, 2, 3) instead of raising", "accepts"),
        ("error", "raised ValueError on a valid configuration", "raises"),
        ("crash", "worker process killed by signal SIGFPE", "crash"),
        ("fail", "modified its inputs in place: x (3 of 9 elements)", "mutates"),
        # known divergences: the xfail keeps the runner's message for a crash or a hang
        ("xfail", "worker process killed by signal SIGABRT while running this case", "crash"),
        ("xfail", "no result within the 30 s per-case timeout", "timeout"),
        ("xfail", "3 of 9 elements outside tolerance", "values"),
    ],
)
def test_failure_kinds(status: str, message: str, kind: str) -> None:
    assert failure_kind(Result("c", "f", "fw", "forward", status, message=message)) == kind


def test_signature_of_a_result_names_framework_check_kind_and_region() -> None:
    accepted = Result(
        "c",
        "f",
        "torch[native]",
        "error_parity",
        "fail",
        expect="error",
        rules=["output-padding-lt-stride"],
        params={"input_shape": [1, 2, 4, 4]},
        actual_shape=[1, 2, 9, 9],
        message="returned shape (1, 2, 9, 9) instead of raising",
    )
    sig = signature(accepted)
    assert (sig.framework, sig.check, sig.kind) == ("torch[native]", "error_parity", "accepts")
    assert sig.features == {"2d", "breaks-output-padding-lt-stride"}
    assert sig.region == "2d, breaks-output-padding-lt-stride"
    assert base_framework(sig.framework) == "torch"
    assert failure_kind(Result("c", "f", "fw", "repeatability", "fail", message="differs")) == "repeat"


def test_fuzz_without_hypothesis_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from conformance import cli

    monkeypatch.setitem(sys.modules, "hypothesis", None)  # as where the fuzz extra is not installed
    monkeypatch.delitem(sys.modules, "conformance.fuzz", raising=False)
    assert cli.main(["fuzz", "--framework", "torch"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "pip install 'conformance[fuzz]'" in err and "Traceback" not in err, err
