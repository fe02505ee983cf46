"""What changed between a base run and this one: the first question on a pull request.

Results are matched by (file, case, framework, check). A new failure fails the gate now and did not
in the base (or is new); fixed is the reverse; any other status change is listed as such. Numeric
drift is a result that passes in both whose err/tol (1 is the tolerance) grew tenfold (from at least
``DRIFT_FLOOR``) or crossed half the tolerance. Cases present in only one run are added or removed.
``--fail-on new`` gates on new failures alone, for a repository whose base already fails.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from conformance.results import FAILING, Result, results_of

DRIFT_FACTOR = 10.0
#: err/tol below this is rounding noise of a correct kernel: growth from there is not drift
DRIFT_FLOOR = 1e-3
HALF = 0.5
KINDS = ("new_failures", "fixed", "status_changes", "drift", "added", "removed")


def _eb(r: Result | None) -> float | None:
    """err/tol at the worst element: 1 is the tolerance."""
    value = None if r is None else r.max_err_over_tolerance
    return value if isinstance(value, (int, float)) and not math.isnan(value) else None


def _record(key: tuple[str, str, str, str], base: Result | None, head: Result | None) -> dict[str, Any]:
    file, case, framework, check = key
    return {
        "file": file,
        "case": case,
        "framework": framework,
        "check": check,
        "base": base.status if base else None,
        "head": head.status if head else None,
        "base_eb": _eb(base),
        "head_eb": _eb(head),
    }


def drifted(base: float | None, head: float | None) -> bool:
    """err/tol grew tenfold (from at least DRIFT_FLOOR) or crossed half the tolerance."""
    if base is None or head is None or math.isinf(base):
        return False
    return head >= DRIFT_FACTOR * max(base, DRIFT_FLOOR) or base < HALF <= head


def _cases(results: Iterable[Result]) -> dict[tuple[str, str], None]:
    return dict.fromkeys((r.file, r.case) for r in results)


def compare(base: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    """The ``changes`` section of ``head``'s results document, against ``base``."""
    before = {r.key: r for r in results_of(base)}
    after = {r.key: r for r in results_of(head)}
    changes: dict[str, Any] = {k: [] for k in KINDS}
    for key, now in after.items():
        then = before.get(key)
        failing_now, failing_then = now.status in FAILING, then is not None and then.status in FAILING
        if failing_now and not failing_then:
            changes["new_failures"].append(_record(key, then, now))
        elif then is None:
            continue
        elif failing_then and not failing_now:
            changes["fixed"].append(_record(key, then, now))
        elif then.status != now.status:
            changes["status_changes"].append(_record(key, then, now))
        elif now.status == "pass" and drifted(_eb(then), _eb(now)):
            changes["drift"].append(_record(key, then, now))
    base_cases, head_cases = _cases(before.values()), _cases(after.values())
    changes["added"] = [{"file": f, "case": c} for f, c in head_cases if (f, c) not in base_cases]
    changes["removed"] = [{"file": f, "case": c} for f, c in base_cases if (f, c) not in head_cases]
    runs = base.get("runs") or [{}]
    changes["base"] = {
        "results": len(before),
        "frameworks": dict(base.get("frameworks") or {}),
        "command": runs[0].get("command", ""),
    }
    return changes


def any_change(changes: dict[str, Any] | None) -> bool:
    return bool(changes) and any(changes.get(k) for k in KINDS)


def counts_line(changes: dict[str, Any]) -> str:
    """``2 new failures, 1 fixed, 0 other status changes, ...`` against the base."""
    labels = {
        "new_failures": "new failure",
        "fixed": "fixed",
        "status_changes": "other status change",
        "drift": "numeric drift",
        "added": "case added",
        "removed": "case removed",
    }
    parts = []
    for kind in KINDS:
        n = len(changes.get(kind) or [])
        label = labels[kind]
        if n != 1 and kind in ("new_failures", "status_changes"):
            label += "s"
        elif n != 1 and kind in ("added", "removed"):
            label = label.replace("case", "cases")
        parts.append(f"{n} {label}")
    return ", ".join(parts)
