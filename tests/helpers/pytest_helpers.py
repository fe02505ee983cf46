"""Helpers shared by the tests: paths, running the command line, loading a slice of cases."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conformance.cases import Case, load_case_file

ROOT = Path(__file__).resolve().parents[2]
DIRECT = ROOT / "tests" / "adapters" / "numpy_direct.py"  # the correct and planted-bug NumPy adapters


def run_cli(*args: str | Path, cwd: Path = ROOT, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    """`conformance ARGS` in a fresh interpreter, as CI runs it (``tmpdir`` becomes its TMPDIR)."""
    env = None if tmpdir is None else {**os.environ, "TMPDIR": str(tmpdir)}
    return subprocess.run(
        [sys.executable, "-m", "conformance", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def load_slice(tmp_path: Path, text: str) -> list[Case]:
    """The cases of a YAML case-file text (a small slice of configurations), validated by the loader."""
    path = tmp_path / "slice.yaml"
    path.write_text(textwrap.dedent(text))
    return load_case_file(path)


def results_by_case(cases: list[Case], name: str) -> dict[str, dict[str, object]]:
    """case id -> check -> Result, for one adapter, run in this process."""
    from conformance.adapters import load_adapter
    from conformance.checks import run_checks

    adapter = load_adapter(name)
    found: dict[str, dict[str, object]] = {}
    for case in cases:
        for result in run_checks(case, adapter):
            found.setdefault(case.id, {})[result.check] = result
    return found
