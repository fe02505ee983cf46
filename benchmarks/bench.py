"""Benchmarks: figures printed, nothing asserted (speed targets never live in timed tests).

1. The oracle against torch float64 on a few layer shapes (time per call, ratio).
2. A whole library run, forward-only against forward + gradients, in one process run so the ratio
   is measured under the same machine load (target: full run within 2.5x of forward-only).

    python benchmarks/bench.py [--cases cases] [--framework torch] [-n 2] [--skip-library]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from conformance import oracle, runner
from conformance.cases import load_cases
from conformance.checks import ERROR_PARITY, FORWARD

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


def bench_oracle() -> None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = None
    print("oracle (float64) vs torch float64, best of 5")
    print(f"{'shape':32} {'oracle ms':>10} {'torch ms':>10} {'ratio':>7}")
    rng = np.random.default_rng(0)
    for name, xs, ws, s, p, op, g in SHAPES:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws)
        t_oracle = best_of(lambda: oracle.conv_transpose(x, w, None, s, p, op, g))
        line = f"{name:32} {t_oracle * 1e3:10.2f}"
        if torch is not None:
            fn = {3: F.conv_transpose1d, 4: F.conv_transpose2d, 5: F.conv_transpose3d}[len(ws)]
            tx, tw = torch.from_numpy(x), torch.from_numpy(w)
            t_torch = best_of(lambda: fn(tx, tw, None, s, p, op, g))
            line += f" {t_torch * 1e3:10.2f} {t_oracle / t_torch:7.1f}"
        print(line)


def bench_library(paths: list[str], frameworks: list[str], workers: int, rounds: int) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=["cases"])
    parser.add_argument("--framework", action="append", default=None)
    parser.add_argument("-n", "--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-library", action="store_true")
    args = parser.parse_args()
    bench_oracle()
    if not args.skip_library:
        bench_library(args.cases, args.framework or ["torch"], args.workers, args.rounds)


if __name__ == "__main__":
    main()
