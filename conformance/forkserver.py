"""Workers forked from a process that has already imported a pool's adapters.

A spawned worker imports its frameworks afresh: torch alone takes 1-1.5 s. A framework that kills
its worker on some cases (MLX's SIGFPE on empty-batch gradients: 15 times in one library run) made
the run pay that for every replacement, and in the main environment that was over half of all the
CPU time spent. A fork server starts clean (spawned, or forked from the command before it has
imported more than NumPy and the runner; see :mod:`conformance.launch`), takes the pool's
environment, imports the pool's adapters (and each adapter's ``preload_modules``) once, and forks
each worker of the pool from that state: a replacement is ready in milliseconds, with the imports a
spawned worker would have made itself.

Forking is only safe while the server has a single thread; if importing a framework starts
threads, the server declines and the pool spawns its workers as before. So does a pool whose
server fails to start or dies.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import math
import multiprocessing
import multiprocessing.connection
import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from conformance.adapters import Adapter, load_adapter
from conformance.attribution import attributor
from conformance.launch import main_script_not_rerun, stop_server


def thread_count() -> int:
    """This process's threads, native ones included (what makes forking unsafe)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc: assume the worst
        return -1


def preload(specs: Sequence[str]) -> dict[str, Adapter]:
    """Load every adapter that loads, with the modules it declares it will import lazily. One that
    fails is left out: its worker loads it again and reports why, as a spawned worker would."""
    adapters = {}
    for spec in specs:
        try:
            adapter = load_adapter(spec)
            for module in getattr(adapter, "preload_modules", ()):
                importlib.import_module(module)
            attributor(adapter)  # what every worker would work out first, once
        except BaseException:
            continue
        adapters[spec] = adapter
    return adapters


def _described(describe: Callable[[str, Adapter], Any], adapters: dict[str, Adapter]) -> dict:
    """What ``describe`` says of each loaded adapter; one it fails on is left to the parent."""
    found = {}
    for spec, adapter in adapters.items():
        with contextlib.suppress(Exception):
            found[spec] = describe(spec, adapter)
    return found


def _described_aside(describe: Callable[[str, Adapter], Any], adapters: dict[str, Adapter]) -> dict:
    """:func:`_described` in a forked child: describing runs framework code (a layer's
    initialisation) that may start threads or change state, and the server must stay as its
    imports left it. {} if the child fails."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(reader)
            with os.fdopen(writer, "wb") as out:
                pickle.dump(_described(describe, adapters), out)
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        return pickle.loads(data) if status == 0 else {}
    except Exception:
        return {}


def server_main(
    control: Connection,
    setup: Callable[[dict[str, str], str], None],
    serve: Callable[[Connection, dict[str, Adapter]], None],
    env: dict[str, str],
    specs: list[str],
    log_path: str,
    describe: Callable[[str, Adapter], Any] | None = None,
) -> None:
    setup(env, log_path)
    # No cyclic collections while the frameworks import: their ~10^5 objects all outlive the
    # server, and collections walking them again and again were an eighth of torch's import (0.17
    # of 1.3 core-seconds); the few thousand cycles its import leaves as garbage are kept.
    gc.disable()
    adapters = preload(specs)
    # the frameworks' imports live as long as the server: the workers' cyclic collections need not
    # walk them case after case (a framework's import leaves ~10^5 objects), and forked they stay
    # shared pages, never written by a collection
    gc.freeze()
    gc.enable()
    threads = thread_count()
    if threads != 1:
        why = f"{threads} threads after importing {', '.join(specs)}"
        control.send(
            ("declined", (why, _described(describe, adapters) if describe else {}, time.process_time()))
        )
        return
    described = _described_aside(describe, adapters) if describe else {}
    # (the CPU its imports took, for the benchmark: a forked process's count starts at zero)
    control.send(("ready", (described, time.process_time())))
    exited: dict[int, int] = {}
    forked: list[int] = []
    while True:
        try:
            kind, arg = control.recv()
        except (EOFError, OSError):  # the parent closed the pipe, or is gone
            _end(pid for pid in forked if pid not in exited)
        if kind == "fork":
            fd = reduction.recv_handle(control)
            pid = os.fork()
            if pid == 0:  # the worker
                status = 1
                try:
                    control.close()
                    setup({}, arg)
                    serve(Connection(fd), adapters)
                    status = 0
                finally:
                    os._exit(status)
            os.close(fd)
            forked.append(pid)
            control.send(pid)
        elif kind == "poll":
            if arg not in exited:
                try:
                    done, status = os.waitpid(arg, os.WNOHANG)
                except ChildProcessError:
                    done, status = arg, 0
                if done:
                    exited[arg] = os.waitstatus_to_exitcode(status)
            control.send(exited.get(arg))


#: seconds a server that is ending gives its workers to end before it kills them
END_WAIT_S = 5.0


def _end(workers: Iterable[int]) -> NoReturn:
    """End the server once its ``workers`` (pids not yet collected) have: each sees its pipe close,
    if the parent has not already told it to stop or killed it. Collected here, their CPU time
    counts in the server's and so in the command's (the benchmark reads it). One still running
    after END_WAIT_S is stuck in a call with its parent gone (killed, say, during a hang), and no
    one else would ever stop it: it is killed. Exits at once, without the interpreter's teardown.
    (Only its workers: a process a framework started may live as long as the server does.)"""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    left = set(workers)
    deadline = time.monotonic() + END_WAIT_S
    while left:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        if left and time.monotonic() > deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = math.inf  # (then collected as they die)
        elif left:
            time.sleep(0.005)
    os._exit(0)


class ForkedProcess:
    """A worker forked by a :class:`ForkServer`: the parts of ``multiprocessing.Process`` the
    runner uses. Its exit status is collected by the server, whose child it is."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server, self.pid = server, pid
        self._exitcode: int | None = None

    @property
    def exitcode(self) -> int | None:
        if self._exitcode is None:
            self._exitcode = self.server.poll(self.pid)
        return self._exitcode

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._exitcode is None:
            # Woken the moment it exits (a crashed worker's pipe closes as it dies, a little before
            # its server can collect it): polling its server every 5 ms cost each of a run's
            # crashes 0-5 ms while the rest of the run waited. (Its pid stays its own until this
            # object's poll collects it: nothing else collects the server's children.)
            _await_exit(self.pid, timeout)
        while self.exitcode is None and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.005)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


def _await_exit(pid: int, timeout: float | None) -> None:
    """Until process ``pid`` has exited (or ``timeout``), where the platform can say (Linux's
    pidfd); at once where it cannot."""
    try:
        fd = os.pidfd_open(pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):  # no pidfd here, or the process is already gone
        return
    try:
        watch = select.poll()
        watch.register(fd, select.POLLIN)  # readable once the process has exited
        watch.poll(None if timeout is None else timeout * 1000)
    finally:
        os.close(fd)


class ForkServer:
    """One pool's fork server (see the module's docstring)."""

    def __init__(
        self, process: multiprocessing.process.BaseProcess, control: Connection, timeout: float
    ) -> None:
        self.process, self.control, self.timeout = process, control, timeout
        self.started = time.monotonic()
        self.alive = True
        self.ready = False  # known once the server has said so (the first fork waits for it)
        self.answered = False  # the server said whether it is ready (or died, or timed out)
        self._described: dict = {}
        #: CPU seconds the server spent importing its adapters' frameworks, once it has answered
        self.import_cpu_s = 0.0

    @classmethod
    def start(
        cls,
        context: multiprocessing.context.BaseContext,
        setup: Callable[[dict[str, str], str], None],
        serve: Callable[[Connection, dict[str, Adapter]], None],
        env: dict[str, str],
        specs: list[str],
        log_path: str,
        timeout: float,
        describe: Callable[[str, Adapter], Any] | None = None,
    ) -> ForkServer:
        """A server importing ``specs`` in the background (it forks only once ready: see
        :meth:`fork`); ``timeout`` bounds the wait for it. ``describe(spec, adapter)``, if given,
        runs there on each adapter loaded, for :meth:`described`."""
        parent, child = context.Pipe()
        process = context.Process(
            target=server_main, args=(child, setup, serve, env, specs, log_path, describe), daemon=True
        )
        with main_script_not_rerun():
            process.start()
        child.close()
        return cls(process, parent, timeout)

    def _await_ready(self, wait: bool = True) -> bool:
        if not self.answered and self.alive:
            left = self.timeout - (time.monotonic() - self.started)
            try:
                if not self.control.poll(max(left, 0.0) if wait else 0.0):
                    if not wait and left > 0:
                        return False  # still loading
                else:
                    kind, detail = self.control.recv()
                    self.ready = kind == "ready"
                    self._described, self.import_cpu_s = detail if self.ready else detail[1:]
            except (EOFError, OSError):
                pass
            self.answered = True
            if not self.ready:  # declined, died or timed out: the pool spawns its workers
                self.close()
        return self.ready

    def poll_answer(self) -> bool:
        """Whether the server has said if it is ready (or died, or ran out of time), without
        waiting: a run goes on with other pools while this one's frameworks import."""
        self._await_ready(wait=False)
        return self.answered or not self.alive

    @property
    def loading(self) -> Connection | None:
        """What becomes readable once the server answers (to wait on); None once it has."""
        return None if self.answered or not self.alive else self.control

    def described(self) -> dict:
        """spec -> what ``describe`` said of it in the server (waits until the server has loaded
        its adapters); {} if it died or timed out."""
        self._await_ready()
        return dict(self._described)

    def fork(self, log_path: str) -> tuple[ForkedProcess, Connection] | None:
        """A new worker writing its output to ``log_path``, and the parent's end of its pipe; None
        if the server declined or is gone."""
        if not self._await_ready():
            return None
        ours, theirs = multiprocessing.Pipe()
        try:
            self.control.send(("fork", log_path))
            reduction.send_handle(self.control, theirs.fileno(), self.process.pid)
            pid = self.control.recv()
        except (EOFError, OSError):
            self.alive = False
            ours.close()
            return None
        finally:
            theirs.close()
        return ForkedProcess(self, pid), ours

    def poll(self, pid: int) -> int | None:
        if not self.alive:
            return -signal.SIGKILL  # its server is gone, and so is what it knew: treat as dead
        try:
            self.control.send(("poll", pid))
            return self.control.recv()
        except (EOFError, OSError):
            self.alive = False
            return -signal.SIGKILL

    def close(self, wait: bool = True) -> None:
        """Stop the server (:func:`conformance.launch.stop_server`; ``wait``: until it is gone,
        else ``self.process`` is joined later). Its workers are stopped by the runner; one that is
        left sees its pipe close and exits."""
        self.alive = False
        stop_server(self.process, self.control, wait)
