"""Runs cases through adapters in isolated worker processes.

A framework that kills its process (a signal, an abort, a silent ``exit(0)`` from a native library)
or hangs takes down only its worker: the case in flight is reported as ``crash`` or ``timeout``, a
fresh worker picks up the rest, and every other result survives. Workers talk to the parent over a
pipe, not stdout, and their stdout/stderr go to a log file whose tail is quoted in crash reports.
A (case, framework) pair that never reported is recorded as a crash, so missing results can never
read as a pass.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

from conformance import layer_api
from conformance.adapters import Adapter, load_adapter, split_variant
from conformance.cases import Case
from conformance.checks import Reference, base_result, checks_for, run_checks
from conformance.forkserver import ForkedProcess, ForkServer
from conformance.results import Result

LOG_TAIL_BYTES = 1500
#: seconds a worker may take to import and set up an adapter (not counted in the per-case timeout:
#: on a loaded machine importing a framework alone can take longer than a case may)
LOAD_TIMEOUT = 600.0


@dataclass
class AdapterInfo:
    spec: str
    name: str
    version: str
    layer_api: dict | None = None  # conformance.layer_api.describe() of a layer adapter
    env: dict[str, str] = field(default_factory=dict)  # set in its workers before any import
    facts: dict = field(default_factory=dict)  # Adapter.build_facts(), as a worker reported them

    variant: str | None = None
    process_group: str | None = None  # Adapter.process_group

    @property
    def pool_key(self) -> tuple:
        """Adapters with the same key may share a worker process. A variant's settings are process
        state (environment read at import, switches such as torch.backends.mkldnn.enabled), so
        each variant gets workers of its own: it must not change what another adapter computes.
        So does a framework that cannot share a process with others (``Adapter.process_group``)."""
        variant = self.spec if self.variant is not None else None
        return (tuple(sorted(self.env.items())), variant, self.process_group)


@dataclass
class RunOutcome:
    results: list[Result]
    frameworks: dict[str, str]
    interrupted: bool = False
    layer_api: list[dict] = field(default_factory=list)
    framework_facts: dict[str, dict] = field(default_factory=dict)  # name -> build facts
    #: seconds the workers spent in checks, and in the oracle within them, summed over workers
    costs: dict[str, float] = field(default_factory=dict)


def describe(adapter_specs: Sequence[str], prestarted: Prestarted | None = None) -> list[AdapterInfo]:
    """Each adapter's name, version and settings. An adapter that ``prestarted``'s fork server
    loaded is described there, so this process never imports its framework (torch alone costs a
    second to import and most of one to tear down at exit); any other is loaded here, which also
    validates its spec and raises what loading it raises."""
    known = prestarted.server.described() if prestarted is not None else {}
    return [known.get(spec) or _describe(spec, load_adapter(spec)) for spec in adapter_specs]


def _describe(spec: str, adapter: Adapter) -> AdapterInfo:
    introspection = adapter.layer_api()
    # Plain values only (JSON's, as reports write them): a framework's own types (torch's version
    # is a str subclass) would import the framework where this is unpickled.
    described = json.loads(json.dumps(layer_api.describe(introspection))) if introspection else None
    return AdapterInfo(
        spec,
        str(adapter.name),
        str(adapter.version()),
        described,
        {str(k): str(v) for k, v in adapter.variant_env().items()},
        variant=adapter.variant,
        process_group=adapter.process_group,
    )


#: the pool key of adapters with no variant and no process group
DEFAULT_POOL: tuple = ((), None, None)


@dataclass
class Prestarted:
    specs: list[str]
    server: ForkServer
    log_dir: str

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.log_dir, ignore_errors=True)


def _new_server(
    specs: list[str], env: dict[str, str], log_path: str, timeout: float, describe: bool = False
) -> ForkServer:
    with _thread_limits():
        return ForkServer.start(
            multiprocessing.get_context("spawn"), _worker_setup, _serve, env, specs, log_path,
            max(LOAD_TIMEOUT, timeout), _describe if describe else None,
        )  # fmt: skip


def prestart(specs: Sequence[str], timeout: float = 120.0) -> Prestarted | None:
    """A fork server for the specs without a variant, started before any adapter is described: it
    imports their frameworks and describes them (:func:`describe`) while this process goes on.
    Whether they do share one pool is known only once they are described (an adapter may name a
    process group); the runner uses the server if so and throws it away if not."""
    default = [s for s in specs if split_variant(s)[1] is None]
    if not default or not sys.platform.startswith("linux"):
        return None
    log_dir = tempfile.mkdtemp(prefix="conformance-workers-")
    server = _new_server(default, {}, os.path.join(log_dir, "forkserver.log"), timeout, describe=True)
    return Prestarted(default, server, log_dir)


def rerun_command(case: Case, info: AdapterInfo) -> str:
    selector = f"--framework {info.spec}" if ":" not in info.spec else f"--adapter {info.spec}"
    return f"conformance run {case.file} --case '{case.id}' {selector}"


# --- worker side --------------------------------------------------------------------------------


#: One compute thread per worker: -n N workers already use N cores, and oversubscribed thread
#: pools (torch's OpenMP) slow a run several-fold. Set in the environment a worker starts with,
#: since a spawned process imports NumPy (and so starts OpenBLAS's threads) before any code of ours.
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@contextlib.contextmanager
def _thread_limits() -> Iterator[None]:
    """The environment a process started inside inherits: THREAD_LIMITS where the user set none."""
    added = {k: v for k, v in THREAD_LIMITS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _worker_setup(env: dict[str, str], log_path: str) -> None:
    for var, value in THREAD_LIMITS.items():  # frameworks that read these at import still see them
        os.environ.setdefault(var, value)
    os.environ.update(env)  # a variant's kernel-path settings, read by the framework at import
    # Keep native libraries' chatter (and crash dumps) out of the parent's output, but on record.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop


def _worker_main(conn: multiprocessing.connection.Connection, log_path: str, env: dict[str, str]) -> None:
    _worker_setup(env, log_path)
    _serve(conn, {})


def _serve(conn: multiprocessing.connection.Connection, adapters: dict[str, Adapter]) -> None:
    """Run the jobs the parent sends; ``adapters`` are those already loaded (by a fork server).

    What the worker tells the parent goes in batches (a list of events a message): an event the
    parent needs at once (an adapter loading or a case starting, so that its timeout runs; the job
    done) takes along those that can wait (a framework's results, its facts). That cuts the
    messages the parent reads by almost half, and its reading competes with the workers for the
    cores."""
    reported: set[str] = set()
    pending: list[tuple] = []
    sent_s = 0.0  # in sends, over the worker's life

    def send(*events: tuple) -> None:
        nonlocal sent_s
        started = time.perf_counter()
        pending.extend(events)
        try:
            conn.send(pending)  # Result records pickle as they are
        finally:
            pending.clear()
            sent_s += time.perf_counter() - started

    waited = time.perf_counter()
    counted_s = 0.0  # of sent_s, what earlier jobs' costs counted
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        wait_s = time.perf_counter() - waited  # idle: the parent had not sent the next job yet
        case, specs, selected = job
        reference = Reference(case)
        checks_s = 0.0
        for spec in specs:
            results = None
            try:
                if spec not in adapters:
                    send(("loading", spec, _log_size()))
                    adapters[spec] = load_adapter(spec)
                if spec not in reported:
                    pending.append(("facts", spec, _facts(adapters[spec])))
                    reported.add(spec)
            except Exception as exc:  # the harness must report, never die, on one case
                results = _harness_errors(case, spec, selected, exc)
            if results is None:
                # (a send that fails, say on the last framework's results, ends the worker while
                # that framework is the one the parent knows to be running: the crash is its own)
                send(("start", spec, _log_size()))
                started = time.perf_counter()
                try:
                    results = run_checks(case, adapters[spec], reference, selected)
                except Exception as exc:
                    results = _harness_errors(case, spec, selected, exc)
                checks_s += time.perf_counter() - started
            pending.append(("done", spec, results))
        costs = {
            "checks_s": checks_s,
            "oracle_s": reference.oracle_s,
            "send_s": sent_s - counted_s,
            "wait_s": wait_s,
        }
        counted_s = sent_s
        send(("idle", None, costs))
        waited = time.perf_counter()


def _harness_errors(case: Case, spec: str, selected: Sequence[str] | None, exc: Exception) -> list[Result]:
    message = f"harness error: {type(exc).__name__}: {exc}"
    return [base_result(case, spec, c, "error", message) for c in checks_for(case, selected)]


def _log_size() -> int:
    """How much output the worker's log holds: where the next phase's own output starts."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        return os.fstat(2).st_size
    except OSError:
        return 0


def _facts(adapter: Adapter) -> dict:
    try:
        facts = dict(adapter.build_facts())
    except Exception as exc:  # facts are reported, never fatal
        facts = {"error": f"build_facts() raised {type(exc).__name__}: {exc}"}
    if adapter.variant is not None:
        facts["variant"] = adapter.variant
        facts["variant_env"] = adapter.variant_env()
    return facts


# --- parent side --------------------------------------------------------------------------------


#: jobs a worker holds at once: the one it runs and the next, so that it starts the next case without
#: waiting for the parent to read the last one's results and answer
PIPELINE_DEPTH = 2
#: a job queued behind another is at most this large when pickled: it must fit the pipe's buffer, or
#: the parent would block sending it while the worker blocks sending results the parent is not reading
PIPELINED_JOB_BYTES = 16_384


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess | ForkedProcess
    conn: multiprocessing.connection.Connection
    log_path: str
    #: jobs sent and not finished, in the order the worker runs them: (case, specs not yet done)
    jobs: deque[tuple[Case, list[str]]] = field(default_factory=deque)
    in_flight: str | None = None
    started: float = 0.0
    limit: float = 0.0  # seconds the in-flight phase (loading an adapter, or a case) may take
    #: where the in-flight phase's output starts in the log: a crash quotes only its own output,
    #: never what earlier cases printed in this worker (which depends on how cases were shared out)
    log_offset: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    def send(self, job: tuple[Case, list[str]], checks: list[str] | None, behind: bool = False) -> bool:
        """Send a job; ``behind`` another still running: only if it is small (PIPELINED_JOB_BYTES)."""
        message = bytes(ForkingPickler.dumps((job[0], list(job[1]), checks)))
        if behind and len(message) > PIPELINED_JOB_BYTES:
            return False
        self.jobs.append((job[0], list(job[1])))
        # a worker that died (of the job it runs) breaks the pipe: reading it says so, and the
        # jobs it holds, this one too, are requeued (Runner._replace)
        with contextlib.suppress(OSError):
            self.conn.send_bytes(message)  # what conn.recv() reads back
        return True

    def log_tail(self) -> str:
        try:
            data = Path(self.log_path).read_bytes()[self.log_offset :][-LOG_TAIL_BYTES:]
        except OSError:
            return ""
        return " ".join(data.decode("utf-8", "replace").split())


def _exit_description(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Runner:
    def __init__(
        self,
        adapters: Sequence[AdapterInfo],
        workers: int = 1,
        timeout: float = 120.0,
        progress: Callable[[int, int], None] | None = None,
        checks: Sequence[str] | None = None,
        fork: bool = True,
        prestarted: Prestarted | None = None,
    ) -> None:
        """``fork``: fork each pool's workers from a fork server (Linux), else spawn every one.
        ``prestarted``: a fork server started before the adapters were described (:func:`prestart`)."""
        self.prestarted = prestarted
        self.other_log_dirs: list[str] = []
        self.adapters = {a.spec: a for a in adapters}
        self.checks = list(checks) if checks is not None else None
        self.workers = max(1, workers)
        self.timeout = timeout
        self.progress = progress
        self.context = multiprocessing.get_context("spawn")  # fork is unsafe with threaded native libraries
        self.log_dir: str | None = None  # the workers' output, quoted when one dies; removed by close()
        self.results: dict[tuple[str, str, str], list[Result]] = {}
        self._params: dict[tuple[str, str], dict] = {}  # a case's params record, shared (_record)
        self.costs: dict[str, float] = {}
        #: one pool per pool key (AdapterInfo.pool_key), kept between run() calls with keep_alive
        self.pools: dict[tuple, list[_Worker]] = {}
        #: each pool's fork server (None: its workers are spawned); see conformance.forkserver
        self.servers: dict[tuple, ForkServer | None] = {}
        self.fork = fork and sys.platform.startswith("linux")

    def _log_path(self, name: str) -> str:
        if self.log_dir is None:
            self.log_dir = tempfile.mkdtemp(prefix="conformance-workers-")
        return os.path.join(self.log_dir, f"{name}-{time.monotonic_ns()}.log")

    def _start_server(self, key: tuple, specs: list[str]) -> None:
        if key in self.servers:
            return
        server = None
        early, self.prestarted = self.prestarted, None
        if early is not None:
            self.other_log_dirs.append(early.log_dir)  # removed by close(), once the server is gone
            if early.specs == specs and key == DEFAULT_POOL:
                server = early.server
            else:  # the guess was wrong (a process group): its imports are thrown away
                early.server.close()
        if server is None and self.fork:
            env = self.adapters[specs[0]].env
            server = _new_server(specs, env, self._log_path("forkserver"), self.timeout)
        self.servers[key] = server

    def _spawn(self, key: tuple) -> _Worker:
        log_path = self._log_path("worker")
        server = self.servers.get(key)
        forked = server.fork(log_path) if server is not None else None
        if forked is not None:
            return _Worker(*forked, log_path)
        parent_conn, child_conn = self.context.Pipe()
        env = next(a.env for a in self.adapters.values() if a.pool_key == key)
        process = self.context.Process(target=_worker_main, args=(child_conn, log_path, env), daemon=True)
        with _thread_limits():
            process.start()
        child_conn.close()  # so the parent sees EOF when the worker dies
        return _Worker(process, parent_conn, log_path)

    def _record(self, case: Case, spec: str, results: list[Result]) -> None:
        info = self.adapters[spec]
        rerun = rerun_command(case, info)
        for r in results:
            r.framework = info.name
            r.rerun = rerun
            # every framework's results of a case hold one params record: the reports work out
            # what they show of a case's params once per record (views memoise by identity)
            shared = self._params.setdefault((case.file, case.id), r.params)
            if r.params == shared:
                r.params = shared
        self.results[(case.file, case.id, spec)] = results

    def _lost(self, case: Case, spec: str, status: str, message: str) -> None:
        results = [base_result(case, spec, c, status, message) for c in checks_for(case, self.checks)]
        self._record(case, spec, results)

    def _groups(self) -> dict[tuple, list[str]]:
        groups: dict[tuple, list[str]] = {}
        for spec in self.adapters:
            groups.setdefault(self.adapters[spec].pool_key, []).append(spec)
        return groups

    def start(self) -> None:
        """Start every pool's fork server now, so that it imports its frameworks while the caller
        does other work (or while the pools before it run); :meth:`run` does it otherwise."""
        for key, specs in self._groups().items():
            self._start_server(key, specs)

    def run(self, cases: Sequence[Case], keep_alive: bool = False) -> RunOutcome:
        """Every case through every adapter. With ``keep_alive`` the workers stay up for the next
        call (each new worker imports the frameworks again, which costs seconds).

        Adapters whose variants need different environment variables (read by a framework once, at
        import) run in separate worker pools, one after the other."""
        specs = list(self.adapters)
        groups = self._groups()
        self.results, self.costs, self._params = {}, {}, {}
        total = len(cases) * len(specs)
        interrupted = False
        collecting = gc.isenabled()
        # no cyclic collections while results come in: they hold no cycles, and each collection
        # walked every result received so far (a fifth of a second of a 20,000-result run)
        gc.disable()
        try:
            for key, group in groups.items():
                self._run_group(cases, group, key, total)
                if not keep_alive:
                    self._close_pool(key)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if collecting:
                gc.enable()
            if not keep_alive or interrupted:
                self.close()
        results = self._collect(cases, specs, interrupted)
        frameworks = {a.name: a.version for a in self.adapters.values()}
        layers = [a.layer_api for a in self.adapters.values() if a.layer_api]
        facts = {a.name: a.facts for a in self.adapters.values() if a.facts}
        return RunOutcome(results, frameworks, interrupted, layers, facts, dict(self.costs))

    def _run_group(self, cases: Sequence[Case], specs: list[str], key: tuple, total: int) -> None:
        # largest first (a stable sort): a long case handed out last would keep the other workers
        # idle; results are collected in the given order whatever the order they ran in
        by_work = sorted(cases, key=lambda case: -case.work)
        queue: deque[tuple[Case, list[str]]] = deque((case, list(specs)) for case in by_work)
        pool = self.pools.setdefault(key, [])
        wanted = min(self.workers, len(queue)) or 1
        if len(pool) < wanted:
            self._start_server(key, specs)
        pool.extend(self._spawn(key) for _ in range(len(pool), wanted))
        too_large: set[tuple[str, str]] = set()  # cases whose jobs are too large to wait behind another
        while queue or any(w.busy for w in pool):
            for w in pool:
                if not w.busy and queue:
                    w.in_flight = None
                    w.send(queue.popleft(), self.checks)
                # a second job only while there is more than one left per worker: at the end of
                # the queue a job waiting behind a long case would keep another worker idle
                while 0 < len(w.jobs) < PIPELINE_DEPTH and len(queue) > len(pool):
                    case = queue[0][0]
                    if (case.file, case.id) in too_large or not w.send(queue[0], self.checks, behind=True):
                        too_large.add((case.file, case.id))  # not pickled again on every pass
                        break
                    queue.popleft()
            busy = [w for w in pool if w.busy]
            ready = multiprocessing.connection.wait([w.conn for w in busy], timeout=0.5)
            for w in busy:
                if w.conn in ready:
                    self._receive(w, pool, queue, key)
                elif w.in_flight and time.monotonic() - w.started > w.limit:
                    what = "per-case timeout" if w.limit == self.timeout else "limit for loading the adapter"
                    self._replace(
                        w, pool, queue, key, "timeout", f"no result within the {w.limit:g} s {what}"
                    )
            if self.progress:
                self.progress(len(self.results), total)

    def _receive(self, w: _Worker, pool: list[_Worker], queue: deque, key: tuple) -> None:
        try:
            events = w.conn.recv()
        except (EOFError, OSError):
            w.process.join(timeout=5)
            why = _exit_description(w.process.exitcode)
            tail = w.log_tail()
            message = f"worker process {why} while running this case" + (f"; output: {tail}" if tail else "")
            self._replace(w, pool, queue, key, "crash", message)
            return
        for event in events:
            self._event(w, *event)

    def _event(self, w: _Worker, kind: str, spec: str | None, *payload: Any) -> None:
        if kind == "facts":
            self.adapters[spec].facts = payload[0]
        elif kind == "loading":
            w.in_flight, w.started, w.limit = spec, time.monotonic(), max(LOAD_TIMEOUT, self.timeout)
            w.log_offset = payload[0]
        elif kind == "start":
            w.in_flight, w.started, w.limit = spec, time.monotonic(), self.timeout
            w.log_offset = payload[0]
        elif kind == "done":
            case, remaining = w.jobs[0]
            self._record(case, spec, payload[0])
            remaining.remove(spec)
            w.in_flight = None
        elif kind == "idle":
            w.jobs.popleft()
            w.in_flight = None
            for name, seconds in payload[0].items():  # ("idle", None, the job's costs)
                self.costs[name] = self.costs.get(name, 0.0) + seconds

    def _replace(
        self, w: _Worker, pool: list[_Worker], queue: deque, key: tuple, status: str, message: str
    ) -> None:
        """Record the in-flight pair as lost, requeue the job's other frameworks and the jobs queued
        behind it, start a fresh worker."""
        jobs = list(w.jobs)  # w keeps them: _stop kills a busy worker without asking it to stop
        queue.extendleft(reversed(jobs[1:]))  # not started: they run again, in the same order
        if jobs:
            case, remaining = jobs[0]
            lost = w.in_flight or (remaining[0] if remaining else None)
            if lost is not None:
                self._lost(case, lost, status, message)
                remaining.remove(lost)
            if remaining:
                queue.appendleft((case, remaining))
        self._stop(w)
        pool[pool.index(w)] = self._spawn(key)

    def _close_pool(self, key: tuple) -> None:
        for w in self.pools.pop(key, []):
            self._stop(w)
        server = self.servers.pop(key, None)
        if server is not None:
            server.close()

    def close(self) -> None:
        if self.prestarted is not None:  # never used
            self.prestarted.close()
            self.prestarted = None
        for key in list(self.pools) + list(self.servers):
            self._close_pool(key)
        for directory in self.other_log_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self.other_log_dirs = []
        if self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None

    @staticmethod
    def _stop(w: _Worker) -> None:
        if w.process.is_alive():
            try:
                if not w.busy:
                    w.conn.send(None)
                    w.process.join(timeout=2)
            except (OSError, BrokenPipeError):
                pass
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
        w.conn.close()

    def _collect(self, cases: Sequence[Case], specs: Sequence[str], interrupted: bool) -> list[Result]:
        ordered: list[Result] = []
        for case in cases:
            for spec in specs:
                key = (case.file, case.id, spec)
                if key not in self.results:
                    why = (
                        "the run was interrupted before this case ran"
                        if interrupted
                        else "no result came back"
                    )
                    self._lost(case, spec, "crash", why)
                ordered.extend(self.results[key])
        return ordered


def run(
    cases: Sequence[Case],
    adapter_specs: Sequence[str],
    workers: int = 1,
    timeout: float = 120.0,
    progress: Callable[[int, int], None] | None = None,
    checks: Sequence[str] | None = None,
) -> RunOutcome:
    return Runner(describe(adapter_specs), workers, timeout, progress, checks).run(cases)


def print_progress(done: int, total: int, _state: dict = {}) -> None:  # noqa: B006 - remembers last print
    """Progress on stderr: a rewritten line on a terminal, a line every 10 % otherwise."""
    if total == 0:
        return
    if sys.stderr.isatty():
        sys.stderr.write(f"\r  {done}/{total} case x framework runs")
        if done == total:
            sys.stderr.write("\n")
    else:
        step = max(total // 10, 1)
        if done // step != _state.get("last", -1) or done == total:
            if _state.get("last_done") != done:
                sys.stderr.write(f"  {done}/{total} case x framework runs\n")
            _state["last"], _state["last_done"] = done // step, done
    sys.stderr.flush()
