"""What a divergence is, named once: framework, check, kind of failure and parameter region.

The summary and both reports group divergences by it, ``conformance fuzz`` de-duplicates its
findings by it, and ``conformance diff`` names new failures by it, so a cause has one name
everywhere. The kind is one of shape, values, dtype, raises (on a valid configuration), accepts
(an invalid one), crash, timeout, mutates (wrote into an input) or repeat (two calls differ). The
region is the set of non-default features of the configuration (groups, dilation, output_padding
>= stride, padding beyond the kernel extent, dtype, ...); for an invalid configuration, the rules
it breaks. A signature whose region is contained in another's, failing the same way, explains it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conformance.results import Result, lost_status

KINDS = ("crash", "timeout", "raises", "accepts", "shape", "dtype", "values", "mutates", "repeat")


@dataclass(frozen=True)
class Signature:
    framework: str
    check: str
    kind: str
    features: frozenset[str]

    def explains(self, other: Signature) -> bool:
        """Same framework, check and kind of failure, and ``other`` lies inside this region."""
        return (self.framework, self.check, self.kind) == (other.framework, other.check, other.kind) and (
            self.features <= other.features
        )

    @property
    def slug(self) -> str:
        parts = [self.framework, self.check, self.kind, *sorted(self.features)]
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(parts)).strip("_")

    @property
    def region(self) -> str:
        return region_text(self.features)


def base_framework(name: str) -> str:
    """``torch[native]`` -> ``torch``: the framework a kernel-path variant belongs to."""
    return name.split("[", 1)[0]


def region(params: Mapping[str, Any], rules: Sequence[str] = ()) -> frozenset[str]:
    """The parameter region of a configuration (a result's ``params``): every feature that differs
    from the simplest configuration; for an invalid one, the rules it breaks."""
    if not params:
        return frozenset(f"breaks-{rule}" for rule in rules)
    ndim = int(params["op"][-2]) if "op" in params else len(params["input_shape"]) - 2
    found = {f"{ndim}d"} if ndim > 1 else set()  # 1-d is the simplest region, not a feature
    if rules:
        return frozenset(found | {f"breaks-{rule}" for rule in rules})
    stride, padding, dilation = params["stride"], params["padding"], params["dilation"]
    output_padding, kernel = params["output_padding"], params["kernel_size"]
    groups = params["groups"]
    extent = [d * (k - 1) for d, k in zip(dilation, kernel)]
    # padding as a case writes it: ints, [lo, hi] pairs, or a string (same, valid, ...)
    mode = padding if isinstance(padding, str) else None
    pairs = [] if mode else [tuple(p) if isinstance(p, list) else (p, p) for p in padding]
    unbatched = len(params["input_shape"]) == ndim + 1
    checks = {
        "groups": groups > 1,
        "cout-per-group-gt-1": groups > 1 and params["out_channels"] // groups > 1,
        "stride": any(s > 1 for s in stride),
        "dilation": any(d > 1 for d in dilation),
        "padding": any(max(pair) > 0 for pair in pairs),
        "padding-beyond-extent": any(max(pair) > e for pair, e in zip(pairs, extent)),
        "padding-asymmetric": any(lo != hi for lo, hi in pairs),
        f"padding-{mode}": mode is not None,
        "output-size": "output_size" in params,
        "unbatched": unbatched,
        "empty-batch": not unbatched and params["input_shape"][0] == 0,
        f"layout-{params.get('layout')}": params.get("layout", "contiguous") != "contiguous",
        "output-padding": any(op > 0 for op in output_padding),
        "output-padding-ge-stride": any(op >= s for op, s in zip(output_padding, stride) if op > 0),
        "bias": bool(params["bias"]),
        "batch": not unbatched and params["input_shape"][0] > 1,
    }
    found |= {name for name, present in checks.items() if present}
    if params.get("dtype", "float32") != "float32":
        found.add(str(params["dtype"]))
    return frozenset(found)


def failure_kind(result: Result) -> str:
    message = result.message
    if result.status in ("crash", "timeout"):
        return result.status
    if result.status == "xfail" and (lost := lost_status(message)):  # a known crash or hang
        return lost
    if result.check == "repeatability" and result.status != "error":
        return "repeat"
    if "in place" in message or "modified its input" in message or "wrote into" in message:
        return "mutates"
    if result.status == "error" or (result.exception and result.expect != "error"):
        return "raises"
    if "instead of raising" in message or (result.expect == "error" and result.actual_shape is not None):
        return "accepts"
    if message.startswith("shape"):
        return "shape"
    if message.startswith("dtype"):
        return "dtype"
    return "values"


def signature(result: Result) -> Signature:
    """The cause of one divergent result."""
    return Signature(
        result.framework, result.check, failure_kind(result), region(result.params, result.rules)
    )


#: features shown first when a region is written out: those that most often select a kernel path
_ORDER = ("2d", "3d", "groups", "dilation", "stride", "output-padding-ge-stride", "padding-beyond-extent")


def region_text(features: frozenset[str]) -> str:
    """A region for people: ``2d, groups, bfloat16``; the simplest region is ``(simplest)``."""
    rank = {f: i for i, f in enumerate(_ORDER)}
    ordered = sorted(features, key=lambda f: (rank.get(f, len(rank)), f))
    return ", ".join(ordered) or "(simplest)"
