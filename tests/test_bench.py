"""The benchmark's own arithmetic: where a command's idle core-seconds lie (benchmarks/bench.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench


def sampler_of(samples: list[tuple[float, float]]) -> bench.IdleSampler:
    sampler = bench.IdleSampler()
    sampler.samples = samples
    return sampler


def test_idle_between_two_times_is_read_between_the_samples_around_them() -> None:
    # the cores idle at 2 core-seconds a second until t=10, then at 0.5 (one core busy, half the other)
    sampler = sampler_of([(t / 10, 0.2 * t if t <= 100 else 20 + 0.05 * (t - 100)) for t in range(0, 201)])
    assert sampler.between(2.0, 4.0) == pytest.approx(4.0)
    assert sampler.between(9.5, 10.5) == pytest.approx(1.0 + 0.25)
    assert sampler.between(12.34, 12.34) == pytest.approx(0.0)
    assert sampler.between(-1.0, 3.0) is None and sampler.between(3.0, 25.0) is None  # not sampled


def test_idle_by_stretch_places_the_commands_phases_on_the_samplers_clock() -> None:
    # one idle core-second a second throughout: each stretch's idle time is its length
    sampler = sampler_of([(t / 100, t / 100) for t in range(0, 1001)])
    inside = {
        "clock_s": 1.0,  # the command's timings began 1 s after its launch (at 0)
        "phase_starts_s": {"load cases": 0.1, "run": 0.5, "baselines": 5.5, "reports": 6.0},
        "phases_s": {"load cases": 0.2, "run": 5.0, "baselines": 0.1, "reports": 1.5},
    }
    found = bench.idle_by_stretch(sampler, 0.0, 9.0, inside)
    expected = {"startup": 1.0, "before_run": 0.5, "run": 5.0, "tail": 0.5, "reports": 1.5, "end": 0.5}
    assert found == pytest.approx(expected), found
    assert bench.idle_by_stretch(sampler, 0.0, 9.0, {**inside, "clock_s": None}) is None
    assert bench.idle_by_stretch(sampler, 0.0, 9.0, {**inside, "clock_s": 50.0}) is None  # another clock's
