"""Case files: YAML -> validated, matrix-expanded :class:`Case` objects.

Everything that can be wrong with a case file is caught here, before any tensor is allocated or any
framework runs: YAML syntax, unknown keys, wrong types, duplicate ids, a case whose ``expect``
contradicts the validity rules in :mod:`conformance.spec`, tensors too large to allocate, and
matrices that expand past a sane limit. Each problem names file, line, case id and field.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from conformance import spec
from conformance.dtypes import ITEMSIZE
from conformance.layouts import LAYOUTS

VALUE_DISTRIBUTIONS = ("normal", "uniform", "integers")
EXPECTATIONS = ("ok", "error")
MAX_MATRIX_CASES = 512
MAX_TENSOR_ELEMENTS = 1 << 24
MAX_TENSOR_BYTES = 256 << 20

CASE_FIELDS = (
    "id",
    "op",
    "input_shape",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "output_padding",
    "output_size",
    "dilation",
    "groups",
    "bias",
    "dtype",
    "layout",
    "expect",
    "matrix",
    "seed",
    "values",
    "tags",
    "tolerance",
)
FILE_KEYS = ("op", "defaults", "cases", "description")
TOLERANCE_KEYS = ("factor", "atol")
# Short names used to suffix matrix-expanded ids: "unet-up-s2-p1".
ID_ABBREVIATIONS = {
    "stride": "s",
    "padding": "p",
    "output_padding": "op",
    "output_size": "os",
    "dilation": "d",
    "groups": "g",
    "kernel_size": "k",
    "out_channels": "co",
    "input_shape": "in",
    "seed": "seed",
    "values": "",
    "layout": "",
}


class CaseFileError(ValueError):
    """A problem in a case file, with enough location to find and fix it."""

    def __init__(
        self,
        path: str | Path,
        message: str,
        line: int | None = None,
        case: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.line, self.case, self.field, self.detail = str(path), line, case, field, message
        where = self.path + (f":{line}" if line else "")
        parts = [where]
        if case is not None:
            parts.append(f"case {case!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        super().__init__(": ".join(parts) + ": " + message)


@dataclass(frozen=True)
class Tolerance:
    """Per-case override: ``factor`` scales the derived tolerance, ``atol`` adds an absolute floor."""

    factor: float = 1.0
    atol: float = 0.0


@dataclass(frozen=True)
class Case:
    id: str
    family: str  # the id as written, before matrix expansion
    file: str
    line: int | None
    input_shape: tuple[int, ...]
    params: spec.ConvParams
    dtype: str = "float32"
    expect: str = "ok"
    seed: int = 0
    values: str = "normal"
    tags: tuple[str, ...] = ()
    tolerance: Tolerance = field(default_factory=Tolerance)
    violations: tuple[spec.Violation, ...] = ()
    #: memory layout of the generated input and weight (:data:`conformance.layouts.LAYOUTS`)
    layout: str = "contiguous"

    @property
    def batched(self) -> bool:
        return spec.is_batched(self.input_shape, self.params.ndim)

    @property
    def op(self) -> str:
        return self.params.op

    @property
    def nodeid(self) -> str:
        return f"{Path(self.file).name}::{self.id}"

    @cached_property  # asked for by every record and check of the case
    def expected_shape(self) -> tuple[int, ...] | None:
        if self.violations:
            return None
        return spec.valid_output_shape(self.input_shape, self.params)  # violations were worked out

    @cached_property
    def reference_fields(self) -> str:
        """What decides a valid case's reference arrays (and the facts stored beside them), as the
        text :func:`conformance.reference_cache.case_key` hashes. Worked out as the case is loaded
        and kept with it, so a case pickled to a worker takes it along: between two framework
        calls, working it out there cost ten times what it costs here."""
        return repr((self.input_shape, self.params, self.dtype, self.seed, self.values, self.tolerance))

    @property
    def work(self) -> int:
        """Multiply-adds of the forward pass (0 for a configuration that must be rejected): the
        runner hands out the largest cases first, so that none is left alone at a run's end."""
        if self.violations:
            return 0
        p = self.params
        spatial = self.input_shape[-p.ndim :]
        batch = self.input_shape[0] if self.batched else 1
        per_position = p.in_channels * (p.out_channels // p.groups) * math.prod(p.kernel_size)
        return batch * math.prod(spatial) * per_position

    def params_record(self) -> dict[str, Any]:
        """The ``params`` object of a result record."""
        p = self.params
        record = {
            "op": p.op,
            "input_shape": list(self.input_shape),
            "out_channels": p.out_channels,
            "kernel_size": list(p.kernel_size),
            "stride": list(p.stride),
            "padding": p.written_padding(),
            "output_padding": p.written_output_padding(),
            "dilation": list(p.dilation),
            "groups": p.groups,
            "bias": p.bias,
            "dtype": self.dtype,
        }
        if p.output_size is not None:
            record["output_size"] = list(p.output_size)
        if self.layout != "contiguous":
            record["layout"] = self.layout
        return record


# --- YAML with line numbers and duplicate-key detection -------------------------------------------


class _Mapping(dict):
    """A dict that remembers the line of itself and of each key (1-based)."""

    line: int | None = None
    key_lines: dict[str, int]


class _Sequence(list):
    line: int | None = None


class _LineLoader(yaml.SafeLoader):
    pass


# libyaml's parser where PyYAML has it (3x faster on the library), with the same constructors; a
# file it rejects is parsed again by the pure-Python loader, whose messages say what was expected
class _FastLineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Mapping:
    # Duplicates are looked for among the mapping's own keys only: keys merged in with "<<" may
    # be overridden, as YAML intends (flatten_mapping puts them first, so own keys win).
    own: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in own:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        own[key] = key_node
    loader.flatten_mapping(node)
    result = _Mapping()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _Sequence:
    result = _Sequence(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    return result


for _loader in (_LineLoader, _FastLineLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: str | Path) -> Any:
    """Parse YAML safely (no arbitrary objects), reporting syntax errors with their line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CaseFileError(path, f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise CaseFileError(
            path,
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            line=line,
        ) from None
    try:
        return yaml.load(text, Loader=_FastLineLoader)
    except yaml.YAMLError:
        pass
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise CaseFileError(path, f"YAML error: {exc.problem or exc}", line=line) from None
    except yaml.YAMLError as exc:
        raise CaseFileError(path, f"YAML error: {exc}") from None


# --- field validation ---------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _FieldChecker:
    """Validates one raw case mapping, raising CaseFileError that names file, line, case and field."""

    def __init__(self, path: str, raw: dict, case_id: str | None) -> None:
        self.path, self.raw, self.case_id = path, raw, case_id

    def fail(self, name: str | None, message: str) -> CaseFileError:
        lines = getattr(self.raw, "key_lines", {})
        line = lines.get(name) if name else None
        return CaseFileError(self.path, message, line or getattr(self.raw, "line", None), self.case_id, name)

    def int_field(self, name: str, value: Any, minimum: int | None = None) -> int:
        if not _is_int(value):
            raise self.fail(name, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be >= {minimum}, got {value}")
        return value

    def axes_field(self, name: str, value: Any, ndim: int, minimum: int | None = None) -> tuple[int, ...]:
        if _is_int(value):
            values: tuple = (value,) * ndim
        elif isinstance(value, list) and all(_is_int(v) for v in value):
            if len(value) != ndim:
                raise self.fail(
                    name, f"needs {ndim} values for a {ndim}-d op, got {len(value)}: {list(value)}"
                )
            values = tuple(value)
        else:
            raise self.fail(name, f"must be an integer or a list of {ndim} integers, got {value!r}")
        if minimum is not None and any(v < minimum for v in values):
            raise self.fail(name, f"every value must be >= {minimum}, got {list(values)}")
        return values

    def padding_field(self, value: Any, ndim: int) -> spec.Padding:
        """An int, a string of :data:`spec.PADDING_MODES`, or ``ndim`` entries each an int or ``[lo, hi]``."""
        expected = (
            f"an integer, one of {', '.join(spec.PADDING_MODES)}, or a list of {ndim} entries each an "
            "integer or a pair [lo, hi] of integers"
        )
        if isinstance(value, str):
            if value not in spec.PADDING_MODES:
                raise self.fail("padding", f"unknown padding {value!r}: must be {expected}")
            return value
        if _is_int(value):
            return value
        if not isinstance(value, list):
            raise self.fail("padding", f"must be {expected}, got {value!r}")
        if len(value) != ndim:
            raise self.fail("padding", f"needs {ndim} entries for a {ndim}-d op, got {len(value)}: {value!r}")
        for index, entry in enumerate(value):
            if not (
                _is_int(entry) or (isinstance(entry, list) and len(entry) == 2 and all(map(_is_int, entry)))
            ):
                raise self.fail(
                    "padding",
                    f"entry #{index + 1} must be an integer or a pair [lo, hi] of integers, got {entry!r}",
                )
        return [list(e) if isinstance(e, list) else e for e in value]

    def choice(self, name: str, value: Any, options: Sequence[str]) -> str:
        if value not in options:
            raise self.fail(name, f"must be one of {', '.join(options)}; got {value!r}")
        return value


def _expand_matrix(path: str, raw: dict, case_id: str) -> list[tuple[str, dict]]:
    matrix = raw.get("matrix")
    base = {k: v for k, v in raw.items() if k != "matrix"}
    if matrix is None:
        return [(case_id, base)]
    checker = _FieldChecker(path, raw, case_id)
    if not isinstance(matrix, dict) or not matrix:
        raise checker.fail("matrix", "must be a non-empty mapping of field -> list of values")
    for name, options in matrix.items():
        if name not in CASE_FIELDS or name in ("id", "matrix", "expect"):
            raise checker.fail(
                "matrix", f"cannot vary {name!r} (allowed: case fields other than id/matrix/expect)"
            )
        if not isinstance(options, list) or not options:
            raise checker.fail("matrix", f"{name!r} must map to a non-empty list, got {options!r}")
    total = 1
    for options in matrix.values():
        total *= len(options)
    if total > MAX_MATRIX_CASES:
        raise checker.fail("matrix", f"expands to {total} cases, more than the limit of {MAX_MATRIX_CASES}")
    expanded = []
    names = list(matrix)
    for combo in itertools.product(*(matrix[n] for n in names)):
        fields = dict(base)
        suffix = []
        for name, value in zip(names, combo):
            fields[name] = value
            suffix.append(_id_part(name, value))
        expanded.append(("-".join([case_id, *suffix]), fields))
    return expanded


def _id_part(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return name if value else f"no{name}"
    if isinstance(value, list):  # [[2, 1], 0] -> "2_1x0"
        text = "x".join("_".join(map(str, v)) if isinstance(v, list) else str(v) for v in value)
    else:
        text = str(value)
    return ID_ABBREVIATIONS.get(name, name) + text


def _build_case(path: str, raw: dict, case_id: str, family: str, line: int | None) -> Case:
    check = _FieldChecker(path, raw, case_id)
    op = raw.get("op")
    if op is None:
        raise check.fail("op", "is required (in the case, in defaults, or at the top of the file)")
    op = check.choice("op", op, tuple(spec.OPS))
    ndim = spec.OPS[op]

    for required in ("input_shape", "out_channels", "kernel_size"):
        if required not in raw:
            raise check.fail(required, "is required")
    shape = raw["input_shape"]
    # C_in >= 1 by format; N = 0 is an empty batch, a rank of spatial + 1 an unbatched input (both
    # PyTorch's); an empty spatial axis, a kernel of 0 or another rank is a rule (spec) and may be an
    # error case.
    if (
        not isinstance(shape, list)
        or len(shape) < 2
        or not all(_is_int(v) and v >= 0 for v in shape)
        or spec.input_channels(shape, ndim) < 1
    ):
        raise check.fail(
            "input_shape",
            f"must be a list [N >= 0, C_in >= 1, *spatial] (unbatched: [C_in >= 1, *spatial]) of "
            f"integers >= 0, got {shape!r}",
        )
    out_channels = check.int_field("out_channels", raw["out_channels"], minimum=1)
    kernel = check.axes_field("kernel_size", raw["kernel_size"], ndim, minimum=0)
    axes = {
        name: check.axes_field(name, raw.get(name, default), ndim)
        for name, default in (("stride", 1), ("output_padding", 0), ("dilation", 1))
    }
    padding = check.padding_field(raw.get("padding", 0), ndim)
    output_size = None
    if "output_size" in raw:
        output_size = check.axes_field("output_size", raw["output_size"], ndim, minimum=0)
        if isinstance(padding, str):
            raise check.fail(
                "output_size", f"cannot be combined with padding: {padding} (both set the length)"
            )
    if any(axes["output_padding"]) and (isinstance(padding, str) or output_size is not None):
        other = f"padding: {padding}" if isinstance(padding, str) else "output_size"
        raise check.fail(
            "output_padding", f"cannot be combined with {other}, which determines output_padding itself"
        )
    groups = check.int_field("groups", raw.get("groups", 1))
    bias = raw.get("bias", True)
    if not isinstance(bias, bool):
        raise check.fail("bias", f"must be true or false, got {bias!r}")
    dtype = check.choice("dtype", raw.get("dtype", "float32"), spec.DTYPES)
    layout = check.choice("layout", raw.get("layout", "contiguous"), LAYOUTS)
    expect = check.choice("expect", raw.get("expect", "ok"), EXPECTATIONS)
    values = check.choice("values", raw.get("values", "normal"), VALUE_DISTRIBUTIONS)
    seed = check.int_field("seed", raw["seed"], minimum=0) if "seed" in raw else zlib.crc32(case_id.encode())
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise check.fail("tags", f"must be a list of strings, got {tags!r}")
    tolerance = _tolerance(check, raw.get("tolerance"))

    params = spec.ConvParams.make(
        ndim,
        in_channels=spec.input_channels(shape, ndim),
        out_channels=out_channels,
        kernel_size=kernel,
        padding=padding,
        groups=groups,
        bias=bias,
        output_size=output_size,
        input_spatial=(shape[len(shape) - ndim :] + [1] * ndim)[:ndim],
        **axes,
    )
    broken = spec.violations(shape, params)
    if expect == "ok" and broken:
        first = broken[0]
        raise check.fail(first.field, f"case expects ok but breaks rule {first.rule}: {first.message}")
    if expect == "error" and not broken:
        raise check.fail("expect", "case expects error but the configuration breaks no validity rule")
    case = Case(
        id=case_id,
        family=family,
        file=path,
        line=line,
        input_shape=tuple(shape),
        params=params,
        dtype=dtype,
        expect=expect,
        seed=seed,
        values=values,
        tags=tuple(tags),
        tolerance=tolerance,
        violations=tuple(broken),
        layout=layout,
    )
    _check_sizes(check, case)
    if expect == "ok":
        case.reference_fields  # noqa: B018 - worked out here, where it is cheap (see the property)
    return case


def _tolerance(check: _FieldChecker, raw: Any) -> Tolerance:
    if raw is None:
        return Tolerance()
    if not isinstance(raw, dict) or set(raw) - set(TOLERANCE_KEYS):
        raise check.fail("tolerance", f"must be a mapping with keys from {list(TOLERANCE_KEYS)}, got {raw!r}")
    for key, value in raw.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise check.fail("tolerance", f"{key} must be a non-negative number, got {value!r}")
    return Tolerance(factor=float(raw.get("factor", 1.0)), atol=float(raw.get("atol", 0.0)))


def _check_sizes(check: _FieldChecker, case: Case) -> None:
    tensors = {"input_shape": case.input_shape, "kernel_size": case.params.weight_shape()}
    if case.expected_shape is not None:
        tensors["output"] = case.expected_shape
    for name, shape in tensors.items():
        elements = 1
        for dim in shape:
            elements *= max(dim, 0)
        nbytes = elements * max(ITEMSIZE[case.dtype], 8)  # the oracle works in float64
        if elements > MAX_TENSOR_ELEMENTS or nbytes > MAX_TENSOR_BYTES:
            label = "output" if name == "output" else ("weight" if name == "kernel_size" else "input")
            raise check.fail(
                "input_shape" if name == "output" else name,
                f"{label} tensor {list(shape)} has {elements} elements, over the limit of "
                f"{MAX_TENSOR_ELEMENTS} ({MAX_TENSOR_BYTES >> 20} MiB in float64)",
            )


def load_case_file(path: str | Path) -> list[Case]:
    path_text = str(path)
    doc = load_yaml(path)
    if not isinstance(doc, dict):
        raise CaseFileError(path_text, "top level must be a mapping with a 'cases:' list", line=1)
    lines = getattr(doc, "key_lines", {})
    unknown = [k for k in doc if k not in FILE_KEYS]
    if unknown:
        raise CaseFileError(
            path_text,
            f"unknown top-level key {unknown[0]!r} (allowed: {', '.join(FILE_KEYS)})",
            line=lines.get(unknown[0]),
        )
    defaults = doc.get("defaults", {}) or {}
    if not isinstance(defaults, dict):
        raise CaseFileError(path_text, "'defaults' must be a mapping", line=lines.get("defaults"))
    for key in defaults:
        if key not in CASE_FIELDS or key in ("id", "matrix"):
            raise CaseFileError(
                path_text, f"unknown key {key!r} in defaults", line=defaults.key_lines.get(key), field=key
            )
    raw_cases = doc.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise CaseFileError(path_text, "'cases' must be a non-empty list", line=lines.get("cases"))

    cases: list[Case] = []
    seen: dict[str, int | None] = {}
    for index, raw in enumerate(raw_cases):
        if not isinstance(raw, dict):
            raise CaseFileError(
                path_text,
                f"case #{index + 1} must be a mapping, got {raw!r}",
                line=getattr(raw_cases, "line", None),
            )
        case_line = getattr(raw, "line", None)
        case_id = raw.get("id")
        if not isinstance(case_id, str) or not case_id or not all(c.isalnum() or c in "_.-" for c in case_id):
            raise CaseFileError(
                path_text,
                f"'id' must be a non-empty string of letters, digits, '_', '.', '-'; got {case_id!r}",
                line=case_line,
                case=f"#{index + 1}",
                field="id",
            )
        for key in raw:
            if key not in CASE_FIELDS:
                raise CaseFileError(
                    path_text,
                    f"unknown key {key!r} (allowed: {', '.join(CASE_FIELDS)})",
                    line=raw.key_lines.get(key),
                    case=case_id,
                    field=key,
                )
        merged = _Mapping({**({"op": doc["op"]} if "op" in doc else {}), **defaults, **raw})
        merged.line, merged.key_lines = case_line, {**getattr(defaults, "key_lines", {}), **raw.key_lines}
        for expanded_id, fields in _expand_matrix(path_text, merged, case_id):
            if expanded_id in seen:
                raise CaseFileError(
                    path_text,
                    f"duplicate id (first defined at line {seen[expanded_id]})",
                    line=case_line,
                    case=expanded_id,
                    field="id",
                )
            seen[expanded_id] = case_line
            as_mapping = _Mapping(fields)
            as_mapping.line, as_mapping.key_lines = case_line, merged.key_lines
            cases.append(_build_case(path_text, as_mapping, expanded_id, case_id, case_line))
    return cases


def case_files(paths: Iterable[str | Path]) -> list[Path]:
    """Case files named by ``paths``: files as given, directories searched for ``*.yaml``/``*.yml``.

    The known-divergences file is a baseline, not a case file, and is skipped in directories.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(
                f
                for f in sorted(p.rglob("*.y*ml"))
                if f.suffix in (".yaml", ".yml") and not f.name.startswith("known_divergences")
            )
        elif p.exists():
            found.append(p)
        else:
            raise CaseFileError(p, "no such file or directory")
    return found


def load_cases(paths: Iterable[str | Path]) -> list[Case]:
    cases: list[Case] = []
    for path in case_files(paths):
        cases.extend(load_case_file(path))
    return cases


def select(cases: Iterable[Case], patterns: Sequence[str] = ()) -> list[Case]:
    """Cases whose id matches any of the glob ``patterns`` (all cases when none are given)."""
    if not patterns:
        return list(cases)
    return [c for c in cases if any(fnmatch.fnmatchcase(c.id, pat) for pat in patterns)]


def make_case(fields: dict[str, Any], case_id: str, file: str = "<generated>") -> Case:
    """A Case from plain field values (as a case file would hold them), validated the same way."""
    raw = _Mapping(fields)
    raw.line, raw.key_lines = None, {}
    return _build_case(file, raw, case_id, case_id, None)


def case_fields(case: Case) -> dict[str, Any]:
    """The case-file fields that reproduce ``case``: every parameter explicit (per-axis values as
    lists), the input's values and seed, and ``expect`` when it is not the default."""
    fields = {**case.params_record(), "values": case.values, "seed": case.seed}
    if case.expect != "ok":
        fields["expect"] = case.expect
    return fields
