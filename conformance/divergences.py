"""The known-divergences baseline: failures that are understood, recorded, and not gate failures.

A matching failure becomes ``xfail``; a matching pass becomes ``xpass`` (the framework was fixed, so
the entry must go, and the gate fails until it does); an entry that matches no result of a
framework that ran is reported as stale.

An entry may hold only on some machines or builds (a oneDNN AMX kernel, a compiler version):
``when:`` scopes it to facts of the run (see :func:`conditions_hold`). Where its conditions do not
hold, the entry is inactive: not applied, never stale, and listed in the results document as not
applicable here, so that one baseline gives the same verdict on every machine.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from conformance.cases import CaseFileError, load_yaml
from conformance.results import Result

ENTRY_KEYS = ("framework", "case", "check", "status", "reason", "link", "when")
#: ``when:`` keys: CPU flags that must all be present / all be absent, globs over the machine and
#: OS, a PEP 440 version range of the framework, and globs over the framework's build facts
#: (``Adapter.build_facts``, e.g. ``compiler``, ``cpu_capability``)
WHEN_KEYS = ("cpu_flags", "not_cpu_flags", "machine", "system", "version", "facts")
#: what an entry covers unless it names statuses: a crash or a hang is never hidden by default
DEFAULT_STATUSES = ("fail", "error")
XFAIL_FROM = frozenset({"fail", "error", "crash", "timeout"})


def framework_matches(pattern: str, name: str) -> bool:
    """``torch`` names torch's default path only; ``torch[*]`` names it and every variant of it;
    ``torch[native]`` one variant."""
    if pattern.endswith("[*]"):
        base = pattern[:-3]
        return name == base or (name.startswith(base + "[") and name.endswith("]"))
    return name == pattern


@dataclass(frozen=True)
class RunFacts:
    """What ``when:`` conditions are judged on, for one framework of a run."""

    cpu_flags: frozenset[str] = frozenset()
    machine: str = ""
    system: str = ""
    version: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)


def run_facts(
    versions: Mapping[str, str], build_facts: Mapping[str, Mapping[str, Any]]
) -> dict[str, RunFacts]:
    """RunFacts of this machine for each framework (name -> version) of a run."""
    from conformance.machine import cpu_flags, machine_facts

    here = machine_facts()
    return {
        name: RunFacts(cpu_flags(), here["machine"], here["system"], version, build_facts.get(name, {}))
        for name, version in versions.items()
    }


def conditions_hold(when: Mapping[str, Any], facts: RunFacts) -> tuple[bool, str]:
    """Whether every condition holds, and if not, the first one that does not, in words."""
    for flag in when.get("cpu_flags", ()):
        if flag not in facts.cpu_flags:
            return False, f"the CPU has no {flag}"
    for flag in when.get("not_cpu_flags", ()):
        if flag in facts.cpu_flags:
            return False, f"the CPU has {flag}"
    for key in ("machine", "system"):
        if key in when and not fnmatch.fnmatchcase(getattr(facts, key), when[key]):
            return False, f"{key} is {getattr(facts, key) or 'unknown'}, not {when[key]}"
    if "version" in when:
        try:
            inside = Version(facts.version) in SpecifierSet(when["version"])
        except InvalidVersion:
            inside = False
        if not inside:
            return False, f"version {facts.version or 'unknown'} is not {when['version']}"
    for key, pattern in (when.get("facts") or {}).items():
        value = str(facts.facts.get(key, ""))
        if not fnmatch.fnmatchcase(value, str(pattern)):
            return False, f"{key} is {value or 'not reported'!r}, not {pattern!r}"
    return True, ""


@functools.lru_cache(maxsize=256)
def _file_name(path: str) -> str:
    return Path(path).name


@dataclass(frozen=True)
class Divergence:
    framework: str | tuple[str, ...]  # names or NAME[*] patterns (framework_matches)
    case: str | tuple[str, ...]  # globs over the case id, or over "file.yaml::id" when one contains "::"
    # statuses: which failures the entry covers (default fail and error; crash/timeout only if named)
    reason: str
    check: str | None = None
    link: str | None = None
    line: int | None = None
    statuses: tuple[str, ...] = DEFAULT_STATUSES
    when: Mapping[str, Any] | None = field(default=None, compare=False)
    path: str = field(default="", compare=False)  # the baseline file, for reports

    def names(self, framework: str) -> bool:
        patterns = (self.framework,) if isinstance(self.framework, str) else self.framework
        return any(framework_matches(p, framework) for p in patterns)

    def matches(self, result: Result) -> bool:
        return self.names(result.framework) and self._matches_named(result)

    def _matches_named(self, result: Result) -> bool:
        """:meth:`matches` for a result of a framework this entry names."""
        return self._covers(result) and self.names_case(result.file, result.case)

    def _covers(self, result: Result) -> bool:
        """The entry's check and statuses allow this result (its case aside)."""
        if self.check and result.check != self.check:
            return False
        return not (result.status in XFAIL_FROM and result.status not in self.statuses)

    def names_case(self, file: str, case: str) -> bool:
        by_id, by_file_and_id = self._case_patterns
        if by_id is not None and by_id.match(case):
            return True
        return by_file_and_id is not None and bool(by_file_and_id.match(f"{_file_name(file)}::{case}"))

    @functools.cached_property
    def _case_patterns(self) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
        """The case globs as one regular expression each for ids and for "file.yaml::id" (a list
        of hundreds of ids is then one match per case, not hundreds)."""
        patterns = (self.case,) if isinstance(self.case, str) else self.case

        def one(globs: list[str]) -> re.Pattern[str] | None:
            return re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None

        return one([p for p in patterns if "::" not in p]), one([p for p in patterns if "::" in p])

    @property
    def label(self) -> str:
        if isinstance(self.case, str):
            return self.case
        return f"{self.case[0]} (+{len(self.case) - 1} more)" if len(self.case) > 1 else self.case[0]

    @property
    def framework_label(self) -> str:
        return self.framework if isinstance(self.framework, str) else ", ".join(self.framework)

    def as_dict(self) -> dict[str, Any]:
        fields = (("reason", self.reason), ("link", self.link), ("entry", self.label), ("when", self.when))
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in fields if v}


def _when(path: str | Path, raw: Any, line: int | None, label: str) -> dict[str, Any] | None:
    """The validated ``when:`` mapping of an entry (None when absent)."""
    if raw is None:
        return None

    def bad(message: str, key: str = "when") -> CaseFileError:
        return CaseFileError(path, message, line=line, case=label, field=key)

    if not isinstance(raw, dict) or not raw:
        raise bad(f"must be a non-empty mapping of {', '.join(WHEN_KEYS)}")
    when: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in WHEN_KEYS:
            raise bad(f"unknown condition (allowed: {', '.join(WHEN_KEYS)})", f"when.{key}")
        if key in ("cpu_flags", "not_cpu_flags"):
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                raise bad(
                    "must be a CPU flag or a list of them (as /proc/cpuinfo spells them, or avx_ne_convert)",
                    f"when.{key}",
                )
        elif key == "version":
            try:
                SpecifierSet(str(value))
            except InvalidSpecifier:
                raise bad(
                    f"{value!r} is not a version range such as '>=2.13,<2.15'", "when.version"
                ) from None
            value = str(value)
        elif key == "facts":
            if not isinstance(value, dict) or not value:
                raise bad(
                    "must map build-fact names to globs, e.g. {compiler: 'clang version 14*'}", "when.facts"
                )
            value = {str(k): str(v) for k, v in value.items()}
        elif not isinstance(value, str):
            raise bad("must be a glob string", f"when.{key}")
        when[key] = value
    return when


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
        for key in ("case", "framework"):
            value = raw.get(key)
            if isinstance(value, list) and value and all(isinstance(c, str) and c for c in value):
                raw[key] = tuple(value)
        for key in ("framework", "case", "reason"):
            if key in ("case", "framework") and isinstance(raw.get(key), tuple):
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
                _when(path, raw.get("when"), line, label),
                str(path),
            )
        )
    return found


class _Entries:
    """One framework's entries, in file order, found by case: an entry whose patterns are plain case
    ids or plain ``FILE::ID`` names is looked up by them; one with a glob is tried on every case.
    (The shipped baselines name their cases ``FILE::ID``: tried on every case, MLX's 49 entries
    took most of a run's baseline phase.)"""

    def __init__(self, entries: list[tuple[int, Divergence]]) -> None:
        self.by_name: dict[str, list[tuple[int, Divergence]]] = {}  # an id, or "file.yaml::id"
        self.globs: list[tuple[int, Divergence]] = []
        for index, entry in entries:
            patterns = (entry.case,) if isinstance(entry.case, str) else entry.case
            if any(c in p for p in patterns for c in "*?["):
                self.globs.append((index, entry))
            else:
                for p in dict.fromkeys(patterns):
                    self.by_name.setdefault(p, []).append((index, entry))

    def for_case(self, file: str, case: str) -> list[tuple[int, Divergence]]:
        """The entries that name the case, in file order. One found by name names it (its globs,
        compiled, are never needed: 52 regular expressions were a tenth of the baseline phase);
        a glob entry is asked (Divergence.names_case)."""
        globs = [(i, e) for i, e in self.globs if e.names_case(file, case)]
        listed = [*self.by_name.get(case, ()), *self.by_name.get(f"{_file_name(file)}::{case}", ())]
        if not listed:
            return globs
        # (an entry may name the case both ways: once each, by its place in the file)
        return sorted(
            {index: (index, e) for index, e in [*listed, *globs]}.values(), key=lambda item: item[0]
        )


@dataclass
class Applied:
    """What applying a baseline did besides marking results: stale entries (warnings) and entries
    whose ``when:`` does not hold on this run (listed in reports as not applicable here)."""

    warnings: list[str] = field(default_factory=list)
    inactive: list[dict[str, Any]] = field(default_factory=list)


def apply(
    results: Iterable[Result],
    divergences: Sequence[Divergence],
    report_stale: bool = True,
    facts: Mapping[str, RunFacts] | None = None,
) -> Applied:
    """Mark matching results xfail / xpass in place; return stale and inactive entries.

    ``facts`` (framework name -> RunFacts) judges ``when:`` conditions; an entry with conditions
    and no facts for a framework is inactive for it. Stale entries are looked for only when
    ``report_stale`` (a run of the whole library): in a filtered run most entries match nothing by
    design.
    """
    facts = facts or {}
    active: dict[tuple[int, str], tuple[bool, str]] = {}

    def holds(index: int, entry: Divergence, framework: str) -> bool:
        if entry.when is None:
            return True
        key = (index, framework)
        if key not in active:
            run = facts.get(framework)
            active[key] = (False, "no facts recorded") if run is None else conditions_hold(entry.when, run)
        return active[key][0]

    used: set[int] = set()
    frameworks: set[str] = set()
    naming: dict[str, _Entries] = {}  # framework -> the entries that name it
    # (framework, file, case) -> the entries naming both: a case's checks share one look-up
    candidates: dict[tuple[str, str, str], list[tuple[int, Divergence]]] = {}
    for result in results:
        frameworks.add(result.framework)
        key = (result.framework, result.file, result.case)
        if key not in candidates:
            if result.framework not in naming:
                naming[result.framework] = _Entries(
                    [(i, e) for i, e in enumerate(divergences) if e.names(result.framework)]
                )
            candidates[key] = naming[result.framework].for_case(result.file, result.case)
        for index, entry in candidates[key]:
            if not entry._covers(result) or not holds(index, entry, result.framework):
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
    applied = Applied()
    for index, entry in enumerate(divergences):
        ran = sorted(f for f in frameworks if entry.names(f))
        if not ran:
            continue
        off = [
            (f, active[(index, f)][1]) for f in ran if entry.when is not None and not holds(index, entry, f)
        ]
        if off and len(off) == len(ran):
            applied.inactive.append(
                {
                    "framework": ", ".join(f for f, _ in off),
                    **entry.as_dict(),
                    "file": Path(entry.path).name,
                    "line": entry.line,
                    "why": "; ".join(sorted({why for _, why in off})),
                }
            )
        elif report_stale and index not in used:
            applied.warnings.append(
                f"known divergence at line {entry.line} ({entry.framework_label}: {entry.label!r}"
                f"{', check ' + entry.check if entry.check else ''}) matches no result"
            )
    return applied
