"""The known-divergences baseline: failures that are understood, recorded, and not gate failures.

A matching failure becomes ``xfail``; a matching pass becomes ``xpass`` (the framework was fixed, so
the entry must go, and the gate fails until it does); an entry that matches no result of a
framework that ran is reported as stale.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.cases import CaseFileError, load_yaml
from conformance.results import Result

ENTRY_KEYS = ("framework", "case", "check", "status", "reason", "link")
#: what an entry covers unless it names statuses: a crash or a hang is never hidden by default
DEFAULT_STATUSES = ("fail", "error")
XFAIL_FROM = frozenset({"fail", "error", "crash", "timeout"})


@dataclass(frozen=True)
class Divergence:
    framework: str
    case: str | tuple[str, ...]  # globs over the case id, or over "file.yaml::id" when one contains "::"
    # statuses: which failures the entry covers (default fail and error; crash/timeout only if named)
    reason: str
    check: str | None = None
    link: str | None = None
    line: int | None = None
    statuses: tuple[str, ...] = DEFAULT_STATUSES

    def matches(self, result: Result) -> bool:
        if result.framework != self.framework or (self.check and result.check != self.check):
            return False
        if result.status in XFAIL_FROM and result.status not in self.statuses:
            return False
        patterns = (self.case,) if isinstance(self.case, str) else self.case
        qualified = f"{Path(result.file).name}::{result.case}"
        return any(fnmatch.fnmatchcase(qualified if "::" in p else result.case, p) for p in patterns)

    @property
    def label(self) -> str:
        if isinstance(self.case, str):
            return self.case
        return f"{self.case[0]} (+{len(self.case) - 1} more)" if len(self.case) > 1 else self.case[0]

    def as_dict(self) -> dict[str, str]:
        fields = (("reason", self.reason), ("link", self.link), ("entry", self.label))
        return {k: v for k, v in fields if v}


def load_divergences(path: str | Path) -> list[Divergence]:
    doc = load_yaml(path)
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) - {"divergences"}:
        raise CaseFileError(path, "must be a mapping with a single 'divergences:' list", line=1)
    entries = doc.get("divergences") or []
    if not isinstance(entries, list):
        raise CaseFileError(path, "'divergences' must be a list", line=doc.key_lines.get("divergences"))
    found = []
    for index, raw in enumerate(entries):
        label = f"#{index + 1}"
        line = getattr(raw, "line", None)
        if not isinstance(raw, dict):
            raise CaseFileError(path, "each divergence must be a mapping", line=line, case=label)
        for key in raw:
            if key not in ENTRY_KEYS:
                raise CaseFileError(
                    path, f"unknown key (allowed: {', '.join(ENTRY_KEYS)})", line=line, case=label, field=key
                )
        case = raw.get("case")
        if isinstance(case, list) and case and all(isinstance(c, str) and c for c in case):
            raw["case"] = tuple(case)
        for key in ("framework", "case", "reason"):
            if key == "case" and isinstance(raw.get(key), tuple):
                continue
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise CaseFileError(
                    path, "is required and must be a non-empty string", line=line, case=label, field=key
                )
        for key in ("check", "link"):
            if key in raw and not isinstance(raw[key], str):
                raise CaseFileError(path, "must be a string", line=line, case=label, field=key)
        statuses = raw.get("status", list(DEFAULT_STATUSES))
        statuses = [statuses] if isinstance(statuses, str) else statuses
        if not isinstance(statuses, list) or not statuses or not set(statuses) <= XFAIL_FROM:
            raise CaseFileError(
                path, f"must be one or a list of {sorted(XFAIL_FROM)}", line=line, case=label, field="status"
            )
        found.append(
            Divergence(
                raw["framework"],
                raw["case"],
                " ".join(raw["reason"].split()),
                raw.get("check"),
                raw.get("link"),
                line,
                tuple(statuses),
            )
        )
    return found


def apply(
    results: Iterable[Result], divergences: Sequence[Divergence], report_stale: bool = True
) -> list[str]:
    """Mark matching results xfail / xpass in place; return warnings for stale entries.

    Stale entries are looked for only when ``report_stale`` (a run of the whole library): in a
    filtered run most entries match nothing by design.
    """
    used: set[int] = set()
    frameworks = set()
    for result in results:
        frameworks.add(result.framework)
        for index, entry in enumerate(divergences):
            if not entry.matches(result):
                continue
            used.add(index)
            if result.status in XFAIL_FROM:
                result.status = "xfail"
                result.divergence = entry.as_dict()
            elif result.status == "pass":
                result.status = "xpass"
                result.divergence = entry.as_dict()
                result.message = (
                    f"known divergence no longer reproduces; remove the entry {entry.label!r} "
                    f"(line {entry.line}; or just {result.case!r} from its list) from the baseline file"
                )
            break
    return [
        f"known divergence at line {entry.line} ({entry.framework}: {entry.label!r}"
        f"{', check ' + entry.check if entry.check else ''}) matches no result"
        for index, entry in enumerate(divergences)
        if report_stale and index not in used and entry.framework in frameworks
    ]
