"""Sessions.

``conformance`` is the gate: it runs the case library through every framework that can run here,
one environment (interpreter + pinned frameworks) at a time, and merges the results into one report
in reports/. Frameworks that cannot share an interpreter get their own environment: MegEngine needs
Python <= 3.10 with numpy < 2, Lucid 2.9.0 needs Python 3.12; PaddlePaddle, OpenVINO, TensorFlow
and Keras share one. An environment whose interpreter is
missing is skipped, and so is one whose system tools are missing (tinygrad's CPU device needs a
``clang`` binary; `.ci/run` installs it); the merged report says which were skipped and why.

``tests`` runs the harness's own tests; ``fuzz``, ``lint``, ``bench`` as named.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import nox

nox.options.sessions = ["tests", "conformance"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False  # a machine without python3.10 skips MegEngine

REPORTS = Path("reports")


@dataclass(frozen=True)
class Environment:
    python: str
    extras: str  # pyproject extras that install its frameworks
    constraints: str  # exact pins
    frameworks: tuple[str, ...]
    tests: tuple[str, ...] = ()  # the adapters' own tests, run in this environment first
    system: tuple[str, ...] = ()  # binaries its frameworks need on PATH, installed outside pip
    # environment variables for the run: compilation caches kept in .nox/ between runs, so a second
    # gate in the same checkout does not compile every configuration again (a cache holds compiled
    # programs, never results: verdicts are the same with it cold or warm)
    env: tuple[tuple[str, str], ...] = ()


CACHE = Path(__file__).resolve().parent / ".nox" / "compilation-cache"
#: the oracle's reference arrays (conformance.reference_cache), shared by every environment: keyed
#: by the case, the oracle's code and NumPy's version, so they are never stale
ORACLE_CACHE = Path(__file__).resolve().parent / ".nox" / "oracle-cache"


#: each environment's results, kept for the next gate in this checkout (conformance.reuse): a result
#: is reused only while its case, adapter, the harness's code, the installed packages, the machine
#: and the environment variables are all as they were; CONFORMANCE_FRESH=1 computes everything
RESULTS_STORE = Path(__file__).resolve().parent / ".nox" / "results-store"


SKIPPED = "skipped.txt"  # reports/<environment>/skipped.txt: why that environment did not run


ENVIRONMENTS: dict[str, Environment] = {
    "main": Environment(
        "3.11",
        "torch,mlx",
        "constraints/main.txt",
        ("torch", "mlx", "torch.nn", "mlx.nn", "torch[native]", "torch[avx512]"),
    ),
    "megengine": Environment(
        "3.10",
        "megengine",
        "constraints/megengine.txt",
        ("megengine", "megengine.module"),
        ("tests/test_adapters_megengine_lucid.py",),
    ),
    "jax-onnxruntime": Environment(
        "3.11",
        "jax,onnxruntime",
        "constraints/jax-onnxruntime-tinygrad.txt",
        ("jax", "onnxruntime"),
        ("tests/test_adapters_jax_onnxruntime_tinygrad.py", "tests/test_oracle_jax.py"),
        env=(
            ("JAX_COMPILATION_CACHE_DIR", str(CACHE / "jax")),
            # by default JAX caches only programs that took over a second to compile: ours take less
            ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"),
            ("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1"),
        ),
    ),
    # Its own environment: the whole library through tinygrad takes ~20 min on 2 cores (a compiled
    # kernel per configuration), and a machine without clang skips it alone.
    "tinygrad": Environment(
        "3.11",
        "tinygrad",
        "constraints/jax-onnxruntime-tinygrad.txt",
        ("tinygrad",),
        ("tests/test_adapters_jax_onnxruntime_tinygrad.py",),
        system=("clang",),
        env=(("CACHEDB", str(CACHE / "tinygrad.db")),),
    ),
    "lucid": Environment(
        "3.12",
        "lucid",
        "constraints/lucid.txt",
        ("lucid", "lucid.nn"),
        ("tests/test_adapters_megengine_lucid.py",),
    ),
    # One interpreter for four frameworks (their pins resolve together): one install of ~1.5 GB
    # instead of three. openvino compiles a model per configuration: ~100 s per variant on 2 cores.
    "paddle-openvino-tensorflow": Environment(
        "3.11",
        "paddle,openvino,tensorflow,keras",
        "constraints/paddle-openvino-tensorflow.txt",
        (
            "paddle",
            "paddle.nn",
            "tensorflow",
            "tensorflow[eigen]",
            "tensorflow[onednn]",
            "keras",
            "openvino",
            "openvino[f32]",
        ),
        ("tests/test_adapters_field.py",),
    ),
}
MAIN = ENVIRONMENTS["main"]


def install_harness(session: nox.Session, constraints: str, extras: str = "") -> None:
    """The harness (editable) with ``extras``, pinned by ``constraints``, and compiled: an editable
    install leaves its modules uncompiled, and where PYTHONDONTWRITEBYTECODE is set every process
    of every run would compile them again (a tenth of a second each; a wheel's install compiles)."""
    session.install("-c", constraints, "-e", f".[{extras}]" if extras else ".")
    session.run("python", "-m", "compileall", "-q", "conformance", silent=True)


def run_environment(session: nox.Session, name: str) -> None:
    """Install one environment's pins, run its adapters' own tests, then the library through its
    frameworks into reports/<name>/.

    A gate failure (exit 1) is recorded, not raised, so that every environment runs and the merge
    session reports them all together; bad usage (exit 2) fails at once.
    """
    env = ENVIRONMENTS[name]
    out = REPORTS / name
    shutil.rmtree(out, ignore_errors=True)
    missing = [tool for tool in env.system if shutil.which(tool) is None]
    if missing:
        reason = f"{', '.join(missing)} not on PATH (Debian/Ubuntu: apt-get install {' '.join(missing)})"
        out.mkdir(parents=True)
        (out / SKIPPED).write_text(reason)
        session.skip(reason)
    install_harness(session, env.constraints, f"{env.extras},test")
    if env.tests:
        session.run("pytest", "-q", "-p", "no:cacheprovider", *env.tests)
    selected = [a for f in env.frameworks for a in ("--framework", f)]
    if os.environ.get("CONFORMANCE_FRESH", "") in ("", "0"):
        selected += ["--reuse-results", str(RESULTS_STORE / name)]
    CACHE.mkdir(parents=True, exist_ok=True)
    session.run(
        "conformance",
        "run",
        "cases",
        "-n",
        "2",
        *selected,
        "--report-dir",
        str(out),
        success_codes=[0, 1],
        env={"CONFORMANCE_CACHE_DIR": str(ORACLE_CACHE), **dict(env.env)},
    )


@nox.session(python=MAIN.python)
def conformance(session: nox.Session) -> None:
    """The gate: every environment, then one merged report in reports/ (exit 1 on any failure)."""
    if session.posargs:  # a custom run in the main environment: nox -s conformance -- ARGS
        install_harness(session, MAIN.constraints, MAIN.extras)
        session.run("conformance", "run", "-n", "2", *session.posargs)
        return
    for name in ENVIRONMENTS:  # so that an environment skipped this time cannot merge an old run's results
        shutil.rmtree(REPORTS / name, ignore_errors=True)
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


for _name, _env in ENVIRONMENTS.items():
    if _name != "main":
        _environment_session(_name, _env.python)


@nox.session(python=MAIN.python)
def merge(session: nox.Session) -> None:
    """Merge reports/<environment>/results.json into reports/, naming environments that did not run."""
    install_harness(session, MAIN.constraints)
    found, notes = [], []
    for name, env in ENVIRONMENTS.items():
        path = REPORTS / name / "results.json"
        skipped = REPORTS / name / SKIPPED
        what = f"environment {name} (Python {env.python}: {', '.join(env.frameworks)}) did not run"
        if path.is_file():
            found.append(str(path))
        elif skipped.is_file():
            notes.append(f"{what}: {skipped.read_text().strip()}")
        else:
            notes.append(
                f"{what}: no {path}; see the nox output (a missing python{env.python} interpreter skips it)"
            )
    notes_args = [a for n in notes for a in ("--note", n)]
    session.run("conformance", "report", *found, *notes_args, "--report-dir", str(REPORTS))


@nox.session(python=MAIN.python)
def tests(session: nox.Session) -> None:
    """The harness's own tests (oracle, loader, comparator, runner, planted-bug adapters, reports)."""
    install_harness(session, MAIN.constraints, "torch,mlx,test")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session(python=MAIN.python)
def fuzz(session: nox.Session) -> None:
    """Property-based search for divergences in torch and mlx; findings go to cases/found/.

    Extra arguments go to `conformance fuzz`, e.g. `nox -s fuzz -- --framework mlx --time-budget 300`.
    """
    install_harness(session, MAIN.constraints, "torch,mlx,test")
    args = session.posargs or ["--framework", "torch", "--framework", "mlx", "--time-budget", "180"]
    session.run("conformance", "fuzz", *args, success_codes=[0, 1])


@nox.session(python=MAIN.python)
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=MAIN.python)
def bench(session: nox.Session) -> None:
    """Timings of the oracle and of a full library run (figures printed, nothing asserted)."""
    install_harness(session, MAIN.constraints, "torch,mlx")
    session.run("python", "benchmarks/bench.py", *session.posargs)
