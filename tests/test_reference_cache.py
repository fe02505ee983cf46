"""The oracle's reference arrays on disk: read back bit for bit, never stale, never fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conformance import reference_cache
from conformance.cases import Tolerance, load_cases
from conformance.checks import GRADIENTS, STORED, Reference

LIBRARY = Path(__file__).resolve().parent.parent / "cases"


def _sample() -> list:
    cases = [c for c in load_cases([LIBRARY]) if c.expect == "ok"]
    wanted = (
        "dtypebfloat16", "empty-batch", "nobias", "unbatched", "asym", "grouped", "3d", "channels_last",
        "layout-2d-strided",
    )  # fmt: skip
    picked = {c.id: c for c in cases[:5]}
    for fragment in wanted:
        matching = [c for c in cases if fragment in c.id]
        assert matching, f"the library has no valid case with {fragment!r} in its id"
        picked.update({c.id: c for c in matching[:2]})
    return list(picked.values())


SAMPLE = _sample()


INPUTS = ("x", "weight", "bias", "cotangent")


def _arrays(ref: Reference) -> dict[str, np.ndarray | None]:
    return {
        "x": ref.inputs.x,
        "weight": ref.inputs.weight,
        "bias": ref.inputs.bias,
        "cotangent": ref.cotangent,
        "output": ref.output,
        "bound": ref.bound,
        **{g: ref.gradients[g] for g in GRADIENTS},
        **{f"bound_{g}": ref.gradient_bounds[g] for g in GRADIENTS},
    }


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(reference_cache.ENV, str(tmp_path / "oracle"))
    return tmp_path / "oracle"


def _assert_identical(got: dict, want: dict, case_id: str) -> None:
    __tracebackhide__ = True
    for name, array in want.items():
        if array is None:
            assert got[name] is None, f"{case_id}: {name} should be absent"
            continue
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, f"{case_id}: {name}"
        assert np.array_equal(got[name], array, equal_nan=True), f"{case_id}: {name} differs when cached"
        assert got[name].tobytes() == array.tobytes(), f"{case_id}: {name} not bit for bit"
        if name in INPUTS:  # what adapters are handed keeps its layout (the oracle's arrays need none)
            assert got[name].strides == array.strides, f"{case_id}: {name} has other strides when cached"


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: c.id)
def test_cached_arrays_are_the_computed_ones_bit_for_bit(case, cache: Path, monkeypatch) -> None:
    monkeypatch.setenv(reference_cache.ENV, "off")
    computed = _arrays(Reference(case))
    monkeypatch.setenv(reference_cache.ENV, str(cache))
    first = _arrays(Reference(case))  # computes and writes
    assert len(list(cache.iterdir())) == 1, "one file for all of a case's arrays"
    second = _arrays(Reference(case))  # reads
    _assert_identical(first, computed, case.id)
    _assert_identical(second, computed, case.id)


def _targets(ref: Reference) -> dict[str, tuple]:
    checks = ["forward", *(g for g in GRADIENTS if ref.gradients[g] is not None)]
    return {
        c: (t.tolerance.tobytes(), t.magnitude.tobytes(), t.positive, t.scale, t.values.tobytes())
        for c, t in ((c, ref.target(c)) for c in checks)
    }


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: c.id)
def test_targets_from_the_stored_facts_are_the_computed_ones(case, cache: Path, monkeypatch) -> None:
    """A target read back (its tolerance's scale and which divisors are positive stored beside the
    arrays) is the target worked out from the arrays, bit for bit."""
    monkeypatch.setenv(reference_cache.ENV, "off")
    computed = _targets(Reference(case))
    monkeypatch.setenv(reference_cache.ENV, str(cache))
    assert _targets(Reference(case)) == computed  # computes and writes
    assert _targets(Reference(case)) == computed, f"{case.id}: a target read back differs"


def _path(cache: Path, case) -> str:
    return reference_cache.path_of(cache, case, "reference", STORED)


def test_stored_targets_are_used(cache: Path) -> None:
    """A target read back is made of the stored divisors and facts, not worked out again."""
    case = SAMPLE[0]
    right = Reference(case).target("forward")
    arrays = reference_cache._read(_path(cache, case), STORED)
    assert arrays is not None, "the case's file was written"
    planted = np.array(arrays["divisors_forward"])
    planted[0] *= 2  # the tolerance
    facts = np.array(arrays["target_facts"])
    facts[0, 0] *= 3  # the forward target's scale
    reference_cache._write(
        _path(cache, case), STORED, {**arrays, "divisors_forward": planted, "target_facts": facts}
    )
    read = Reference(case).target("forward")
    assert np.array_equal(read.tolerance, 2 * right.tolerance)
    assert read.scale == 3 * right.scale


def test_the_cache_is_used_and_a_new_oracle_version_ignores_it(cache: Path, monkeypatch) -> None:
    case = SAMPLE[0]
    right = Reference(case).output
    # plant wrong arrays under this oracle version's key: they are read back (the cache is used) ...
    arrays = reference_cache._read(_path(cache, case), STORED)
    reference_cache._write(_path(cache, case), STORED, {**arrays, "output": right + 1.0})
    assert np.array_equal(Reference(case).output, right + 1.0)
    # ... and a change to the oracle's code (a new version) never sees them
    monkeypatch.setattr(reference_cache, "oracle_version", lambda: "another-oracle")
    assert np.array_equal(Reference(case).output, right)


def test_arrays_read_back_are_aligned_and_read_only(cache: Path) -> None:
    case = next(c for c in SAMPLE if "dtypebfloat16" in c.id)
    assert Reference(case).output is not None  # computes and writes
    arrays = reference_cache._read(_path(cache, case), STORED)
    assert arrays is not None
    for name, array in arrays.items():
        if array is not None and array.size:
            assert array.ctypes.data % 16 == 0, f"{name} is not aligned"
            assert not array.flags.writeable, f"{name} can be written into"


def test_a_file_of_another_layout_is_not_read(cache: Path) -> None:
    case = SAMPLE[0]
    right = Reference(case).output
    path = Path(_path(cache, case))
    content = path.read_bytes()
    older = b"conformance-oracle-3\n" + content[len(reference_cache.MAGIC) :]  # an older format's magic
    path.write_bytes(older)
    assert np.array_equal(Reference(case).output, right)
    assert path.read_bytes() == content, "the file is written again"
    assert reference_cache._read(str(path), STORED[:-1]) is None, "a file holds one list of arrays"
    assert _path(cache, case) != reference_cache.path_of(cache, case, "reference", STORED[:-1])


def test_keys_follow_what_decides_the_arrays() -> None:
    import dataclasses

    case = SAMPLE[0]
    key = reference_cache.case_key(case, "forward")
    assert reference_cache.case_key(dataclasses.replace(case, id="renamed", tags=("x",)), "forward") == key
    changes = (
        {"seed": case.seed + 1}, {"values": "integers"}, {"dtype": "float64"},
        {"tolerance": Tolerance(factor=2.0)},  # (not the arrays: the facts stored beside them)
    )  # fmt: skip
    for change in changes:
        assert reference_cache.case_key(dataclasses.replace(case, **change), "forward") != key, change
    assert reference_cache.case_key(case, "vjp") != key


def test_keys_follow_the_blas_thread_count(monkeypatch) -> None:
    """The float64 oracle's last bits change with NumPy's BLAS thread count: arrays computed at one
    count (a test at the machine's default) are never read at another (a run's one-thread workers)."""
    case = SAMPLE[0]
    keys = {}
    for setting in ({}, {"OMP_NUM_THREADS": "1"}, {"OMP_NUM_THREADS": "2"}, {"OPENBLAS_NUM_THREADS": "2"}):
        for variable in reference_cache.BLAS_THREAD_VARIABLES:
            monkeypatch.delenv(variable, raising=False)
        for variable, value in setting.items():
            monkeypatch.setenv(variable, value)
        reference_cache.oracle_version.cache_clear()
        keys[str(setting)] = reference_cache.case_key(case, "forward")
    reference_cache.oracle_version.cache_clear()
    # (OPENBLAS_NUM_THREADS=2 and OMP_NUM_THREADS=2 ask for the same count, but are told apart)
    assert len(set(keys.values())) == len(keys), keys


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_file_is_computed_again(cache: Path, damage: str) -> None:
    case = SAMPLE[0]
    want = Reference(case).output
    path = Path(_path(cache, case))
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00" * 64, "empty": b""}[damage])
    assert np.array_equal(Reference(case).output, want)
    assert path.read_bytes() == data, "the damaged file is written again"


def test_cache_off_or_unwritable_costs_nothing_but_the_cache(tmp_path: Path, monkeypatch) -> None:
    case = SAMPLE[0]
    monkeypatch.setenv(reference_cache.ENV, "off")
    want = Reference(case).output
    assert reference_cache.cache_dir() is None
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(reference_cache.ENV, str(blocker / "oracle"))  # mkdir fails: no cache, same values
    assert np.array_equal(Reference(case).output, want)


def test_a_loaded_case_takes_its_keys_fields_to_a_worker() -> None:
    """The text a key hashes is worked out as a valid case is loaded and pickled with it, so a
    worker reads it instead of working it out between two framework calls."""
    import pickle

    case = SAMPLE[0]
    assert "reference_fields" in vars(case), "worked out at load"
    sent = pickle.loads(pickle.dumps(case))
    assert vars(sent)["reference_fields"] == case.reference_fields
    assert reference_cache.case_key(sent, "reference") == reference_cache.case_key(case, "reference")
