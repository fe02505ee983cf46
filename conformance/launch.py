"""The ``conformance`` command's entry point: what is settled before the CLI's own imports.

- Thread limits. The command's own process never multiplies a matrix (the oracle and the
  frameworks run in its workers), yet NumPy's OpenBLAS starts a thread per core at import, and
  those threads spin: a tenth of a core-second of this process's 1.5 in the reference run, and as
  much again in the processes it forks. So the command's process starts with the thread limits its
  workers get (:data:`THREAD_LIMITS`, where the user set none); all it starts inherits them.
- The frameworks' imports. ``conformance run --framework NAME`` starts a fork server for each
  built-in framework named (:mod:`conformance.forkserver`) before the rest of the CLI's imports;
  torch's import (a second) is then under way sooner. The servers are forked from this process
  once it has imported NumPy and the runner, which every server imports before its framework (a
  spawned server spent 0.13 s of CPU starting Python and importing them, MLX's most of its 0.2):
  a process with one thread forks safely (one with more spawns them, as before).
  :func:`conformance.runner.prestart` takes the servers started here.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import NoReturn

from conformance.builtin_adapters import BUILTIN_PACKAGES, framework_group

#: One compute thread per worker: -n N workers already use N cores, and oversubscribed thread
#: pools (torch's OpenMP) slow a run several-fold. Set in the environment a worker starts with,
#: since a spawned process imports NumPy (and so starts OpenBLAS's threads) before any code of ours.
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def limit_threads() -> None:
    """THREAD_LIMITS in this process's environment, where the user set none (before NumPy loads)."""
    for variable, value in THREAD_LIMITS.items():
        os.environ.setdefault(variable, value)


@contextlib.contextmanager
def main_script_not_rerun() -> Iterator[None]:
    """Processes spawned meanwhile do not run the parent's main script again. multiprocessing
    re-imports a ``__main__`` run from a file in every spawned child, in case the child's target
    was defined there; ours never are. ``python -m conformance`` has a module name, which
    multiprocessing already skips."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


@dataclass
class Launched:
    """Fork servers started by :func:`start_servers`, not yet taken by the runner."""

    log_dir: str
    #: the specs of a group, in the order named -> (its server's process, the control pipe's end)
    servers: dict[tuple[str, ...], tuple[BaseProcess, Connection]]

    def close(self) -> None:
        """Stop the servers no one took."""
        for process, control in self.servers.values():
            stop_server(process, control)
        self.servers = {}


def stop_server(process: BaseProcess, control: Connection, wait: bool = True) -> None:
    """Stop a fork server. It holds nothing to flush, and tearing down an interpreter with a
    framework imported takes a third of a second: it is killed, and waited for. Without ``wait``
    its control pipe is only closed: a server waiting for requests then collects its workers and
    exits by itself (:func:`conformance.forkserver.server_main`), and whoever started it joins it
    later (one still importing reads no request: it must be waited for, and killed)."""
    control.close()
    if not wait:
        return
    if process.is_alive():
        process.kill()
    process.join(timeout=5)


_launched: Launched | None = None


def named_frameworks(argv: Sequence[str]) -> list[str]:
    """The built-in frameworks a ``run`` command line names with ``--framework``: [] for any other
    command, for help, and where an ``--adapter`` is named (its process group may join a built-in's
    pool). Only a guess that saves time: the CLI parses the line for real, and the runner throws
    away a server whose group turns out otherwise."""
    if not argv or argv[0] != "run" or any(a in ("-h", "--help") or a.startswith("--adapter") for a in argv):
        return []
    named = []
    args = iter(argv[1:])
    for arg in args:
        if arg == "--framework":
            named.append(next(args, ""))
        elif arg.startswith("--framework="):
            named.append(arg.partition("=")[2])
    return [name for name in named if name in BUILTIN_PACKAGES]


def start_servers(frameworks: Sequence[str]) -> None:
    """A fork server for each framework group of ``frameworks`` (built-in names, no variants),
    grouped as :func:`conformance.runner.prestart` groups them."""
    global _launched
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(frameworks):
        groups.setdefault(framework_group(name), []).append(name)
    if not groups or not sys.platform.startswith("linux"):
        return
    log_dir = tempfile.mkdtemp(prefix="conformance-workers-")
    context = _server_context()
    forked = context.get_start_method() == "fork"
    servers: dict[tuple[str, ...], tuple[BaseProcess, Connection]] = {}
    with main_script_not_rerun():
        for i, specs in enumerate(groups.values()):
            ours, theirs = context.Pipe()
            log_path = os.path.join(log_dir, f"forkserver-{i}.log")
            # a forked server holds copies of this process's ends of its pipe and of the servers'
            # before it: it closes them, or it would never see this process go
            closing = [c for _, c in servers.values()] + [ours] if forked else []
            process = context.Process(
                target=_serve_pool, args=(theirs, specs, log_path, closing), daemon=True
            )
            process.start()
            theirs.close()
            servers[tuple(specs)] = (process, ours)
    _launched = Launched(log_dir, servers)


def _server_context() -> multiprocessing.context.BaseContext:
    """How the servers start: forked from this process where it can be, once it has imported what
    every server imports before its framework (NumPy and the runner: the command imports them
    anyway, and each spawned server spent a tenth of a second on them and on starting Python);
    spawned where it cannot (a process with more than one thread is never forked)."""
    import conformance.runner  # noqa: F401 - for forked servers to inherit
    from conformance.forkserver import thread_count

    if thread_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def take_servers() -> Launched | None:
    """The servers :func:`start_servers` started in this process (once; None if none)."""
    global _launched
    launched, _launched = _launched, None
    return launched


def _serve_pool(
    control: Connection, specs: list[str], log_path: str, closing: Sequence[Connection] = ()
) -> None:
    """A started server's main: the runner's own (what :func:`conformance.runner.prestart` runs).
    ``closing``: what a forked server inherited and must not hold (see :func:`start_servers`)."""
    for connection in closing:
        connection.close()
    gc.disable()  # as the server imports its frameworks (server_main): collections walk what lives on
    from conformance import runner

    runner.launched_server_main(control, specs, log_path)


def main() -> int:
    running = sys.argv[1:2] == ["run"]
    if running:
        # No cyclic collections in a run's process, which ends when its run does: its imports,
        # cases and results all live on, and walking them again and again cost it 0.05 of its
        # 1.25 core-seconds in the reference run. (The servers it forks turn the collector back on
        # for their workers once their imports are frozen; see conformance.forkserver.server_main.
        # Other commands, such as a fuzzing session of many minutes, collect as usual.)
        gc.disable()
    limit_threads()
    start_servers(named_frameworks(sys.argv[1:]))
    try:
        from conformance.cli import main as cli_main

        code = cli_main()
    finally:
        launched = take_servers()  # the CLI stopped before the runner took them (bad usage)
        if launched is not None:
            launched.close()
            shutil.rmtree(launched.log_dir, ignore_errors=True)
    if running:
        exit_without_teardown(code)
    return code


def exit_without_teardown(code: int) -> NoReturn:
    """Exit as the interpreter would, less its teardown: freeing a run's objects one by one (tens
    of thousands of results, the modules of NumPy and the harness) kept the command 30-40 ms
    longer, with its workers gone and a core idle. What was registered with atexit still runs
    (coverage's, logging's, multiprocessing's), and the standard streams are flushed."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
