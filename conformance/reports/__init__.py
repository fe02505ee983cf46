"""Reports from a results document: ``results.json`` for machines, ``summary.md`` for a PR comment,
``report.md`` for a CI job summary, ``report.html`` (one offline file) and ``results.junit.xml`` for
CI test tabs.

:mod:`.views` computes what every format shows; one small module per format only renders it.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from conformance.reports.html import render_html
from conformance.reports.jsondoc import document_json, load_document, pack, to_json
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


#: the formats in the order the two writing processes take them: most costly first, the summary
#: with the page (both show the parameter maps, which the views prepared before the fork leave out:
#: a process taking the summary alone worked them out again)
ORDER = (("html", "summary"), ("json",), ("junit",), ("markdown",))
#: seconds the forked writing process may take before it is given up and its formats written here
ASIDE_TIMEOUT = 600.0


def write_reports(
    document: dict[str, Any],
    report_dir: str | Path,
    timings: Timings | None = None,
    parallel: bool = True,
    results: list[Result] | None = None,
) -> dict[str, Path]:
    """Write every report into ``report_dir``; return their paths by format. ``timings`` gets a
    phase per format. With ``parallel`` (and where processes fork), a forked process writes
    formats too: each process takes the next format not yet taken (:class:`_Queue`), so the two
    finish together whichever format costs what on this machine; a format the forked process took
    and did not write (it failed, for any reason) is written here after all. ``results``: the
    Result objects the document's records were made from, if at hand (a run's)."""
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
        "json": lambda: document_json(pack(document)) + "\n",
        "markdown": lambda: render_markdown(document),
        "html": lambda: render_html(document),
        "summary": lambda: render_summary(document),
        "junit": lambda: render_junit(document),
    }
    with rendering(document, results):
        if parallel:  # the views both processes show, worked out once: the forked one inherits them
            with maybe(timings, "report views"):
                prepare(document)

        def write(name: str) -> None:
            with maybe(timings, f"report {name}"):
                _write(paths[name], renderers[name]())

        queue = _Queue.of(ORDER) if parallel and hasattr(os, "fork") else None
        aside = _Aside.start(renderers, paths, queue) if queue is not None else None
        mine: list[str] = []
        # (taken one group at a time, as this process comes free: never all at once)
        for name in itertools.chain.from_iterable(queue.taken() if queue is not None else ORDER):
            write(name)
            mine.append(name)
        done = aside.join() if aside is not None else {}
        for name in itertools.chain.from_iterable(ORDER):
            if name in done:
                if timings is not None:
                    timings.phases[f"report {name}"] = done[name]
            elif name not in mine:  # the forked process took it and failed: written here after all
                write(name)
    return paths


class _Queue:
    """Groups of formats to write, shared by two processes: a pipe holding one byte per group,
    written before the fork. Reading a byte takes a group (a pipe's read of one byte is atomic, so
    none is taken twice); an empty pipe, its writing end closed, says there is none left."""

    def __init__(self, groups: tuple[tuple[str, ...], ...], reader: int) -> None:
        self.groups, self.reader = groups, reader

    @classmethod
    def of(cls, groups: tuple[tuple[str, ...], ...]) -> _Queue:
        reader, writer = os.pipe()
        os.write(writer, bytes(range(len(groups))))
        os.close(writer)
        return cls(groups, reader)

    def taken(self) -> Iterator[tuple[str, ...]]:
        """The groups this process takes, one at a time as it asks (until none is left)."""
        while True:
            byte = os.read(self.reader, 1)
            if not byte:
                return
            yield self.groups[byte[0]]

    def close(self) -> None:
        os.close(self.reader)


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees half a report, nor an old one half overwritten."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


class _Aside:
    """A forked process writing the reports it takes from the queue while this one writes the
    others. It tells what it wrote (and how long each took) through a pipe, and touches no stream
    of the parent's: it may have been forked while another thread held one's lock."""

    def __init__(self, pid: int, reader: int, queue: _Queue) -> None:
        self.pid, self.reader, self.queue = pid, reader, queue

    @classmethod
    def start(cls, renderers: dict[str, Callable[[], str]], paths: dict[str, Path], queue: _Queue) -> _Aside:
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
                for name in itertools.chain.from_iterable(queue.taken()):
                    started = time.perf_counter()
                    _write(paths[name], renderers[name]())
                    seconds[name] = time.perf_counter() - started
                os.write(writer, json.dumps(seconds).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(writer)
        return cls(pid, reader, queue)

    def join(self) -> dict[str, float]:
        """The formats the child wrote, with their seconds; {} if it failed or took too long."""
        deadline = time.monotonic() + ASIDE_TIMEOUT
        told = b""
        # woken as the child ends (its end of the pipe closes with it), not by polling its exit
        # every 5 ms, which kept the command waiting 2.5 ms on average once both were done
        with os.fdopen(self.reader, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([pipe], [], [], left)[0]:
                    os.kill(self.pid, signal.SIGKILL)
                    break
                chunk = pipe.read(65536)
                if not chunk:
                    break
                told += chunk
        _, status = os.waitpid(self.pid, 0)
        self.queue.close()
        if status != 0:
            return {}
        try:
            return json.loads(told)
        except ValueError:
            return {}
