"""Computed views of a results document, in one place: every renderer (Markdown, summary, HTML,
JUnit, pictures) shows these and computes nothing of its own, so the formats cannot disagree.

Everything comes from the document alone, so ``conformance report`` can re-render (and merge)
results written elsewhere.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.checks import CHECKS as CHECK_ORDER
from conformance.results import DIVERGENT, FAILING, STATUSES, Result, results_of
from conformance.signatures import base_framework, region, region_text, signature
from conformance.spec import RULES

TITLE = "Transposed-convolution conformance"
#: statuses listed as divergences: everything but a pass or a declared limit
LISTED = tuple(s for s in STATUSES if s not in ("pass", "unsupported"))
#: order within a framework's divergences: what breaks the gate first, the known ones last
LISTING_ORDER = {s: i for i, s in enumerate(("crash", "timeout", "error", "fail", "xpass", "xfail"))}
ICONS = {
    "pass": "✅",
    "fail": "❌",
    "error": "❌",
    "crash": "💥",
    "timeout": "⏱️",
    "xfail": "⚠️",
    "xpass": "❌",
    "unsupported": "—",
}
MD_MESSAGE_CHARS = 200
HTML_MESSAGE_CHARS = 300
_SAFE_LINK = re.compile(r"https?://[^\s<>\"'`|()\[\]]+", re.IGNORECASE)


# --- computed once while several formats are rendered -------------------------------------------

_SCOPE: ContextVar[dict | None] = ContextVar("conformance_report_views", default=None)


@contextmanager
def rendering(document: dict[str, Any] | None = None, results: list[Result] | None = None) -> Iterator[None]:
    """While the formats of one document are rendered, each view marked ``_once`` is computed
    once, by whichever renderer asks first, and shared by the others (views are never modified).

    ``results``: the Result objects ``document``'s records were made from (make_document), taken
    as its :func:`document_results` instead of 20,000 objects made again from the records."""
    memo: dict = {}
    if document is not None and results is not None:
        if len(results) != len(document.get("results", ())):
            raise ValueError("the results are not those the document's records were made from")
        memo[("document_results", id(document))] = (results, (document,), {})
    token = _SCOPE.set(memo)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def _once(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        memo = _SCOPE.get()
        if memo is None:
            return fn(*args, **kwargs)
        key = (
            fn.__name__,
            *(_memo_key(a) for a in args),
            *((name, _memo_key(value)) for name, value in sorted(kwargs.items())),
        )
        if key not in memo:
            memo[key] = (fn(*args, **kwargs), args, kwargs)  # holding the arguments keeps their ids theirs
        return memo[key][0]

    return wrapper


def _memo_key(arg: Any) -> Any:
    """A list of names by value (renderers build their own), anything else by identity."""
    if isinstance(arg, (list, tuple)) and all(isinstance(x, str) for x in arg):
        return tuple(arg)
    return id(arg)


@_once
def document_results(document: dict[str, Any]) -> list[Result]:
    """The document's records as Result objects."""
    return results_of(document)


def prepare(document: dict[str, Any]) -> None:
    """Work out, in the current rendering scope, the views that the formats written by different
    processes share (the Result objects, the status counts, the causes, the comparison by parameter
    family): a process forked afterwards inherits them instead of working them out again."""
    results = document_results(document)
    frameworks = frameworks_of(document, results)
    status_counts(results)
    comparison_by_family(frameworks, results)
    causes(results)
    causes(results, known=True)


# --- the facts every format shows ---------------------------------------------------------------


@dataclass
class Family:
    """A case as written, before matrix expansion, and its results on each framework."""

    file: str
    name: str
    checks: list[str] = field(default_factory=list)
    counts: dict[str, Counter] = field(default_factory=dict)  # framework -> status -> count

    @property
    def label(self) -> str:
        return f"{Path(self.file).name}::{self.name}"

    @property
    def diverges(self) -> bool:
        return any(c[s] for c in self.counts.values() for s in LISTED)


def frameworks_of(document: dict[str, Any], results: Iterable[Result]) -> list[str]:
    """The document's frameworks in their order, then any that only the results name."""
    names = list(document.get("frameworks") or {})
    for name in dict.fromkeys(framework for _, _, framework, _, _ in status_counts(results)):
        if name not in names:
            names.append(name)
    return names


@_once
def status_counts(results: Iterable[Result]) -> Counter:
    """(file, family, framework, check, status) -> how many results: what the matrices, the summary
    and the verdict count, in one pass shared by them. Its keys come in the order their first results
    do, so whatever is built from them meets families, frameworks, checks and statuses in result
    order."""
    return Counter((r.file, r.family or r.case, r.framework, r.check, r.status) for r in results)


def families_of(results: Iterable[Result]) -> list[Family]:
    families: dict[tuple[str, str], Family] = {}
    for (file, name, framework, check, status), n in status_counts(results).items():
        family = families.get((file, name))
        if family is None:
            family = families[file, name] = Family(file, name)
        if check not in family.checks:
            family.checks.append(check)
        counts = family.counts.get(framework)
        if counts is None:
            counts = family.counts[framework] = Counter()
        counts[status] += n
    return list(families.values())


def verdict(results: list[Result], interrupted: bool) -> tuple[str, str]:
    """("PASS" or "FAIL", one line saying why)."""
    counts: Counter = Counter()
    for (*_, status), n in status_counts(results).items():
        counts[status] += n
    failing = [(s, counts[s]) for s in STATUSES if s in FAILING and counts[s]]
    parts = []
    if failing:
        total = sum(n for _, n in failing)
        plural = "s" * (total != 1)
        parts.append(f"{total} failing result{plural} ({counts_text(failing)}) of {len(results)}")
    else:
        parts.append(f"{counts['pass']} of {len(results)} results pass" if results else "no results")
    if counts["xfail"]:
        parts.append(f"{counts['xfail']} known divergence{'s' * (counts['xfail'] != 1)} (xfail)")
    if counts["unsupported"]:
        parts.append(f"{counts['unsupported']} unsupported")
    if interrupted:
        parts.append("the run was interrupted, so some cases never ran")
    # an interrupted run fails the gate (the CLI exits 1) even if what did run passed
    return ("FAIL" if failing or interrupted else "PASS"), "; ".join(parts)


def counts_text(pairs: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{n} {s}" for s, n in pairs)


def divergent(results: Iterable[Result]) -> dict[str, list[Result]]:
    """framework -> its non-pass, non-unsupported results, gate failures first."""
    grouped: dict[str, list[Result]] = {}
    for r in results:
        if r.status in LISTED:
            grouped.setdefault(r.framework, []).append(r)
    for listed in grouped.values():
        listed.sort(key=lambda r: (LISTING_ORDER.get(r.status, 99), r.file, r.case, r.check))
    return grouped


#: a parity-matrix cell's mark by kind; emoji read well on GitHub, but many systems lack an emoji
#: font, so the HTML uses plain symbols on coloured cells
MD_MARKS = {"ok": "✅", "bad": "❌", "known": "⚠️", "na": "—", "none": ""}
HTML_MARKS = {"ok": "✓", "bad": "✗", "known": "⚠", "na": "—", "none": ""}


def matrix_cell(counts: Counter | None) -> tuple[str, str]:
    """(kind, text) of one family x framework cell; kind is ok, bad, known, na (all unsupported) or
    none (no result), and the text is ``12/12`` or ``3 fail, 1 xfail / 12`` (a mark goes before it)."""
    total = sum(counts.values()) if counts else 0
    if not counts or total == 0:
        return "none", "·"
    unsupported = counts["unsupported"]
    if unsupported == total:
        return "na", "unsupported"
    problems = [(s, counts[s]) for s in LISTED if counts[s]]
    if not problems:
        kind, text = "ok", f"{counts['pass']}/{total}"
    else:
        kind = "bad" if any(s in FAILING for s, _ in problems) else "known"
        text = f"{counts_text(problems)} / {total}"
    if unsupported:
        text += f" · {unsupported} unsupported"
    return kind, text


def check_matrix(frameworks: list[str], results: Iterable[Result]) -> tuple[list[str], list[list[tuple]]]:
    """Forward, each gradient and error parity side by side: rows are frameworks, columns checks,
    cells ``matrix_cell`` over every case of that framework and check."""
    counts: dict[tuple[str, str], Counter] = {}
    checks: list[str] = []
    for (_, _, framework, check, status), n in status_counts(results).items():
        cell = counts.get((framework, check))
        if cell is None:
            cell = counts[framework, check] = Counter()
            if check not in checks:
                checks.append(check)
        cell[status] += n
    order = {c: i for i, c in enumerate(CHECK_ORDER)}
    checks.sort(key=lambda c: order.get(c, len(order)))
    rows = [[name, *(matrix_cell(counts.get((name, c))) for c in checks)] for name in frameworks]
    return checks, rows


def _behaviour(r: Result) -> str:
    """What a framework did with an invalid configuration, in a few words."""
    if r.status == "unsupported":
        return "unsupported"
    if r.status == "timeout" or "timed out" in r.message or "timeout" in r.message:
        return "hangs"
    if r.message.startswith("worker process"):
        why = r.message.split(" while ")[0].removeprefix("worker process ")
        return f"crashes ({why})"
    if r.exception:
        # where the rejection came from: only the framework's own exception is error parity
        where = {"framework": " (framework)", "adapter": " (adapter's own code)"}.get(r.raised_by or "", "")
        return f"raises {r.exception}{where}"
    if r.actual_shape is not None:
        return "returns a result"
    return r.status


def error_parity_matrix(frameworks: list[str], results: Iterable[Result]) -> list[dict[str, Any]]:
    """Rule x framework: how each framework treats configurations that break each validity rule.

    A cell lists each behaviour with its count, e.g. ``raises RuntimeError ×3; returns shape (2, 4, 8) ×1``,
    and an example message per behaviour. A case that breaks several rules counts for each.
    """
    cells: dict[tuple[str, str], dict[str, list[Result]]] = {}
    rules: list[str] = []
    for r in results:
        if r.check != "error_parity":
            continue
        for rule in r.rules or ["(unknown rule)"]:
            if rule not in rules:
                rules.append(rule)
            cells.setdefault((rule, r.framework), {}).setdefault(_behaviour(r), []).append(r)
    order = {rule: i for i, rule in enumerate(RULES)}
    rules.sort(key=lambda rule: order.get(rule, len(order)))
    rows = []
    for rule in rules:
        row = {"rule": rule, "text": RULES[rule].text if rule in RULES else "", "cells": []}
        for name in frameworks:
            behaviours = cells.get((rule, name), {})
            statuses = Counter(r.status for rs in behaviours.values() for r in rs)
            kind = matrix_cell(statuses)[0] if behaviours else "none"
            parts = [
                f"{what} ×{len(rs)}" for what, rs in sorted(behaviours.items(), key=lambda kv: -len(kv[1]))
            ]
            examples = [f"{what}: {rs[0].case}: {rs[0].message}" for what, rs in behaviours.items()]
            returned = behaviours.get("returns a result")
            if returned and returned[0].actual_shape is not None:
                parts = [
                    p + f" (e.g. {tuple(returned[0].actual_shape)})" if p.startswith("returns") else p
                    for p in parts
                ]
            row["cells"].append({"kind": kind, "text": "; ".join(parts) or "·", "examples": examples})
        rows.append(row)
    return rows


#: parameter families compared across frameworks: name -> predicate over a result's params
def _pairs(p: dict[str, Any]) -> list[tuple[int, int]]:
    """Explicit (lo, hi) per axis of a params record; [] for string padding (resolved inside)."""
    padding = p["padding"]
    if isinstance(padding, str):
        return []
    return [(v[0], v[1]) if isinstance(v, list) else (v, v) for v in padding]


def _extent_exceeded(p: dict[str, Any]) -> bool:
    return any(max(pair) > d * (k - 1) for pair, d, k in zip(_pairs(p), p["dilation"], p["kernel_size"]))


def _unbatched(p: dict[str, Any]) -> bool:
    return len(p["input_shape"]) == int(p["op"][-2]) + 1


PARAMETER_FAMILIES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "1-d": lambda p: p["op"] == "conv_transpose1d",
    "2-d": lambda p: p["op"] == "conv_transpose2d",
    "3-d": lambda p: p["op"] == "conv_transpose3d",
    "groups > 1": lambda p: p["groups"] > 1,
    "dilation > 1": lambda p: any(d > 1 for d in p["dilation"]),
    "stride > 1": lambda p: any(s > 1 for s in p["stride"]),
    "output_padding > 0": lambda p: any(op > 0 for op in p["output_padding"]),
    "output_padding >= stride": lambda p: any(0 < s <= op for op, s in zip(p["output_padding"], p["stride"])),
    "padding > dilation·(k−1)": _extent_exceeded,
    "no bias": lambda p: not p["bias"],
    "float16": lambda p: p["dtype"] == "float16",
    "bfloat16": lambda p: p["dtype"] == "bfloat16",
    "float64": lambda p: p["dtype"] == "float64",
    # the dimensions beyond PyTorch's functional arguments (README, "Reference semantics")
    "asymmetric padding": lambda p: any(lo != hi for lo, hi in _pairs(p)),
    "padding same / valid": lambda p: p["padding"] in ("same", "valid"),
    "padding same_upper / same_lower": lambda p: p["padding"] in ("same_upper", "same_lower"),
    "output_size": lambda p: "output_size" in p,
    "unbatched input": _unbatched,
    "empty batch (N = 0)": lambda p: not _unbatched(p) and p["input_shape"][0] == 0,
    "channels_last layout": lambda p: p.get("layout") == "channels_last",
    "strided layout": lambda p: p.get("layout") == "strided",
}


def _reason(r: Result) -> str:
    """A short name for why a result diverges: its known-divergence reason, else its message."""
    text = (r.divergence or {}).get("reason") or r.message
    text = text.split(": ", 1)[1] if text.startswith(("mlx", "torch", "megengine", "lucid", "jax")) else text
    return shorten(" ".join(text.split()), 90)


@_once
def comparison_by_family(frameworks: list[str], results: Iterable[Result]) -> list[dict[str, Any]]:
    """Per parameter family (valid configurations only), which frameworks diverge and why.

    A cell counts divergent results (fail, error, crash, timeout, xfail) over the results that ran
    (unsupported excluded) and names the most frequent reasons; every number comes from results.
    """
    valid = [r for r in results if r.check != "error_parity" and r.params]
    # each params record (the results of a case share one) is classified once
    families = {
        key: tuple(f for f, member in PARAMETER_FAMILIES.items() if member(params))
        for key, params in {id(r.params): r.params for r in valid}.items()
    }
    # a cell's numbers come from counts by framework, families and status; only the results whose
    # reasons it names (divergent ones, and unsupported ones where none ran) are listed, in order
    counted = Counter(
        zip([r.framework for r in valid], [families[id(r.params)] for r in valid], [r.status for r in valid])
    )
    statuses: dict[tuple[str, str], Counter] = {}
    for (framework, memberships, status), n in counted.items():
        for family in memberships:
            cell = statuses.get((family, framework))
            if cell is None:
                cell = statuses[family, framework] = Counter()
            cell[status] += n
    listed: dict[tuple[str, str, bool], list[Result]] = {}
    for r in valid:
        if r.status in DIVERGENT or r.status == "unsupported":
            for family in families[id(r.params)]:
                listed.setdefault((family, r.framework, r.status in DIVERGENT), []).append(r)
    # a divergent result's reason, once (it is named in each of its families)
    reasons_of = {
        key: _reason(r)
        for key, r in {id(r): r for (*_, bad), rs in listed.items() if bad for r in rs}.items()
    }
    rows = []
    for family in PARAMETER_FAMILIES:
        row = {"family": family, "cells": []}
        for name in frameworks:
            counts = statuses.get((family, name), Counter())
            mine = sum(counts.values())
            ran = mine - counts["unsupported"]
            bad = listed.get((family, name, True), [])
            reasons = Counter(reasons_of[id(r)] for r in bad).most_common(2)
            if not mine:
                kind, text = "none", "·"
            elif not ran:  # why it cannot express them: the adapters' declared reasons
                kind, text = "na", "unsupported"
                unsupported = listed.get((family, name, False), [])
                reasons = Counter(shorten(r.message, 120) for r in unsupported).most_common(2)
            elif not bad:
                kind, text = "ok", f"0/{ran}"
            else:
                kind = "bad" if any(r.status in FAILING for r in bad) else "known"
                text = f"{len(bad)}/{ran} diverge"
            if ran and ran < mine:
                text += f" · {mine - ran} unsupported"
            row["cells"].append(
                {"kind": kind, "text": text, "reasons": [f"{n}× {why}" for why, n in reasons]}
            )
        rows.append(row)
    return rows


def marked(cell: tuple[str, str], marks: dict[str, str]) -> str:
    kind, text = cell
    return f"{marks[kind]} {text}".strip()


def _axes(values: Any, joined: bool = False) -> str:
    if not isinstance(values, (list, tuple)):
        return str(values)
    if any(isinstance(v, (list, tuple)) for v in values):  # (lo, hi) padding pairs: "1,0x2"
        return "x".join(",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in values)
    if not joined and values and all(v == values[0] for v in values):
        return str(values[0])
    return "x".join(map(str, values))


def params_text(params: dict[str, Any]) -> str:
    """``conv_transpose2d in=1x4x8x8 co=8 k=3x3 s=2 p=1 op=1 d=1 g=1 bias float32``."""
    if not params:
        return ""
    memo = _SCOPE.get()
    if memo is None:
        return _params_text(params)
    key = ("params_text", id(params))  # the results of one case share one params object
    if key not in memo:
        memo[key] = (_params_text(params), params)
    return memo[key][0]


def _params_text(params: dict[str, Any]) -> str:
    parts = [str(params.get("op", "?"))]
    if "input_shape" in params:
        parts.append(f"in={_axes(params['input_shape'], joined=True)}")
    for key, short in (
        ("out_channels", "co"),
        ("kernel_size", "k"),
        ("stride", "s"),
        ("padding", "p"),
        ("output_padding", "op"),
        ("output_size", "os"),
        ("dilation", "d"),
        ("groups", "g"),
        ("layout", "layout"),
    ):
        if key in params:
            parts.append(f"{short}={_axes(params[key], joined=key == 'kernel_size')}")
    if "bias" in params:
        parts.append("bias" if params["bias"] else "no-bias")
    if "dtype" in params:
        parts.append(str(params["dtype"]))
    return " ".join(parts)


def fmt_number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.3g}"


def shape_diff_text(r: Result) -> str:
    """Expected vs actual shape/dtype where they differ, else ""."""
    parts = []
    if r.expected_shape is None and r.actual_shape is not None:
        parts.append(f"expected an error, got shape {list(r.actual_shape)}")
    elif r.actual_shape is not None and list(r.actual_shape) != list(r.expected_shape or []):
        parts.append(f"shape expected {list(r.expected_shape or [])}, got {list(r.actual_shape)}")
    if r.actual_dtype and r.expected_dtype and r.actual_dtype != r.expected_dtype:
        parts.append(f"dtype expected {r.expected_dtype}, got {r.actual_dtype}")
    return "; ".join(parts)


def numeric_diff_text(r: Result) -> str:
    parts = [
        f"{name} {fmt_number(getattr(r, name))}"
        for name in ("max_abs_err", "max_rel_err", "max_err_over_bound", "max_err_over_tolerance")
        if getattr(r, name) is not None
    ]
    if r.mismatched is not None and r.elements is not None:
        parts.append(f"mismatched {r.mismatched}/{r.elements}")
    if r.worst_index is not None and r.mismatched:
        worst = f"worst_index {list(r.worst_index)}"
        if r.tolerance_at_worst is not None:
            worst += f" (tolerance_at_worst {fmt_number(r.tolerance_at_worst)})"
        parts.append(worst)
    return ", ".join(parts)


def safe_link(link: Any) -> str | None:
    """The link when it is a plain http(s) URL that is safe to make clickable, else None."""
    return link if isinstance(link, str) and _SAFE_LINK.fullmatch(link) else None


def shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _environment_row(index: int, run: dict[str, Any]) -> dict[str, str]:
    env = run.get("environment") or {}
    frameworks = run.get("frameworks") or {}
    return {
        "run": str(index),
        "python": str(env.get("python", "")),
        "platform": str(env.get("platform", "")),
        "machine": str(env.get("machine", "")),
        "conformance": str(env.get("conformance", "")),
        "numpy": str(env.get("numpy", "")),
        "frameworks": ", ".join(f"{n} {v}" for n, v in frameworks.items()),
        "command": str(run.get("command") or ""),
        "interrupted": "yes" if run.get("interrupted") else "",
        "reused": _reused_text(run.get("reused") or {}),
    }


def _reused_text(reused: dict[str, Any]) -> str:
    """'12 of 20 results reused ...' for a run given --reuse-results, else ''."""
    if not reused:
        return ""
    of = f" of {reused['of']:,}" if isinstance(reused.get("of"), int) else ""
    return f"{reused.get('results', 0):,}{of} results reused from an earlier run with the same inputs"


def environment_rows(document: dict[str, Any]) -> list[dict[str, str]]:
    runs = document.get("runs") or [
        {"environment": document.get("environment") or {}, "frameworks": document.get("frameworks") or {}}
    ]
    return [_environment_row(i, run) for i, run in enumerate(runs, 1)]


def summary_rows(frameworks: list[str], results: list[Result]) -> list[list[Any]]:
    """One row per framework: name, a count per status, total (recounted, not trusted)."""
    counts = {name: Counter() for name in frameworks}
    for (_, _, framework, _, status), n in status_counts(results).items():
        if framework not in counts:
            counts[framework] = Counter()
        counts[framework][status] += n
    return [[name, *(c[s] for s in STATUSES), sum(c.values())] for name, c in counts.items()]


# --- divergences grouped by cause ---------------------------------------------------------------

SEVERITY = LISTING_ORDER  # crash, timeout, error, fail, xpass, then the known ones


def _stem(r: Result) -> str:
    """What distinguishes one cause from another within a framework, check and kind: the exception
    type, or the message with its numbers, shapes and names of cases taken out."""
    if r.exception:
        return r.exception
    text = re.sub(r"\([^()]*\)|\[[^\[\]]*\]|\d+(\.\d+)?(e-?\d+)?", "#", r.message)
    return " ".join(text.split())[:60]


@dataclass
class Cause:
    """Divergent results of one framework (all its kernel-path variants together) that fail the
    same way: one line in the summary and both reports, with a representative result. What it
    derives from its results is worked out once, when first asked (the formats ask several
    times): causes() completes and sorts its results before that."""

    framework: str  # the base framework: torch for torch, torch[native], torch[avx512]
    check: str
    kind: str
    results: list[Result]
    reason: str = ""  # for known divergences: the baseline entry's reason
    link: str = ""

    @property
    def representative(self) -> Result:
        return self.results[0]

    @functools.cached_property
    def variants(self) -> list[str]:
        """The adapters (kernel-path variants) that have it, in the order they first appear."""
        return list(dict.fromkeys(r.framework for r in self.results))

    @functools.cached_property
    def statuses(self) -> Counter:
        return Counter(r.status for r in self.results)

    @functools.cached_property
    def region(self) -> str:
        """The features every one of its results has (:func:`conformance.signatures.region`), then
        those that at least 80 % have."""
        # the results of a case share its params and rules: each case's region once
        cases = {(id(r.params), tuple(r.rules)): r for r in self.results}
        found = {key: region(r.params, r.rules) for key, r in cases.items()}
        regions = [found[id(r.params), tuple(r.rules)] for r in self.results]
        common = frozenset.intersection(*regions)
        counts = Counter(f for features in regions for f in features - common)
        most = frozenset(f for f, n in counts.items() if n >= 0.8 * len(regions))
        text = region_text(common)
        return text + (f"; most: {region_text(most)}" if most else "")

    @functools.cached_property
    def severity(self) -> int:
        return min(SEVERITY.get(r.status, 99) for r in self.results)

    def examples(self, limit: int) -> list[Result]:
        """Up to ``limit`` results, one per distinct case first."""
        seen: dict[tuple[str, str], Result] = {}
        for r in self.results:
            seen.setdefault((r.file, r.case), r)
            if len(seen) >= limit:
                break
        return list(seen.values())


@_once
def causes(results: Iterable[Result], known: bool = False) -> list[Cause]:
    """Failing results (``known``: known divergences, xfail) grouped by cause, the most severe and
    then the most frequent first. Known divergences group by their baseline entry's reason."""
    groups: dict[tuple, Cause] = {}
    for r in results:
        if (r.status == "xfail") != known or (not known and r.status not in FAILING):
            continue
        sig = signature(r)
        framework = base_framework(r.framework)
        if known:
            divergence = r.divergence or {}
            key: tuple = (framework, divergence.get("entry", ""), divergence.get("reason", ""))
        else:
            key = (framework, sig.check, sig.kind, _stem(r), tuple(r.rules))
        if key not in groups:
            reason = (r.divergence or {}).get("reason", "") if known else ""
            link = (r.divergence or {}).get("link", "") if known else ""
            groups[key] = Cause(framework, sig.check, sig.kind, [], reason, link)
        groups[key].results.append(r)
    ordered = list(groups.values())
    for cause in ordered:
        cause.results.sort(key=lambda r: (SEVERITY.get(r.status, 99), r.file, r.case, r.check))
    ordered.sort(key=lambda c: (c.severity, -len(c.results), c.framework, c.check, c.kind))
    return ordered


# --- machines, build facts, inactive baseline entries (issue 9) ---------------------------------


def machine_rows(document: dict[str, Any]) -> list[dict[str, str]]:
    """One row per run: its machine (CPU, kernel-selecting features, cores, OS and libc, kernel
    environment variables) and each framework's build facts."""
    rows = []
    for index, run in enumerate(document.get("runs") or [], 1):
        facts = run.get("machine") or {}
        env = facts.get("env") or {}
        builds = run.get("framework_facts") or {}
        rows.append(
            {
                "run": str(index),
                "cpu": " ".join(x for x in (str(facts.get("cpu", "not recorded")), _arch(facts)) if x),
                "features": " ".join(facts.get("kernel_features") or []) or "none listed",
                "cores": f"{facts.get('usable_cores', '?')} of {facts.get('cores', '?')}" if facts else "",
                "os": ", ".join(
                    str(x)
                    for x in (
                        " ".join(str(facts.get(k, "")) for k in ("system", "release", "machine")).strip(),
                        facts.get("libc"),
                    )
                    if x
                ),
                "env": " ".join(f"{k}={v}" for k, v in env.items()),
                "builds": "; ".join(
                    f"{name}: " + ", ".join(f"{k}={_fact(v)}" for k, v in values.items())
                    for name, values in builds.items()
                    if values
                ),
            }
        )
    return rows


def _arch(facts: dict[str, Any]) -> str:
    return f"({facts['microarchitecture']})" if facts.get("microarchitecture") else ""


def _fact(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def when_text(when: dict[str, Any] | None) -> str:
    """A ``when:`` condition as written: ``cpu_flags: amx_bf16 amx_tile; version: >=2.13,<2.14``."""
    return "; ".join(f"{k}: {_fact(v)}" for k, v in (when or {}).items())


def inactive_rows(document: dict[str, Any]) -> list[dict[str, str]]:
    """Baseline entries whose ``when:`` does not hold on this run: not applicable on this machine."""
    return [
        {
            "framework": str(entry.get("framework", "")),
            "entry": str(entry.get("entry", "")),
            "when": when_text(entry.get("when")),
            "why": str(entry.get("why", "")),
            "where": f"{entry.get('file', '')}:{entry.get('line', '')}",
            "reason": str(entry.get("reason", "")),
        }
        for entry in document.get("inactive_divergences") or []
    ]


# --- where in parameter space frameworks diverge, and how close passing results sit to tolerance --


def _stride_class(p: dict[str, Any]) -> str:
    s = max(p["stride"])
    return f"stride {s}" if s < 3 else "stride ≥ 3"


def _padding_class(p: dict[str, Any]) -> str:
    """Padding against the kernel extent d·(k−1), on the axis where it is largest relative to it
    (the larger side of a (lo, hi) pair); string padding is its own class."""
    if isinstance(p["padding"], str):
        return f"padding '{p['padding']}'"
    pad, extent = max(
        ((max(pair), d * (k - 1)) for pair, d, k in zip(_pairs(p), p["dilation"], p["kernel_size"])),
        key=lambda pe: pe[0] - pe[1],
    )
    if pad == 0:
        return "p = 0"
    return "0 < p < d·(k−1)" if pad < extent else "p = d·(k−1)" if pad == extent else "p > d·(k−1)"


def _output_padding_class(p: dict[str, Any]) -> str:
    pairs = list(zip(p["output_padding"], p["stride"]))
    if all(op == 0 for op, _ in pairs):
        return "op = 0"
    return "op ≥ stride" if any(0 < s <= op for op, s in pairs) else "0 < op < stride"


def _dilation_class(p: dict[str, Any]) -> str:
    return "dilation 1" if max(p["dilation"]) == 1 else "dilation > 1"


def _groups_class(p: dict[str, Any]) -> str:
    groups = p["groups"]
    channels = p["input_shape"][0 if _unbatched(p) else 1]
    return "groups 1" if groups == 1 else "depthwise" if groups == channels else "groups > 1"


def _ndim_class(p: dict[str, Any]) -> str:
    return f"{p['op'][-2]}-d" if "op" in p else f"{len(p['input_shape']) - 2}-d"


def _dtype_class(p: dict[str, Any]) -> str:
    return str(p.get("dtype", "?"))


#: a map's axis labelled by the result's check rather than by its params
BY_CHECK = None
#: a row or column label from a result's params, or BY_CHECK
Classifier = Callable[[dict[str, Any]], str] | None
#: the maps drawn per framework: (title, row classifier, column classifier); parameter_maps labels
#: each params record once (the results of a case share one)
PARAMETER_MAPS: list[tuple[str, Classifier, Classifier]] = [
    ("stride × padding", _stride_class, _padding_class),
    ("output_padding × dilation", _output_padding_class, _dilation_class),
    ("groups × dimensionality", _groups_class, _ndim_class),
    ("dtype × check", _dtype_class, BY_CHECK),
]


@dataclass
class MapCell:
    ran: int = 0
    divergent: int = 0
    failing: int = 0

    @property
    def rate(self) -> float:
        return self.divergent / self.ran if self.ran else 0.0

    @property
    def kind(self) -> str:
        if not self.ran:
            return "none"
        return "bad" if self.failing else "known" if self.divergent else "ok"

    @property
    def text(self) -> str:
        return f"{self.divergent}/{self.ran}" if self.ran else "·"


@dataclass
class ParameterMap:
    title: str
    framework: str
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], MapCell]

    def hot_spots(self, limit: int) -> list[tuple[str, str, MapCell]]:
        """The cells where the framework diverges most often, highest rate first."""
        spots = [(r, c, cell) for (r, c), cell in self.cells.items() if cell.divergent]
        spots.sort(key=lambda s: (-s[2].failing, -s[2].rate, -s[2].divergent))
        return spots[:limit]


@_once
def parameter_maps(frameworks: list[str], results: Iterable[Result]) -> list[ParameterMap]:
    """Per framework and map: divergent over ran results (valid configurations) per cell."""
    valid = [r for r in results if r.params and r.expect != "error" and r.status != "unsupported"]
    # each params record labelled once, for every map (None where an axis is BY_CHECK)
    labelled = {
        key: tuple(
            tuple(None if classify is BY_CHECK else classify(params) for classify in (row_of, column_of))
            for _, row_of, column_of in PARAMETER_MAPS
        )
        for key, params in {id(r.params): r.params for r in valid}.items()
    }
    checks = set(r.check for r in valid)
    # results counted by framework, labels, check and status: a few thousand keys, not a pass over
    # every result per map; keys come in result order, so each map's cells do too
    counted = Counter(
        zip(
            [r.framework for r in valid],
            [labelled[id(r.params)] for r in valid],
            [r.check for r in valid],
            [r.status for r in valid],
        )
    )
    maps = []
    for place, (title, row_of, column_of) in enumerate(PARAMETER_MAPS):
        rows, columns = (
            sorted(
                checks if classify is BY_CHECK else {found[place][axis] for found in labelled.values()},
                key=_label_order,
            )
            for axis, classify in enumerate((row_of, column_of))
        )
        by_framework: dict[str, dict[tuple[str, str], MapCell]] = {name: {} for name in frameworks}
        for (framework, found, check, status), n in counted.items():
            cells = by_framework.get(framework)
            if cells is None:
                continue
            row, column = found[place]
            key = (check if row_of is BY_CHECK else row, check if column_of is BY_CHECK else column)
            cell = cells.get(key) or cells.setdefault(key, MapCell())
            cell.ran += n
            if status in DIVERGENT or status == "xpass":
                cell.divergent += n
            if status in FAILING:
                cell.failing += n
        for name in frameworks:
            if by_framework[name]:
                maps.append(ParameterMap(title, name, rows, columns, by_framework[name]))
    return maps


_LABEL_ORDER = [
    "p = 0", "0 < p < d·(k−1)", "p = d·(k−1)", "p > d·(k−1)", "op = 0", "0 < op < stride", "op ≥ stride",
    "groups 1", "groups > 1", "depthwise", *STATUSES, *CHECK_ORDER,
    "float64", "float32", "float16", "bfloat16",
]  # fmt: skip


def _label_order(label: str) -> tuple[int, str]:
    return (_LABEL_ORDER.index(label) if label in _LABEL_ORDER else len(_LABEL_ORDER), label)


def over_tolerance(r: Result) -> float | None:
    """err/tol at the worst element (1 is the tolerance), where the result records it."""
    value = r.max_err_over_tolerance
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@_once
def _passing_headroom(results: Iterable[Result]) -> list[tuple[Result, float]]:
    """The passing results that record err/tol, with it: what the headroom chart and the closest
    list both read."""
    return [(r, eb) for r in results if r.status == "pass" and (eb := over_tolerance(r)) is not None]


def headroom(frameworks: list[str], results: Iterable[Result]) -> dict[tuple[str, str], list[float]]:
    """(framework, dtype) -> err/tol of its passing numeric results (1 is the tolerance)."""
    found: dict[tuple[str, str], list[float]] = {}
    for r, eb in _passing_headroom(results):
        found.setdefault((r.framework, str(r.params.get("dtype", "?"))), []).append(eb)
    order = {name: i for i, name in enumerate(frameworks)}
    return dict(sorted(found.items(), key=lambda kv: (order.get(kv[0][0], 99), _label_order(kv[0][1]))))


def closest_to_tolerance(results: Iterable[Result], limit: int = 10) -> list[Result]:
    """The passing results with the least headroom: where a small regression would fail first."""
    passing = _passing_headroom(results)
    keys = [-(eb or 0.0) for _, eb in passing]
    return [passing[i][0] for i in sorted(range(len(passing)), key=keys.__getitem__)[:limit]]
