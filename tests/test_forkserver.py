"""Workers forked from a fork server give the verdicts spawned ones give, replace crashed workers,
and are never forked from a process with threads."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance import runner
from conformance.builtin_adapters import BUILTIN_PACKAGES
from conformance.cases import Case, load_cases
from conformance.forkserver import ForkedProcess
from tests.test_cli import SMALL_CASES

CRASHY = "tests/adapters/crashy.py:Crashy"
THREADED = "tests/adapters/threaded.py:StartsThreadAtImport"
DIRECT_NUMPY = "tests/adapters/numpy_direct.py:DirectNumpy"
VOLATILE = ("duration_s", "message")  # a crash message quotes the worker's log, which names its pid


#: the CLI tests' small library without its 20 s hang (these tests run it more than once)
NO_HANG = SMALL_CASES.replace("  - id: hang-here\n    stride: 4\n", "")


def _small_cases(tmp_path: Path, text: str = NO_HANG, ids: tuple[str, ...] = ()) -> list[Case]:
    path = tmp_path / "small.yaml"
    path.write_text(text)
    return [c for c in load_cases([path]) if not ids or c.id in ids]


def _records(outcome: runner.RunOutcome) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k not in VOLATILE} for r in outcome.results]


def _run(cases, specs: list[str], fork: bool, timeout: float = 20.0) -> tuple[runner.RunOutcome, list[type]]:
    made: list[type] = []
    run = runner.Runner(runner.describe(specs), workers=2, timeout=timeout, fork=fork)
    spawn = run._spawn

    def noted(key):
        worker = spawn(key)
        made.append(type(worker.process))
        return worker

    run._spawn = noted
    return run.run(cases), made


def test_forked_workers_give_the_spawned_verdicts_and_replace_crashed_ones(tmp_path: Path) -> None:
    cases = _small_cases(tmp_path)
    forked, made = _run(cases, [CRASHY, "torch"], fork=True)
    spawned, spawned_made = _run(cases, [CRASHY, "torch"], fork=False)
    assert set(made) == {ForkedProcess}, "every worker, the replacements too, is forked"
    assert len(made) >= 4, "two crashes replaced two workers"
    assert all(t is not ForkedProcess for t in spawned_made)
    assert _records(forked) == _records(spawned)
    status = {(r.case, r.check): r.status for r in forked.results if r.framework == "crashy"}
    assert status[("abort-here", "forward")] == "crash" and status[("exit-here", "forward")] == "crash"
    assert status[("after", "forward")] == "pass"


def test_jobs_too_large_to_wait_behind_another_give_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = _small_cases(tmp_path)
    pipelined, _ = _run(cases, [CRASHY, "torch"], fork=True)
    sent: list[bool] = []
    send = runner._Worker.send

    def noted(self, jobs, pickled, checks, behind=False):
        accepted = send(self, jobs, pickled, checks, behind)
        sent.append(behind and not accepted)
        return accepted

    monkeypatch.setattr(runner, "PIPELINED_JOB_BYTES", 0)  # no job is small enough
    monkeypatch.setattr(runner._Worker, "send", noted)
    one_at_a_time, _ = _run(cases, [CRASHY, "torch"], fork=True)
    assert any(sent), "a job was refused its place behind another"
    assert _records(one_at_a_time) == _records(pipelined)


def test_a_job_sent_behind_a_case_that_kills_its_worker_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the race CI met once: a job sent behind another after the worker died of it (broken pipe);
    # the crashing case first, so that the first worker's first job is the one it dies of
    crash_first = NO_HANG.replace("  - id: plain\n", "")
    crash_first = crash_first.replace("  - id: after\n", "  - id: plain\n  - id: after\n")
    cases = _small_cases(tmp_path, crash_first)
    expected, _ = _run(cases, [CRASHY, "torch"], fork=True)
    late: list[str] = []
    send = runner._Worker.send

    def after_the_death(self, jobs, pickled, checks, behind=False):
        if (
            behind
            and self.jobs[0].case.id in ("abort-here", "exit-here")
            and "crashy" in self.jobs[0].specs[0]
        ):
            self.process.join(timeout=20)  # the worker runs crashy on that case first, and dies
            late.append(jobs[0][0].id)
        return send(self, jobs, pickled, checks, behind)

    monkeypatch.setattr(runner._Worker, "send", after_the_death)
    outcome, _ = _run(cases, [CRASHY, "torch"], fork=True)
    assert late, "a job was sent to a worker already dead"
    assert _records(outcome) == _records(expected)


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_workers_write_no_core_dump_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    """A framework's abort on a case is a finding, not a debugging session: its worker (the one
    replacing it too) writes no core dump, whatever the run's own limit, unless
    CONFORMANCE_CORE_DUMPS asks for them; nor hands one to a crash collector (a piped
    core_pattern, which the size limit does not reach: the process is not dumpable)."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)  # (a hard limit of 0: still not dumpable)
    probe = f"{Path(__file__).parent / 'adapters' / 'crashy.py'}:CrashyTellsCoreLimit"
    monkeypatch.chdir(tmp_path)  # where a core dump would land ("core" patterns are relative)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    try:
        monkeypatch.delenv(runner.CORE_DUMPS, raising=False)
        # the abort first (it dies before it reports): the facts come from the worker replacing it
        crashed = runner.Runner(runner.describe([probe]), workers=1, fork=fork).run(
            _small_cases(tmp_path, ids=("abort-here", "after"))
        )
        monkeypatch.setenv(runner.CORE_DUMPS, "1")
        asked = runner.Runner(runner.describe([probe]), workers=1, fork=fork).run(
            _small_cases(tmp_path, ids=("plain",))
        )
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
    assert {r.status for r in crashed.results if r.case == "abort-here"} == {"crash"}
    assert crashed.framework_facts["crashy-core-limit"] == {"core_limit": 0, "dumpable": 0}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("core")]
    own = runner.dumpable()  # (a setuid start may have made it 0)
    assert asked.framework_facts["crashy-core-limit"] == {"core_limit": hard, "dumpable": own}


def test_every_frameworks_results_of_a_case_share_one_params_record(tmp_path: Path) -> None:
    # the reports work out what they show of a case's params once per record (memoised by identity)
    cases = _small_cases(tmp_path, ids=("plain", "after", "rejects"))
    outcome, _ = _run(cases, ["torch", "torch.nn"], fork=True)
    records: dict[str, set[int]] = {}
    for r in outcome.results:
        records.setdefault(r.case, set()).add(id(r.params))
    assert len(outcome.results) > 2 * len(cases)
    assert all(len(ids) == 1 for ids in records.values()), records


def test_a_framework_that_starts_threads_at_import_is_never_forked(tmp_path: Path) -> None:
    cases = _small_cases(tmp_path, ids=("plain", "after", "rejects"))
    outcome, made = _run(cases, [THREADED], fork=True)
    assert made and all(t is not ForkedProcess for t in made), "the server declined: workers are spawned"
    assert {r.status for r in outcome.results} == {"pass"}


GC_PROBE = "tests/adapters/gc_probe.py:NotesCollections"


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_server_imports_without_collections_and_its_workers_collect(tmp_path: Path, fork: bool) -> None:
    cases = _small_cases(tmp_path, ids=("plain",))
    outcome, made = _run(cases, [GC_PROBE], fork=fork)
    assert (ForkedProcess in made) == fork
    facts = outcome.framework_facts["notes-collections"]
    # a spawned worker imports as any process does; a server imports with its collector off
    assert facts == {"collecting_at_import": not fork, "collecting_in_worker": True}, facts
    assert {r.status for r in outcome.results} == {"pass"}


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_server_imports_what_an_adapter_declares_it_would_import_lazily(tmp_path: Path, fork: bool) -> None:
    cases = _small_cases(tmp_path, ids=("plain",))
    outcome, made = _run(cases, ["tests/adapters/gc_probe.py:NotesPreloaded"], fork=fork)
    assert (ForkedProcess in made) == fork
    # forked: in the worker from its start; spawned: never imported (nothing preloads it there)
    assert outcome.framework_facts["notes-preloaded"] == {"preloaded": fork}
    assert {r.status for r in outcome.results} == {"pass"}


DESCRIBES_IN_SERVER = """
import json, sys
from conformance import runner
specs = ["torch", "torch.nn"]
early = runner.prestart(specs)
infos = runner.describe(specs, early)
early.close()
print(json.dumps({"names": [i.name for i in infos], "plain": [type(i.version) is str for i in infos],
                  "imported": "torch" in sys.modules}))
"""


def test_adapters_the_early_server_loaded_are_described_there_and_not_imported_here() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DESCRIBES_IN_SERVER], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    told = json.loads(proc.stdout)
    assert told["names"] == ["torch", "torch.nn"] and told["plain"] == [True, True], told
    assert not told["imported"], "this process imported torch: the server's descriptions were not used"


ALONE = "tests/adapters/alone.py:FailsBesideTorch"


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_frameworks_never_share_a_worker_process(tmp_path: Path, fork: bool) -> None:
    # one framework's import (its threads, its floating-point settings) must not change what
    # another computes: the planted adapter fails wherever torch was imported beside it
    cases = _small_cases(tmp_path, ids=("plain", "after", "rejects"))
    first, _ = _run(cases, [ALONE, "torch"], fork=fork)
    second, _ = _run(cases, ["torch", ALONE], fork=fork)
    alone = [r for r in first.results if r.framework == "fails-beside-torch"]
    assert alone and {r.status for r in alone} == {"pass"}, [r.message for r in alone]
    key = {"file", "case", "framework", "check"}
    order = sorted(_records(first), key=lambda r: [str(r[k]) for k in sorted(key)])
    assert order == sorted(_records(second), key=lambda r: [str(r[k]) for k in sorted(key)])


def test_no_more_cases_run_at_once_than_workers_over_all_pools(tmp_path: Path) -> None:
    cases = _small_cases(tmp_path, ids=("plain", "after", "rejects"))
    run = runner.Runner(runner.describe([ALONE, "torch", "torch.nn"]), workers=2, timeout=20.0)
    dispatch, most = run._dispatch, []

    def counted(pools):
        dispatch(pools)
        most.append(sum(pool.busy + (pool.loading is not None) for pool in pools))

    run._dispatch = counted
    outcome = run.run(cases)
    assert len({r.framework for r in outcome.results}) == 3
    assert most and max(most) <= 2, most


@pytest.mark.parametrize("spec", ["torch", "torch.nn", "mlx", "mlx.nn"])
def test_a_builtins_pool_is_known_before_it_is_described(spec: str) -> None:
    # a pending adapter's pool is its guessed one; the runner treats a wrong guess as a harness bug
    pytest.importorskip(BUILTIN_PACKAGES[spec])
    assert runner.describe([spec])[0].pool_key == runner.guessed_pool_key(spec)


DESCRIBED_LATER = """
import json, sys
from conformance import runner
from conformance.cases import load_cases
specs = ["torch", "mlx"]
early = runner.prestart(specs)
infos = runner.describe(specs, early, wait=False)
pending = [i.spec for i in infos if i.pending]
run = runner.Runner(infos, workers=2, prestarted=early)
outcome = run.run(load_cases([sys.argv[1]]))
print(json.dumps({"pending": pending, "frameworks": outcome.frameworks,
                  "statuses": sorted({r.status for r in outcome.results}),
                  "imported": "torch" in sys.modules}))
"""


def test_adapters_still_importing_are_described_when_their_server_answers(tmp_path: Path) -> None:
    pytest.importorskip("mlx")
    (tmp_path / "small.yaml").write_text(NO_HANG.replace("  - id: abort-here\n    stride: 2\n", ""))
    proc = subprocess.run(
        [sys.executable, "-c", DESCRIBED_LATER, str(tmp_path / "small.yaml")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    told = json.loads(proc.stdout)
    assert "torch" in told["pending"], "torch's server answered before describe() asked: nothing tested"
    expected = {i.name: i.version for i in runner.describe(["torch", "mlx"])}
    assert told["frameworks"] == expected
    assert not {"error", "crash", "timeout"} & set(told["statuses"]) and not told["imported"], told


@pytest.mark.parametrize("fork", [True, False])
def test_a_main_script_is_not_run_again_in_the_processes_a_run_starts(tmp_path: Path, fork: bool) -> None:
    """multiprocessing re-runs a parent's main script in every process it spawns (the
    ``conformance`` command's script imports the CLI: a fifth of a second in each fork server)."""
    marker = tmp_path / "imports.txt"
    script = tmp_path / "main_script.py"
    script.write_text(
        "import sys\n"
        f"open({str(marker)!r}, 'a').write('imported\\n')\n"
        "if __name__ == '__main__':\n"
        f"    sys.path.insert(0, {str(Path.cwd())!r})\n"
        "    from conformance import runner\n"
        "    from conformance.cases import load_cases\n"
        f"    cases = load_cases([{str(tmp_path / 'small.yaml')!r}])[:2]\n"
        f"    run = runner.Runner(runner.describe(['{CRASHY}']), workers=1, fork={fork})\n"
        "    print(len(run.run(cases).results))\n"
    )
    _small_cases(tmp_path, ids=("abort-here",))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 0
    assert marker.read_text() == "imported\n", "the main script ran again in a spawned process"


@pytest.mark.parametrize("fork", [True, False])
def test_a_worker_that_dies_on_one_adapter_keeps_the_results_of_the_adapter_before_it(
    tmp_path: Path, fork: bool
) -> None:
    """A worker reports a job's results once it has run all its adapters: when the second dies
    (or hangs), the first's results (not yet sent) are computed again, and the crash is the
    second's alone, quoting only its own output."""
    steady, crashy = "tests/adapters/crashy.py:SteadyBeside", "tests/adapters/crashy.py:CrashyBeside"
    cases = _small_cases(
        tmp_path, SMALL_CASES, ids=("plain", "abort-here", "exit-here", "hang-here", "after")
    )
    infos = runner.describe([steady, crashy])
    assert infos[0].pool_key == infos[1].pool_key, "the two adapters share worker processes"
    outcome = runner.Runner(infos, workers=2, timeout=2, fork=fork).run(cases)
    alone = runner.Runner(runner.describe([steady]), workers=1, fork=fork).run(cases)
    beside = runner.RunOutcome([r for r in outcome.results if r.framework == "steady-beside"], {})
    assert _records(beside) == _records(alone)
    crashes = {r.case: r for r in outcome.results if r.framework == "crashy-beside" and r.status == "crash"}
    assert set(crashes) == {"abort-here", "exit-here"}
    hung = {
        r.check: r.status for r in outcome.results if r.framework == "crashy-beside" and r.case == "hang-here"
    }
    assert set(hung.values()) == {"timeout"}
    assert "about to abort" in crashes["abort-here"].message
    assert "finished a call" not in crashes["abort-here"].message, "it quotes an earlier case's output"
    passed = {r.case for r in outcome.results if r.framework == "crashy-beside" and r.status == "pass"}
    assert passed == {"plain", "after"}


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_jobs_sent_several_to_a_message_give_the_records_of_one_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: bool
) -> None:
    """A worker answers once per message: when it dies or hangs on a job in a message's middle,
    the jobs before it (run, their results never sent) run again, and the crash or timeout is
    that job's adapter's, not the first job's (planted: the lost pair taken as the first job's)."""
    steady, crashy = "tests/adapters/crashy.py:SteadyBeside", "tests/adapters/crashy.py:CrashyBeside"
    cases = _small_cases(
        tmp_path, SMALL_CASES, ids=("plain", "abort-here", "exit-here", "hang-here", "after")
    )
    infos = runner.describe([steady, crashy])

    def records(batch_jobs: int) -> tuple[list[dict], list[list[str]]]:
        messages: list[list[str]] = []
        send = runner._Worker.send

        def noted(self, jobs, pickled, checks, behind=False):
            accepted = send(self, jobs, pickled, checks, behind)
            if accepted:
                messages.append([case.id for case, _ in jobs])
            return accepted

        with monkeypatch.context() as patch:
            patch.setattr(runner._Worker, "send", noted)
            patch.setattr(runner, "BATCH_JOBS", batch_jobs)
            patch.setattr(runner, "BATCH_TAIL", 0)  # batches to the end of this small queue
            patch.setattr(runner, "BATCH_CALLS", 1000)  # whatever the cases' work
            outcome = runner.Runner(infos, workers=1, timeout=2, fork=fork).run(cases)
        return _records(outcome), messages

    one_each, singles = records(1)
    batched, messages = records(8)
    assert all(len(m) == 1 for m in singles)
    assert messages[0] == ["plain", "abort-here", "exit-here", "hang-here", "after"], messages
    assert batched == one_each
    status = {(r["framework"], r["case"], r["check"]): r["status"] for r in batched}
    assert status[("crashy-beside", "abort-here", "forward")] == "crash"
    assert status[("crashy-beside", "hang-here", "forward")] == "timeout"
    assert status[("crashy-beside", "plain", "forward")] == "pass"


def test_a_message_holds_small_jobs_up_to_its_budget_and_one_job_near_the_runs_end() -> None:
    """A message takes jobs from the queue's head while their work stays within BATCH_CALLS calls
    per adapter (a long job goes alone, as does one past the budget), at most BATCH_JOBS of them;
    once the queues hold BATCH_TAIL jobs per worker or fewer, one job a message."""
    from types import SimpleNamespace

    specs = ["a", "b"]
    budget_work = runner.BATCH_CALLS * runner.CALL_WORK  # per adapter: what a message may hold

    def pool_of(works: list[float]) -> runner._Pool:
        pool = runner._Pool(("key",), specs)
        pool.put_back([(SimpleNamespace(work=w, id=str(i)), specs) for i, w in enumerate(works)])
        return pool

    def sizes(pool: runner._Pool, most: int) -> list[int]:
        taken = []
        while pool.queue:
            jobs = pool.batch(most)
            pool.take(jobs)
            taken.append(len(jobs))
        return taken

    small = [0.0] * 20  # a call's fixed cost each: BATCH_CALLS fit in a message
    assert sizes(pool_of(small), runner.BATCH_JOBS) == [runner.BATCH_CALLS] * (20 // runner.BATCH_CALLS)
    long_first = [10 * budget_work, 0.0, 0.0]
    assert sizes(pool_of(long_first), runner.BATCH_JOBS) == [1, 2]
    assert sizes(pool_of([0.0] * 5), 1) == [1] * 5
    pool = pool_of([0.0] * 3)
    pool.take(pool.batch(2))
    assert pool.queued_work == runner.job_work(SimpleNamespace(work=0.0), specs)  # what is left

    run = runner.Runner([], workers=2)
    tail = runner.BATCH_TAIL * run.workers
    assert run._batch_size([pool_of([0.0] * (tail + 1))]) == runner.BATCH_JOBS
    assert run._batch_size([pool_of([0.0] * tail)]) == 1
    assert run._batch_size([pool_of([0.0] * tail), pool_of([0.0])]) == runner.BATCH_JOBS, "all pools"


def test_a_phase_record_half_written_is_never_read_as_a_phase(tmp_path: Path) -> None:
    path = str(tmp_path / "worker.log.phase")
    phases = runner.PhaseFile(path)
    assert runner.PhaseFile.read(path) is None, "nothing written yet"
    phases.write(3, 1, runner.PhaseFile.RUNNING)
    job, index, phase, started, _ = runner.PhaseFile.read(path)
    assert (job, index, phase) == (3, 1, runner.PhaseFile.RUNNING) and started > 0
    data = bytearray(Path(path).read_bytes())
    data[-8:] = (99).to_bytes(8, "little")  # the next write has reached its last field only
    Path(path).write_bytes(bytes(data))
    assert runner.PhaseFile.read(path) is None


def test_the_frameworks_a_run_names_are_read_before_the_cli_parses_its_line() -> None:
    from conformance.launch import named_frameworks

    line = ["run", "cases", "--framework", "torch", "--framework=mlx.nn", "-n", "2", "--framework", "nope"]
    assert named_frameworks(line) == ["torch", "mlx.nn"], "built-in names only, both spellings"
    for other in (["report", "--framework", "torch"], ["run", "--framework", "torch", "--help"], []):
        assert named_frameworks(other) == [], other
    # an adapter may name a built-in's process group: its pool is known only once described
    assert named_frameworks(["run", "--framework", "torch", "--adapter", "x.py:Y"]) == []


TAKES_LAUNCHED = """
import json, sys
from conformance import launch, runner
launch.start_servers(sys.argv[1].split(","))
launched = {specs: process for specs, (process, _) in launch._launched.servers.items()}
early = runner.prestart(sys.argv[2].split(","))
used = {",".join(group): server.process.pid for group, server in early.servers.values()}
infos = runner.describe(sys.argv[2].split(","), early)
early.close()
print(json.dumps({
    "launched": {",".join(specs): p.pid for specs, p in launched.items()},
    "left_running": [",".join(s) for s, p in launched.items() if p.is_alive()],
    "used": used,
    "names": [i.name for i in infos],
}))
"""


@pytest.mark.parametrize(
    ("launched", "run", "taken"),
    [("mlx,mlx.nn", "mlx,mlx.nn", True), ("mlx", "mlx,mlx.nn", False)],
    ids=["as-guessed", "group-differs"],
)
def test_servers_the_command_started_early_are_taken_where_their_group_is_the_runs(
    launched: str, run: str, taken: bool
) -> None:
    """``conformance run --framework ...`` starts the frameworks' servers before its own imports
    (:mod:`conformance.launch`); the runner takes one whose specs are a pool's, and stops the others."""
    pytest.importorskip("mlx")
    proc = subprocess.run(
        [sys.executable, "-c", TAKES_LAUNCHED, launched, run], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    told = json.loads(proc.stdout)
    assert told["names"] == run.split(","), told
    assert (told["used"][run] == told["launched"][launched]) is taken, told
    assert not told["left_running"], "a server started early and not taken is stopped"


SERVERS_OF_A_COMMAND = """
import json, sys, time
from conformance import launch
launch.limit_threads()  # as the command does first: one thread, so its servers are forked
launch.start_servers(sys.argv[1:])
servers = launch._launched.servers
for process, control in servers.values():
    control.recv()  # ("ready", ...) once its adapters are loaded
method = launch._server_context().get_start_method()
print(json.dumps({"pids": [p.pid for p, _ in servers.values()], "method": method}), flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")  # a zombie has exited
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="servers are started early on Linux only")
def test_the_servers_a_command_forked_exit_when_it_dies() -> None:
    """The command forks its early servers (they inherit its imports); each closes its copies of the
    command's ends of every server's pipe, or none would see the command die and all would live on."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVERS_OF_A_COMMAND, DIRECT_NUMPY, ALONE],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        told = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    assert told["method"] == "fork" and len(told["pids"]) == 2, told
    deadline = time.monotonic() + 20
    while not all(_gone(pid) for pid in told["pids"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in told["pids"] if not _gone(pid)]
    for pid in left:  # (not left behind by a failing test)
        os.kill(pid, signal.SIGKILL)
    assert not left, "a server outlived the command that started it"


COLLECTIONS_IN_A_COMMANDS_WORKERS = """
import gc, json, sys
from conformance import launch, runner
from conformance.cases import load_cases
gc.disable()  # as launch.main() runs the command
launch.limit_threads()
launch.start_servers([sys.argv[1]])
early = runner.prestart([sys.argv[1]])
run = runner.Runner(runner.describe([sys.argv[1]], early), prestarted=early)
outcome = run.run(load_cases([sys.argv[2]]))
print(json.dumps({"facts": outcome.framework_facts, "statuses": sorted({r.status for r in outcome.results})}))
"""


def test_the_workers_of_a_command_without_collections_collect(tmp_path: Path) -> None:
    """The command's process runs without cyclic collections; the servers it forks import without
    them and turn them back on for their workers."""
    path = tmp_path / "small.yaml"
    path.write_text(NO_HANG.split("  - id: abort-here")[0])
    proc = subprocess.run(
        [sys.executable, "-c", COLLECTIONS_IN_A_COMMANDS_WORKERS, GC_PROBE, str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    told = json.loads(proc.stdout)
    facts = told["facts"]["notes-collections"]
    assert facts == {"collecting_at_import": False, "collecting_in_worker": True}, told
    assert told["statuses"] == ["pass"], told


@pytest.mark.parametrize("fork", [True, False])
def test_a_crash_or_hang_while_judging_is_a_harness_error_of_the_adapter_judged(
    tmp_path: Path, fork: bool
) -> None:
    """Judging comes after every adapter of the job was called, so the phase file names the last
    one called: a worker that dies or hangs while judging must not charge that framework (planted:
    the judge aborts or hangs on the first adapter's results, see tests/adapters/judged_badly.py)."""
    module = "tests/adapters/judged_badly.py"
    judged, steady = f"{module}:JudgedBadly", f"{module}:SteadyAfter"
    cases = _small_cases(tmp_path, SMALL_CASES, ids=("plain", "abort-here", "hang-here", "after"))
    infos = runner.describe([judged, steady])
    assert infos[0].pool_key == infos[1].pool_key, "the two adapters share worker processes"
    outcome = runner.Runner(infos, workers=2, timeout=2, fork=fork).run(cases)
    by_case: dict[tuple[str, str], set[str]] = {}
    for r in outcome.results:
        by_case.setdefault((r.framework, r.case), set()).add(r.status)
    fine = {"pass", "unsupported"}  # (no VJP: the gradient checks are unsupported)
    assert all(by_case[("steady-after", c.id)] <= fine for c in cases), by_case
    assert by_case[("judged-badly", "plain")] <= fine and by_case[("judged-badly", "after")] <= fine
    lost = {r.case: r for r in outcome.results if r.framework == "judged-badly" and r.case.endswith("-here")}
    assert {r.status for r in lost.values()} == {"error"}, by_case
    assert lost["abort-here"].message.startswith(
        "harness error: worker process killed by signal SIGABRT while judging"
    ), lost["abort-here"].message
    assert lost["hang-here"].message == (
        "harness error: judging this case's results took over the 2 s per-case timeout"
    )


def test_the_run_loops_wait_sees_data_and_closed_ends_as_its_connections_change() -> None:
    """The run loop's poll, kept across turns: a pipe with data is ready, one without is not, a
    closed writer's reader is ready (its EOF tells of a dead worker), and a connection dropped from
    the set is never reported again even where a new one takes its descriptor's number."""
    readable = runner._Readable()
    quiet_reader, quiet_writer = multiprocessing.Pipe(duplex=False)
    busy_reader, busy_writer = multiprocessing.Pipe(duplex=False)
    assert readable.wait([quiet_reader, busy_reader], timeout=0.01) == []
    busy_writer.send("results")
    assert readable.wait([quiet_reader, busy_reader], timeout=1) == [busy_reader]
    busy_reader.recv()
    quiet_writer.close()  # its worker died
    assert readable.wait([quiet_reader, busy_reader], timeout=1) == [quiet_reader]
    quiet_reader.close()  # dropped: its descriptor's number is closed, then taken again
    assert readable.wait([busy_reader], timeout=0.01) == []
    replacement_reader, replacement_writer = multiprocessing.Pipe(duplex=False)
    assert readable.wait([busy_reader, replacement_reader], timeout=0.01) == []
    replacement_writer.send("first results")
    assert readable.wait([busy_reader, replacement_reader], timeout=1) == [replacement_reader]
    for end in (busy_reader, busy_writer, replacement_reader, replacement_writer):
        end.close()


def test_a_workers_wait_for_its_first_job_is_not_counted_and_later_waits_are(tmp_path: Path) -> None:
    """A fresh worker (a replacement, say) may wait seconds for its pool's turn at a core: that is
    no cost of the harness's, and the benchmark's "wait" column once showed 2.4 s of it."""
    import threading

    cases = _small_cases(tmp_path, ids=("plain", "after"))
    ours, theirs = multiprocessing.Pipe()
    worker = threading.Thread(target=runner._serve, args=(theirs, {}))
    worker.start()

    def job_costs(case: Case) -> dict[str, float]:
        ours.send([(pickle.dumps(case), ["torch"], None)])  # as the runner sends it: the case pickled once
        events = ours.recv()
        return next(payload for kind, _, payload in events if kind == "ended")

    try:
        time.sleep(0.3)
        first = job_costs(cases[0])
        time.sleep(0.2)
        second = job_costs(cases[1])
    finally:
        ours.send(None)
        worker.join(timeout=20)
    assert first["wait_s"] == 0.0, first
    assert second["wait_s"] >= 0.15, second


def test_results_read_back_at_the_end_name_their_framework_and_an_unreadable_job_is_an_error(
    tmp_path: Path,
) -> None:
    """The parent keeps each job's results as the worker pickled them and reads them once the run
    is over (Runner._collect): what it sets on them then is set, and one job's results that cannot
    be read are that job's harness error, not the end of the run."""
    first, second = _small_cases(tmp_path)[:2]
    run = runner.Runner(runner.describe(["torch"]), workers=1)
    run.results[(first.file, first.id, "torch")] = b"not a pickle"
    run.results[(second.file, second.id, "torch")] = pickle.dumps(
        [runner.base_result(second, "torch", "forward", "pass")]
    )
    results = run._collect([first, second], ["torch"], interrupted=False)
    lost = [r for r in results if r.case == first.id]
    assert lost and {r.status for r in lost} == {"error"}, [(r.check, r.status) for r in lost]
    assert all("results could not be read" in r.message for r in lost), lost[0].message
    (read,) = [r for r in results if r.case == second.id]
    assert (read.status, read.framework) == ("pass", "torch")
    assert read.rerun == runner.rerun_command(second, run.adapters["torch"]), read.rerun


ENDING_WITHOUT_WAITING = """
import json, resource, sys
from conformance import runner
from conformance.cases import load_cases
run = runner.Runner(runner.describe([sys.argv[1]]), workers=2)
outcome = run.run(load_cases([sys.argv[2]]))
told = [p.pid for p in run._ending]
servers = [p for p in run._ending if not isinstance(p, runner.ForkedProcess)]
run.close()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "told": told,
    "left": len(run._ending),
    "servers": [p.exitcode for p in servers],
    "workers_cpu_s": outcome.costs["cpu_s"],
    "children_cpu_s": usage.ru_utime + usage.ru_stime,
    "statuses": sorted({r.status for r in outcome.results}),
}))
"""

#: cases whose oracle (the reference cache is off) and forward keep a worker busy for a while
BUSY_CASES = """
op: conv_transpose2d
defaults: {input_shape: [2, 32, 16, 16], out_channels: 32, kernel_size: 5, stride: 2}
cases:
""" + "".join(f"  - id: busy-{i}\n    padding: {i}\n" for i in range(4))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_a_run_ends_without_waiting_and_servers_collect_their_workers_first(tmp_path: Path) -> None:
    """run() tells its workers and server to end and returns without waiting for them (the kernel
    takes 10-30 ms to free each); the server, its pipe closed, collects its workers before it exits,
    so their CPU time reaches the command (what the benchmark reads); close() leaves none behind."""
    path = tmp_path / "busy.yaml"
    path.write_text(BUSY_CASES)
    proc = subprocess.run(
        [sys.executable, "-c", ENDING_WITHOUT_WAITING, DIRECT_NUMPY, str(path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "CONFORMANCE_CACHE_DIR": "off"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    told = json.loads(proc.stdout)
    assert told["statuses"] == ["pass"], told
    assert len(told["told"]) >= 2, "run() returned with its workers and server told to end, not awaited"
    assert told["left"] == 0 and all(_gone(pid) for pid in told["told"])
    assert told["servers"] == [0], "the server ended by itself (killed, it would leave -9)"
    # every worker's CPU time (what it reported) reached this process through its server
    assert told["children_cpu_s"] >= 0.9 * told["workers_cpu_s"] > 0.2, told


def test_jobs_without_arithmetic_go_out_first_then_the_largest(tmp_path: Path, monkeypatch) -> None:
    """Cases without arithmetic (rejected, or with empty arrays) are the ones that kill workers: run
    first, their workers' replacements overlap other pools' work instead of idling the cores at the
    run's end. The rest go largest first, so that no long case is left alone at the end."""
    cases = _small_cases(tmp_path, NO_HANG + "  - id: empty-batch\n    input_shape: [0, 2, 4, 4]\n")
    handed: list[list[str]] = []
    put_back = runner._Pool.put_back

    def noted(pool, jobs):
        handed.append([case.id for case, _ in jobs])
        put_back(pool, jobs)

    monkeypatch.setattr(runner._Pool, "put_back", noted)
    run = runner.Runner(runner.describe([DIRECT_NUMPY]), workers=1)
    try:
        run.run(cases)
    finally:
        run.close()
    by_id = {c.id: c for c in cases}
    order = [by_id[i] for i in handed[0]]
    zero = [c.id for c in order if not c.work]
    assert {"empty-batch", "rejects"} <= set(zero) and [c.id for c in order[: len(zero)]] == zero, handed[0]
    rest = [c.work for c in order[len(zero) :]]
    assert rest and rest == sorted(rest, reverse=True) and all(rest), handed[0]


RUN_KILLED_DURING_A_HANG = """
import json, sys, threading, time
from conformance import runner
from conformance.cases import load_cases
run = runner.Runner(runner.describe([sys.argv[1]]), workers=1, timeout=600)
threading.Thread(target=run.run, args=(load_cases([sys.argv[2]]),), daemon=True).start()
while True:  # until the worker is in the case that hangs
    pools = list(run.pools.values())
    busy = [w for pool in pools for w in pool.workers if w.busy]
    if busy and pools[0].server is not None:
        break
    time.sleep(0.05)
time.sleep(0.5)
print(json.dumps({"server": pools[0].server.process.pid, "worker": busy[0].process.pid}), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_a_server_whose_command_died_during_a_hang_ends_and_takes_the_hung_worker_with_it(
    tmp_path: Path,
) -> None:
    """A server ends once its workers have; one hung in a framework's call while the command died
    (no one left to stop it) is killed after forkserver.END_WAIT_S, never kept alive for it."""
    path = tmp_path / "hang.yaml"
    path.write_text(SMALL_CASES.split("  - id: plain")[0] + "  - id: hang-here\n    stride: 4\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_KILLED_DURING_A_HANG, CRASHY, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        told = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while not all(_gone(pid) for pid in told.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = {name: pid for name, pid in told.items() if not _gone(pid)}
    for pid in left.values():  # (not left behind by a failing test)
        os.kill(pid, signal.SIGKILL)
    assert not left, f"outlived the command: {left}"


A_RUN_ENDING_AS_A_REPLACEMENT_STARTS = """
import sys
from conformance import runner
from conformance.cases import load_cases
run = runner.Runner(runner.describe([sys.argv[1]]), workers=1, fork=False)
spawn, started = run._spawn, []
run._spawn = lambda pool: started.append(1) or spawn(pool)
try:
    outcome = run.run(load_cases([sys.argv[2]]))
finally:
    run.close()
print(sorted((r.case, r.status) for r in outcome.results if r.check == "forward"), len(started))
"""


def test_a_worker_killed_by_the_last_case_is_not_replaced_and_the_run_ends_cleanly(tmp_path: Path) -> None:
    """The last case kills its (spawned) worker: no replacement starts for no job (a spawned one
    imports its frameworks, seconds of CPU). Were one still starting as the run ended, it would
    open its log in the run's log folder, which close() removes only once it has waited for every
    worker (never as run() returns): no traceback either way."""
    path = tmp_path / "last.yaml"
    path.write_text(SMALL_CASES.split("  - id: exit-here")[0])  # plain, then abort-here
    proc = subprocess.run(
        [sys.executable, "-c", A_RUN_ENDING_AS_A_REPLACEMENT_STARTS, CRASHY, str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "('abort-here', 'crash')" in proc.stdout and "('plain', 'pass')" in proc.stdout, proc.stdout
    assert proc.stdout.split()[-1] == "1", f"a replacement started for no job: {proc.stdout}"
    assert "Traceback" not in proc.stderr, proc.stderr
