"""Results of an earlier run, reused where nothing they depend on has changed.

A repeat of the gate in the same checkout computes again what the last one computed: tinygrad
alone spends ten minutes of it lowering kernels in Python, which tinygrad caches in memory only.
With ``--reuse-results DIR`` a run keeps each (case, adapter)'s results in DIR under a key of
everything they depend on, and a later run whose key is the same takes them from there instead of
calling the framework again (as a build tool reuses a test's result when none of its inputs
changed). The key holds:

- the case: every field of its definition (its line in the file too);
- the adapter: a built-in's spec, name, version (tinygrad's names its compiler) and variant
  settings;
- the harness: every file of the conformance package (oracle, checks, adapters, this module);
- the installed software: each distribution's name, version and RECORD (which holds the hash of
  every file it installed), and the size and modification time of each file it lists (a file
  patched in place leaves the RECORD as it was);
- the machine: every field of the CPU's description but its clock, the usable cores, OS, kernel
  release, libc, the system's package database (dpkg, RPM or apk: a system library or compiler
  installed or upgraded), Python;
- the environment variables, but a terminal session's own and the harness's switches that decide
  nothing a result holds (:data:`HARNESS_SWITCHES`); the selected checks.

What cannot be keyed is never reused: adapters given as ``--adapter`` (their framework may be a
local build that no record describes), environments with an editable install other than this
project's or with ``PYTHONPATH`` set (modules that no record describes), and results that a rerun
need not give again (crash, timeout, a harness error). A reused result is replayed as it was
recorded, durations included, and the results document counts them (``runs[].reused``). Only the
latest key of each adapter is kept.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.adapters import BUILTINS, split_variant
from conformance.cases import Case
from conformance.checks import base_result
from conformance.results import Result

if TYPE_CHECKING:
    import importlib.metadata

    from conformance.runner import AdapterInfo

FORMAT = "conformance.reuse/1"
#: statuses a rerun must give again; others (crash, timeout) depend on load and luck
KEPT_STATUSES = frozenset({"pass", "fail", "error", "unsupported"})
HARNESS_ERROR = "harness error:"
#: variables of a terminal session, not of what a run computes: they may differ between two runs
SESSION_VARIABLES = frozenset(
    [
        "_",
        "OLDPWD",
        "SHLVL",
        "PS1",
        "PS2",
        "PROMPT_COMMAND",
        "COLUMNS",
        "LINES",
        "TERM",
        "COLORTERM",
        "TERM_PROGRAM",
        "TERM_PROGRAM_VERSION",
        "TERM_SESSION_ID",
        "WINDOWID",
        "DISPLAY",
        "TMUX",
        "TMUX_PANE",
        "STY",
        "WINDOW",
        "SSH_CLIENT",
        "SSH_CONNECTION",
        "SSH_TTY",
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "XDG_SESSION_ID",
        "XDG_RUNTIME_DIR",
        "LS_COLORS",
        "MAIL",
        "HISTFILE",
        "HISTSIZE",
        "HISTFILESIZE",
        "HISTCONTROL",
        "LESSOPEN",
        "LESSCLOSE",
        "GPG_AGENT_INFO",
        "DBUS_SESSION_BUS_ADDRESS",
    ]
)
#: CPU description fields that change from one reading to the next
CLOCK_FIELDS = frozenset({"cpu MHz", "bogomips", "BogoMIPS"})


class NotKeyable(Exception):
    """What a run depends on cannot be told from its environment: nothing is reused or kept."""


def _sha(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


@functools.cache
def harness_digest() -> str:
    """Every file of the conformance package: a change to the oracle, a check or an adapter."""
    root = Path(__file__).resolve().parent
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return _sha(*(f"{p.relative_to(root)}\n".encode() + p.read_bytes() for p in files))


def _editable(dist: importlib.metadata.Distribution) -> bool:
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        return bool(json.loads(text).get("dir_info", {}).get("editable"))
    except (ValueError, AttributeError):
        return True  # unreadable: assume the worst


def installed_digest() -> str:
    """Every installed distribution's name, version and RECORD; raises NotKeyable where modules
    could come from elsewhere (an editable install other than this project's, PYTHONPATH)."""
    if os.environ.get("PYTHONPATH"):
        raise NotKeyable("PYTHONPATH is set: modules outside any installed distribution may be imported")
    import importlib.metadata  # (not at the top: see conformance/__init__.py)

    entries = []
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if _editable(dist) and name != "conformance":  # this project's source is harness_digest()
            raise NotKeyable(f"{name} is an editable install: its source has no record")
        record = dist.read_text("RECORD") or ""
        # this project's own files are keyed by harness_digest(); every `pip install -e .` (each
        # nox session makes one) writes its install files anew, with new times
        stamps = "" if name == "conformance" else _files_now(dist.locate_file(""), record)
        entries.append(f"{name} {dist.version}\n{record}\n{stamps}")
    return _sha(*sorted(entries))


def _files_now(base: object, record: str) -> str:
    """Size and modification time of each file a RECORD lists: a file patched in place after
    installing (a framework's source edited in site-packages) leaves its RECORD as it was."""
    stamps = []
    for row in csv.reader(io.StringIO(record)):
        if row:
            try:
                found = os.stat(os.path.join(str(base), row[0]))
                stamps.append(f"{row[0]} {found.st_size} {found.st_mtime_ns}")
            except OSError:
                stamps.append(f"{row[0]} missing")
    return _sha(*stamps)


#: the system's package databases (Debian, RPM, Alpine): a library or compiler installed or upgraded
#: outside Python (libstdc++, clang for tinygrad) changes them
SYSTEM_PACKAGES = (
    "/var/lib/dpkg/status",
    "/var/lib/rpm/rpmdb.sqlite",
    "/var/lib/rpm/Packages",
    "/lib/apk/db/installed",
)


def machine_digest() -> str:
    """The CPU's description (but its clock), usable cores, OS, kernel, libc, the system's packages,
    Python."""
    from conformance.machine import _cpuinfo, machine_facts

    cpu = {k: v for k, v in _cpuinfo().items() if k not in CLOCK_FIELDS}
    facts = {k: v for k, v in machine_facts().items() if k != "env"}
    packages = []
    for path in SYSTEM_PACKAGES:
        with contextlib.suppress(OSError):
            packages.append(_sha(path, Path(path).read_bytes()))
    return _sha(
        json.dumps([cpu, facts, packages], sort_keys=True), sys.version, sys.executable, platform.platform()
    )


#: the harness's own variables that change no result: where the oracle's cache lives (its files
#: are keyed by content), whether crashed workers dump core, whether the browser test may skip
#: (`.ci/run` sets it: a `nox -s conformance` by hand after `.ci/run` computed everything again),
#: and the switch that turns reuse off altogether
HARNESS_SWITCHES = frozenset(
    ["CONFORMANCE_CACHE_DIR", "CONFORMANCE_CORE_DUMPS", "CONFORMANCE_REQUIRE_BROWSER", "CONFORMANCE_FRESH"]
)
#: the variables a result's key leaves out
_UNKEYED_VARIABLES = SESSION_VARIABLES | HARNESS_SWITCHES


def environment_digest() -> str:
    variables = {k: v for k, v in os.environ.items() if k not in _UNKEYED_VARIABLES}
    return _sha(json.dumps(variables, sort_keys=True))


def case_digest(case: Case) -> str:
    return _sha(repr(case))[:32]


def reusable(spec: str) -> bool:
    """Whether an adapter's results may be kept: a built-in's (with or without a variant)."""
    return split_variant(spec)[0] in BUILTINS


def _kept(results: Sequence[Result]) -> bool:
    return all(r.status in KEPT_STATUSES and not r.message.startswith(HARNESS_ERROR) for r in results)


class Shelf:
    """One adapter's kept results under one key: case digest -> its records (fields that differ
    from :func:`conformance.checks.base_result`'s)."""

    def __init__(self, path: Path, description: dict[str, Any]) -> None:
        self.path, self.description = path, description
        self.entries: dict[str, list[dict[str, Any]]] = {}
        self.facts: dict[str, Any] = {}
        self.changed = False
        # a missing, partial or foreign file holds nothing: its results are computed again
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") == FORMAT and data.get("adapter") == description:
                self.entries, self.facts = dict(data["results"]), dict(data.get("facts") or {})

    def get(self, case: Case, name: str, checks: Sequence[str]) -> list[Result] | None:
        """The case's kept results, exactly those of ``checks``, or None."""
        records = self.entries.get(case_digest(case))
        if records is None or [r["check"] for r in records] != list(checks):
            return None
        results = []
        for record in records:
            result = base_result(case, name, record["check"], record["status"])
            for field, value in record.items():
                setattr(result, field, value)
            results.append(result)
        return results

    def put(self, case: Case, results: Sequence[Result]) -> None:
        if not results or not _kept(results):
            return
        records = []
        for r in results:
            base = base_result(case, r.framework, r.check, r.status).to_dict()
            records.append(
                {k: v for k, v in r.to_dict().items() if k in ("check", "status") or base.get(k) != v}
            )
        self.entries[case_digest(case)] = records
        self.changed = True

    def save(self, facts: dict[str, Any]) -> None:
        """Write the shelf whole (through a rename) and drop this adapter's shelves of other keys."""
        if not self.changed and (facts == self.facts or not facts):
            return
        self.facts = facts or self.facts
        data = {"format": FORMAT, "adapter": self.description, "facts": self.facts, "results": self.entries}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=self.path.parent, prefix=".partial-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, separators=(",", ":"))
        os.chmod(partial, 0o644)
        os.replace(partial, self.path)
        for other in self.path.parent.glob("*.json"):
            if other != self.path:
                with contextlib.suppress(OSError):
                    other.unlink()
        self.changed = False


class Store:
    """Kept results in a folder: one sub-folder per adapter spec, one shelf per key."""

    def __init__(self, directory: str | Path, checks: Sequence[str] | None) -> None:
        self.directory = Path(directory)
        self.checks = None if checks is None else sorted(checks)
        self.shelves: dict[str, Shelf] = {}
        try:
            self.run_digest: str | None = _sha(
                harness_digest(), installed_digest(), machine_digest(), environment_digest(), self.checks
            )
            self.why_not = ""
        except NotKeyable as exc:
            self.run_digest, self.why_not = None, str(exc)

    def shelf(self, info: AdapterInfo) -> Shelf | None:
        """The adapter's shelf under this run's key; None if its results cannot be kept."""
        if self.run_digest is None or not reusable(info.spec) or info.pending:
            return None
        if info.spec not in self.shelves:
            description = {
                "spec": info.spec,
                "name": info.name,
                "version": info.version,
                "env": info.env,
                "variant": info.variant,
                "process_group": info.process_group,
                # not info.layer_api: it holds weight-initialisation statistics sampled afresh on
                # every run, and what decides it (the adapter's code, the framework) is keyed above
            }
            key = _sha(self.run_digest, json.dumps(description, sort_keys=True))[:32]
            folder = re.sub(r"[^A-Za-z0-9._-]+", "_", info.spec)
            self.shelves[info.spec] = Shelf(self.directory / folder / f"{key}.json", description)
        return self.shelves[info.spec]

    def save(
        self, computed: Iterable[tuple[Case, AdapterInfo, list[Result]]], facts: dict[str, dict[str, Any]]
    ) -> None:
        """Keep what this run computed (not what it reused), adapter by adapter, with the build
        facts its workers reported (spec -> facts), which a run that reuses every result repeats."""
        for case, info, results in computed:
            shelf = self.shelf(info)
            if shelf is not None:
                shelf.put(case, results)
        for spec, shelf in self.shelves.items():
            with contextlib.suppress(OSError):
                shelf.save(facts.get(spec) or {})
