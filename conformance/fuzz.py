"""``conformance fuzz``: property-based search for divergences, shrunk to minimal reproducers.

Hypothesis draws configurations (valid ones for the forward and gradient checks, invalid ones that
break one rule for error parity), each is run through the framework in an isolated worker, and a
divergence from the oracle is shrunk to the smallest configuration that still shows it. Findings are
de-duplicated by signature (:mod:`conformance.signatures`, the same names the reports group by):
framework, check, kind of failure and the parameter region of the minimal example. A later example
whose region contains a found signature's region, failing the same way, is the same divergence.
Each finding is written as a case file ready to commit and a standalone reproducer.

Deterministic for a seed; Hypothesis's example database (``.hypothesis/``) and the case files
already in the output directory replay first, so known failures are confirmed before new search.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from conformance import runner, strategies
from conformance.cases import Case, CaseFileError, case_fields, load_case_file, make_case
from conformance.reproducer import script
from conformance.results import Result
from conformance.signatures import Signature, signature

DIVERGENT = frozenset({"fail", "error", "crash", "timeout"})


@dataclass
class Finding:
    signature: Signature
    case: Case
    result: Result
    version: str
    replayed: bool = False  # already in the output directory, still reproduces


@dataclass
class FuzzConfig:
    checks: Sequence[str] | None = None
    max_examples: int = 300  # per search: each search for one more distinct divergence draws up to this many
    max_findings: int = 25
    time_budget: float | None = None
    seed: int = 0
    out: Path = Path("cases/found")
    timeout: float = 60.0
    dtypes: tuple[str, ...] = ("float32",)
    database: Path | None = Path(".hypothesis/conformance-fuzz")


class _Found(Exception):
    """Raised inside a Hypothesis probe to mark a new divergence (Hypothesis then shrinks it)."""


@dataclass
class Fuzzer:
    info: runner.AdapterInfo
    config: FuzzConfig
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    findings: list[Finding] = field(default_factory=list)
    examples: int = 0

    def __post_init__(self) -> None:
        self.runner = runner.Runner(
            [self.info], workers=1, timeout=self.config.timeout, checks=self.config.checks
        )
        self.deadline = time.monotonic() + self.config.time_budget if self.config.time_budget else None

    def _time_left(self) -> bool:
        return self.deadline is None or time.monotonic() < self.deadline

    def _evaluate(self, case: Case) -> list[Result]:
        return self.runner.run([case], keep_alive=True).results

    def _new_divergence(self, case: Case, results: list[Result]) -> tuple[Signature, Result] | None:
        for r in results:
            if r.status not in DIVERGENT:
                continue
            sig = signature(r)
            if not any(f.signature.explains(sig) for f in self.findings):
                return sig, r
        return None

    def replay(self) -> None:
        """Cases already written to the output directory: those that still diverge count as found."""
        out = self.config.out
        for path in sorted(out.glob(f"{_slug(self.info.name)}-*.yaml")) if out.is_dir() else []:
            try:
                cases = load_case_file(path)
            except CaseFileError as exc:
                self.log(f"  skipping {path}: {exc}")
                continue
            for case in cases:
                hit = self._new_divergence(case, self._evaluate(case))
                if hit:
                    self.findings.append(Finding(hit[0], case, hit[1], self.info.version, replayed=True))
                    self.log(f"  still reproduces: {path}")

    def _search(self, mode: str, index: int, budget: int) -> Finding | None:
        strategy = (
            strategies.valid_fields(dtypes=self.config.dtypes)
            if mode == "valid"
            else strategies.invalid_fields()
        )
        state: dict[str, object] = {}

        @settings(
            max_examples=budget,
            deadline=None,
            database=DirectoryBasedExampleDatabase(str(self.config.database))
            if self.config.database
            else None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
            verbosity=Verbosity.quiet,
            print_blob=False,
        )
        @seed(self.config.seed + index)
        @given(strategy)
        def probe(fields: dict) -> None:
            if not self._time_left():
                return
            case = make_case(fields, "fuzz")
            self.examples += 1
            if self.examples % 50 == 0:
                self.log(f"  {self.info.name}: {self.examples} examples, {len(self.findings)} divergences")
            hit = self._new_divergence(case, self._evaluate(case))
            if hit:
                state.update(case=case, hit=hit)
                raise _Found

        # one database slot per (framework, mode, search): each replays its own last failure first
        probe._hypothesis_internal_add_digest = f"{self.info.name}:{mode}:{index}".encode()
        try:
            probe()
        except _Found:
            sig, result = state["hit"]  # the last failing call is the shrunk, minimal example
            return Finding(sig, state["case"], result, self.info.version)
        return None

    def run(self) -> list[Finding]:
        checks = self.config.checks
        modes = [
            m
            for m, wanted in (("valid", _any_valid_check(checks)), ("invalid", _wants_error(checks)))
            if wanted
        ]
        self.replay()
        index = 0
        while modes and self._time_left() and len(self.findings) < self.config.max_findings:
            for mode in list(modes):
                if not self._time_left():
                    break
                finding = self._search(mode, index, self.config.max_examples)
                index += 1
                if finding is None:
                    modes.remove(mode)  # this mode found nothing new within the budget
                    continue
                self.findings.append(finding)
                self.log(f"  found: {finding.signature.slug}: {finding.result.message[:160]}")
        self.runner.close()
        return self.findings


def _any_valid_check(checks: Sequence[str] | None) -> bool:
    return checks is None or any(c != "error_parity" for c in checks)


def _wants_error(checks: Sequence[str] | None) -> bool:
    return checks is None or "error_parity" in checks


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_finding(finding: Finding, out: Path, seed_value: int) -> tuple[Path, Path]:
    """The finding as a case file ready to commit and a standalone reproducer beside it."""
    out.mkdir(parents=True, exist_ok=True)
    slug = finding.signature.slug
    fields = case_fields(finding.case)
    fields["tags"] = ["found", finding.signature.framework, finding.signature.check, finding.signature.kind]
    case_path = out / f"{slug}.yaml"
    document = {"cases": [{"id": slug, **fields}]}
    # the run's own selector: --adapter SPEC for a plugin adapter, --framework NAME for a built-in
    finding.result.rerun = finding.result.rerun.replace("<generated>", str(case_path)).replace(
        "--case 'fuzz'", f"--case '{slug}'"
    )
    header = (
        f"# Found by `conformance fuzz --seed {seed_value}` against {finding.signature.framework} "
        f"{finding.version} ({finding.signature.check}, {finding.signature.kind}); shrunk to a minimal "
        "case.\n"
        f"# Observed: {' '.join(finding.result.message.split())[:400]}\n"
        f"# Re-run: {finding.result.rerun}\n"
        f"# Standalone reproducer: {out / (slug + '.py')}\n"
    )
    case_path.write_text(header + yaml.safe_dump(document, sort_keys=False, default_flow_style=None))
    script_path = out / f"{slug}.py"
    written = dataclasses.replace(finding.case, id=slug, family=slug, file=str(case_path))
    script_path.write_text(script(written, finding.result, finding.version))
    return case_path, script_path


def fuzz(specs: Sequence[str], config: FuzzConfig, log: Callable[[str], None] | None = None) -> list[Finding]:
    """Fuzz every adapter in turn; write each new finding; return all findings (replayed included)."""
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    everything: list[Finding] = []
    for info in runner.describe(specs):
        log(f"fuzzing {info.name} {info.version} (seed {config.seed}, up to {config.max_examples} examples)")
        fuzzer = Fuzzer(info, config, log)
        findings = fuzzer.run()
        for finding in findings:
            if not finding.replayed:
                case_path, script_path = write_finding(finding, config.out, config.seed)
                log(f"  wrote {case_path} and {script_path}")
        log(f"  {info.name}: {fuzzer.examples} examples, {len(findings)} distinct divergences")
        everything.extend(findings)
    return everything
