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
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import pickle
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import launch, layer_api, reuse
from conformance.adapters import BUILTINS, Adapter, load_adapter, split_variant
from conformance.builtin_adapters import framework_group
from conformance.cases import Case
from conformance.checks import Calls, Reference, base_result, call_checks, checks_for, judge
from conformance.forkserver import ForkedProcess, ForkServer, server_main
from conformance.launch import THREAD_LIMITS, main_script_not_rerun
from conformance.results import INTERRUPTED, NO_RESULT, NO_RESULT_WITHIN, WORKER_DIED, Result

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
    #: a built-in adapter whose fork server is still importing its framework: named, not yet
    #: described (the runner fills it in once the server answers; see :func:`describe`)
    pending: bool = False

    @property
    def pool_key(self) -> tuple:
        """Adapters with the same key share worker processes: those of one framework (torch and
        torch.nn), never two frameworks, so that one framework's import (its threads, its
        floating-point settings, a library it loads) can never change what another computes, nor
        its crash take the other's case down. A variant's settings are process state (environment
        read at import, switches such as torch.backends.mkldnn.enabled), so each variant gets
        workers of its own too. ``Adapter.process_group`` names the group outright."""
        variant = self.spec if self.variant is not None else None
        return (tuple(sorted(self.env.items())), variant, self.process_group or framework_group(self.spec))


@dataclass
class RunOutcome:
    results: list[Result]
    frameworks: dict[str, str]
    interrupted: bool = False
    layer_api: list[dict] = field(default_factory=list)
    framework_facts: dict[str, dict] = field(default_factory=dict)  # name -> build facts
    #: seconds the workers spent in checks, and in the oracle within them, summed over workers
    costs: dict[str, float] = field(default_factory=dict)
    reused: int = 0  # results taken from a reuse store (conformance.reuse), not computed


def describe(
    adapter_specs: Sequence[str], prestarted: Prestarted | None = None, wait: bool = True
) -> list[AdapterInfo]:
    """Each adapter's name, version and settings. An adapter that a ``prestarted`` fork server
    loaded is described there, so this process never imports its framework (torch alone costs a
    second to import and most of one to tear down at exit); any other is loaded here, which also
    validates its spec and raises what loading it raises.

    Without ``wait``, a built-in whose server is still importing is returned ``pending`` (its name
    is its spec): a :class:`Runner` given it starts the pools that are ready and describes it when
    its server answers, so MLX's cases run while torch imports."""
    infos = []
    for spec in adapter_specs:
        server = prestarted.server_of(spec) if prestarted is not None else None
        if server is not None and not wait and spec in BUILTINS and not server.poll_answer():
            infos.append(AdapterInfo(spec, spec, "", pending=True))
            continue
        known = server.described() if server is not None else {}
        infos.append(known.get(spec) or _describe(spec, load_adapter(spec)))
    return infos


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


def guessed_pool_key(spec: str) -> tuple:
    """The pool key of an adapter without a variant, before it is described: right for every
    built-in (a test holds them to it), a guess for others (one naming a process group)."""
    return ((), None, framework_group(spec))


@dataclass
class Prestarted:
    #: guessed pool key -> (its specs, the server loading them)
    servers: dict[tuple, tuple[list[str], ForkServer]]
    log_dir: str

    def server_of(self, spec: str) -> ForkServer | None:
        for specs, server in self.servers.values():
            if spec in specs:
                return server
        return None

    def close(self) -> None:
        for _, server in self.servers.values():
            server.close()
        self.servers = {}
        shutil.rmtree(self.log_dir, ignore_errors=True)


def _new_server(
    specs: list[str], env: dict[str, str], log_path: str, timeout: float, describe: bool = False
) -> ForkServer:
    with _thread_limits():
        return ForkServer.start(
            multiprocessing.get_context("spawn"), _worker_setup, _serve, env, specs, log_path,
            max(LOAD_TIMEOUT, timeout), _describe if describe else None,
        )  # fmt: skip


def launched_server_main(
    control: multiprocessing.connection.Connection, specs: list[str], log_path: str
) -> None:
    """The main of a server :mod:`conformance.launch` started: what :func:`_new_server` runs."""
    server_main(control, _worker_setup, _serve, {}, specs, log_path, _describe)


def prestart(specs: Sequence[str], timeout: float = 120.0) -> Prestarted | None:
    """A fork server for each framework of the specs without a variant, started before any
    adapter is described: each imports its framework and describes its adapters (:func:`describe`)
    while this process goes on. Whether the pools are those guessed is known only once their
    adapters are described (one may name a process group); the runner uses a server whose guess
    was right and throws the others away. Servers the command started before its own imports
    (:mod:`conformance.launch`) are taken where they load a group's specs."""
    groups: dict[tuple, list[str]] = {}
    for spec in specs:
        if split_variant(spec)[1] is None:
            groups.setdefault(guessed_pool_key(spec), []).append(spec)
    launched = launch.take_servers()
    if not groups or not sys.platform.startswith("linux"):
        if launched is not None:
            launched.close()
        return None
    log_dir = launched.log_dir if launched is not None else tempfile.mkdtemp(prefix="conformance-workers-")
    servers = {}
    for i, (key, group) in enumerate(groups.items()):
        early = launched.servers.pop(tuple(group), None) if launched is not None else None
        if early is not None:
            server = ForkServer(*early, max(LOAD_TIMEOUT, timeout))
        else:
            # ("-x": apart from the names of the servers started early, in the same folder)
            server = _new_server(group, {}, os.path.join(log_dir, f"forkserver-x{i}.log"), timeout, True)
        servers[key] = (group, server)
    if launched is not None:
        launched.close()  # those whose group was not as guessed
    return Prestarted(servers, log_dir)


def rerun_command(case: Case, info: AdapterInfo) -> str:
    selector = f"--framework {info.spec}" if ":" not in info.spec else f"--adapter {info.spec}"
    return f"conformance run {case.file} --case '{case.id}' {selector}"


# --- worker side --------------------------------------------------------------------------------


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


class PhaseFile:
    """What a worker is doing, in a small file beside its log: which adapter of which job it loads
    or runs, since when, and where that phase's output starts in the log. The parent reads it only
    when the worker dies or may have overrun its time: a message to the parent for every phase
    (two per case in a pool of two adapters) cost the run a tenth of its CPU time, most of it
    waking the parent. A reader may meet a write half done: the record starts and ends with the
    same generation number, and one that does not is read again."""

    #: generation, job, adapter index, phase, started (time.monotonic()), log offset, generation
    RECORD = struct.Struct("<qqqqdqq")
    # (a job done needs no phase: its results came back). JUDGING: the harness compares an
    # adapter's outputs with the oracle's, after every adapter of the job has been called; a crash
    # or hang then is the harness's (or the values the adapter returned), never the framework's
    LOADING, RUNNING, JUDGING = 1, 2, 3

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
        self.generation = 0

    def write(self, job: int, index: int, phase: int) -> None:
        self.generation += 1
        record = self.RECORD.pack(
            self.generation, job, index, phase, time.monotonic(), _log_size(), self.generation
        )
        if hasattr(os, "pwrite"):
            os.pwrite(self.fd, record, 0)
        else:  # Windows
            os.lseek(self.fd, 0, os.SEEK_SET)
            os.write(self.fd, record)

    @classmethod
    def read(cls, path: str) -> tuple[int, int, int, float, int] | None:
        """(job, adapter index, phase, started, log offset) as last written, or None."""
        try:
            with open(path, "rb") as f:
                for _ in range(100):
                    data = f.read(cls.RECORD.size)
                    if len(data) < cls.RECORD.size:
                        return None
                    first, *fields, last = cls.RECORD.unpack(data)
                    if first == last:
                        return tuple(fields)  # type: ignore[return-value]
                    f.seek(0)
        except OSError:
            pass
        return None


def phase_path(log_path: str) -> str:
    return log_path + ".phase"


#: this worker's PhaseFile (set up by _worker_setup)
_phase_file: PhaseFile | None = None

#: set to 1 (or any value but 0) to let crashing workers write core dumps, to debug a framework's crash
CORE_DUMPS = "CONFORMANCE_CORE_DUMPS"


def suppress_core_dumps() -> None:
    """No core dump from this process (and what it forks) where :data:`CORE_DUMPS` does not ask for
    them. Workers crash by design on the cases a framework aborts on, and
    where the user's shell allows core dumps each crash wrote one (an MLX worker's 36 MB, a torch
    worker's 163 MB, a TensorFlow worker's 211 MB) into the run's working directory or to the
    system's crash collector. MLX's workers die about twenty times on the library: its 11 cases
    that kill them took 0.70-0.82 s with dumps, 0.50 s without. And a crash is reported only once
    its dump is written: on a slow disk past the case's time limit, where the verdict would read
    timeout instead of crash on that machine alone. CPython's tests that crash on purpose do the
    same (test.support.SuppressCrashReport).

    The size limit alone does not reach a crash collector: where core_pattern pipes dumps to one
    (systemd-coredump, apport: most desktop and server distributions), Linux ignores RLIMIT_CORE
    (fs/coredump.c: "Normally core limits are irrelevant to pipes"), starts the collector for every
    crash and streams it the whole process image. Marking the process not dumpable
    (PR_SET_DUMPABLE 0, kept across fork) stops the dump before either kind begins."""
    if os.environ.get(CORE_DUMPS, "") not in ("", "0"):
        return
    try:
        import resource
    except ImportError:  # (Windows: no core dumps to suppress)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if soft != 0:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    _prctl(PR_SET_DUMPABLE, 0)


#: prctl(2)'s options, from <linux/prctl.h>
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4


def _prctl(option: int, value: int = 0) -> int | None:
    """prctl(2) on Linux (its result); None elsewhere or where it cannot be called."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        return None


def dumpable() -> int | None:
    """Whether this process may dump core at all (PR_GET_DUMPABLE: 0 never, to a file or to a
    crash collector); None where it cannot be asked."""
    return _prctl(PR_GET_DUMPABLE)


def _worker_setup(env: dict[str, str], log_path: str) -> None:
    global _phase_file
    for var, value in THREAD_LIMITS.items():  # frameworks that read these at import still see them
        os.environ.setdefault(var, value)
    os.environ.update(env)  # a variant's kernel-path settings, read by the framework at import
    # Keep native libraries' chatter (and crash dumps) out of the parent's output, but on record.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    suppress_core_dumps()
    _phase_file = PhaseFile(phase_path(log_path))


def _worker_main(conn: multiprocessing.connection.Connection, log_path: str, env: dict[str, str]) -> None:
    _worker_setup(env, log_path)
    _serve(conn, {})


def _serve(conn: multiprocessing.connection.Connection, adapters: dict[str, Adapter]) -> None:
    """Run the jobs the parent sends; ``adapters`` are those already loaded (by a fork server).

    A message from the parent holds one job or several small ones (see :data:`BATCH_JOBS`); the
    worker answers once per message: each job's results, adapter by adapter, then its costs, and
    an adapter's facts the first time. What it is doing meanwhile goes to its :class:`PhaseFile`,
    for the parent to read if it dies or runs too long (the parent then runs again what had not
    come back: the message's jobs before the one it died on, and that job's adapters but the one
    that died)."""
    reported: set[str] = set()
    pending: list[tuple] = []
    # (a worker's wait for its first job is not counted: a replacement may wait seconds for its
    # pool's turn at a core, which is neither the parent's slowness nor CPU spent)
    waited: float | None = None
    sent_s = 0.0  # in sends, over the worker's life
    counted_s = 0.0  # of sent_s, what earlier jobs' costs counted
    counted_cpu_s = 0.0  # of the process's CPU time (its frameworks' threads too), what was reported
    serial = 0  # the jobs received: the parent numbers those it sends alike
    while True:
        try:
            jobs = conn.recv()
        except EOFError:
            return
        if jobs is None:
            return
        # idle: the parent had not sent the next jobs yet (counted with the message's first job)
        wait_s = 0.0 if waited is None else time.perf_counter() - waited
        for pickled_case, specs, selected in jobs:
            serial += 1
            case = pickle.loads(pickled_case)
            reference = Reference(case)
            judged, checks_s = _run_job(case, specs, selected, serial, reference, adapters)
            for spec in specs:
                if spec in adapters and spec not in reported:
                    pending.append(("facts", spec, _facts(adapters[spec])))
                    reported.add(spec)
            started = time.perf_counter()
            # each adapter's results pickled apart: the parent keeps them as they come and reads
            # them once the run is over, in the order the reports read them (see Runner._collect)
            pending.extend(("done", spec, _pickled(results)) for spec, results in judged)
            sent_s += time.perf_counter() - started
            cpu_s = time.process_time()
            costs = {
                "checks_s": checks_s,
                "oracle_s": reference.oracle_s,
                "send_s": sent_s - counted_s,
                "wait_s": wait_s,
                "cpu_s": cpu_s - counted_cpu_s,
            }
            counted_s, counted_cpu_s, wait_s = sent_s, cpu_s, 0.0
            pending.append(("ended", None, costs))
        # (a send that fails ends the worker while its phase file names the last adapter's
        # judging: the parent reports a harness error, never the framework's crash)
        started = time.perf_counter()
        try:
            conn.send_bytes(_pickled(pending))  # Result records pickle as they are
        finally:
            pending.clear()
            sent_s += time.perf_counter() - started
        waited = time.perf_counter()


def _run_job(
    case: Case,
    specs: Sequence[str],
    selected: Sequence[str] | None,
    serial: int,
    reference: Reference,
    adapters: dict[str, Adapter],
) -> tuple[list[tuple[str, list[Result]]], float]:
    """Every adapter's results for ``case`` (loading those not loaded yet), and the seconds spent
    calling and judging. All adapters are called before any is judged (see :class:`Calls`)."""
    phase = _phase_file.write if _phase_file is not None else (lambda *_: None)
    checks_s = 0.0
    made: list[tuple[int, str, Calls | list[Result]]] = []
    for index, spec in enumerate(specs):
        try:
            if spec not in adapters:
                phase(serial, index, PhaseFile.LOADING)
                adapters[spec] = load_adapter(spec)
        except Exception as exc:  # the harness must report, never die, on one case
            made.append((index, spec, _harness_errors(case, spec, selected, exc)))
            continue
        phase(serial, index, PhaseFile.RUNNING)
        started = time.perf_counter()
        try:
            made.append((index, spec, call_checks(case, adapters[spec], reference, selected)))
        except Exception as exc:
            made.append((index, spec, _harness_errors(case, spec, selected, exc)))
        checks_s += time.perf_counter() - started
    started = time.perf_counter()
    judged: list[tuple[str, list[Result]]] = []
    for index, spec, calls in made:
        results = calls
        if isinstance(calls, Calls):
            phase(serial, index, PhaseFile.JUDGING)
            try:
                results = judge(calls)
            except Exception as exc:
                results = _harness_errors(case, spec, selected, exc)
        judged.append((spec, results))
    return judged, checks_s + time.perf_counter() - started


def _pickled(message: object) -> bytes:
    """What ``Connection.send`` sends (its ``recv`` reads it back), pickled without its
    ForkingPickler: jobs and results hold no pipe or socket to reduce, and setting one up copied
    the reducer table for every message (a sixth of a worker's sending)."""
    return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)


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


#: messages a worker holds at once: the one it runs and the next, so that it starts the next case
#: without waiting for the parent to read the last one's results and answer
PIPELINE_DEPTH = 2
#: a message queued behind another is at most this large when pickled: it must fit the pipe's
#: buffer, or the parent would block sending it while the worker blocks sending results the parent
#: is not reading
PIPELINED_JOB_BYTES = 16_384
#: seconds between looks at running workers' phase files for one past its time limit
TIMEOUT_CHECK_INTERVAL = 0.1


@dataclass
class _Sent:
    """A job sent to a worker: its case, its adapters in the order they run, those whose results
    have not come back, its number (the worker numbers the jobs it receives alike) and whether it
    is the last of its message (the worker answers once per message)."""

    case: Case
    specs: list[str]
    remaining: list[str]
    serial: int
    last: bool = True


@dataclass
class _InFlight:
    job: _Sent
    spec: str
    limit: float  # seconds the phase (loading the adapter, or running or judging the case) may take
    started: float  # time.monotonic()
    #: where the phase's output starts in the log: a crash quotes only its own output, never what
    #: earlier cases printed in this worker (which depends on how cases were shared out)
    log_offset: int
    phase: int = PhaseFile.RUNNING

    @property
    def judging(self) -> bool:
        """The harness was judging the adapter's results: its framework calls had all returned."""
        return self.phase == PhaseFile.JUDGING


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess | ForkedProcess
    conn: multiprocessing.connection.Connection
    log_path: str
    #: jobs sent and not finished, in the order the worker runs them
    jobs: deque[_Sent] = field(default_factory=deque)
    sent: int = 0  # jobs sent over the worker's life

    @property
    def busy(self) -> bool:
        return bool(self.jobs)

    @property
    def messages(self) -> int:
        """Messages sent whose answer has not come back (the worker answers once per message)."""
        return sum(job.last for job in self.jobs)

    def send(
        self,
        jobs: Sequence[tuple[Case, list[str]]],
        pickled: Callable[[Case], bytes],
        checks: list[str] | None,
        behind: bool = False,
    ) -> bool:
        """Send a message of jobs, their cases pickled beforehand (``pickled``: see Runner.run);
        ``behind`` another still running: only if it is small (PIPELINED_JOB_BYTES)."""
        message = _pickled([(pickled(case), list(specs), checks) for case, specs in jobs])
        if behind and len(message) > PIPELINED_JOB_BYTES:
            return False
        for i, (case, specs) in enumerate(jobs, 1):
            self.sent += 1
            self.jobs.append(_Sent(case, list(specs), list(specs), self.sent, last=i == len(jobs)))
        # a worker that died (of the job it runs) breaks the pipe: reading it says so, and the
        # jobs it holds, these too, are requeued (Runner._replace)
        with contextlib.suppress(OSError):
            self.conn.send_bytes(message)  # what conn.recv() reads back
        return True

    def in_flight(self, timeout: float) -> _InFlight | None:
        """The job and adapter the worker is loading or running, as its phase file says; None
        between adapters, or once that adapter's results came back."""
        found = PhaseFile.read(phase_path(self.log_path)) if self.jobs else None
        if found is None:
            return None
        serial, index, phase, started, log_offset = found
        job = next((job for job in self.jobs if job.serial == serial), None)
        if job is None or job.specs[index] not in job.remaining:
            return None
        limit = max(LOAD_TIMEOUT, timeout) if phase == PhaseFile.LOADING else timeout
        return _InFlight(job, job.specs[index], limit, started, log_offset, phase)

    def last_log_offset(self) -> int:
        """Where the output of the worker's latest phase starts in its log."""
        found = PhaseFile.read(phase_path(self.log_path))
        return found[4] if found is not None else 0

    def log_tail(self, offset: int) -> str:
        try:
            data = Path(self.log_path).read_bytes()[offset:][-LOG_TAIL_BYTES:]
        except OSError:
            return ""
        return " ".join(data.decode("utf-8", "replace").split())


class _Readable:
    """Which of the run loop's connections have something to read, or have closed: one poll object
    kept across the loop's turns, told only what changed since the last (the loop waits about once
    per job, and multiprocessing's wait() builds a selector each time: 13.5 µs a call against 4.9,
    with three connections). Where there is no poll (Windows' pipes are not file descriptors),
    multiprocessing's wait()."""

    def __init__(self) -> None:
        self._poll = select.poll() if hasattr(select, "poll") and os.name == "posix" else None
        self._by_fd: dict[int, Any] = {}

    def wait(self, connections: list[Any], timeout: float) -> list[Any]:
        if self._poll is None:
            return multiprocessing.connection.wait(connections, timeout=timeout)
        wanted = {c.fileno(): c for c in connections}
        for fd in self._by_fd.keys() - wanted.keys():  # (a closed one's number may come back as another's)
            self._poll.unregister(fd)
        for fd in wanted.keys() - self._by_fd.keys():
            self._poll.register(fd, select.POLLIN)
        self._by_fd = wanted
        # any event counts: POLLHUP or POLLERR is a closed end, which the reader reports
        return [wanted[fd] for fd, _ in self._poll.poll(timeout * 1000)]


def _exit_description(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


#: what a framework's call costs besides its arithmetic, in the multiply-adds it could do meanwhile:
#: on the library a call takes ~1.5 ms whatever its size (the median case has 4,000 multiply-adds,
#: the largest 400,000), the time of tens of thousands of them. Weighed by their arithmetic alone,
#: a pool left with many small jobs (MLX's rejections and empty batches, where its workers die)
#: seemed to have no work left: it got no core until the other pool had finished, then ran alone.
CALL_WORK = 50_000


def job_work(case: Case, specs: Sequence[str]) -> float:
    """How long a job runs, in multiply-adds: what the dispatcher shares the cores by."""
    return (case.work + CALL_WORK) * len(specs)


#: Small jobs go out several to a message: each message costs the parent a turn of its run loop
#: (its caches cold from the workers' work) and the worker a receive and a send. Batched, the
#: reference run's 2,223 messages became 942, and the parent's CPU fell 9 %.
#: A message holds at most BATCH_JOBS jobs, and more than one only while their work together is at
#: most BATCH_CALLS calls' worth (CALL_WORK) per adapter: a long case still goes alone.
BATCH_JOBS = 8
BATCH_CALLS = 4
#: no batches once the queues hold this few jobs per worker: at a run's end a batch waiting behind
#: another would keep a free worker idle
BATCH_TAIL = 2 * BATCH_JOBS


@dataclass
class _Pool:
    """The workers of one pool key (AdapterInfo.pool_key), the jobs left for them and their server."""

    key: tuple
    specs: list[str]
    server: ForkServer | None = None
    workers: list[_Worker] = field(default_factory=list)
    queue: deque[tuple[Case, list[str]]] = field(default_factory=deque)
    queued_work: float = 0.0  # job_work() of the queued jobs
    described: bool = False  # every adapter of the pool is described: its jobs may go out
    #: cases whose jobs are too large to wait behind another (not pickled again on every pass)
    too_large: set[tuple[str, str]] = field(default_factory=set)

    @property
    def busy(self) -> int:
        return sum(w.busy for w in self.workers)

    @property
    def loading(self) -> multiprocessing.connection.Connection | None:
        """The server's connection while it imports (it becomes readable when the server answers)."""
        return None if self.described or self.server is None else self.server.loading

    def batch(self, most: int) -> list[tuple[Case, list[str]]]:
        """The next message's jobs, from the queue's head (left there: see :meth:`take`): up to
        ``most``, while their work stays within BATCH_CALLS calls per adapter (the first always)."""
        jobs = list(itertools.islice(self.queue, most))
        budget = BATCH_CALLS * CALL_WORK * len(self.specs)
        work = 0.0
        for n, job in enumerate(jobs):
            work += job_work(*job)
            if n and work > budget:
                return jobs[:n]
        return jobs

    def take(self, jobs: Sequence[tuple[Case, list[str]]]) -> None:
        """Take ``jobs``, the queue's first ones (:meth:`batch`), out of the queue."""
        for _ in jobs:
            self.queued_work -= job_work(*self.queue.popleft())

    def put_back(self, jobs: Sequence[tuple[Case, list[str]]]) -> None:
        """Jobs to run next, in the given order (those of a worker that died)."""
        self.queue.extendleft(reversed(jobs))
        self.queued_work += sum(job_work(case, specs) for case, specs in jobs)


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
        store: reuse.Store | None = None,
    ) -> None:
        """``workers``: how many cases run at once, over all pools (a fork server still importing
        counts as one). ``fork``: fork each pool's workers from a fork server (Linux), else spawn
        every one. ``prestarted``: fork servers started before the adapters were described
        (:func:`prestart`); ``adapters`` may then hold ``pending`` ones (:func:`describe`).
        ``store``: results of earlier runs to reuse where their key still holds, and where this
        run's are kept (:mod:`conformance.reuse`)."""
        self.store = store
        self._reused: set[tuple[str, str, str]] = set()
        self.prestarted = prestarted
        self.other_log_dirs: list[str] = []
        self.adapters = {a.spec: a for a in adapters}
        self.checks = list(checks) if checks is not None else None
        self.workers = max(1, workers)
        self.timeout = timeout
        self.progress = progress
        self.context = multiprocessing.get_context("spawn")  # fork is unsafe with threaded native libraries
        self.log_dir: str | None = None  # the workers' output, quoted when one dies; removed by close()
        #: (file, case, spec) -> its results; as a worker sent them (pickled) until _collect reads them
        self.results: dict[tuple[str, str, str], list[Result] | bytes] = {}
        self._params: dict[tuple[str, str], dict] = {}  # a case's params record, shared (_record)
        self._pickled_cases: dict[tuple[str, str], bytes] = {}  # (file, case) -> it pickled (run())
        self.costs: dict[str, float] = {}
        #: one pool per pool key, kept between run() calls with keep_alive
        self.pools: dict[tuple, _Pool] = {}
        #: workers' and servers' processes told to end and not yet waited for (close() waits)
        self._ending: list[multiprocessing.process.BaseProcess | ForkedProcess] = []
        self.fork = fork and sys.platform.startswith("linux")

    def _log_path(self, name: str) -> str:
        if self.log_dir is None:
            self.log_dir = tempfile.mkdtemp(prefix="conformance-workers-")
        return os.path.join(self.log_dir, f"{name}-{time.monotonic_ns()}.log")

    def _pool(self, key: tuple, specs: list[str]) -> _Pool:
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = _Pool(key, list(specs))
            early = self.prestarted.servers.pop(key, None) if self.prestarted is not None else None
            if early is not None and early[0] == pool.specs:
                pool.server = early[1]
            else:
                if early is not None:  # the guess was wrong (a process group): its imports are thrown away
                    early[1].close()
                if self.fork:
                    env = self.adapters[specs[0]].env
                    pool.server = _new_server(specs, env, self._log_path("forkserver"), self.timeout, True)
        return pool

    def _drop_prestarted(self) -> None:
        """Close the early servers no pool took (their log folder goes once their workers are gone)."""
        if self.prestarted is not None:
            for _, server in self.prestarted.servers.values():
                server.close()
            self.other_log_dirs.append(self.prestarted.log_dir)
            self.prestarted = None

    def _ready(self, pool: _Pool, wait: bool = False) -> bool:
        """Whether the pool's jobs may go out: its server has answered (ready, declined, dead or out
        of time; it has none) and so its adapters are described. ``wait``: for the answer."""
        if pool.described:
            return True
        if pool.server is not None:
            if wait:
                pool.server.described()
            elif not pool.server.poll_answer():
                return False
        known = pool.server.described() if pool.server is not None else {}
        if pool.server is not None:  # (for the benchmark: what importing the frameworks cost)
            self.costs["imports_cpu_s"] = self.costs.get("imports_cpu_s", 0.0) + pool.server.import_cpu_s
        for spec in pool.specs:
            if self.adapters[spec].pending:
                info = known.get(spec) or _describe(spec, load_adapter(spec))
                if info.pool_key != pool.key:
                    raise RuntimeError(
                        f"harness bug: built-in adapter {spec!r} belongs to pool {info.pool_key}, "
                        f"not to {pool.key} as guessed_pool_key() says"
                    )
                self.adapters[spec] = info
        pool.described = True
        if self.store is not None:
            self._reuse(pool)
        return True

    def _reuse(self, pool: _Pool) -> None:
        """Take the results the store holds for the pool's queued jobs out of its queue."""
        shelves = {spec: self.store.shelf(self.adapters[spec]) for spec in pool.specs}
        if not any(shelves.values()):
            return
        left = []
        for case, specs in pool.queue:
            checks = checks_for(case, self.checks)
            todo = []
            for spec in specs:
                shelf = shelves[spec]
                found = shelf.get(case, self.adapters[spec].name, checks) if shelf is not None else None
                if found is None:
                    todo.append(spec)
                else:
                    self._record(case, spec, found)
                    self._reused.add((case.file, case.id, spec))
            if todo:
                left.append((case, todo))
        pool.queue, pool.queued_work = deque(), 0.0
        pool.put_back(left)
        for spec, shelf in shelves.items():
            if shelf is not None and not self.adapters[spec].facts:
                self.adapters[spec].facts = dict(shelf.facts)  # a worker that runs reports its own

    def _spawn(self, pool: _Pool) -> _Worker:
        log_path = self._log_path("worker")
        forked = pool.server.fork(log_path) if pool.server is not None else None
        if forked is not None:
            return _Worker(*forked, log_path)
        parent_conn, child_conn = self.context.Pipe()
        env = self.adapters[pool.specs[0]].env
        process = self.context.Process(target=_worker_main, args=(child_conn, log_path, env), daemon=True)
        with _thread_limits(), main_script_not_rerun():
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
        does other work; :meth:`run` does it otherwise."""
        for key, specs in self._groups().items():
            self._pool(key, specs)
        self._drop_prestarted()

    def run(self, cases: Sequence[Case], keep_alive: bool = False) -> RunOutcome:
        """Every case through every adapter. With ``keep_alive`` the workers stay up for the next
        call (each new worker imports the frameworks again, which costs seconds); without, they
        and their servers are told to end, and :meth:`close` waits for them.

        The pools run at the same time, ``workers`` cases at once in all: one whose server is
        ready runs while another's still imports its framework, and a core goes where the most
        work is left."""
        specs = list(self.adapters)
        self.results, self.costs, self._params, self._reused = {}, {}, {}, set()
        # every case pickled once, here, for the jobs of every pool: pickled as each job went out,
        # between two of the workers' messages, a case took the run loop 50 µs of CPU (its caches
        # cold from the workers' work) against 10 µs in one pass here
        self._pickled_cases = {(case.file, case.id): _pickled(case) for case in cases}
        total = len(cases) * len(specs)
        # largest first (a stable sort): a long case handed out last would keep the other workers
        # idle. Before them, those without arithmetic (rejected configurations, empty arrays): these
        # are the cases that kill workers (MLX's SIGFPE), and each replacement takes its pool's core
        # for some milliseconds; at the run's end, two dozen of them in a row had the other pools'
        # workers idle, done. Results are collected in the given order whatever the order they ran in.
        by_work = sorted(cases, key=lambda case: (case.work != 0, -case.work))
        pools = []
        for key, group in self._groups().items():
            pool = self._pool(key, group)
            pool.queue, pool.queued_work = deque(), 0.0
            pool.put_back([(case, list(group)) for case in by_work])
            pools.append(pool)
        self._drop_prestarted()
        interrupted = False
        collecting = gc.isenabled()
        # no cyclic collections while results come in: they hold no cycles, and each collection
        # walked every result received so far (a fifth of a second of a 20,000-result run)
        gc.disable()
        try:
            self._run_pools(pools, total, keep_alive)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if collecting:
                gc.enable()
            try:
                if not interrupted:
                    for pool in pools:  # a run of no case still reports every framework's version
                        self._ready(pool, wait=True)
            finally:
                if not keep_alive or interrupted:
                    self.close(wait=False)  # (waited for by the caller's close())
        results = self._collect(cases, specs, interrupted)
        if self.store is not None:
            computed = [
                (case, self.adapters[spec], self.results[(case.file, case.id, spec)])
                for case in cases
                for spec in specs
                if (case.file, case.id, spec) not in self._reused
            ]
            self.store.save(computed, {spec: info.facts for spec, info in self.adapters.items()})
        frameworks = {a.name: a.version for a in self.adapters.values()}
        layers = [a.layer_api for a in self.adapters.values() if a.layer_api]
        facts = {a.name: a.facts for a in self.adapters.values() if a.facts}
        reused = sum(len(self.results[key]) for key in self._reused)
        return RunOutcome(results, frameworks, interrupted, layers, facts, dict(self.costs), reused)

    def _run_pools(self, pools: list[_Pool], total: int, keep_alive: bool) -> None:
        active = list(pools)
        checked = time.monotonic()  # when running workers' phases were last held to their limits
        readable = _Readable()
        while active:
            for pool in active:
                self._ready(pool)
            self._dispatch(active)
            busy = [(w, pool) for pool in active for w in pool.workers if w.busy]
            loading = [c for c in (pool.loading for pool in active) if c is not None]
            ready = readable.wait([w.conn for w, _ in busy] + loading, timeout=0.5)
            check = time.monotonic() - checked > TIMEOUT_CHECK_INTERVAL
            checked = time.monotonic() if check else checked
            for w, pool in busy:
                if w.conn in ready:
                    self._receive(w, pool)
                elif (
                    check
                    and (flight := w.in_flight(self.timeout))
                    and time.monotonic() - flight.started > flight.limit
                ):
                    self._replace(w, pool, *self._overrun(flight), flight)
            for pool in [p for p in active if p.described and not p.queue and not p.busy]:
                active.remove(pool)
                if not keep_alive:
                    self._close_pool(pool.key)
            if self.progress:
                self.progress(len(self.results), total)

    def _overrun(self, flight: _InFlight) -> tuple[str, str]:
        """The status and message of a job whose worker ran past ``flight``'s limit."""
        if flight.judging:  # the framework's calls had all returned: the harness's own fault
            limit = f"{flight.limit:g} s per-case timeout"
            return "error", f"harness error: judging this case's results took over the {limit}"
        what = "per-case timeout" if flight.limit == self.timeout else "limit for loading the adapter"
        return "timeout", f"{NO_RESULT_WITHIN}{flight.limit:g} s {what}"

    def _dispatch(self, pools: list[_Pool]) -> None:
        """Hand out jobs while fewer than ``workers`` cases run (a server still importing counts as
        one: it keeps a core busy), each to the ready pool with the most work left per worker."""
        free = self.workers - sum(pool.busy + (pool.loading is not None) for pool in pools)
        while free > 0:
            ready = [pool for pool in pools if pool.described and pool.queue]
            if not ready:
                break
            pool = max(ready, key=lambda p: p.queued_work / (p.busy + 1))
            w = next((w for w in pool.workers if not w.busy), None)
            if w is None:
                w = self._spawn(pool)
                pool.workers.append(w)
            jobs = pool.batch(self._batch_size(pools))
            w.send(jobs, self._pickled_case, self.checks)
            pool.take(jobs)
            free -= 1
        for pool in pools:
            for w in pool.workers:
                # a second message only while there is more than one job left per worker: at the
                # end of the queue a job waiting behind a long case would keep another worker idle
                while 0 < w.messages < PIPELINE_DEPTH and len(pool.queue) > len(pool.workers):
                    case = pool.queue[0][0]
                    ident = (case.file, case.id)
                    jobs = pool.batch(self._batch_size(pools))
                    if ident in pool.too_large or not w.send(jobs, self._pickled_case, self.checks, True):
                        pool.too_large.add(ident)
                        break
                    pool.take(jobs)

    def _batch_size(self, pools: list[_Pool]) -> int:
        """How many jobs the next message may hold (BATCH_JOBS, one near the run's end)."""
        return BATCH_JOBS if sum(len(pool.queue) for pool in pools) > BATCH_TAIL * self.workers else 1

    def _pickled_case(self, case: Case) -> bytes:
        return self._pickled_cases[case.file, case.id]

    def _receive(self, w: _Worker, pool: _Pool) -> None:
        try:
            events = w.conn.recv()
        except (EOFError, OSError):
            w.process.join(timeout=5)
            why = _exit_description(w.process.exitcode)
            flight = w.in_flight(self.timeout)
            tail = w.log_tail(flight.log_offset if flight is not None else w.last_log_offset())
            output = f"; output: {tail}" if tail else ""
            if flight is not None and flight.judging:
                status = "error"
                message = f"harness error: worker process {why} while judging this case's results{output}"
            else:
                status, message = "crash", f"{WORKER_DIED}{why} while running this case{output}"
            self._replace(w, pool, status, message, flight)
            return
        for event in events:
            self._event(w, *event)

    def _event(self, w: _Worker, kind: str, spec: str | None, *payload: Any) -> None:
        if kind == "facts":
            self.adapters[spec].facts = payload[0]
        elif kind == "done":
            job = w.jobs[0]
            self.results[(job.case.file, job.case.id, spec)] = payload[0]  # read in _collect
            job.remaining.remove(spec)
        elif kind == "ended":
            w.jobs.popleft()
            for name, seconds in payload[0].items():  # ("ended", None, the job's costs)
                self.costs[name] = self.costs.get(name, 0.0) + seconds

    def _replace(self, w: _Worker, pool: _Pool, status: str, message: str, flight: _InFlight | None) -> None:
        """Record the in-flight pair as lost, requeue the rest of what the worker held (the jobs
        of its message that ran before: their results had not come back; the job's other
        frameworks; the jobs behind it), and drop the worker: a fresh one starts with the next job
        handed out (_dispatch), and none where none is left (a spawned one imports its frameworks,
        seconds for nothing at a run's end)."""
        jobs = list(w.jobs)  # w keeps them: _stop kills a busy worker without asking it to stop
        # the job in flight; else (no phase file to tell) the first not answered
        at = flight.job if flight is not None else (jobs[0] if jobs else None)
        if at is not None:
            lost = flight.spec if flight is not None else (at.remaining[0] if at.remaining else None)
            if lost is not None:
                self._lost(at.case, lost, status, message)
                at.remaining.remove(lost)
        pool.put_back([(job.case, job.remaining) for job in jobs if job.remaining])  # in order
        self._stop(w)
        # those already gone are collected now: a long session's crashes would leave a process
        # entry each until close()
        self._ending = [p for p in self._ending if p.is_alive()]
        pool.workers.remove(w)

    def _close_pool(self, key: tuple) -> None:
        pool = self.pools.pop(key, None)
        if pool is None:
            return
        for w in pool.workers:
            self._stop(w)
        if pool.server is not None:
            pool.server.close(wait=False)
            self._ending.append(pool.server.process)

    def close(self, wait: bool = True) -> None:
        """Stop every worker and server. ``wait``: until they are gone; else a later close() waits
        (a process with a framework imported takes the kernel 10-30 ms to free, which a run's end
        need not wait for: the command's reports are written meanwhile)."""
        if self.prestarted is not None:  # never used
            self.prestarted.close()
            self.prestarted = None
        for key in list(self.pools):
            self._close_pool(key)
        if not wait:  # (the logs stay until then: a spawned worker still starting opens its own)
            return
        self._await_ending()
        for directory in self.other_log_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self.other_log_dirs = []
        if self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None

    def _stop(self, w: _Worker) -> None:
        """Ask an idle worker to exit, kill a busy one; :meth:`_await_ending` waits for it. (The
        run goes on meanwhile: waiting for each worker as its pool closed kept the parent from the
        other pools' workers for 10-60 ms.)"""
        try:
            if w.busy:
                w.process.kill()
            else:
                w.conn.send(None)
        except OSError:  # it is gone already
            pass
        w.conn.close()
        self._ending.append(w.process)

    def _await_ending(self) -> None:
        """Wait for the processes told to end; kill one that does not (an idle worker asked to
        exit reads the request, or its pipe's closing, at once)."""
        ending, self._ending = self._ending, []
        # (workers first: a server ends once its workers have)
        ending.sort(key=lambda process: not isinstance(process, ForkedProcess))
        for process in ending:
            process.join(timeout=2)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def _collect(self, cases: Sequence[Case], specs: Sequence[str], interrupted: bool) -> list[Result]:
        """Every result, case by case. A worker's results came pickled and are read here, in this
        order: read as they came, a job at a time among the run loop's own objects, 20,000 results
        lay scattered over the heap in another order than the reports read them, and the reports
        missed the CPU's caches on each (the page's table took 0.25-0.31 s of CPU on them, against
        0.15-0.22 on results read back in order)."""
        ordered: list[Result] = []
        for case in cases:
            for spec in specs:
                key = (case.file, case.id, spec)
                found = self.results.get(key)
                if found is None:
                    self._lost(case, spec, "crash", INTERRUPTED if interrupted else NO_RESULT)
                elif isinstance(found, bytes):
                    try:
                        self._record(case, spec, pickle.loads(found))
                    except Exception as exc:  # (a result holding what this process cannot import)
                        why = f"harness error: the worker's results could not be read: {exc!r}"
                        self._lost(case, spec, "error", why)
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
