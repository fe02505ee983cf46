"""Who raised: the framework under test or the adapter's own code, for raises a traceback shows
and for raises of C functions called straight from adapter code (which leave no frame)."""

from __future__ import annotations

import importlib.metadata
import math
import sys

import numpy as np
import pytest

from conformance.attribution import ADAPTER, FRAMEWORK, Attributor, _distribution_modules


class _MathFramework:
    """An adapter whose framework is the C module ``math``."""

    framework_modules = ("math",)


def framework_c_raises() -> float:
    return math.sqrt(-1.0)  # a C function of the framework, called from adapter code


def other_c_raises() -> np.ndarray:
    return np.arange(6).reshape(4, 4)  # NumPy's C code: not the framework


def adapter_raises() -> None:
    raise KeyError("rank 5")  # the adapter's own statement


class Flaky:
    """Raises through the framework on the first call only."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return math.sqrt(-1.0 if self.calls == 1 else 1.0)


@pytest.mark.parametrize(
    ("fn", "raised_by"),
    [(framework_c_raises, FRAMEWORK), (other_c_raises, ADAPTER), (adapter_raises, ADAPTER)],
    ids=["framework-c-function", "other-c-function", "adapter-statement"],
)
def test_a_raise_is_attributed_to_who_raised_it(fn, raised_by: str) -> None:
    outcome = Attributor(_MathFramework()).call(fn)
    assert outcome.exception is not None
    assert outcome.raised_by == raised_by, f"{fn.__name__}: {outcome}"
    if raised_by == ADAPTER:
        assert "test_attribution.py:" in outcome.where, outcome.where


def test_a_call_that_raises_once_only_is_taken_as_the_frameworks() -> None:
    flaky = Flaky()
    outcome = Attributor(_MathFramework()).call(flaky)
    assert isinstance(outcome.exception, ValueError) and outcome.raised_by == FRAMEWORK
    assert flaky.calls == 2, "the raise was looked at again, under the profile hook"


def test_calls_that_return_run_once_and_unwatched() -> None:
    import sys

    seen: list[object] = []

    def returns() -> float:
        seen.append(sys.getprofile())
        return math.sqrt(4.0)

    outcome = Attributor(_MathFramework()).call(returns)
    assert outcome.value == 2.0 and outcome.exception is None and outcome.seconds >= 0
    assert seen == [None], "no profile hook slows a call that returns"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's mapping reads top_level.txt only")
def test_a_distributions_modules_are_those_packages_distributions_maps_to_it() -> None:
    """Read from the one distribution (not from every installed one's metadata, as the standard
    mapping is built), every installed distribution's modules are what that mapping gives it."""
    mapping = importlib.metadata.packages_distributions()
    names = {dist.metadata["Name"] for dist in importlib.metadata.distributions()}
    assert {"numpy", "pytest"} <= names
    for name in sorted(names):
        wanted = name.lower().replace("_", "-")
        expected = sorted(
            module
            for module, dists in mapping.items()
            if any(d.lower().replace("_", "-") == wanted for d in dists)
            and module not in ("tests", "test")
            and not module.startswith("_")
        )
        assert list(_distribution_modules(name)) == expected, name
    assert "numpy" in _distribution_modules("numpy")
    assert _distribution_modules("no-such-distribution-here") == ()
