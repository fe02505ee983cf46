"""Sessions: ``conformance`` (the gate: every case through every pinned framework, reports in
reports/), ``tests`` (the harness's own tests), ``lint``, ``bench`` (timings)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "conformance"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Run the case library through torch and mlx; write reports/results.json, report.md, report.html."""
    session.install(*CONSTRAINTS, "-e", ".[torch,mlx]")
    args = session.posargs or ["cases", "--report-dir", "reports"]
    session.run("conformance", "run", "-n", "2", *args)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The harness's own tests (oracle, loader, comparator, runner, planted-bug adapters, reports)."""
    session.install(*CONSTRAINTS, "-e", ".[torch,mlx,test]")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Timings of the oracle and of a full library run (figures printed, nothing asserted)."""
    session.install(*CONSTRAINTS, "-e", ".[torch,mlx]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
