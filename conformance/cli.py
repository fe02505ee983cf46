"""The ``conformance`` command: ``run`` cases through frameworks and gate on the result, ``report``
to render (and merge) result files, ``validate`` to check case files without running them.

Exit codes: 0 nothing unexpected; 1 a result failed, errored, crashed, timed out or unexpectedly
passed (or the run was interrupted); 2 bad case file, bad known-divergences file or bad usage.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from conformance import divergences, reproducer, runner
from conformance.adapters import AdapterLoadError, importable_builtins, resolve_spec
from conformance.cases import CaseFileError, load_cases, select
from conformance.checks import CHECKS
from conformance.results import FAILING, STATUSES, Result, make_document, merge_documents, results_of
from conformance.selection import ExpressionError, filter_cases
from conformance.spec import DTYPES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_KNOWN = "cases/known_divergences*.yaml"


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conformance", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run case files through frameworks and write reports")
    run.add_argument(
        "paths", nargs="*", default=["cases"], help="case files or directories (default: cases/)"
    )
    run.add_argument(
        "--framework",
        action="append",
        default=[],
        metavar="NAME",
        help="a built-in or installed plugin framework (repeatable)",
    )
    run.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="SPEC",
        help="your adapter: package.module:Class or path/to/file.py:Class (repeatable)",
    )
    run.add_argument("--report-dir", default="reports", help="where reports go (default: reports/)")
    run.add_argument(
        "--known-divergences",
        action="append",
        default=None,
        metavar="FILE",
        help=f"baseline of known divergences, repeatable (default: every {DEFAULT_KNOWN})",
    )
    run.add_argument(
        "-k",
        dest="keyword",
        default=None,
        metavar="EXPR",
        help="keyword expression over case ids, files, ops, dtypes and tags",
    )
    run.add_argument("--case", action="append", default=[], metavar="GLOB", help="run only case ids matching")
    run.add_argument("-n", "--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    run.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS", help="per-case limit")
    run.add_argument(
        "--check",
        default=None,
        metavar="LIST",
        help=f"comma-separated checks to run (default: all of {','.join(CHECKS)})",
    )
    run.add_argument(
        "--reproducers",
        choices=("failing", "divergent"),
        default="failing",
        help="write standalone reproducer scripts for failing results (default) or for known divergences too",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    repro = sub.add_parser(
        "repro", help="run the selected cases and write a standalone reproducer for each divergence"
    )
    repro.add_argument("paths", nargs="*", default=["cases"], help="case files or directories")
    repro.add_argument("--case", action="append", default=[], metavar="GLOB", help="case ids matching")
    repro.add_argument("-k", dest="keyword", default=None, metavar="EXPR", help="keyword expression")
    repro.add_argument("--framework", action="append", default=[], metavar="NAME")
    repro.add_argument("--adapter", action="append", default=[], metavar="SPEC")
    repro.add_argument("--out", default="reports", metavar="DIR", help="scripts go to DIR/reproducers/")

    report = sub.add_parser("report", help="render reports from one or more results.json files, merged")
    report.add_argument("results", nargs="+", help="results.json files (e.g. one per environment)")
    report.add_argument("--report-dir", default="reports")
    report.add_argument("--note", action="append", default=[], help="a line for the report's warnings")

    fuzz = sub.add_parser(
        "fuzz", help="search for divergences with Hypothesis; write minimal cases + reproducers"
    )
    fuzz.add_argument("--framework", action="append", default=[], metavar="NAME")
    fuzz.add_argument("--adapter", action="append", default=[], metavar="SPEC")
    fuzz.add_argument("--check", default=None, metavar="LIST", help="comma-separated checks (default: all)")
    fuzz.add_argument(
        "--max-examples",
        type=int,
        default=300,
        metavar="N",
        help="per search for each new divergence (default 300)",
    )
    fuzz.add_argument("--time-budget", type=float, default=None, metavar="SECONDS", help="per framework")
    fuzz.add_argument("--seed", type=int, default=0, metavar="S")
    fuzz.add_argument("--out", default="cases/found", metavar="DIR", help="where findings go (cases/found/)")
    fuzz.add_argument(
        "--dtype", action="append", default=None, choices=DTYPES, help="dtypes to draw (float32)"
    )
    fuzz.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per example")

    validate = sub.add_parser("validate", help="check case files (and the known-divergences file) only")
    validate.add_argument("paths", nargs="*", default=["cases"])
    validate.add_argument("--known-divergences", action="append", default=None, metavar="FILE")
    return parser


def _known_divergences(args: list[str] | None) -> list[divergences.Divergence]:
    """Entries of the given files, or of every default baseline file (one per framework is fine)."""
    if args is not None:
        for arg in args:
            if not Path(arg).is_file():
                raise UsageError(f"known-divergences file {arg!r} does not exist")
        paths = [Path(a) for a in args]
    else:
        paths = sorted(Path().glob(DEFAULT_KNOWN))
    return [entry for path in paths for entry in divergences.load_divergences(path)]


def _adapter_specs(frameworks: Sequence[str], adapters: Sequence[str]) -> list[str]:
    if frameworks or adapters:
        for name in frameworks:
            resolve_spec(name)  # unknown names are usage errors
        return [*frameworks, *adapters]
    available = importable_builtins()
    if not available:
        raise UsageError("no framework given and no built-in framework (torch, mlx) is installed")
    return list(available)


def _print_summary(results: list[Result], frameworks: dict[str, str]) -> None:
    rows = []
    for name, version in frameworks.items():
        mine = [r for r in results if r.framework == name]
        rows.append([name, version, *(sum(r.status == s for r in mine) for s in STATUSES), len(mine)])
    print(tabulate(rows, headers=["framework", "version", *STATUSES, "total"], tablefmt="simple"))


def _print_failures(results: list[Result], limit: int = 20) -> None:
    failing = [r for r in results if r.status in FAILING]
    for r in failing[:limit]:
        print(f"{r.status.upper():8} {r.framework} {r.case} [{r.check}]: {r.message}", file=sys.stderr)
        print(f"         re-run: {r.rerun}", file=sys.stderr)
    if len(failing) > limit:
        print(f"... and {len(failing) - limit} more (see the report)", file=sys.stderr)


def _checks(arg: str | None) -> list[str] | None:
    if arg is None:
        return None
    checks = [c.strip() for c in arg.split(",") if c.strip()]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown or not checks:
        raise UsageError(
            f"--check {arg!r}: unknown check {unknown[0] if unknown else ''!r} (known: {', '.join(CHECKS)})"
        )
    return checks


def cmd_run(args: argparse.Namespace) -> int:
    from conformance.reports import write_reports

    checks = _checks(args.check)
    known = _known_divergences(args.known_divergences)
    specs = _adapter_specs(args.framework, args.adapter)
    cases = filter_cases(select(load_cases(args.paths), args.case), args.keyword)
    if not cases:
        raise UsageError("no case matches the given paths, --case and -k")
    infos = runner.describe(specs)
    names = [i.name for i in infos]
    if len(set(names)) != len(names):
        raise UsageError(f"two adapters share a name: {names}")
    if not args.quiet:
        versions = ", ".join(f"{i.name} {i.version}" for i in infos)
        print(f"conformance: {len(cases)} cases x {len(infos)} frameworks ({versions})", file=sys.stderr)
    progress = None if args.quiet else runner.print_progress
    outcome = runner.Runner(infos, args.workers, args.timeout, progress, checks).run(cases)
    filtered = bool(args.keyword or args.case or args.check) or args.paths != ["cases"]
    facts = divergences.run_facts(outcome.frameworks, outcome.framework_facts)
    applied = divergences.apply(outcome.results, known, report_stale=not filtered, facts=facts)
    warnings = applied.warnings
    shutil.rmtree(Path(args.report_dir) / "reproducers", ignore_errors=True)
    reproducer.write_all(
        outcome.results,
        {(c.file, c.id): c for c in cases},
        outcome.frameworks,
        args.report_dir,
        reproducer.DIVERGENT_REPRODUCED if args.reproducers == "divergent" else reproducer.FAILING_REPRODUCED,
    )
    command = "conformance " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    document = make_document(
        outcome.results,
        outcome.frameworks,
        warnings,
        outcome.interrupted,
        command,
        outcome.layer_api,
        outcome.framework_facts,
        applied.inactive,
    )
    paths = write_reports(document, args.report_dir)
    _print_summary(outcome.results, outcome.frameworks)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _print_failures(outcome.results)
    print(f"reports: {', '.join(str(p) for p in paths.values())}")
    if outcome.interrupted:
        print("interrupted: the reports hold every result computed before the interruption", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if any(r.status in FAILING for r in outcome.results) else EXIT_OK


def cmd_repro(args: argparse.Namespace) -> int:
    specs = _adapter_specs(args.framework, args.adapter)
    cases = filter_cases(select(load_cases(args.paths), args.case), args.keyword)
    if not cases:
        raise UsageError("no case matches the given paths, --case and -k")
    outcome = runner.Runner(runner.describe(specs), 1).run(cases)
    by_key = {(c.file, c.id): c for c in cases}
    written = reproducer.write_all(
        outcome.results, by_key, outcome.frameworks, args.out, reproducer.DIVERGENT_REPRODUCED
    )
    for r in outcome.results:
        if r.reproducer:
            print(f"{r.framework} {r.case} {r.check} {r.status}: {Path(args.out) / r.reproducer}")
    if not written and not any(r.reproducer for r in outcome.results):
        print(f"no divergence in {len(cases)} case(s): nothing to reproduce", file=sys.stderr)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.reports import load_document, write_reports

    documents = []
    for path in args.results:
        try:
            document = load_document(path)
        except (OSError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        # reproducer scripts stay where their run wrote them; point at them from the new report
        for record in document.get("results", []):
            if record.get("reproducer"):
                script_path = Path(path).parent / record["reproducer"]
                record["reproducer"] = os.path.relpath(script_path, args.report_dir)
        documents.append(document)
    document = merge_documents(documents)
    document["warnings"] = [*document.get("warnings", []), *args.note]
    paths = write_reports(document, args.report_dir)
    results = results_of(document)
    _print_summary(results, document["frameworks"])
    print(f"reports: {', '.join(str(p) for p in paths.values())}")
    return (
        EXIT_FAILED if any(r.status in FAILING for r in results) or document.get("interrupted") else EXIT_OK
    )


def cmd_fuzz(args: argparse.Namespace) -> int:
    from conformance.fuzz import FuzzConfig, fuzz

    if args.max_examples < 1:
        raise UsageError("--max-examples must be >= 1")
    config = FuzzConfig(
        checks=_checks(args.check),
        max_examples=args.max_examples,
        time_budget=args.time_budget,
        seed=args.seed,
        out=Path(args.out),
        timeout=args.timeout,
        dtypes=tuple(args.dtype or ["float32"]),
    )
    specs = _adapter_specs(args.framework, args.adapter)
    runner.describe(specs)  # bad specs are usage errors before any search starts
    findings = fuzz(specs, config)
    rows = [
        [
            f.signature.framework,
            f.signature.check,
            f.signature.kind,
            ", ".join(sorted(f.signature.features)) or "(simplest)",
            "replayed" if f.replayed else "new",
        ]
        for f in findings
    ]
    if rows:
        print(tabulate(rows, headers=["framework", "check", "kind", "region", ""], tablefmt="simple"))
    print(f"{len(findings)} distinct divergences; cases and reproducers in {config.out}/")
    return EXIT_FAILED if findings else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    cases = load_cases(args.paths)
    entries = _known_divergences(args.known_divergences)
    files = sorted({c.file for c in cases})
    print(f"{len(cases)} cases in {len(files)} files are valid; {len(entries)} known divergences")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {
        "run": cmd_run,
        "repro": cmd_repro,
        "report": cmd_report,
        "validate": cmd_validate,
        "fuzz": cmd_fuzz,
    }[args.command]
    try:
        return handler(args)
    except CaseFileError as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
    except (AdapterLoadError, ExpressionError, UsageError) as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
