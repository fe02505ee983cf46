"""CI shards: ``conformance run --shard K/N`` runs the K-th of N deterministic parts of the cases,
so that a CI system's own job matrix spreads the gate over N machines; ``conformance report``
merges the N results files and warns when a shard is missing or appears twice.

The unit is a case (every framework and check of it stays in one shard, so a shard's verdicts are
those of an unsharded run). Parts are balanced greedily, heaviest case first onto the lightest
shard: by the seconds a previous run recorded per case (``--durations-from results.json``), else
by case count. The split depends only on the cases and the durations file, never on the machine.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.cases import Case


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def as_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def parse(text: str) -> Shard:
    """``'2/3'`` -> Shard(2, 3); ValueError with a message naming the option otherwise."""
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 1 <= shard.index <= shard.count:
        raise ValueError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. --shard 2/3")
    return shard


def case_key(file: str, case_id: str) -> str:
    """Cases are keyed by file name and id, so durations recorded elsewhere (another checkout, an
    installed library) still apply."""
    return f"{Path(file).name}::{case_id}"


def durations(path: str | Path) -> dict[str, float]:
    """Seconds per case (all frameworks and checks together) recorded in a results.json."""
    from conformance.reports.jsondoc import load_document

    try:
        records = load_document(path)["results"]
    except (OSError, ValueError) as exc:
        raise ValueError(f"--durations-from {str(path)!r}: not a readable results.json ({exc})") from None
    seconds: dict[str, float] = {}
    for record in records:
        key = case_key(record.get("file", ""), record.get("case", ""))
        seconds[key] = seconds.get(key, 0.0) + float(record.get("duration_s") or 0.0)
    return seconds


def split(cases: Sequence[Case], count: int, weights: Mapping[str, float] | None = None) -> list[list[Case]]:
    """``count`` parts of ``cases``, balanced by ``weights`` (case key -> seconds; a case without a
    recorded duration weighs the mean of those recorded) or by count; each part keeps the input order."""
    keys = [case_key(c.file, c.id) for c in cases]
    known = [weights[k] for k in keys if weights and k in weights]
    default = sum(known) / len(known) if known else 1.0
    weight = [weights.get(k, default) if weights else 1.0 for k in keys]
    loads = [(0.0, shard) for shard in range(count)]  # a heap: lightest shard, then lowest index
    owner = [0] * len(cases)
    for i in sorted(range(len(cases)), key=lambda i: (-weight[i], keys[i], i)):
        load, shard = heapq.heappop(loads)
        owner[i] = shard
        heapq.heappush(loads, (load + weight[i], shard))
    return [[c for c, o in zip(cases, owner) if o == shard] for shard in range(count)]


def select(cases: Sequence[Case], shard: Shard, weights: Mapping[str, float] | None = None) -> list[Case]:
    return split(cases, shard.count, weights)[shard.index - 1]


def merge_warnings(documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """Missing or repeated shards among the runs of the documents being merged. Runs of different
    frameworks (one environment each) are sharded independently, so they are grouped apart."""
    groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for document in documents:
        for run in document.get("runs") or []:
            shard = run.get("shard")
            if shard:
                group = (int(shard["count"]), tuple(sorted(run.get("frameworks", {}))))
                groups.setdefault(group, []).append(int(shard["index"]))
    warnings = []
    for (count, frameworks), seen in sorted(groups.items()):
        names = ", ".join(frameworks)
        missing = sorted(set(range(1, count + 1)) - set(seen))
        repeated = sorted({i for i in seen if seen.count(i) > 1})
        if missing:
            shown = ", ".join(f"{i}/{count}" for i in missing)
            warnings.append(f"shards {shown} of {names} are missing: their cases have no results here")
        if repeated:
            shown = ", ".join(f"{i}/{count}" for i in repeated)
            warnings.append(f"shards {shown} of {names} appear more than once: the last of each was kept")
    return warnings
