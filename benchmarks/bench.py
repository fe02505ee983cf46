"""Benchmarks: figures printed, nothing asserted (speed targets never live in timed tests).

1. The oracle against torch float64 on a few layer shapes (time per call, ratio).
2. A whole library run, forward-only against forward + gradients, in one process run so the ratio
   is measured under the same machine load (target: full run within 2.5x of forward-only).
3. Where a run's time goes (``--phases``): whole ``conformance run`` commands as users run them,
   timed from outside, split by the command's own ``--timings`` into interpreter start-up, loading
   cases and adapters, the run (with its workers' oracle time and other check work: comparisons,
   input isolation, error attribution), baselines, document and reproducers, and each report;
   the frameworks' own calls from the records; at 1 and 2 workers and at 1x, 2x and 4x the
   library, with the oracle's reference cache cold (first run) and warm; the verdicts of every run
   of one library must be identical, or the benchmark stops. Then where the CPU went: every
   process of the command, its parent, its workers and the rest (fork servers' imports, the
   report process), the cores' idle time and the time the hypervisor gave other guests; and in
   which stretch of the command the cores sat idle (start-up, before the run, the run, the tail
   after it, the reports, the end), from /proc/stat read every 10 ms.
4. This harness against another revision's (``--against DIR``, a checkout made with
   ``git worktree add DIR REV``): the reference run by each in turn, ``--phase-rounds`` times, on
   this checkout's library; medians per harness and their ratios (these machines' speed drifts
   by tens of percent within minutes: only alternating runs tell two revisions apart).

    python benchmarks/bench.py [--cases cases] [--framework torch] [-n 2] [--skip-library]
                               [--phases] [--scales 1,2,4] [--phase-rounds 2] [--against DIR]
                               [--json reports/bench.json]
"""

from __future__ import annotations

import argparse
import bisect
import compileall
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from conformance import oracle, runner
from conformance.cases import case_files, load_cases
from conformance.checks import ERROR_PARITY, FORWARD, GRADIENTS
from conformance.reports import load_document

SHAPES = [
    # (name, x shape, weight shape, stride, padding, output_padding, groups)
    ("reference 2d 8x64x32x32->32 k4 s2", (8, 64, 32, 32), (64, 32, 4, 4), 2, 1, 0, 1),
    ("dcgan 2d 64->32 4x4 s2", (4, 64, 16, 16), (64, 32, 4, 4), 2, 1, 0, 1),
    ("unet 2d 32->16 2x2 s2", (2, 32, 32, 32), (32, 16, 2, 2), 2, 0, 0, 1),
    ("audio 1d 32->16 k16 s8", (2, 32, 256), (32, 16, 16), 8, 4, 0, 1),
    ("3d decoder 16->8 3^3 s2", (1, 16, 8, 8, 8), (16, 8, 3, 3, 3), 2, 1, 1, 1),
    ("depthwise 2d 32 g32 4x4 s2", (2, 32, 32, 32), (32, 1, 4, 4), 2, 1, 0, 32),
]


def best_of_each(fns: list, rounds: int = 3, block: int = 4) -> list[float]:
    """Each function's fastest call, of ``rounds`` blocks of ``block`` calls, the blocks taken in
    turn (f f f f, g g g g, f f f f, ...): a drift in the machine's speed weighs on all alike. Not
    call by call: the threads of one library (torch's OpenMP, NumPy's OpenBLAS) spin for a while
    after its call and slowed the other's next call down (torch's VJP to twice its time)."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, taken in zip(fns, times):
            for _ in range(block):
                start = time.perf_counter()
                fn()
                taken.append(time.perf_counter() - start)
    return [min(taken) for taken in times]


def bench_oracle() -> list[dict]:
    """The float64 oracle against torch's float64, forward and VJP (torch: forward + autograd
    backward; the oracle's VJP computes the gradients alone), both at their default thread counts."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    print("oracle (float64) vs torch float64, best of 12 calls each (3 blocks of 4, taken in turn)")
    print(f"{'shape':32} {'pass':>7} {'oracle ms':>10} {'torch ms':>10} {'ratio':>7}")
    rng = np.random.default_rng(0)
    rows = []
    for name, xs, ws, s, p, op, g in SHAPES:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        out = oracle.conv_transpose(x, w, None, s, p, op, g)
        cotangent = rng.standard_normal(out.shape)
        timed = {
            "forward": lambda: oracle.conv_transpose(x, w, None, s, p, op, g),
            "vjp": lambda: oracle.conv_transpose_vjp(x, w, None, cotangent, s, p, op, g),
        }
        for kind, call in timed.items():
            if torch is None:
                (t_oracle,) = best_of_each([call])
                rows.append({"shape": name, "pass": kind, "oracle_s": t_oracle})
                print(f"{name:32} {kind:>7} {t_oracle * 1e3:10.2f}")
                continue
            fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[len(ws)]
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            tg = torch.from_numpy(cotangent)

            def torch_vjp() -> None:
                lx, lw = tx.clone().requires_grad_(), tw.clone().requires_grad_()
                torch.autograd.grad(fn(lx, lw, None, s, p, op, g), (lx, lw), tg)

            t_oracle, t_torch = best_of_each(
                [call, torch_vjp if kind == "vjp" else lambda: fn(tx, tw, None, s, p, op, g)]
            )
            rows.append(
                {
                    "shape": name,
                    "pass": kind,
                    "oracle_s": t_oracle,
                    "torch_s": t_torch,
                    "ratio": t_oracle / t_torch,
                }
            )
            print(
                f"{name:32} {kind:>7} {t_oracle * 1e3:10.2f} {t_torch * 1e3:10.2f} {t_oracle / t_torch:7.2f}"
            )
    return rows


def bench_library(paths: list[str], frameworks: list[str], workers: int, rounds: int) -> dict:
    cases = load_cases(paths)
    infos = runner.describe(frameworks)
    print(f"\nlibrary: {len(cases)} cases x {', '.join(frameworks)}, {workers} worker(s), {rounds} round(s)")
    forward_times, full_times = [], []
    for _ in range(rounds):  # interleaved, so drift in machine load hits both alike
        start = time.perf_counter()
        forward = runner.Runner(infos, workers, checks=[FORWARD, ERROR_PARITY]).run(cases)
        forward_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        full = runner.Runner(infos, workers).run(cases)
        full_times.append(time.perf_counter() - start)
    fwd, all_ = statistics.median(forward_times), statistics.median(full_times)
    print(f"forward-only: {fwd:7.1f} s  ({len(forward.results)} results)")
    print(f"forward+grad: {all_:7.1f} s  ({len(full.results)} results)")
    print(f"ratio full / forward-only: {all_ / fwd:.2f}  (target <= 2.5)")
    return {"forward_only_s": fwd, "full_s": all_, "ratio": all_ / fwd, "results": len(full.results)}


CORES = os.cpu_count() or 1

#: the frameworks of the README's reference run (`conformance run cases --framework torch ...`)
REFERENCE_FRAMEWORKS = ["torch", "mlx", "torch.nn", "mlx.nn"]


def framework_seconds(records: list[dict]) -> float:
    """The frameworks' own call time: forward and repeatability calls each, one vjp per (case,
    adapter) (every gradient result carries the same vjp call's time)."""
    total, vjp = 0.0, {}
    for r in records:
        if r.get("duration_s") is None:
            continue
        if r["check"] in GRADIENTS:
            vjp[(r["file"], r["case"], r["framework"])] = r["duration_s"]
        else:
            total += r["duration_s"]
    return total + sum(vjp.values())


def scaled_library(paths: list[str], factor: int, into: Path) -> tuple[list[str], list[str]]:
    """Case files ``factor`` times over (copies under other file names, so other case keys) and the
    baselines beside them, for ``conformance run``. Baseline entries name cases by file
    (``conv_transpose2d.yaml::id``): each copy gets baselines naming its own files, so that a copy's
    results are judged as the original's (not failures, with reproducers and failure reports that
    the original run does not write)."""
    files = [Path(f).resolve() for f in case_files(paths)]
    originals = sorted({b for f in files for b in f.parent.glob("known_divergences*.yaml")})
    copies, baselines = [], [str(b) for b in originals]
    for k in range(factor):
        for f in files:
            target = into / (f.name if k == 0 else f"{f.stem}-copy{k}.yaml")
            shutil.copyfile(f, target)
            copies.append(str(target))
        if k == 0:
            continue
        folder = into / f"baselines-copy{k}"
        folder.mkdir()
        for baseline in originals:
            text = baseline.read_text()
            for f in files:
                text = text.replace(f"{f.name}::", f"{f.stem}-copy{k}.yaml::")
            (folder / baseline.name).write_text(text)
            baselines.append(str(folder / baseline.name))
    return copies, baselines


def _cpu_seconds(*columns: int) -> float | None:
    """The sum of /proc/stat's ``columns`` of all cores (its "cpu" line; 1 is user time) since
    boot, in core-seconds; None where that is not told."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return sum(int(fields[c]) for c in columns) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def stolen_s() -> float | None:
    """Core-seconds the hypervisor has run other guests on this machine's cores since boot
    (/proc/stat's steal); None where that is not told. A run during which it grows was not on an
    idle machine: its figures are slower than the code."""
    return _cpu_seconds(8)


def idle_s() -> float | None:
    """Core-seconds the machine's cores have been idle since boot (/proc/stat's idle and iowait);
    None where that is not told."""
    return _cpu_seconds(4, 5)


class IdleSampler:
    """The cores' idle time as a command runs, read every 10 ms on this process's clock, so that
    the idle core-seconds of any stretch of it can be told (:meth:`between`): those of start-up,
    of the run, of the tail after it and of the reports (the kernel counts in 10 ms ticks: a
    stretch's figure is good to about 0.01 core-seconds at each end)."""

    INTERVAL_S = 0.01

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> IdleSampler:
        idle = idle_s()
        if idle is not None:
            self.samples.append((time.perf_counter(), idle))  # (before anything it measures starts)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        while True:
            stopped = self._stop.wait(self.INTERVAL_S)
            idle = idle_s()
            if idle is not None:
                self.samples.append((time.perf_counter(), idle))
            if stopped:  # (the last sample after all it measures has ended)
                return

    def at(self, when: float) -> float | None:
        """The cores' idle core-seconds at ``when`` (perf_counter), between the samples around it."""
        samples = self.samples
        if len(samples) < 2 or not samples[0][0] <= when <= samples[-1][0]:
            return None
        i = bisect.bisect_left(samples, (when, -math.inf))
        (t0, i0), (t1, i1) = samples[max(i - 1, 0)], samples[min(i, len(samples) - 1)]
        return i0 if t1 == t0 else i0 + (i1 - i0) * (when - t0) / (t1 - t0)

    def between(self, start: float, end: float) -> float | None:
        a, b = self.at(start), self.at(end)
        return None if a is None or b is None else max(b - a, 0.0)


def idle_by_stretch(sampler: IdleSampler, launched: float, ended: float, inside: dict) -> dict | None:
    """The idle core-seconds of each stretch of a command: start-up (its interpreter and imports,
    until its timings began), before the run (loading cases, starting the fork servers), the run
    (to its last result read back), the tail (baselines, reproducers, document), the reports, and
    the end (its exit, the last processes collected). None where the phases' clock is not this
    one's."""
    clock, starts, phases = inside.get("clock_s"), inside.get("phase_starts_s") or {}, inside["phases_s"]
    if clock is None or "run" not in starts or not launched <= clock <= ended:
        return None
    run_start = clock + starts["run"]
    run_end = run_start + phases["run"]
    reports_start = clock + starts.get("reports", run_end - clock)
    reports_end = reports_start + phases.get("reports", 0.0)
    edges = {
        "startup": (launched, clock),
        "before_run": (clock, run_start),
        "run": (run_start, run_end),
        "tail": (run_end, reports_start),
        "reports": (reports_start, reports_end),
        "end": (reports_end, ended),
    }
    found = {name: sampler.between(a, b) for name, (a, b) in edges.items()}
    return None if any(v is None for v in found.values()) else found


def cli_run(
    case_paths: list[str],
    baselines: list[str],
    frameworks: list[str],
    workers: int,
    cache: str,
    tree: Path | None = None,
) -> dict:
    """One ``conformance run`` as a user runs it, timed from outside and, phase by phase, from inside.
    ``tree``: the checkout whose harness runs (by default the one imported from the working
    directory, this one when the benchmark runs from its root)."""
    with tempfile.TemporaryDirectory() as out:
        timings = Path(out) / "timings.json"
        command = [sys.executable, "-m", "conformance", "run", *case_paths, "-n", str(workers), "-q"]
        command += [a for f in frameworks for a in ("--framework", f)]
        command += [a for b in baselines for a in ("--known-divergences", b)]
        command += ["--report-dir", str(Path(out) / "r"), "--timings", str(timings)]
        stolen_before = stolen_s()
        env = {**os.environ, "CONFORMANCE_CACHE_DIR": cache}
        if tree is not None:  # (`-m` puts the working directory first on the path: the tree's root)
            env["PYTHONPATH"] = str(tree)
        with IdleSampler() as sampler:
            start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tree)
            ended = time.perf_counter()
        wall = ended - start
        stolen_after = stolen_s()
        # every process of the command that its parents waited for: itself, its fork servers, their
        # workers, the process writing reports aside
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"conformance run failed ({proc.returncode}): {proc.stderr[-2000:]}")
        inside = json.loads(timings.read_text())
        results = Path(out) / "r" / "results.json"
        document = load_document(results)
        records = document["results"]
        verdicts = {(r["file"], r["case"], r["framework"], r["check"]): r["status"] for r in records}
        return {
            "wall_s": wall,
            "startup_s": wall - inside["wall_s"],
            "phases_s": inside["phases_s"],
            "workers_s": inside.get("workers_s", {}),
            "framework_s": framework_seconds(records),
            "cpu_s": cpu,
            "stolen_s": None
            if stolen_before is None or stolen_after is None
            else stolen_after - stolen_before,
            "parent_cpu_s": inside.get("cpu_s"),
            "idle_by_stretch_s": idle_by_stretch(sampler, start, ended, inside),
            "results": len(records),
            "results_json_bytes": results.stat().st_size,
            "verdicts": verdicts,
        }


def bench_phases(
    paths: list[str], frameworks: list[str], workers_list: list[int], scales: list[int], rounds: int
) -> list[dict]:
    """Whole ``conformance run`` commands split into phases, at each worker count and library scale,
    with the oracle's reference cache warm (one cold run first, shown separately)."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        cache = str(Path(scratch) / "oracle-cache")
        for scale in scales:
            library = Path(scratch) / f"x{scale}"
            library.mkdir()
            case_paths, baselines = scaled_library(paths, scale, library)
            verdicts = None
            for workers in workers_list:
                runs = []
                for _ in range(rounds):
                    # copies of the library have the same content, so the same keys: only the
                    # very first run finds the cache empty
                    cold = not Path(cache).exists() or not any(Path(cache).iterdir())
                    run = cli_run(case_paths, baselines, frameworks, workers, cache)
                    run["cache"] = "cold" if cold else "warm"
                    if verdicts is not None and run["verdicts"] != verdicts:
                        raise SystemExit(f"verdicts differ between runs at {scale}x, {workers} workers")
                    verdicts = run.pop("verdicts")
                    runs.append(run)
                    if cold:  # a cold run shows what a first run costs; the figures below are warm
                        rows.append(_row(scale, workers, run))
                        run = cli_run(case_paths, baselines, frameworks, workers, cache)
                        run.pop("verdicts")
                        run["cache"] = "warm"
                        runs[-1] = run
                best = _row(scale, workers, min(runs, key=lambda r: r["wall_s"]))
                # every warm round's overhead / fw: how far the fastest one's may be from the rest
                ratios = [_row(scale, workers, r)["overhead_over_framework"] for r in runs]
                best["rounds_overhead_over_framework"] = [x for x in ratios if x is not None]
                rows.append(best)
    return rows


#: figures of a run compared between two harnesses (bench_against): medians of each
AGAINST_FIGURES = {
    "wall_s": lambda r: r["wall_s"],
    "framework_s": lambda r: r["framework_s"],
    "overhead_over_framework": lambda r: (r["wall_s"] * r["workers"] - r["framework_s"]) / r["framework_s"],
    "cpu_s": lambda r: r["cpu_s"],
    # the harness's own CPU: all processes' but the frameworks' calls
    "harness_cpu_s": lambda r: r["cpu_s"] - r["framework_s"],
    "idle_cores_s": lambda r: r["wall_s"] * CORES - r["cpu_s"],
    "parent_cpu_s": lambda r: r["parent_cpu_s"],
    "checks_other_s": lambda r: r["workers_s"]["checks_s"] - r["workers_s"]["oracle_s"] - r["framework_s"],
}


def bench_against(paths: list[str], frameworks: list[str], workers: int, rounds: int, other: Path) -> dict:
    """This checkout's harness against another's (``other``: a checkout of another revision, e.g.
    ``git worktree add /tmp/before REV``), both on this checkout's library at 1x: runs alternate
    (this, other, other, this, ...) so that drift in the machine's speed hits both alike, and each
    figure is a median. Both must give the same verdicts."""
    compileall.compile_dir(str(other / "conformance"), quiet=1)  # as an install compiles a wheel
    trees: dict[str, Path | None] = {"this": None, str(other): other}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as scratch:
        cache = str(Path(scratch) / "oracle-cache")
        library = Path(scratch) / "x1"
        library.mkdir()
        case_paths, baselines = scaled_library(paths, 1, library)
        verdicts = None
        for i in range(rounds + 1):
            order = list(trees) if i % 2 == 0 else list(trees)[::-1]
            for name in order:
                run = cli_run(case_paths, baselines, frameworks, workers, cache, trees[name])
                if verdicts is not None and run["verdicts"] != verdicts:
                    raise SystemExit(
                        f"verdicts differ between this harness and {other}: "
                        "compare the speed of harnesses that agree"
                    )
                verdicts = run.pop("verdicts")
                run["workers"] = workers
                if i:  # the first round fills each harness's oracle cache (its keys are its own)
                    runs[name].append(run)
    medians = {
        name: {figure: statistics.median(get(r) for r in done) for figure, get in AGAINST_FIGURES.items()}
        for name, done in runs.items()
    }
    print(f"\nthis checkout against {other}: 1x, {workers} workers, {rounds} alternating rounds, medians")
    labels = ("wall", "fw", "ovh/fw", "cpu", "harness cpu", "idle", "parent cpu", "checks")
    print(f"{'harness':>10} " + " ".join(f"{label:>11}" for label in labels))
    for name, figures in medians.items():
        label = "this" if name == "this" else "other"
        print(f"{label:>10} " + " ".join(f"{v:11.3f}" for v in figures.values()))
    this, that = medians["this"], medians[str(other)]
    print(
        f"{'this/other':>10} "
        + " ".join(f"{this[f] / that[f]:11.3f}" if that[f] else f"{'-':>11}" for f in AGAINST_FIGURES)
    )
    return {"other": str(other), "workers": workers, "rounds": rounds, "medians": medians, "runs": runs}


def _row(scale: int, workers: int, run: dict) -> dict:
    fw, wall = run["framework_s"], run["wall_s"]
    phases = run["phases_s"]
    # the whole reports phase: the formats' own phases overlap (some are written by a forked process)
    reports = phases.get("reports", sum(v for k, v in phases.items() if k.startswith("report ")))
    work = run["workers_s"]
    row = {
        "scale": scale,
        "workers": workers,
        "cache": run["cache"],
        "results": run["results"],
        "wall_s": wall,
        "framework_s": fw,
        "overhead_s": wall * workers - fw,
        "overhead_over_framework": (wall * workers - fw) / fw if fw else None,
        "startup_s": run["startup_s"],
        "load_s": phases.get("load cases", 0.0),
        "describe_s": phases.get("describe adapters", 0.0),
        "run_s": phases.get("run", 0.0),
        "oracle_s": work.get("oracle_s"),
        "checks_other_s": None if not work else work["checks_s"] - work["oracle_s"] - fw,
        # worker time outside the checks: the fork server's imports, inter-process traffic, waiting
        "workers_outside_checks_s": None if not work else phases.get("run", 0.0) * workers - work["checks_s"],
        # inter-process traffic: workers sending results (blocked while the parent reads others),
        # and waiting for their next job
        "send_s": work.get("send_s"),
        "wait_s": work.get("wait_s"),
        "baselines_s": phases.get("baselines", 0.0),
        "reproducers_s": phases.get("reproducers", 0.0),
        "document_s": phases.get("document", 0.0),
        "reports_s": reports,
        "report_phases_s": {k[len("report ") :]: v for k, v in phases.items() if k.startswith("report ")},
        "results_json_bytes": run["results_json_bytes"],
        # where the CPU went, in core-seconds: every process of the command; the parent (start-up,
        # loading, handing out jobs and receiving results, baselines, document, its reports); the
        # workers (the frameworks' calls and the checks around them); the rest: the fork servers
        # importing their frameworks, the process writing reports aside, workers replaced after a
        # crash; and the cores' idle time (wall x the machine's cores - CPU)
        "cpu_s": run["cpu_s"],
        "parent_cpu_s": run["parent_cpu_s"],
        "workers_cpu_s": work.get("cpu_s"),
        "other_cpu_s": (
            run["cpu_s"] - run["parent_cpu_s"] - work["cpu_s"]
            if run["parent_cpu_s"] is not None and work.get("cpu_s") is not None
            else None
        ),
        # of other_cpu_s, the fork servers' imports of the frameworks (torch's own import, and the
        # modules its first backward pass imports): what any program using them pays once
        "imports_cpu_s": work.get("imports_cpu_s"),
        "idle_cores_s": wall * CORES - run["cpu_s"],
        # the machine's idle core-seconds in each stretch of the command (IdleSampler); None
        # where /proc/stat or the command's clock cannot tell
        "idle_by_stretch_s": run.get("idle_by_stretch_s"),
        # the cores' time the hypervisor gave other guests during the run (0 on an idle machine)
        "stolen_s": run["stolen_s"],
    }
    print(
        f"{scale:>4}x {workers:>3} {row['cache']:>5} {row['results']:>7} {wall:7.2f} {fw:6.2f} "
        f"{row['overhead_s']:7.2f} {row['overhead_over_framework']:6.2f} {row['startup_s']:6.2f} "
        f"{row['load_s'] + row['describe_s']:6.2f} {row['run_s']:6.2f} "
        f"{_num(row['oracle_s'])} {_num(row['checks_other_s'])} {_num(row['send_s'])} "
        f"{_num(row['wait_s'])} {row['baselines_s']:6.2f} "
        f"{row['document_s'] + row['reproducers_s']:6.2f} {reports:6.2f} "
        f"{row['results_json_bytes'] / 1e6:6.2f}",
        flush=True,
    )
    return row


def print_cpu(rows: list[dict]) -> None:
    print(
        "\nwhere the CPU goes (core-seconds): all processes; the parent; the workers (the frameworks'"
        "\nown calls, fw, and the checks around them); the fork servers importing the frameworks"
        "\n(imports); the rest (the report process, replaced workers); idle = wall x"
        f" {CORES} cores - CPU (stolen: of the\ncores' time, what the hypervisor gave other guests: 0"
        " on an idle machine); and overhead / fw\nwith the frameworks' imports counted as theirs"
    )
    print(f"{'scale':>5} {'n':>3} {'cache':>5} {'wall':>7} {'cpu':>6} {'parent':>6} {'workers':>7} {'fw':>6} "
          f"{'imports':>7} {'rest':>6} {'idle':>6} {'stolen':>6} {'ovh-imp/fw':>10}")  # fmt: skip
    for row in rows:
        imports, other = row.get("imports_cpu_s"), row["other_cpu_s"]
        rest = None if imports is None or other is None else other - imports
        beyond = None if imports is None else (row["overhead_s"] - imports) / row["framework_s"]
        print(
            f"{row['scale']:>4}x {row['workers']:>3} {row['cache']:>5} {row['wall_s']:7.2f} "
            f"{row['cpu_s']:6.2f} {_num(row['parent_cpu_s'])} {_num(row['workers_cpu_s']):>7} "
            f"{row['framework_s']:6.2f} {_num(imports):>7} {_num(rest)} {row['idle_cores_s']:6.2f} "
            f"{_num(row['stolen_s'])} {_num(beyond):>10}"
        )


def print_idle(rows: list[dict]) -> None:
    """Where the idle core-seconds lie: in which stretch of the command the cores waited."""
    rows = [row for row in rows if row.get("idle_by_stretch_s")]
    if not rows:
        return
    stretches = list(rows[0]["idle_by_stretch_s"])
    print(
        "\nwhere the cores sat idle (core-seconds, from /proc/stat every 10 ms): start-up (the"
        "\ncommand's interpreter and imports), before the run (cases loaded, fork servers started),"
        "\nthe run (to the last result read back), the tail (baselines, document), the reports, the"
        "\nend (the command's exit)"
    )
    print(f"{'scale':>5} {'n':>3} {'cache':>5} " + " ".join(f"{name:>10}" for name in stretches))
    for row in rows:
        idle = row["idle_by_stretch_s"]
        print(
            f"{row['scale']:>4}x {row['workers']:>3} {row['cache']:>5} "
            + " ".join(f"{idle[name]:10.2f}" for name in stretches)
        )


def criteria(figures: dict, workers: int) -> list[tuple[str, str, bool]]:
    """Issue 14's targets, as this machine's figures say them: (target, measured, met here).
    The run's figures are those of the reference run at 1x with ``workers`` workers and a warm
    oracle cache: the medians of ``--against`` where it ran, else the fastest of ``--phases``."""
    found = []
    reference = [r for r in figures.get("oracle", []) if r["shape"].startswith("reference") and "ratio" in r]
    if reference:
        worst = max(r["ratio"] for r in reference)
        shown = ", ".join(f"{r['pass']} {r['ratio']:.2f}" for r in reference)
        found.append(("oracle <= 0.5x torch float64, reference layer", shown, worst <= 0.5))
    run = None
    if "against" in figures:
        run = dict(figures["against"]["medians"]["this"], source="medians of --against")
    else:
        rows = [
            r
            for r in figures.get("phases", [])
            if (r["scale"], r["workers"], r["cache"]) == (1, workers, "warm")
        ]
        if rows:
            run = dict(rows[0], source="fastest of --phases")
    if run is not None:
        ratio = run["overhead_over_framework"]
        rounds = run.get("rounds_overhead_over_framework") or []
        spread = (
            f" (rounds {min(rounds):.2f}-{max(rounds):.2f}, median {statistics.median(rounds):.2f})"
            if len(rounds) > 1
            else ""
        )
        found.append(
            (
                f"overhead <= framework time ({run['source']})",
                f"{ratio:.2f} x {run['framework_s']:.2f} s{spread}",
                ratio <= 1,
            )
        )
        found.append(("wall <= 6 s (on an idle machine)", f"{run['wall_s']:.2f} s", run["wall_s"] <= 6))
        if "results_json_bytes" in run:
            size = run["results_json_bytes"] / 1e6
            found.append(("results.json <= 6 MB", f"{size:.2f} MB", size <= 6))
    return found


def print_criteria(found: list[tuple[str, str, bool]]) -> None:
    if not found:
        return
    print("\nissue 14's targets on this machine")
    for target, measured, met in found:
        print(f"  {'met    ' if met else 'NOT met'}  {target:58} {measured}")


def _num(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.2f}"


PHASE_HEADER = (
    f"{'scale':>5} {'n':>3} {'cache':>5} {'results':>7} {'wall':>7} {'fw':>6} {'ovhd':>7} {'ovh/fw':>6} "
    f"{'start':>6} {'load':>6} {'run':>6} {'oracle':>6} {'checks':>6} {'send':>6} {'wait':>6} "
    f"{'basel':>6} {'doc':>6} "
    f"{'reports':>6} {'MB':>6}"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=["cases"])
    parser.add_argument("--framework", action="append", default=None)
    parser.add_argument("-n", "--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-library", action="store_true")
    parser.add_argument("--phases", action="store_true", help="where a run's time goes (slow: many runs)")
    parser.add_argument("--scales", default="1,2,4", help="library multiples for --phases")
    parser.add_argument(
        "--phase-rounds", type=int, default=2, help="runs per --phases row (the fastest is shown)"
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="a checkout of another revision (git worktree add DIR REV): its harness and this one "
        "run the reference run in turn, --phase-rounds times each, and their medians are compared",
    )
    parser.add_argument("--json", default="reports/bench.json", help="where the figures are written")
    args = parser.parse_args()
    frameworks = args.framework or ["torch"]
    # --phases measures the reference run of the README (and of issue 14) unless told otherwise
    phase_frameworks = args.framework or REFERENCE_FRAMEWORKS
    figures: dict = {"frameworks": frameworks, "phase_frameworks": phase_frameworks, "cases": args.cases}
    figures["oracle"] = bench_oracle()
    if not args.skip_library:
        figures["library"] = bench_library(args.cases, frameworks, args.workers, args.rounds)
    if args.phases:
        print(
            f"\nwhere a run's time goes ({', '.join(phase_frameworks)}): wall (seconds, measured outside),"
            "\nthe frameworks' own calls (fw),"
            "\noverhead = wall x workers - fw; phases inside the command: interpreter start-up, loading cases"
            "\nand adapters, the run (its workers' oracle and other check work, results sent and"
            "\nwaits for the next job after the first, summed over workers: not idle cores, since a"
            "\npool's worker also waits while another pool's runs on its core; idle is in the CPU table),"
            "\nbaselines, document and reproducers, reports; results.json size"
        )
        print(PHASE_HEADER)
        scales = [int(s) for s in args.scales.split(",")]
        workers = sorted({1, args.workers})
        figures["phases"] = bench_phases(args.cases, phase_frameworks, workers, scales, args.phase_rounds)
        print_cpu(figures["phases"])
        print_idle(figures["phases"])
    if args.against:
        figures["against"] = bench_against(
            args.cases, phase_frameworks, args.workers, args.phase_rounds, args.against.resolve()
        )
    found = criteria(figures, args.workers)
    figures["criteria"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in found]
    print_criteria(found)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(figures, indent=1))
    print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
