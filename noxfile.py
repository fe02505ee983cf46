"""Sessions.

``conformance`` is the gate: it runs the case library through every framework that can run here,
one environment (interpreter + pinned frameworks) at a time, and merges the results into one report
in reports/. Frameworks that cannot share an interpreter get their own environment: MegEngine needs
Python <= 3.10 with numpy < 2, Lucid 2.9.0 needs Python 3.12. An environment whose interpreter is
missing is skipped, and the merged report says so.

``tests`` runs the harness's own tests; ``lint``, ``bench`` as named.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "conformance"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False  # a machine without python3.10 skips MegEngine

REPORTS = Path("reports")
#: environment -> (python, extras to install, constraints file, frameworks it runs)
ENVIRONMENTS: dict[str, tuple[str, str, str, list[str]]] = {
    "main": ("3.11", "torch,mlx", "constraints/main.txt", ["torch", "mlx", "torch.nn", "mlx.nn"]),
}


def run_environment(session: nox.Session, name: str) -> None:
    """Install one environment's pins and run the library through its frameworks into reports/<name>/.

    A gate failure (exit 1) is recorded, not raised, so that every environment runs and the merge
    session can report them all; bad usage (exit 2) fails at once.
    """
    _, extras, constraints, frameworks = ENVIRONMENTS[name]
    session.install("-c", constraints, "-e", f".[{extras}]")
    out = REPORTS / name
    shutil.rmtree(out, ignore_errors=True)
    selected = [a for f in frameworks for a in ("--framework", f)]
    session.run(
        "conformance", "run", "cases", "-n", "2", *selected, "--report-dir", str(out), success_codes=[0, 1]
    )


@nox.session(python=ENVIRONMENTS["main"][0])
def conformance(session: nox.Session) -> None:
    """The gate: every environment, then one merged report in reports/ (exit 1 on any failure)."""
    if session.posargs:  # a custom run in the main environment: nox -s conformance -- ARGS
        session.install("-c", ENVIRONMENTS["main"][2], "-e", f".[{ENVIRONMENTS['main'][1]}]")
        session.run("conformance", "run", "-n", "2", *session.posargs)
        return
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / "environments.json").write_text(json.dumps(sorted(ENVIRONMENTS)))
    run_environment(session, "main")
    for name in ENVIRONMENTS:
        if name != "main":
            session.notify(f"environment-{name}")
    session.notify("merge")


def _environment_session(name: str, python: str) -> None:
    @nox.session(name=f"environment-{name}", python=python)
    def run(session: nox.Session) -> None:
        run_environment(session, name)

    run.__doc__ = f"Run the library in the {name} environment (Python {python}) into reports/{name}/."


for _name, (_python, *_) in ENVIRONMENTS.items():
    if _name != "main":
        _environment_session(_name, _python)


@nox.session(python=ENVIRONMENTS["main"][0])
def merge(session: nox.Session) -> None:
    """Merge reports/<environment>/results.json into reports/, naming environments that did not run."""
    session.install("-c", ENVIRONMENTS["main"][2], "-e", ".")
    found, notes = [], []
    for name, (python, _, _, frameworks) in ENVIRONMENTS.items():
        path = REPORTS / name / "results.json"
        if path.is_file():
            found.append(str(path))
        else:
            notes.append(
                f"environment {name} (Python {python}: {', '.join(frameworks)}) did not run: "
                f"no {path}; see the nox output (a missing python{python} interpreter skips it)"
            )
    notes_args = [a for n in notes for a in ("--note", n)]
    session.run("conformance", "report", *found, *notes_args, "--report-dir", str(REPORTS))


@nox.session(python=ENVIRONMENTS["main"][0])
def tests(session: nox.Session) -> None:
    """The harness's own tests (oracle, loader, comparator, runner, planted-bug adapters, reports)."""
    session.install("-c", ENVIRONMENTS["main"][2], "-e", ".[torch,mlx,test]")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session(python=ENVIRONMENTS["main"][0])
def fuzz(session: nox.Session) -> None:
    """Property-based search for divergences in torch and mlx; findings go to cases/found/.

    Extra arguments go to `conformance fuzz`, e.g. `nox -s fuzz -- --framework mlx --time-budget 300`.
    """
    session.install("-c", ENVIRONMENTS["main"][2], "-e", ".[torch,mlx,test]")
    args = session.posargs or ["--framework", "torch", "--framework", "mlx", "--time-budget", "180"]
    session.run("conformance", "fuzz", *args, success_codes=[0, 1])


@nox.session(python=ENVIRONMENTS["main"][0])
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=ENVIRONMENTS["main"][0])
def bench(session: nox.Session) -> None:
    """Timings of the oracle and of a full library run (figures printed, nothing asserted)."""
    session.install("-c", ENVIRONMENTS["main"][2], "-e", ".[torch,mlx]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
