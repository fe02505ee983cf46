"""Where a command's wall time went, phase by phase (``conformance run --timings FILE``), for the
benchmark (``nox -s bench``) to read: nothing here decides a verdict."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Timings:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.starts: dict[str, float] = {}  # each phase's first start, in seconds after `started`
        self.workers: dict[str, float] = {}  # seconds the workers spent, summed over them

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self.starts.setdefault(name, start - self.started)
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start

    def as_dict(self) -> dict[str, object]:
        return {
            "wall_s": time.perf_counter() - self.started,
            # time.perf_counter() as these timings began: on Linux the monotonic clock every
            # process reads alike, so that the benchmark can place the phases on its own clock
            "clock_s": self.started,
            "phases_s": dict(self.phases),
            "phase_starts_s": dict(self.starts),
            "workers_s": dict(self.workers),
            # this process's CPU seconds (user + system), start-up included; the workers' own are
            # in workers_s (cpu_s)
            "cpu_s": time.process_time(),
        }

    def write(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.as_dict(), indent=1) + "\n", encoding="utf-8")


@contextmanager
def maybe(timings: Timings | None, name: str) -> Iterator[None]:
    """``timings.phase(name)``, or nothing when no timings are kept."""
    if timings is None:
        yield
    else:
        with timings.phase(name):
            yield
