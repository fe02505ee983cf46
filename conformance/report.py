"""Reports from a results document: ``results.json`` for machines, ``report.md`` for a PR comment or
a CI job summary, and ``report.html``, one offline file with a filterable, sortable table of every
result.

Everything shown comes from the document alone, so ``conformance report`` can re-render (and merge)
results written elsewhere. Case ids, messages and links come from user files and exception texts:
every renderer escapes them for its format, and only http(s) links ever become links.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup
from tabulate import tabulate

from conformance.checks import CHECKS as CHECK_ORDER
from conformance.layer_api import report_tables
from conformance.results import DIVERGENT, FAILING, STATUSES, Result, results_of
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
#: result fields that may hold inf/nan, written to JSON as these strings and read back as floats
FLOAT_FIELDS = ("max_abs_err", "max_rel_err", "max_err_over_bound", "tolerance_at_worst", "duration_s")
NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
REQUIRED_RESULT_FIELDS = ("case", "file", "framework", "check", "status")
_SAFE_LINK = re.compile(r"https?://[^\s<>\"'`|()\[\]]+", re.IGNORECASE)


# --- writing and reading ------------------------------------------------------------------------


def write_reports(document: dict[str, Any], report_dir: str | Path) -> dict[str, Path]:
    """Write results.json, report.md and report.html into ``report_dir``; return their paths."""
    directory = Path(report_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / "results.json",
        "markdown": directory / "report.md",
        "html": directory / "report.html",
    }
    paths["json"].write_text(to_json(document, indent=1) + "\n", encoding="utf-8")
    paths["markdown"].write_text(render_markdown(document), encoding="utf-8")
    paths["html"].write_text(render_html(document), encoding="utf-8")
    return paths


def to_json(value: Any, indent: int | None = None) -> str:
    """Strict JSON (no NaN/Infinity tokens, which JSON.parse and many tools reject)."""
    separators = (",", ": ") if indent is not None else (",", ":")  # compact where nobody reads it
    return json.dumps(
        _finite(value), indent=indent, separators=separators, allow_nan=False, ensure_ascii=False
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(value)  # a NumPy float64 becomes a plain float
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # a NumPy scalar
        return _finite(value.item())
    return value


def load_document(path: str | Path) -> dict[str, Any]:
    """Read a results.json written by :func:`write_reports`; ValueError naming the file otherwise."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a results document: invalid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a results document: not UTF-8 text") from None
    problem = _document_problem(document)
    if problem:
        raise ValueError(f"{path}: not a results document: {problem}")
    for record in document["results"]:
        for name in FLOAT_FIELDS:
            if record.get(name) in NON_FINITE:
                record[name] = NON_FINITE[record[name]]
    document.setdefault("frameworks", {})
    document.setdefault("warnings", [])
    document.setdefault("runs", [])
    document.setdefault("interrupted", False)
    return document


def _document_problem(document: Any) -> str | None:
    if not isinstance(document, dict):
        return f"the top level is a JSON {type(document).__name__}, not an object"
    schema = document.get("schema")
    if schema is not None and not (isinstance(schema, str) and schema.startswith("conformance.results/")):
        return f"unknown schema {schema!r}"
    results = document.get("results")
    if not isinstance(results, list):
        return "no 'results' list"
    if not isinstance(document.get("frameworks", {}), dict):
        return "'frameworks' is not an object"
    for index, record in enumerate(results):
        if not isinstance(record, dict):
            return f"results[{index}] is not an object"
        missing = [k for k in REQUIRED_RESULT_FIELDS if not isinstance(record.get(k), str)]
        if missing:
            return f"results[{index}] lacks {', '.join(missing)}"
        if record["status"] not in STATUSES:
            return f"results[{index}] has unknown status {record['status']!r}"
        if not isinstance(record.get("params", {}), dict):
            return f"results[{index}].params is not an object"
    return None


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
    for r in results:
        if r.framework not in names:
            names.append(r.framework)
    return names


def families_of(results: Iterable[Result]) -> list[Family]:
    families: dict[tuple[str, str], Family] = {}
    for r in results:
        family = families.setdefault((r.file, r.family or r.case), Family(r.file, r.family or r.case))
        if r.check not in family.checks:
            family.checks.append(r.check)
        family.counts.setdefault(r.framework, Counter())[r.status] += 1
    return list(families.values())


def verdict(results: list[Result], interrupted: bool) -> tuple[str, str]:
    """("PASS" or "FAIL", one line saying why)."""
    counts = Counter(r.status for r in results)
    failing = [(s, counts[s]) for s in STATUSES if s in FAILING and counts[s]]
    parts = []
    if failing:
        total = sum(n for _, n in failing)
        plural = "s" * (total != 1)
        parts.append(f"{total} failing result{plural} ({_counts_text(failing)}) of {len(results)}")
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


def _counts_text(pairs: Iterable[tuple[str, int]]) -> str:
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
        text = f"{_counts_text(problems)} / {total}"
    if unsupported:
        text += f" · {unsupported} unsupported"
    return kind, text


def check_matrix(frameworks: list[str], results: Iterable[Result]) -> tuple[list[str], list[list[tuple]]]:
    """Forward, each gradient and error parity side by side: rows are frameworks, columns checks,
    cells ``matrix_cell`` over every case of that framework and check."""
    counts: dict[tuple[str, str], Counter] = {}
    checks: list[str] = []
    for r in results:
        counts.setdefault((r.framework, r.check), Counter())[r.status] += 1
        if r.check not in checks:
            checks.append(r.check)
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
        return f"raises {r.exception}"
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
    return _shorten(" ".join(text.split()), 90)


def comparison_by_family(frameworks: list[str], results: Iterable[Result]) -> list[dict[str, Any]]:
    """Per parameter family (valid configurations only), which frameworks diverge and why.

    A cell counts divergent results (fail, error, crash, timeout, xfail) over the results that ran
    (unsupported excluded) and names the most frequent reasons; every number comes from results.
    """
    valid = [r for r in results if r.check != "error_parity" and r.params]
    rows = []
    for family, member in PARAMETER_FAMILIES.items():
        row = {"family": family, "cells": []}
        selected = [r for r in valid if member(r.params)]
        for name in frameworks:
            mine = [r for r in selected if r.framework == name]
            ran = [r for r in mine if r.status != "unsupported"]
            bad = [r for r in ran if r.status in DIVERGENT]
            reasons = Counter(_reason(r) for r in bad).most_common(2)
            if not mine:
                kind, text = "none", "·"
            elif not ran:  # why it cannot express them: the adapters' declared reasons
                kind, text = "na", "unsupported"
                reasons = Counter(_shorten(r.message, 120) for r in mine).most_common(2)
            elif not bad:
                kind, text = "ok", f"0/{len(ran)}"
            else:
                kind = "bad" if any(r.status in FAILING for r in bad) else "known"
                text = f"{len(bad)}/{len(ran)} diverge"
            if ran and len(ran) < len(mine):
                text += f" · {len(mine) - len(ran)} unsupported"
            row["cells"].append(
                {"kind": kind, "text": text, "reasons": [f"{n}× {why}" for why, n in reasons]}
            )
        rows.append(row)
    return rows


def _marked(cell: tuple[str, str], marks: dict[str, str]) -> str:
    kind, text = cell
    return f"{marks[kind]} {text}".strip()


def _axes(values: Any, joined: bool = False) -> str:
    if not isinstance(values, (list, tuple)):
        return str(values)
    if any(isinstance(v, (list, tuple)) for v in values):  # (lo, hi) padding pairs: "1,0x2"
        return "x".join(",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in values)
    if not joined and values and all(v == values[0] for v in values):
        return str(values[0])
    return "x".join(str(v) for v in values)


def params_text(params: dict[str, Any]) -> str:
    """``conv_transpose2d in=1x4x8x8 co=8 k=3x3 s=2 p=1 op=1 d=1 g=1 bias float32``."""
    if not params:
        return ""
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
        for name in ("max_abs_err", "max_rel_err", "max_err_over_bound")
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


def _shorten(text: str, limit: int) -> str:
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
    }


def environment_rows(document: dict[str, Any]) -> list[dict[str, str]]:
    runs = document.get("runs") or [
        {"environment": document.get("environment") or {}, "frameworks": document.get("frameworks") or {}}
    ]
    return [_environment_row(i, run) for i, run in enumerate(runs, 1)]


def summary_rows(frameworks: list[str], results: list[Result]) -> list[list[Any]]:
    """One row per framework: name, a count per status, total (recounted, not trusted)."""
    counts = {name: Counter() for name in frameworks}
    for r in results:
        counts.setdefault(r.framework, Counter())[r.status] += 1
    return [[name, *(c[s] for s in STATUSES), sum(c.values())] for name, c in counts.items()]


# --- Markdown -----------------------------------------------------------------------------------

# Backslash-escape what would otherwise become HTML, an entity, code, emphasis or a table column,
# and the "](" of an inline link; lone brackets, as in shapes, stay readable in the raw text.
_MD_SPECIAL = re.compile(r"([\\`*<>|&]|(?<=\])\()")


def md_text(text: Any, limit: int | None = None) -> str:
    text = " ".join(str(text).split())
    if limit is not None:
        text = _shorten(text, limit)
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(text: str) -> str:
    """A code span that survives a table cell: no newlines, escaped pipes, a long enough fence."""
    text = " ".join(text.split()).replace("|", "\\|")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_link(text: str, link: Any) -> str:
    url = safe_link(link)
    return f"[{md_text(text)}]({url})" if url else md_text(link)


def _md_table(rows: list[list[Any]], headers: list[str]) -> str:
    # disable_numparse keeps versions such as "2.10" and ids such as "1e3" exactly as written
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _md_details(summary: str, body: str, opened: bool = False) -> str:
    # GitHub renders Markdown inside <details> only with blank lines around it
    return f"<details{' open' if opened else ''}>\n<summary>{summary}</summary>\n\n{body}\n\n</details>"


def render_markdown(document: dict[str, Any]) -> str:
    results = results_of(document)
    frameworks = frameworks_of(document, results)
    sections = [
        _md_verdict(document, results),
        _md_versions(document, frameworks),
        _md_summary(frameworks, results),
        _md_check_matrix(frameworks, results),
        _md_error_parity(frameworks, results),
        _md_comparison(frameworks, results),
        _md_matrix(frameworks, results),
        _md_divergences(frameworks, results),
        _md_layer_api(document),
        _md_warnings(document),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _md_verdict(document: dict[str, Any], results: list[Result]) -> str:
    word, line = verdict(results, bool(document.get("interrupted")))
    icon = "✅" if word == "PASS" else "❌"
    return f"# {TITLE}: {word}\n\n{icon} **{word}** — {md_text(line)}"


def _md_versions(document: dict[str, Any], frameworks: list[str]) -> str:
    versions = document.get("frameworks") or {}
    rows = [[md_text(name), md_text(versions.get(name, "?"))] for name in frameworks]
    columns = ["run", "python", "platform", "machine", "conformance", "numpy", "frameworks"]
    env_rows = environment_rows(document)
    for row in env_rows:
        row["run"] += " (interrupted)" if row["interrupted"] else ""
    env = _md_table([[md_text(row[c]) for c in columns] for row in env_rows], columns)
    commands = [f"- run {row['run']}: {md_code(row['command'])}" for row in env_rows if row["command"]]
    label = "Environment" + (" (one row per merged run)" if len(env_rows) > 1 else "")
    parts = ["## Versions", _md_table(rows, ["framework", "version"]), label, env]
    if commands:
        parts.append("\n".join(commands))
    return "\n\n".join(parts)


def _md_summary(frameworks: list[str], results: list[Result]) -> str:
    rows = [[md_text(row[0]), *map(str, row[1:])] for row in summary_rows(frameworks, results)]
    return "## Summary\n\n" + _md_table(rows, ["framework", *STATUSES, "total"])


def _md_check_matrix(frameworks: list[str], results: list[Result]) -> str:
    checks, rows = check_matrix(frameworks, results)
    if not rows:
        return ""
    table = [[md_text(name), *(_marked(cell, MD_MARKS) for cell in cells)] for name, *cells in rows]
    return "## Parity by check\n\n" + _md_table(table, ["framework", *checks])


def _md_error_parity(frameworks: list[str], results: list[Result]) -> str:
    rows = error_parity_matrix(frameworks, results)
    if not rows:
        return ""
    table = [
        [md_code(row["rule"]), *(md_text(f"{MD_MARKS[c['kind']]} {c['text']}".strip()) for c in row["cells"])]
        for row in rows
    ]
    legend = (
        "How each framework treats configurations that break each validity rule (`expect: error` cases): "
        "✅ every one rejected · ❌/⚠️ some accepted, crashed or hung (⚠️: a known divergence)."
    )
    return "## Error parity by rule\n\n" + legend + "\n\n" + _md_table(table, ["rule", *frameworks])


def _md_comparison(frameworks: list[str], results: list[Result]) -> str:
    rows = comparison_by_family(frameworks, results)
    if not any(c["kind"] not in ("none",) for row in rows for c in row["cells"]):
        return ""
    table = [
        [
            md_text(row["family"]),
            *(md_text(f"{MD_MARKS[c['kind']]} {c['text']}".strip()) for c in row["cells"]),
        ]
        for row in rows
    ]
    reasons = []
    for row in rows:
        for name, cell in zip(frameworks, row["cells"]):
            if cell["reasons"]:
                reasons.append(
                    f"- **{md_text(row['family'])} · {md_text(name)}**: {md_text('; '.join(cell['reasons']))}"
                )
    legend = (
        "Valid configurations with each parameter feature: divergent results (fail, error, crash, timeout, "
        "xfail) over those that ran, per framework; reasons below."
    )
    parts = ["## Framework comparison by parameter family", legend, _md_table(table, ["family", *frameworks])]
    if reasons:
        parts.append(_md_details(f"reasons ({len(reasons)})", "\n".join(reasons)))
    return "\n\n".join(parts)


def _md_matrix(frameworks: list[str], results: list[Result]) -> str:
    families = families_of(results)
    if not families:
        return ""
    headers = ["family", "checks", *(md_text(f) for f in frameworks)]

    def rows(selected: list[Family]) -> list[list[str]]:
        return [
            [
                md_text(f.label),
                md_text(", ".join(f.checks)),
                *(_marked(matrix_cell(f.counts.get(name)), MD_MARKS) for name in frameworks),
            ]
            for f in selected
        ]

    shown = [f for f in families if f.diverges]
    folded = [f for f in families if not f.diverges]
    parts = [
        "## Parity by case family",
        "✅ all pass · ❌ failing (fail, error, crash, timeout, or xpass: a known divergence that no longer "
        "reproduces) · ⚠️ known divergence (xfail) · — declared unsupported · cells count results "
        "(case × check) of the family.",
    ]
    if shown:
        parts.append(_md_table(rows(shown), headers))
    else:
        parts.append("No family diverges on any framework.")
    if folded:
        summary = f"{len(folded)} famil{'ies' if len(folded) != 1 else 'y'} without divergences"
        parts.append(_md_details(summary, _md_table(rows(folded), headers)))
    return "\n\n".join(parts)


def _md_divergence_row(r: Result) -> list[str]:
    diff = "; ".join(t for t in (shape_diff_text(r), numeric_diff_text(r)) if t)
    message = md_text(r.message, MD_MESSAGE_CHARS)
    if r.divergence:
        known = "**known divergence:** " + md_text(r.divergence.get("reason", ""), MD_MESSAGE_CHARS)
        if r.divergence.get("link"):
            known += " (" + md_link("link", r.divergence["link"]) + ")"
        message = f"{message}<br>{known}" if message else known
    return [
        f"{ICONS.get(r.status, '')} {r.status}",
        md_code(f"{Path(r.file).name}::{r.case}"),
        md_text(r.check),
        md_text(params_text(r.params)),
        md_text(diff),
        message,
        (md_code(r.rerun) if r.rerun else "")
        + (f"<br>[script]({r.reproducer})" if r.reproducer else ""),  # slugged path we wrote,
    ]


def _md_divergences(frameworks: list[str], results: list[Result]) -> str:
    grouped = divergent(results)
    if not grouped:
        return "## Divergences\n\nNone: every result passes or is declared unsupported."
    parts = ["## Divergences"]
    headers = ["status", "case", "check", "params", "diff", "message", "rerun"]
    for name in frameworks:
        listed = grouped.get(name)
        if not listed:
            continue
        counts = Counter(r.status for r in listed)
        summary = (
            f"<b>{html.escape(name)}</b>: {len(listed)} divergence{'s' * (len(listed) != 1)} "
            f"({_counts_text((s, counts[s]) for s in LISTED if counts[s])})"
        )
        table = _md_table([_md_divergence_row(r) for r in listed], headers)
        # open what fails the gate; known divergences stay folded
        parts.append(_md_details(summary, table, opened=any(r.status in FAILING for r in listed)))
    return "\n\n".join(parts)


def _md_layer_api(document: dict[str, Any]) -> str:
    tables = report_tables(document.get("layer_api") or [])
    if not tables:
        return ""
    parts = ["## Layer API parity"]
    for table in tables:
        parts.append(f"### {table['title']}")
        if table["note"]:
            parts.append(md_text(table["note"]))
        parts.append(_md_table([[md_text(c) for c in row] for row in table["rows"]], table["headers"]))
    return "\n\n".join(parts)


def _md_warnings(document: dict[str, Any]) -> str:
    warnings = document.get("warnings") or []
    if not warnings:
        return ""
    return "## Warnings\n\n" + "\n".join(f"- {md_text(w)}" for w in warnings)


# --- HTML ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("conformance", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def script_json(value: Any) -> Markup:
    """JSON safe inside <script>: no "</script>", "<!--" or entity can close or confuse the tag."""
    text = to_json(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


class _Strings:
    """A table of distinct strings: rows refer to repeated values (file, params, rerun) by index."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, value: str | None) -> int | None:
        if not value:
            return None
        if value not in self._index:
            self._index[value] = len(self.values)
            self.values.append(value)
        return self._index[value]


def _row_record(r: Result, strings: _Strings) -> dict[str, Any]:
    """One result for the HTML table. Short keys, interned strings and no empty fields keep ~5,000
    rows around a megabyte; the template's script expands them (see INTERNED there)."""
    fields = {
        "s": r.status,
        "c": r.case,
        "f": strings(r.file),
        "fw": strings(r.framework),
        "k": strings(r.check),
        "fa": strings(r.family if r.family and r.family != r.case else None),
        "op": strings(r.params.get("op")),
        "dt": strings(r.params.get("dtype") or r.expected_dtype),
        "pt": strings(params_text(r.params)),
        "r": strings(r.rerun),
        "t": r.tags,
        "es": r.expected_shape,
        "as": r.actual_shape,
        "ed": r.expected_dtype,
        "ad": r.actual_dtype,
        "ae": r.max_abs_err,
        "re": r.max_rel_err,
        "eb": r.max_err_over_bound,
        "tw": r.tolerance_at_worst,
        "mm": r.mismatched,
        "el": r.elements,
        "wi": r.worst_index,
        "x": r.exception,
        "m": r.message,
        "dv": r.divergence,
        "d": None if r.duration_s is None else round(r.duration_s, 4),
        "ex": r.expect if r.expect != "ok" else None,
    }
    if fields["ed"] == r.params.get("dtype"):
        fields["ed"] = None  # the same as "dt"
    return {k: v for k, v in fields.items() if v not in (None, "", [], {})}


def _table_data(results: list[Result]) -> Markup:
    strings = _Strings()
    rows = [_row_record(r, strings) for r in results]
    return script_json({"statuses": STATUSES, "strings": strings.values, "rows": rows})


def _html_divergence(r: Result) -> dict[str, Any]:
    divergence = r.divergence or {}
    return {
        "status": r.status,
        "case": r.case,
        "file": r.file,
        "label": f"{Path(r.file).name}::{r.case}",
        "check": r.check,
        "params": params_text(r.params),
        "shape": shape_diff_text(r),
        "numeric": numeric_diff_text(r),
        "message": _shorten(r.message, HTML_MESSAGE_CHARS) if r.message else "",
        "full_message": r.message,
        "reason": divergence.get("reason", ""),
        "link": safe_link(divergence.get("link")),
        "raw_link": divergence.get("link") or "",
        "rerun": r.rerun,
        "reproducer": r.reproducer,
    }


def _html_divergence_group(framework: str, listed: list[Result]) -> dict[str, Any]:
    counts = Counter(r.status for r in listed)
    return {
        "framework": framework,
        "results": [_html_divergence(r) for r in listed],
        "counts": _counts_text((s, counts[s]) for s in LISTED if counts[s]),
        "failing": any(r.status in FAILING for r in listed),
    }


def _html_family(family: Family, frameworks: list[str]) -> dict[str, Any]:
    cells = []
    for name in frameworks:
        cell = matrix_cell(family.counts.get(name))
        cells.append({"kind": cell[0], "text": _marked(cell, HTML_MARKS)})
    return {"label": family.label, "checks": ", ".join(family.checks), "cells": cells}


def render_html(document: dict[str, Any]) -> str:
    results = results_of(document)
    frameworks = frameworks_of(document, results)
    word, line = verdict(results, bool(document.get("interrupted")))
    families = families_of(results)
    grouped = divergent(results)
    versions = document.get("frameworks") or {}
    context = {
        "title": TITLE,
        "verdict": word,
        "verdict_line": line,
        "interrupted": bool(document.get("interrupted")),
        "versions": [(name, versions.get(name, "?")) for name in frameworks],
        "environments": environment_rows(document),
        "statuses": STATUSES,
        "summary": summary_rows(frameworks, results),
        "frameworks": frameworks,
        "check_columns": check_matrix(frameworks, results)[0],
        "check_rows": [
            {"framework": name, "cells": [{"kind": c[0], "text": _marked(c, HTML_MARKS)} for c in cells]}
            for name, *cells in check_matrix(frameworks, results)[1]
        ],
        "error_parity": error_parity_matrix(frameworks, results),
        "comparison": comparison_by_family(frameworks, results),
        "shown_families": [_html_family(f, frameworks) for f in families if f.diverges],
        "folded_families": [_html_family(f, frameworks) for f in families if not f.diverges],
        "divergences": [_html_divergence_group(n, grouped[n]) for n in frameworks if n in grouped],
        "warnings": document.get("warnings") or [],
        "layer_tables": report_tables(document.get("layer_api") or []),
        "total": len(results),
        "data": _table_data(results),
    }
    return _templates().get_template("report.html.j2").render(**context)
