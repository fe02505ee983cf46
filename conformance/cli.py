"""The ``conformance`` command: ``run`` cases through frameworks and gate on the result, ``report``
to render (and merge) result files, ``validate`` to check case files without running them.

Exit codes: 0 nothing unexpected; 1 a result failed, errored, crashed, timed out or unexpectedly
passed (or the run was interrupted); 2 bad case file, bad known-divergences file or bad usage.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from conformance import changes, divergences, library, reproducer, reuse, runner, shards
from conformance.adapters import AdapterLoadError, importable_builtins, resolve_spec
from conformance.cases import Case, CaseFileError, case_files, select
from conformance.checks import CHECKS
from conformance.loaded_files import load_cases, load_divergences
from conformance.results import (
    FAILING,
    STATUSES,
    Result,
    make_document,
    merge_documents,
    results_of,
    summarize,
)
from conformance.selection import ExpressionError, filter_cases
from conformance.spec import DTYPES
from conformance.timings import Timings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_KNOWN = "the shipped known_divergences*.yaml (conformance cases)"


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conformance", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run case files through frameworks and write reports")
    run.add_argument(
        "paths", nargs="*", default=[], help="case files or directories (default: the shipped library)"
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
    run.add_argument(
        "--reuse-results",
        metavar="DIR",
        default=None,
        help="keep results in DIR and reuse those whose case, adapter, harness, installed packages, "
        "machine and environment are unchanged since they were computed (see conformance.reuse)",
    )
    run.add_argument(
        "--timings",
        metavar="FILE",
        help="write where the wall time went, phase by phase, as JSON (for benchmarks)",
    )
    _compare_options(run)
    _add_library_options(run)
    _add_shard_options(run)

    repro = sub.add_parser(
        "repro", help="run the selected cases and write a standalone reproducer for each divergence"
    )
    repro.add_argument(
        "paths", nargs="*", default=[], help="case files or directories (default: the library)"
    )
    repro.add_argument("--case", action="append", default=[], metavar="GLOB", help="case ids matching")
    repro.add_argument("-k", dest="keyword", default=None, metavar="EXPR", help="keyword expression")
    repro.add_argument("--framework", action="append", default=[], metavar="NAME")
    repro.add_argument("--adapter", action="append", default=[], metavar="SPEC")
    repro.add_argument("--out", default="reports", metavar="DIR", help="scripts go to DIR/reproducers/")

    report = sub.add_parser("report", help="render reports from one or more results.json files, merged")
    report.add_argument("results", nargs="+", help="results.json files (e.g. one per environment)")
    report.add_argument("--report-dir", default="reports")
    report.add_argument("--note", action="append", default=[], help="a line for the report's warnings")
    _compare_options(report)

    diff = sub.add_parser("diff", help="what changed between two results.json files (exit 1: new failures)")
    diff.add_argument("base", help="the base run's results.json")
    diff.add_argument("head", help="this run's results.json")

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
    validate.add_argument("paths", nargs="*", default=[])
    validate.add_argument("--known-divergences", action="append", default=None, metavar="FILE")
    _add_library_options(validate)
    _add_adoption_commands(sub)
    return parser


def _compare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--compare-to", default=None, metavar="BASE.json", help="show what changed since this base run"
    )
    parser.add_argument(
        "--fail-on",
        choices=("any", "new"),
        default="any",
        help="fail on any failing result (default) or only on new failures since --compare-to",
    )


def _load(path: str) -> dict:
    from conformance.reports import load_document

    try:
        return load_document(path)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _compare(document: dict, args: argparse.Namespace) -> None:
    """Record what changed since --compare-to in the document, before any report is written."""
    if args.fail_on == "new" and not args.compare_to:
        raise UsageError("--fail-on new needs --compare-to BASE.json")
    if args.compare_to:
        document["changes"] = changes.compare(_load(args.compare_to), document)
        print(f"since {args.compare_to}: {changes.counts_line(document['changes'])}", file=sys.stderr)


def _gate(document: dict, args: argparse.Namespace) -> int:
    if document.get("interrupted"):
        return EXIT_FAILED
    if args.fail_on == "new":
        return EXIT_FAILED if document["changes"]["new_failures"] else EXIT_OK
    return EXIT_FAILED if any(r["status"] in FAILING for r in document["results"]) else EXIT_OK


def _add_library_options(command: argparse.ArgumentParser) -> None:
    """Paths replace the shipped library and --known-divergences its baselines; these add to them."""
    command.add_argument(
        "--cases-also", action="append", default=[], metavar="PATH", help="case files to run besides"
    )
    command.add_argument(
        "--known-divergences-also", action="append", default=[], metavar="FILE", help="baselines besides"
    )


def _add_shard_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--shard", default=None, metavar="K/N", help="run the K-th of N parts (CI shards)")
    command.add_argument(
        "--durations-from", default=None, metavar="RESULTS", help="balance shards by this run's durations"
    )


def _add_adoption_commands(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("cases", help="list the shipped case files and baselines, and where they are")
    new = sub.add_parser("new-adapter", help="write a commented adapter skeleton to fill in")
    new.add_argument("name", help="the adapter's name, e.g. mine (writes NAME_adapter.py)")
    new.add_argument("--out", default=None, metavar="FILE", help="where to write (default: NAME_adapter.py)")
    annotate = sub.add_parser("annotations", help="GitHub ::error lines for the first failures of a run")
    annotate.add_argument("results", help="results.json")
    annotate.add_argument("--limit", type=int, default=10, metavar="N", help="at most N lines (default 10)")


def _case_paths(args: argparse.Namespace) -> list[str | Path]:
    """Explicit paths, else the shipped library; then the --cases-also files."""
    return [*(args.paths or library.case_files()), *args.cases_also]


def _whole_library(paths: Sequence[str | Path]) -> bool:
    """Whether every shipped case file is among those run (stale baseline entries are then warned)."""
    try:
        shipped = {p.resolve() for p in library.case_files()}
    except library.LibraryNotFound:
        return False
    return shipped <= {p.resolve() for p in case_files(paths)}


def _shard_cases(cases: list, args: argparse.Namespace) -> list:
    if args.shard is None:
        if args.durations_from:
            raise UsageError("--durations-from balances shards: give --shard K/N too")
        return cases
    try:
        shard = shards.parse(args.shard)
        weights = shards.durations(args.durations_from) if args.durations_from else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return shards.select(cases, shard, weights)


def _known_divergences(args: list[str] | None, also: Sequence[str] = ()) -> list[divergences.Divergence]:
    """Entries of the given files, or of every shipped baseline file (one per framework), and of
    the ``also`` files."""
    for arg in [*(args or []), *also]:
        if not Path(arg).is_file():
            raise UsageError(f"known-divergences file {arg!r} does not exist")
    paths = [Path(a) for a in args] if args is not None else library.baseline_files()
    return [entry for path in [*paths, *map(Path, also)] for entry in load_divergences(path)]


def _adapter_specs(frameworks: Sequence[str], adapters: Sequence[str]) -> list[str]:
    if frameworks or adapters:
        for name in frameworks:
            resolve_spec(name)  # unknown names are usage errors
        return [*frameworks, *adapters]
    available = importable_builtins()
    if not available:
        raise UsageError("no framework given and no built-in framework (torch, mlx) is installed")
    return list(available)


def _print_summary(summary: dict[str, dict[str, int]], frameworks: dict[str, str]) -> None:
    """The status counts of each framework (a document's "summary": conformance.results.summarize)."""
    rows = []
    for name, version in frameworks.items():
        counts = [summary.get(name, {}).get(s, 0) for s in STATUSES]
        rows.append([name, version, *counts, sum(counts)])
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
    timings = Timings()
    with timings.phase("load cases"):
        checks = _checks(args.check)
        specs = _adapter_specs(args.framework, args.adapter)
    early = runner.prestart(specs, args.timeout)  # imports and describes the frameworks meanwhile
    # (imported once the fork servers are on their way: the other core has nothing to do before)
    import conformance.reports  # noqa: F401

    try:
        with timings.phase("load cases"):
            known = _known_divergences(args.known_divergences, args.known_divergences_also)
            paths = _case_paths(args)
            cases = _shard_cases(filter_cases(select(load_cases(paths), args.case), args.keyword), args)
        if not cases:
            raise UsageError("no case matches the given paths, --case and -k")
        with timings.phase("describe adapters"):
            # built-ins still importing are described as their servers answer: the run starts
            # with the frameworks that are ready (MLX's cases run while torch imports)
            infos = runner.describe(specs, early, wait=False)
        names = [i.name for i in infos]
        if len(set(names)) != len(names):
            raise UsageError(f"two adapters share a name: {names}")
    except BaseException:
        if early is not None:
            early.close()
        raise
    progress = None if args.quiet else runner.print_progress
    store = None
    if args.reuse_results:
        store = reuse.Store(args.reuse_results, checks)
        if store.why_not:
            print(
                f"conformance: nothing reused or kept in {args.reuse_results}: {store.why_not}",
                file=sys.stderr,
            )
    run = runner.Runner(infos, args.workers, args.timeout, progress, checks, prestarted=early, store=store)
    try:
        run.start()  # every pool's server imports its frameworks meanwhile
        if not args.quiet:
            versions = ", ".join(i.name if i.pending else f"{i.name} {i.version}" for i in infos)
            print(f"conformance: {len(cases)} cases x {len(infos)} frameworks ({versions})", file=sys.stderr)
        with timings.phase("run"):
            outcome = run.run(cases)
        # the results live until the command exits: the cyclic collections of what follows
        # (baselines, reports) need not walk them again and again (0.2 s of a 20,000-result run)
        gc.freeze()
        # ... nor any collection in what is left: it makes the reports' tens of thousands of
        # objects, none of them garbage cycles, and the command ends with it (0.04 s of the
        # reports' 0.6)
        collecting = gc.isenabled()
        gc.disable()
        try:
            return _finish_run(args, outcome, cases, known, paths, store, timings)
        finally:
            if collecting:
                gc.enable()
    finally:
        run.close()  # the run's workers and servers ended while the reports were written


def _finish_run(
    args: argparse.Namespace,
    outcome: runner.RunOutcome,
    cases: list[Case],
    known: list[divergences.Divergence],
    paths: list[str | Path],
    store: reuse.Store | None,
    timings: Timings,
) -> int:
    """What ``conformance run`` does with its results: baselines, reproducers, reports, the gate."""
    from conformance.reports import write_reports

    timings.workers = outcome.costs
    filtered = bool(args.keyword or args.case or args.check or args.shard) or not _whole_library(paths)
    with timings.phase("baselines"):
        facts = divergences.run_facts(outcome.frameworks, outcome.framework_facts)
        applied = divergences.apply(outcome.results, known, report_stale=not filtered, facts=facts)
    warnings = applied.warnings
    with timings.phase("reproducers"):
        shutil.rmtree(Path(args.report_dir) / "reproducers", ignore_errors=True)
        reproducer.write_all(
            outcome.results,
            {(c.file, c.id): c for c in cases},
            outcome.frameworks,
            args.report_dir,
            reproducer.DIVERGENT_REPRODUCED
            if args.reproducers == "divergent"
            else reproducer.FAILING_REPRODUCED,
        )
    command = "conformance " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with timings.phase("document"):
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
        if args.shard:
            document["runs"][0]["shard"] = shards.parse(args.shard).as_dict()
        if store is not None:
            document["runs"][0]["reused"] = {
                "results": outcome.reused,
                "of": len(outcome.results),
                "store": str(args.reuse_results),
            }
        _compare(document, args)
    with timings.phase("reports"):  # the formats' own phases overlap: some are written aside
        written = write_reports(document, args.report_dir, timings, results=outcome.results)
    _print_summary(document["summary"], outcome.frameworks)
    if outcome.reused:
        print(
            f"reused {outcome.reused} of {len(outcome.results)} results from {args.reuse_results} "
            "(computed by an earlier run with the same inputs; run without --reuse-results to compute all)",
            file=sys.stderr,
        )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    _print_failures(outcome.results)
    print(f"reports: {', '.join(str(p) for p in written.values())}")
    if outcome.interrupted:
        print("interrupted: the reports hold every result computed before the interruption", file=sys.stderr)
    if args.timings:
        timings.write(args.timings)
    return _gate(document, args)


def cmd_repro(args: argparse.Namespace) -> int:
    specs = _adapter_specs(args.framework, args.adapter)
    cases = filter_cases(select(load_cases(args.paths or library.case_files()), args.case), args.keyword)
    if not cases:
        raise UsageError("no case matches the given paths, --case and -k")
    run = runner.Runner(runner.describe(specs), 1)
    try:
        outcome = run.run(cases)
    finally:
        run.close()
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
    from conformance.reports import write_reports

    documents = []
    for path in args.results:
        document = _load(path)
        # reproducer scripts stay where their run wrote them; point at them from the new report
        for record in document.get("results", []):
            if record.get("reproducer"):
                script_path = Path(path).parent / record["reproducer"]
                record["reproducer"] = os.path.relpath(script_path, args.report_dir)
        documents.append(document)
    document = merge_documents(documents)
    shard_warnings = shards.merge_warnings(documents)
    for warning in shard_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    document["warnings"] = [*document.get("warnings", []), *shard_warnings, *args.note]
    _compare(document, args)
    paths = write_reports(document, args.report_dir)
    _print_summary(summarize(results_of(document)), document["frameworks"])
    print(f"reports: {', '.join(str(p) for p in paths.values())}")
    return _gate(document, args)


def cmd_diff(args: argparse.Namespace) -> int:
    found = changes.compare(_load(args.base), _load(args.head))
    print(f"{args.head} since {args.base}: {changes.counts_line(found)}")
    for kind in changes.KINDS:
        rows = [[r.get("framework", ""), f"{r['file']}::{r['case']}", r.get("check", ""), r.get("base"),
                 r.get("head"), r.get("base_eb"), r.get("head_eb")] for r in found[kind]]  # fmt: skip
        if rows:
            print(f"\n{kind.replace('_', ' ')} ({len(rows)}):")
            headers = ["framework", "case", "check", "base", "head", "base err/tol", "head err/tol"]
            print(tabulate(rows[:50], headers=headers, tablefmt="simple", missingval=""))
            if len(rows) > 50:
                print(f"... and {len(rows) - 50} more")
    return EXIT_FAILED if found["new_failures"] else EXIT_OK


def cmd_fuzz(args: argparse.Namespace) -> int:
    try:
        from conformance.fuzz import FuzzConfig, fuzz
    except ModuleNotFoundError as exc:  # an optional dependency: say which extra brings it
        if exc.name != "hypothesis":
            raise
        raise UsageError(
            "conformance fuzz needs Hypothesis, which is not installed: pip install 'conformance[fuzz]'"
        ) from None

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
    cases = load_cases(_case_paths(args))
    entries = _known_divergences(args.known_divergences, args.known_divergences_also)
    files = sorted({c.file for c in cases})
    print(f"{len(cases)} cases in {len(files)} files are valid; {len(entries)} known divergences")
    return EXIT_OK


def cmd_cases(args: argparse.Namespace) -> int:
    print(f"case library: {library.location()}")
    for path in library.case_files():
        print(f"  {path.name:36} {len(load_cases([path])):4} cases")
    for path in library.baseline_files():
        print(f"  {path.name:36} {len(load_divergences(path)):4} known divergences")
    return EXIT_OK


def cmd_new_adapter(args: argparse.Namespace) -> int:
    from conformance.adapter_kit import write_skeleton

    try:
        path, class_name = write_skeleton(args.name, args.out)
    except (ValueError, FileExistsError) as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {path}: fill in the TODOs, then: conformance run --adapter {path}:{class_name}")
    return EXIT_OK


def cmd_annotations(args: argparse.Namespace) -> int:
    from conformance.annotations import annotations, load_results

    try:
        document = load_results(args.results)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for line in annotations(document, args.limit):
        print(line)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {
        "run": cmd_run,
        "repro": cmd_repro,
        "report": cmd_report,
        "diff": cmd_diff,
        "validate": cmd_validate,
        "fuzz": cmd_fuzz,
        "cases": cmd_cases,
        "new-adapter": cmd_new_adapter,
        "annotations": cmd_annotations,
    }[args.command]
    try:
        return handler(args)
    except CaseFileError as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
    except (AdapterLoadError, ExpressionError, UsageError, library.LibraryNotFound) as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
