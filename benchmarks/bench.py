"""Benchmarks: figures printed, nothing asserted (speed targets never live in timed tests).

1. The oracle against torch float64 on a few layer shapes (time per call, ratio).
2. A whole library run, forward-only against forward + gradients, in one process run so the ratio
   is measured under the same machine load (target: full run within 2.5x of forward-only).
3. Where a run's time goes (``--phases``): the frameworks' own calls, the oracle, the rest of the
   checks (comparisons, input isolation, error attribution, repeatability's second call), worker
   start-up and inter-process traffic, the results document, the reports and the reproducers, as
   shares of wall time x workers; at 1 and 2 workers and at 1x, 2x and 4x the library.

    python benchmarks/bench.py [--cases cases] [--framework torch] [-n 2] [--skip-library]
                               [--phases] [--scales 1,2,4] [--json reports/bench.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from conformance import divergences, oracle, reproducer, runner
from conformance.adapters import load_adapter
from conformance.cases import Case, load_cases
from conformance.checks import ERROR_PARITY, FORWARD, GRADIENTS, Reference, run_checks
from conformance.reports import write_reports
from conformance.results import make_document

SHAPES = [
    # (name, x shape, weight shape, stride, padding, output_padding, groups)
    ("dcgan 2d 64->32 4x4 s2", (4, 64, 16, 16), (64, 32, 4, 4), 2, 1, 0, 1),
    ("unet 2d 32->16 2x2 s2", (2, 32, 32, 32), (32, 16, 2, 2), 2, 0, 0, 1),
    ("audio 1d 32->16 k16 s8", (2, 32, 256), (32, 16, 16), 8, 4, 0, 1),
    ("3d decoder 16->8 3^3 s2", (1, 16, 8, 8, 8), (16, 8, 3, 3, 3), 2, 1, 1, 1),
    ("depthwise 2d 32 g32 4x4 s2", (2, 32, 32, 32), (32, 1, 4, 4), 2, 1, 0, 32),
]


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_oracle() -> list[dict]:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    print("oracle (float64) vs torch float64, best of 5")
    print(f"{'shape':32} {'oracle ms':>10} {'torch ms':>10} {'ratio':>7}")
    rng = np.random.default_rng(0)
    rows = []
    for name, xs, ws, s, p, op, g in SHAPES:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        t_oracle = best_of(lambda: oracle.conv_transpose(x, w, None, s, p, op, g))
        line = f"{name:32} {t_oracle * 1e3:10.2f}"
        rows.append({"shape": name, "oracle_s": t_oracle})
        if torch is not None:
            fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[len(ws)]
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            t_torch = best_of(lambda: fn(tx, tw, None, s, p, op, g))
            line += f" {t_torch * 1e3:10.2f} {t_oracle / t_torch:7.1f}"
            rows[-1].update(torch_s=t_torch, ratio=t_oracle / t_torch)
        print(line)
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


def framework_seconds(results) -> float:
    """The frameworks' own call time: forward and repeatability calls each, one vjp per (case,
    adapter) (every gradient result carries the same vjp call's time)."""
    total, vjp = 0.0, {}
    for r in results:
        if r.duration_s is None:
            continue
        if r.check in GRADIENTS:
            vjp[(r.file, r.case, r.framework)] = r.duration_s
        else:
            total += r.duration_s
    return total + sum(vjp.values())


def scaled(cases: list[Case], factor: int) -> list[Case]:
    """The library ``factor`` times over, each copy under new ids (same configurations)."""
    return [dataclasses.replace(c, id=f"{c.id}~{k}") if k else c for k in range(factor) for c in cases]


def in_process_breakdown(cases: list[Case], frameworks: list[str]) -> dict[str, float]:
    """One process, no workers: the oracle's time and the checks' own time beside the frameworks'."""
    adapters = [load_adapter(f) for f in frameworks]
    oracle_s = checks_s = 0.0
    results = []
    for case in cases:
        ref = Reference(case)
        start = time.perf_counter()
        if case.expect != "error":
            ref.output, ref.bound, ref.gradients, ref.gradient_bounds  # noqa: B018 - computes the cache
        oracle_s += time.perf_counter() - start
        for adapter in adapters:
            start = time.perf_counter()
            results.extend(run_checks(case, adapter, ref))
            checks_s += time.perf_counter() - start
    fw = framework_seconds(results)
    return {"oracle_s": oracle_s, "framework_s": fw, "checks_other_s": checks_s - fw}


def bench_phases(
    paths: list[str], frameworks: list[str], workers_list: list[int], scales: list[int]
) -> list[dict]:
    """Wall time of whole runs split into phases, at each worker count and library scale."""
    base = load_cases(paths)
    known = [
        d
        for p in sorted(Path(paths[0]).glob("known_divergences*.yaml"))
        for d in divergences.load_divergences(p)
    ]
    rows = []
    for scale in scales:
        cases = scaled(base, scale)
        for workers in workers_list:
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                outcome = runner.Runner(runner.describe(frameworks), workers).run(cases)
                run_s = time.perf_counter() - start
                facts = divergences.run_facts(outcome.frameworks, outcome.framework_facts)
                applied = divergences.apply(outcome.results, known, report_stale=False, facts=facts)
                start = time.perf_counter()
                reproducer.write_all(
                    outcome.results, {(c.file, c.id): c for c in cases}, outcome.frameworks, out
                )
                repro_s = time.perf_counter() - start
                start = time.perf_counter()
                document = make_document(
                    outcome.results,
                    outcome.frameworks,
                    applied.warnings,
                    framework_facts=outcome.framework_facts,
                )
                document_s = time.perf_counter() - start
                start = time.perf_counter()
                paths_written = write_reports(document, out)
                reports_s = time.perf_counter() - start
                sizes = {name: Path(p).stat().st_size for name, p in paths_written.items()}
            fw = framework_seconds(outcome.results)
            wall = run_s + repro_s + document_s + reports_s
            rows.append(
                {
                    "scale": scale,
                    "workers": workers,
                    "cases": len(cases),
                    "results": len(outcome.results),
                    "wall_s": wall,
                    "run_s": run_s,
                    "framework_s": fw,
                    "overhead_s": wall * workers - fw,
                    "overhead_over_framework": (wall * workers - fw) / fw if fw else None,
                    "reproducers_s": repro_s,
                    "document_s": document_s,
                    "reports_s": reports_s,
                    "report_bytes": sizes,
                }
            )
            r = rows[-1]
            print(
                f"{scale:>5}x {workers:>7} {r['results']:>8} {wall:8.1f} {fw:8.1f} {r['overhead_s']:9.1f} "
                f"{r['overhead_over_framework']:8.2f} {repro_s:7.1f} {document_s:7.1f} {reports_s:7.1f}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=["cases"])
    parser.add_argument("--framework", action="append", default=None)
    parser.add_argument("-n", "--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-library", action="store_true")
    parser.add_argument("--phases", action="store_true", help="where a run's time goes (slow: many runs)")
    parser.add_argument("--scales", default="1,2,4", help="library multiples for --phases")
    parser.add_argument("--json", default="reports/bench.json", help="where the figures are written")
    args = parser.parse_args()
    frameworks = args.framework or ["torch"]
    figures: dict = {"frameworks": frameworks, "cases": args.cases}
    figures["oracle"] = bench_oracle()
    if not args.skip_library:
        figures["library"] = bench_library(args.cases, frameworks, args.workers, args.rounds)
    if args.phases:
        cases = load_cases(args.cases)
        breakdown = in_process_breakdown(cases, frameworks)
        figures["in_process"] = breakdown
        print(
            "\nin one process: oracle {oracle_s:.1f} s, frameworks {framework_s:.1f} s, "
            "other check work (compare, isolation, attribution) {checks_other_s:.1f} s".format(**breakdown)
        )
        print(
            f"\n{'scale':>6} {'workers':>7} {'results':>8} {'wall s':>8} {'fw s':>8} {'overhd s':>9} "
            f"{'ovh/fw':>8} {'repro':>7} {'doc':>7} {'reports':>7}"
        )
        scales = [int(s) for s in args.scales.split(",")]
        figures["phases"] = bench_phases(args.cases, frameworks, sorted({1, args.workers}), scales)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(figures, indent=1))
    print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
