"""CI shards: N shards cover every case exactly once, deterministically and evenly, and merging
their results gives the records of an unsharded run; merge names missing and repeated shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import library, shards
from conformance.cases import load_cases
from conformance.reports.jsondoc import load_document
from tests.helpers.pytest_helpers import DIRECT, ROOT, run_cli


@pytest.fixture(scope="module")
def library_cases():
    return load_cases(library.case_files())


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_library(library_cases, count):
    parts = shards.split(library_cases, count)
    ids = [(c.file, c.id) for part in parts for c in part]
    assert sorted(ids) == sorted((c.file, c.id) for c in library_cases), f"split(count={count}) lost cases"
    assert len(set(ids)) == len(ids), f"split(count={count}) put a case in two shards"
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1, f"split(count={count}) by count is uneven: {sizes}"
    again = shards.split(list(library_cases), count)
    assert [[c.id for c in p] for p in again] == [[c.id for c in p] for p in parts], (
        "split is not deterministic"
    )


def test_durations_balance_the_shards(library_cases):
    # one very slow case family: its cases must spread so that the loads stay within one case's weight
    weights = {
        shards.case_key(c.file, c.id): (30.0 if c.family.startswith("groups") else 0.1) for c in library_cases
    }
    parts = shards.split(library_cases, 3, weights)
    loads = [sum(weights[shards.case_key(c.file, c.id)] for c in p) for p in parts]
    assert max(loads) - min(loads) <= 30.0, f"split(3, durations) loads {loads}"
    by_count = [
        sum(weights[shards.case_key(c.file, c.id)] for c in p) for p in shards.split(library_cases, 3)
    ]
    assert max(loads) <= max(by_count), "durations made the slowest shard slower"


@pytest.mark.parametrize("text", ["0/3", "4/3", "2", "a/b", "1/0"])
def test_bad_shard_is_a_usage_error(text, tmp_path):
    proc = run_cli("run", "--shard", text, "--adapter", f"{DIRECT}:DirectNumpy", "--report-dir", tmp_path)
    assert proc.returncode == 2 and "--shard" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_merge_warnings_name_missing_and_repeated_shards():
    def doc(index):
        return {"runs": [{"frameworks": {"mine": "1"}, "shard": {"index": index, "count": 3}}]}

    assert shards.merge_warnings([doc(1), doc(2), doc(3)]) == []
    warnings = shards.merge_warnings([doc(1), doc(3), doc(3)])
    assert any("2/3" in w and "missing" in w for w in warnings), warnings
    assert any("3/3" in w and "more than once" in w for w in warnings), warnings


def _records(path: Path) -> list[dict]:
    document = load_document(path)  # full records (results.json stores case fields once per case)
    drop = {"duration_s", "reproducer"}  # timing, and a path relative to where the report was written
    return sorted(
        ({k: v for k, v in r.items() if k not in drop} for r in document["results"]),
        key=lambda r: (r["file"], r["case"], r["framework"], r["check"]),
    )


def test_three_shards_merged_equal_one_unsharded_run(tmp_path):
    args = [
        ROOT / "cases" / "conv_transpose1d.yaml",
        ROOT / "cases" / "errors.yaml",
        "-k",
        "groups or padding",
        "--adapter",
        f"{DIRECT}:DirectNumpy",
        "--adapter",
        f"{DIRECT}:MisreadsGroupWeight",  # failures must survive the merge too
        "-q",
    ]
    whole = run_cli("run", *args, "--report-dir", tmp_path / "whole")
    assert whole.returncode == 1, whole.stderr
    durations = tmp_path / "whole" / "results.json"
    parts = []
    for k in (1, 2, 3):
        proc = run_cli(
            "run",
            *args,
            "--shard",
            f"{k}/3",
            "--durations-from",
            durations,
            "--report-dir",
            tmp_path / f"s{k}",
        )
        assert proc.returncode in (0, 1), proc.stderr
        parts.append(tmp_path / f"s{k}" / "results.json")
    shard_ids = [{r["case"] for r in _records(p)} for p in parts]
    assert all(shard_ids) and not (shard_ids[0] & shard_ids[1] or shard_ids[1] & shard_ids[2]), (
        "shards overlap"
    )
    merged = run_cli("report", *parts, "--report-dir", tmp_path / "merged")
    assert merged.returncode == 1 and "warning" not in merged.stderr, merged.stderr
    assert _records(tmp_path / "merged" / "results.json") == _records(durations)

    missing = run_cli("report", parts[0], parts[2], "--report-dir", tmp_path / "missing")
    assert "2/3" in missing.stderr and "missing" in missing.stderr, missing.stderr
    document = json.loads((tmp_path / "missing" / "results.json").read_text())
    assert any("2/3" in w for w in document["warnings"]), document["warnings"]
