"""Case files and baselines as loaded, kept between runs: read back as they were loaded, never
stale, never holding a bad file, never fatal."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from conformance import cases, divergences, library, loaded_files, reference_cache
from conformance.cases import CaseFileError

LIBRARY = Path(__file__).resolve().parent.parent / "cases"

SMALL = """
op: conv_transpose2d
defaults: {input_shape: [1, 2, 4, 4], out_channels: 2, kernel_size: 3}
cases:
  - {id: plain}
  - {id: strided, stride: 2, matrix: {padding: [0, 1]}}
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(reference_cache.ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "files"


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.pickle")) if cache.exists() else []


def _fields(loaded: list[cases.Case]) -> list[tuple]:
    """Each case with what it worked out as it was loaded (kept with it, so compared too)."""
    return [(c, c.reference_fields, c.expected_shape, c.work) for c in loaded]


def test_the_library_read_back_is_the_library_loaded(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = cases.case_files([LIBRARY])
    loaded = [cases.load_case_file(f) for f in files]
    first = [loaded_files.load_case_file(f) for f in files]
    assert len(_entries(cache)) == len(files), "one entry per file"
    monkeypatch.setattr(cases, "load_case_file", lambda path: pytest.fail(f"{path} was parsed again"))
    again = [loaded_files.load_case_file(f) for f in files]
    for file, want, made, read in zip(files, loaded, first, again):
        assert _fields(made) == _fields(want), file
        assert _fields(read) == _fields(want), f"{file}: read back otherwise than it was loaded"
    assert [c.file for c in loaded_files.load_cases([LIBRARY])] == [c.file for f in loaded for c in f]


def test_the_shipped_baselines_read_back_are_those_loaded(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = library.baseline_files()
    loaded = [divergences.load_divergences(f) for f in files]
    assert sum(map(len, loaded)) > 100, "the baselines hold the entries the gate needs"
    first = [loaded_files.load_divergences(f) for f in files]
    monkeypatch.setattr(divergences, "load_divergences", lambda path: pytest.fail(f"{path} was parsed again"))
    again = [loaded_files.load_divergences(f) for f in files]
    for file, want, made, read in zip(files, loaded, first, again):
        # (when and path are left out of an entry's ==)
        assert [(e, e.when, e.path) for e in made] == [(e, e.when, e.path) for e in want], file
        assert [(e, e.when, e.path) for e in read] == [(e, e.when, e.path) for e in want], file


def test_a_file_loaded_as_cases_is_not_read_back_as_divergences(cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    loaded_files.load_case_file(path)
    with pytest.raises(CaseFileError, match="single 'divergences:' list"):
        loaded_files.load_divergences(path)


def test_an_edited_file_is_loaded_anew(cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    assert [c.params.stride for c in loaded_files.load_case_file(path)] == [(1, 1), (2, 2), (2, 2)]
    path.write_text(SMALL.replace("stride: 2", "stride: 3"))
    assert [c.params.stride for c in loaded_files.load_case_file(path)] == [(1, 1), (3, 3), (3, 3)]
    assert len(_entries(cache)) == 2


def test_the_same_bytes_under_another_path_are_that_path_s_cases(cache: Path, tmp_path: Path) -> None:
    """A case names its file by the path it was loaded by (reports, re-run lines, baselines)."""
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(SMALL)
        assert {c.file for c in loaded_files.load_case_file(tmp_path / name)} == {str(tmp_path / name)}


def test_a_bad_file_is_never_stored_and_says_what_the_loader_says(cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    loaded_files.load_case_file(path)
    path.write_text(SMALL.replace("kernel_size: 3", "kernel_size: zero"))
    with pytest.raises(CaseFileError) as direct:
        cases.load_case_file(path)
    with pytest.raises(CaseFileError) as cached:
        loaded_files.load_case_file(path)
    assert str(cached.value) == str(direct.value) and "kernel_size" in str(cached.value)
    assert len(_entries(cache)) == 1, "only the good version is kept"
    missing = tmp_path / "missing.yaml"
    with pytest.raises(CaseFileError, match="cannot read file"):
        loaded_files.load_case_file(missing)


def test_a_damaged_or_foreign_entry_is_loaded_again_and_rewritten(cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    want = _fields(loaded_files.load_case_file(path))
    (entry,) = _entries(cache)
    for damage in (
        entry.read_bytes()[:40],  # truncated
        b"conformance-loaded-0\n" + entry.read_bytes()[len(loaded_files.MAGIC) :],  # another format
        loaded_files.MAGIC + pickle.dumps(["not a case"]),  # a pickle of something else
    ):
        entry.write_bytes(damage)
        assert _fields(loaded_files.load_case_file(path)) == want
        assert entry.read_bytes() != damage, "the entry is written again"


def test_with_the_cache_off_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(reference_cache.ENV, "off")
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    assert _fields(loaded_files.load_case_file(path)) == _fields(cases.load_case_file(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.yaml"]


def test_an_unwritable_cache_costs_the_cache_not_the_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(reference_cache.ENV, str(blocker / "cache"))  # mkdir fails
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    assert _fields(loaded_files.load_case_file(path)) == _fields(cases.load_case_file(path))


def test_a_file_edited_while_it_loads_is_not_stored_under_the_bytes_read_before(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    real = cases.load_case_file

    def edited_meanwhile(p: Path) -> list:
        path.write_text(SMALL.replace("stride: 2", "stride: 3"))
        return real(p)

    monkeypatch.setattr(cases, "load_case_file", edited_meanwhile)
    loaded_files.load_case_file(path)
    assert _entries(cache) == [], "what was loaded is not what the key's bytes say"
