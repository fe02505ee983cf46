"""Result records: one per case x framework x check, the unit every report is built from."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("pass", "fail", "error", "crash", "timeout", "xfail", "xpass", "unsupported")
#: statuses that fail the gate
FAILING = frozenset({"fail", "error", "crash", "timeout", "xpass"})
#: statuses that show a divergence from the reference (the known ones included)
DIVERGENT = frozenset({"fail", "error", "crash", "timeout", "xfail"})


@dataclass
class Result:
    case: str
    file: str
    framework: str
    check: str
    status: str
    family: str = ""
    expect: str = "ok"
    params: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    expected_shape: list[int] | None = None
    actual_shape: list[int] | None = None
    expected_dtype: str | None = None
    actual_dtype: str | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    max_err_over_bound: float | None = None
    tolerance_at_worst: float | None = None
    mismatched: int | None = None
    elements: int | None = None
    worst_index: list[int] | None = None
    exception: str | None = None
    message: str = ""
    divergence: dict[str, str] | None = None  # the known-divergence entry that matched
    duration_s: float | None = None
    rerun: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.file, self.case, self.framework, self.check)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
