"""Reports from a results document: ``results.json`` for machines, ``summary.md`` for a PR comment,
``report.md`` for a CI job summary, ``report.html`` (one offline file) and ``results.junit.xml`` for
CI test tabs.

:mod:`.views` computes what every format shows; one small module per format only renders it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conformance.reports.html import render_html
from conformance.reports.jsondoc import load_document, pack, to_json
from conformance.reports.junit import render_junit
from conformance.reports.markdown import render_markdown
from conformance.reports.summary import render_summary
from conformance.reports.views import prepare, rendering
from conformance.results import Result
from conformance.timings import Timings, maybe

__all__ = [
    "load_document",
    "render_html",
    "render_junit",
    "render_markdown",
    "render_summary",
    "to_json",
    "write_reports",
]


#: formats written by a forked process beside the one that writes the others: the two halves take
#: about as long. (Which go aside follows their costs: with the HTML page's template compiled once,
#: markdown came back beside it, the reports of the reference run 0.39 -> 0.37 s, 6 alternating
#: runs.) The views both halves show are worked out before the fork.
ASIDE = ("json", "junit")
#: seconds the process writing ASIDE may take before it is given up and they are written here
ASIDE_TIMEOUT = 600.0


def write_reports(
    document: dict[str, Any],
    report_dir: str | Path,
    timings: Timings | None = None,
    parallel: bool = True,
    results: list[Result] | None = None,
) -> dict[str, Path]:
    """Write every report into ``report_dir``; return their paths by format. ``timings`` gets a
    phase per format. With ``parallel`` (and where processes fork), a forked process writes the
    ASIDE formats meanwhile; if it fails for any reason, they are written here after all.
    ``results``: the Result objects the document's records were made from, if at hand (a run's)."""
    directory = Path(report_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "results.json",
        "markdown": directory / "report.md",
        "html": directory / "report.html",
        "summary": directory / "summary.md",
        "junit": directory / "results.junit.xml",
    }
    renderers: dict[str, Callable[[], str]] = {
        "json": lambda: to_json(pack(document)) + "\n",
        "markdown": lambda: render_markdown(document),
        "html": lambda: render_html(document),
        "summary": lambda: render_summary(document),
        "junit": lambda: render_junit(document),
    }
    with rendering(document, results):
        if parallel:  # the views both processes show, worked out once: the forked one inherits them
            with maybe(timings, "report views"):
                prepare(document)
        aside = _Aside.start({n: renderers[n] for n in ASIDE}, paths) if parallel else None
        written = set(ASIDE) if aside is not None else set()  # by the process aside, if it succeeds
        for name, render in renderers.items():
            if name not in written:
                with maybe(timings, f"report {name}"):
                    _write(paths[name], render())
        done = aside.join() if aside is not None else {}
        for name in ASIDE:
            if name in done:
                if timings is not None:
                    timings.phases[f"report {name}"] = done[name]
            elif aside is not None:  # it failed: written here after all
                with maybe(timings, f"report {name}"):
                    _write(paths[name], renderers[name]())
    return paths


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees half a report, nor an old one half overwritten."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


class _Aside:
    """A forked process writing some reports while this one writes the rest. It tells what it
    wrote (and how long each took) through a pipe, and touches no stream of the parent's: it may
    have been forked while another thread held one's lock."""

    def __init__(self, pid: int, reader: int) -> None:
        self.pid, self.reader = pid, reader

    @classmethod
    def start(cls, renderers: dict[str, Callable[[], str]], paths: dict[str, Path]) -> _Aside | None:
        if not hasattr(os, "fork"):
            return None
        reader, writer = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns on fork in a process with threads (OpenBLAS's, a test runner's):
            # the child below only renders and writes its own files, so no lock it needs is held
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(reader)
            status = 1
            try:
                seconds = {}
                # in the rendering scope it was forked in (write_reports'): the views computed
                # there are not computed again
                for name, render in renderers.items():
                    started = time.perf_counter()
                    _write(paths[name], render())
                    seconds[name] = time.perf_counter() - started
                os.write(writer, json.dumps(seconds).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(writer)
        return cls(pid, reader)

    def join(self) -> dict[str, float]:
        """The formats the child wrote, with their seconds; {} if it failed or took too long."""
        deadline = time.monotonic() + ASIDE_TIMEOUT
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                status = -1
                break
            time.sleep(0.005)
        with os.fdopen(self.reader, "rb") as pipe:
            told = pipe.read()
        if status != 0:
            return {}
        try:
            return json.loads(told)
        except ValueError:
            return {}
