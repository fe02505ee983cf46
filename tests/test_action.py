"""The GitHub Action (action.yml) and the README's CI examples: the action parses, uses only real
CLI options and declared inputs; its shell steps, run here as GitHub would run them with the
inputs of the README's workflow example, gate, write the step summary and annotate failures; the
annotations command escapes what GitHub would misread."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conformance.annotations import annotation, annotations
from conformance.cli import _parser
from tests.helpers.pytest_helpers import DIRECT, ROOT, run_cli

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
STEPS = ACTION["runs"]["steps"]
#: options the action passes that another issue adds to `conformance run`
PENDING = {"--compare-to": "added by issue 11 (reports: changes since a base run)"}


def _options(command: str) -> set[str]:
    sub = next(a for a in _parser()._actions if a.dest == "command")
    return {o for action in sub.choices[command]._actions for o in action.option_strings}


def _readme_block(language: str, marker: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if marker in b]
    assert found, f"README has no ```{language} block containing {marker!r}"
    return found[0]


def test_action_is_a_composite_action_whose_inputs_are_declared_and_used():
    assert ACTION["runs"]["using"] == "composite"
    text = (ROOT / "action.yml").read_text()
    used = set(re.findall(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", text))
    declared = set(ACTION["inputs"])
    assert used <= declared, f"action.yml uses undeclared inputs {used - declared}"
    assert declared <= used, f"action.yml declares unused inputs {declared - used}"
    for step in STEPS:
        assert "uses" in step or step.get("shell") == "bash", (
            f"composite step {step.get('name')} needs a shell"
        )
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in STEPS), "no reports upload"


def test_action_passes_only_real_cli_options():
    text = "\n".join(s.get("run", "") for s in STEPS)
    run_options = set(re.findall(r"args\+=\((--[\w-]+)", text)) | set(
        re.findall(r"args=\(run (--[\w-]+)", text)
    )
    assert "--adapter" in run_options and "--cases-also" in run_options, run_options
    unknown = run_options - _options("run") - set(PENDING)
    assert not unknown, f"action.yml passes options `conformance run` does not have: {unknown}"
    for sub, opts in re.findall(r"conformance (annotations) \S+ (--[\w-]+)", text):
        assert opts in _options(sub), f"action.yml: conformance {sub} has no {opts}"


def _run_step(name: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    step = next(s for s in STEPS if s.get("name") == name)
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", step["run"]],  # as GitHub runs `shell: bash`
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture()
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A user's repository with the README example's adapter file, and the environment GitHub gives
    the action's steps (a `conformance` command on PATH running this checkout)."""
    (tmp_path / "numpy_direct.py").write_text(DIRECT.read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "conformance"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m conformance.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "GITHUB_OUTPUT": str(tmp_path / "github_output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step_summary.md"),
    }
    return tmp_path, env


def _readme_action_inputs() -> dict[str, str]:
    workflow = yaml.safe_load(_readme_block("yaml", "uses: OWNER/conformance@"))
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    step = next(s for s in steps if str(s.get("uses", "")).startswith("OWNER/conformance@"))
    inputs = {k: str(v) for k, v in step.get("with", {}).items()}
    assert set(inputs) <= set(ACTION["inputs"]), (
        f"README passes unknown inputs {set(inputs) - set(ACTION['inputs'])}"
    )
    return inputs


def _step_env(inputs: dict[str, str], env: dict[str, str]) -> dict[str, str]:
    values = {k: str(v.get("default", "")) for k, v in ACTION["inputs"].items()} | inputs
    step = next(s for s in STEPS if s.get("name") == "Run the conformance gate")
    resolved = {
        var: re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values[m.group(1)], str(expr))
        for var, expr in step["env"].items()
    }
    return {**env, **resolved, "LIMIT": values["annotations"]}


@pytest.mark.parametrize("bug", [False, True], ids=["correct", "planted-bug"])
def test_action_steps_with_the_readme_example_inputs(project, bug):
    work, env = project
    inputs = _readme_action_inputs()
    adapter_file, _, cls = inputs["adapters"].strip().rpartition(":")
    # the README's adapter file: here the correct NumPy implementation, or one with a planted bug
    target = "GradBiasFirstSampleOnly" if bug else "DirectNumpy"
    (work / adapter_file).write_text(f"from numpy_direct import {target} as {cls}\n{cls}.name = 'mine'\n")
    inputs["args"] = f"{inputs.get('args', '')} -q -k 'conv_transpose1d and (groups or bias)'"
    env = _step_env(inputs, env)
    proc = _run_step("Run the conformance gate", env, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = (work / "github_output").read_text()
    assert f"exit-code={1 if bug else 0}" in output, output + proc.stderr[-3000:]
    summary_step = _run_step("Summary and annotations", env, work)
    assert summary_step.returncode == 0, summary_step.stderr
    summary = (work / "step_summary.md").read_text()
    assert "mine" in summary, summary[:2000]
    errors = [line for line in summary_step.stdout.splitlines() if line.startswith("::error ")]
    if bug:
        assert errors and all("grad_bias" in e for e in errors), summary_step.stdout[:3000]
        assert len(errors) <= int(env["LIMIT"])
    else:
        assert not errors, summary_step.stdout[:3000]
    verdict = subprocess.run(
        ["bash", "-c", next(s for s in STEPS if s.get("name") == "Verdict")["run"]],
        env={**env, "CODE": output.strip().rpartition("=")[2]},
    )
    assert verdict.returncode == (1 if bug else 0)


def test_readme_gitlab_example_runs_and_names_the_junit_report(tmp_path):
    pipeline = yaml.safe_load(_readme_block("yaml", "artifacts:"))
    job = next(v for v in pipeline.values() if isinstance(v, dict) and "script" in v)
    junit = job["artifacts"]["reports"]["junit"]
    run_line = next(line for line in job["script"] if line.startswith("conformance run"))
    argv = shlex.split(run_line)
    report_dir = argv[argv.index("--report-dir") + 1] if "--report-dir" in argv else "reports"
    assert junit == f"{report_dir}/results.junit.xml", (
        f"GitLab example: junit {junit!r}, reports in {report_dir}"
    )
    adapter_file, _, cls = argv[argv.index("--adapter") + 1].rpartition(":")
    (tmp_path / "numpy_direct.py").write_text(DIRECT.read_text())
    (tmp_path / adapter_file).write_text(f"from numpy_direct import DirectNumpy as {cls}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "conformance.cli", *argv[1:], "-q", "-k", "conv_transpose3d and groups"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / report_dir / "results.json").is_file()


def test_annotation_escapes_and_locates_the_case(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the workspace: annotations name files relative to it
    cases = tmp_path / "mine.yaml"
    cases.write_text("cases:\n  - id: first\n    kernel_size: 2\n  - id: wide-kernel\n    kernel_size: 5\n")
    record = {
        "file": str(cases),
        "case": "wide-kernel-g2",
        "family": "wide-kernel",
        "framework": "mine",
        "check": "forward",
        "status": "fail",
        "message": "50% of elements wrong,\nfirst at (0, 1): got 1",
        "rerun": "conformance run mine.yaml --case 'wide-kernel-g2' --adapter a.py:A",
    }
    line = annotation(record)
    head, _, message = line.partition("::")[2].partition("::")
    assert head.startswith("error file=mine.yaml,line=4,"), head
    assert "title=conformance fail%3A mine mine.yaml%3A%3Awide-kernel-g2 [forward]" in head, head
    assert "\n" not in line and "50%25 of elements wrong,%0Afirst" in message, message
    assert "re-run%3A" not in message and "re-run: conformance run" in message


def test_annotations_take_the_first_failures_and_count_the_rest():
    records = [
        {"file": "x.yaml", "case": f"c{i}", "framework": "f", "check": "forward", "status": s, "message": "m"}
        for i, s in enumerate(["pass", "fail", "xfail", "error", "crash", "unsupported", "xpass", "timeout"])
    ]
    lines = annotations({"results": records}, limit=3)
    assert [re.search(r"x\.yaml%3A%3A(c\d)", x).group(1) for x in lines[:3]] == ["c1", "c3", "c4"], lines
    assert lines[3].startswith("::warning") and "2 more failing results" in lines[3], lines
    assert annotations({"results": records[:1]}) == []


def test_annotations_command_rejects_a_file_that_is_no_results_document(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('{"summary": {}}')
    proc = run_cli("annotations", bad)
    assert proc.returncode == 2 and "no 'results' list" in proc.stderr and "Traceback" not in proc.stderr
