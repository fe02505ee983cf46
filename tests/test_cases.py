"""conformance.cases (the case-file loader) and conformance.inputs (deterministic inputs)."""

from __future__ import annotations

import textwrap
import tracemalloc
import zlib
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from conformance import spec
from conformance.cases import (
    MAX_MATRIX_CASES,
    Case,
    CaseFileError,
    case_files,
    load_case_file,
    load_cases,
    select,
)
from conformance.inputs import make_cotangent, make_inputs

HEADER = """\
op: conv_transpose2d
defaults:
  input_shape: [1, 2, 4, 4]
  out_channels: 2
  kernel_size: 3
cases:
"""


def write(tmp_path: Path, text: str, name: str = "cases.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- assertion helpers ----------------------------------------------------------------------------


def assert_case_error(
    path: Path,
    *,
    line: int | None,
    case: str | None = None,
    field: str | None = None,
    contains: tuple[str, ...] = (),
) -> CaseFileError:
    """load_case_file(path) raises CaseFileError whose str names file, line, case and field."""
    __tracebackhide__ = True
    with pytest.raises(CaseFileError) as info:
        load_case_file(path)
    err = info.value
    text = str(err)
    where = f"{path}:{line}" if line is not None else str(path)
    assert text.startswith(where + ":"), (
        f"load_case_file({path.name}): {text!r} does not start with {where!r}"
    )
    assert err.line == line, f"load_case_file({path.name}): line {err.line}, expected {line}: {text}"
    if case is not None:
        assert err.case == case and f"case {case!r}" in text, (
            f"load_case_file({path.name}): case not named: {text}"
        )
    if field is not None:
        assert err.field == field and f"field {field!r}" in text, (
            f"load_case_file({path.name}): field not named: {text}"
        )
    for fragment in contains:
        assert fragment in text, f"load_case_file({path.name}): {fragment!r} not in {text!r}"
    return err


def load_one(tmp_path: Path, text: str) -> list[Case]:
    return load_case_file(write(tmp_path, text))


# --- bad files -------------------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a\n  - id: b\n    stride: [1, 2}\n    padding: 1\n")
    assert_case_error(path, line=9, contains=("YAML error", "'}'"))


def test_yaml_syntax_error_mapping_value(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a\n  - id: b\n    stride: 1: 2\n    padding: 1\n")
    assert_case_error(path, line=9, contains=("YAML error", "mapping values are not allowed"))


def test_yaml_syntax_error_bad_indentation(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a\n   stride: 2\n")
    assert_case_error(path, line=8, contains=("YAML error",))


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a\nframework: torch\n")
    assert_case_error(path, line=8, contains=("unknown top-level key 'framework'",))


def test_unknown_case_key(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a\n  - id: b\n    stride: 1\n    strides: 2\n")
    assert_case_error(path, line=10, case="b", field="strides", contains=("unknown key 'strides'",))


def test_unknown_defaults_key(tmp_path: Path) -> None:
    path = write(tmp_path, "op: conv_transpose1d\ndefaults:\n  kernel: 3\ncases:\n  - id: a\n")
    assert_case_error(path, line=3, field="kernel", contains=("unknown key 'kernel' in defaults",))


@pytest.mark.parametrize(
    ("entry", "field", "fragment"),
    [
        ('stride: "2"', "stride", "'2'"),
        ("stride: 2.0", "stride", "2.0"),
        ("stride: [1, true]", "stride", "True"),
        ('bias: "yes"', "bias", "'yes'"),
        ("bias: 1", "bias", "true or false"),
        ("kernel_size: [3, 3, 3]", "kernel_size", "needs 2 values"),
        ("kernel_size: [3]", "kernel_size", "needs 2 values"),
        ("kernel_size: 0", "kernel_size", ">= 1"),
        ("out_channels: 0", "out_channels", ">= 1"),
        ('groups: "2"', "groups", "integer"),
        ("input_shape: [1, 0, 4, 4]", "input_shape", "C_in >= 1"),
        ("input_shape: 4", "input_shape", "list"),
        ("dtype: float8", "dtype", "float8"),
        ("expect: maybe", "expect", "maybe"),
        ("values: gaussian", "values", "gaussian"),
        ("seed: -1", "seed", ">= 0"),
        ("tags: tagged", "tags", "list of strings"),
        ("tolerance: {rtol: 1}", "tolerance", "rtol"),
        ("tolerance: {factor: -1}", "tolerance", "non-negative"),
        ("op: conv_transpose4d", "op", "conv_transpose4d"),
        ("padding: full", "padding", "unknown padding 'full'"),
        ("padding: SAME", "padding", "same, valid, same_upper, same_lower"),
        ("padding: [[1, 2, 3], 0]", "padding", "entry #1 must be an integer or a pair [lo, hi]"),
        ("padding: [[1], 0]", "padding", "entry #1"),
        ("padding: [[1, 2]]", "padding", "needs 2 entries"),
        ("padding: [[1, 2.5], 0]", "padding", "entry #1"),
        ("output_size: [9]", "output_size", "needs 2 values"),
        ("output_size: [8, 8]\n    padding: same", "output_size", "cannot be combined with padding: same"),
        ("output_padding: 1\n    padding: valid", "output_padding", "cannot be combined with padding: valid"),
        (
            "output_padding: 1\n    output_size: [6, 6]",
            "output_padding",
            "cannot be combined with output_size",
        ),
    ],
)
def test_wrong_type(tmp_path: Path, entry: str, field: str, fragment: str) -> None:
    path = write(tmp_path, HEADER + f"  - id: ok-one\n  - id: typed\n    {entry}\n")
    assert_case_error(path, line=9, case="typed", field=field, contains=(fragment,))


def test_wrong_type_in_defaults_points_at_the_defaults_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "op: conv_transpose1d\ndefaults:\n  input_shape: [1, 1, 4]\n  out_channels: 1\n"
        "  kernel_size: 2\n  stride: two\ncases:\n  - id: a\n",
    )
    assert_case_error(path, line=6, case="a", field="stride")


def test_duplicate_id(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a\n  - id: b\n  - id: a\n    stride: 2\n")
    assert_case_error(path, line=9, case="a", field="id", contains=("duplicate id", "line 7"))


def test_duplicate_id_from_matrix_expansion(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a\n    matrix:\n      stride: [1, 2, 1]\n")
    assert_case_error(path, line=7, case="a-s1", field="id", contains=("duplicate id",))


def test_duplicate_id_across_matrix_and_plain_case(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a-s2\n  - id: a\n    matrix:\n      stride: [1, 2]\n")
    assert_case_error(path, line=8, case="a-s2", field="id", contains=("duplicate id", "line 7"))


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: a\n    stride: 2\n    stride: 3\n")
    assert_case_error(path, line=9, contains=("duplicate key 'stride'",))


@pytest.mark.parametrize(
    ("entry", "field", "rule"),
    [
        ("output_padding: 1", "output_padding", "output_padding_bound"),
        ("stride: [1, 0]", "stride", "stride_positive"),
        ("groups: 0", "groups", "groups_positive"),
        ("groups: 2\n    out_channels: 3", "groups", "out_channels_divisible"),
        ("padding: [0, 3]", "padding", "output_size_positive"),
        ("input_shape: [1, 2, 4, 4, 4]", "input_shape", "input_rank"),
        ("input_shape: [2, 4]", "input_shape", "input_rank"),
        ("output_size: [9, 9]", "output_size", "output_size_reachable"),
        ("padding: [[1, -1], 0]", "padding", "padding_nonnegative"),
    ],
)
def test_ok_case_that_breaks_a_rule(tmp_path: Path, entry: str, field: str, rule: str) -> None:
    path = write(tmp_path, HEADER + f"  - id: ok-one\n  - id: broken\n    {entry}\n")
    assert_case_error(
        path,
        line=9,
        case="broken",
        field=field,
        contains=(f"expects ok but breaks rule {rule}", spec.RULES[rule].text),
    )


def test_error_case_that_breaks_no_rule(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: fine\n    stride: 2\n    expect: error\n")
    assert_case_error(path, line=9, case="fine", field="expect", contains=("breaks no validity rule",))


@pytest.mark.parametrize(
    ("entry", "line", "field", "what"),
    [
        ("input_shape: [64, 512, 512, 512]", 9, "input_shape", "input tensor [64, 512, 512, 512]"),
        (
            "input_shape: [1, 1, 4096, 4096]\n    stride: 16\n    out_channels: 1",
            9,
            "input_shape",
            "output tensor",
        ),
        (
            "input_shape: [1, 1024, 4, 4]\n    out_channels: 1024\n    kernel_size: 64",
            11,
            "kernel_size",
            "weight tensor [1024, 1024, 64, 64]",
        ),
    ],
)
def test_tensor_too_large_is_caught_without_allocating(
    tmp_path: Path, entry: str, line: int, field: str, what: str
) -> None:
    path = write(tmp_path, HEADER + f"  - id: ok-one\n  - id: huge\n    {entry}\n")
    tracemalloc.start()
    try:
        assert_case_error(path, line=line, case="huge", field=field, contains=(what, "over the limit"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"loading a case with a huge tensor allocated {peak >> 20} MiB"


def test_matrix_over_the_limit(tmp_path: Path) -> None:
    strides = list(range(1, 24))
    path = write(
        tmp_path, HEADER + f"  - id: a\n    matrix:\n      stride: {strides}\n      padding: {strides}\n"
    )
    assert len(strides) ** 2 > MAX_MATRIX_CASES
    assert_case_error(path, line=8, case="a", field="matrix", contains=("529", str(MAX_MATRIX_CASES)))


@pytest.mark.parametrize(
    ("matrix", "fragment"),
    [
        ("{strides: [1, 2]}", "'strides'"),
        ("{expect: [ok, error]}", "'expect'"),
        ("{id: [x, y]}", "'id'"),
        ("{stride: 2}", "non-empty list"),
        ("{stride: []}", "non-empty list"),
        ("[]", "non-empty mapping"),
    ],
)
def test_bad_matrix(tmp_path: Path, matrix: str, fragment: str) -> None:
    path = write(tmp_path, HEADER + f"  - id: a\n    matrix: {matrix}\n")
    assert_case_error(path, line=8, case="a", field="matrix", contains=(fragment,))


@pytest.mark.parametrize("missing", ["input_shape", "out_channels", "kernel_size", "op"])
def test_missing_required_field(tmp_path: Path, missing: str) -> None:
    fields = {"op": "conv_transpose1d", "input_shape": "[1, 1, 4]", "out_channels": "1", "kernel_size": "2"}
    body = "".join(f"    {k}: {v}\n" for k, v in fields.items() if k != missing)
    path = write(tmp_path, "cases:\n  - id: a\n" + body)
    assert_case_error(path, line=2, case="a", field=missing, contains=("is required",))


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "top level must be a mapping"),
        ("- id: a\n", 1, "top level must be a mapping"),
        ("op: conv_transpose1d\n", None, "'cases' must be a non-empty list"),
        ("op: conv_transpose1d\ncases: []\n", 2, "'cases' must be a non-empty list"),
        ("op: conv_transpose1d\ncases:\n  - 3\n", 3, "case #1 must be a mapping"),
        ("op: conv_transpose1d\ndefaults: [1]\ncases:\n  - id: a\n", 2, "'defaults' must be a mapping"),
    ],
)
def test_bad_file_structure(tmp_path: Path, text: str, line: int | None, fragment: str) -> None:
    assert_case_error(write(tmp_path, text), line=line, contains=(fragment,))


@pytest.mark.parametrize("bad_id", ["", "has space", "a/b", "3", "a::b"])
def test_bad_id(tmp_path: Path, bad_id: str) -> None:
    value = bad_id if bad_id.isdigit() else repr(bad_id)
    path = write(tmp_path, HEADER + f"  - id: ok\n  - id: {value}\n")
    assert_case_error(path, line=8, case="#2", field="id", contains=("'id' must be",))


def test_missing_file() -> None:
    with pytest.raises(CaseFileError, match=r"no-such-file\.yaml"):
        load_cases(["no-such-file.yaml"])
    with pytest.raises(CaseFileError, match="cannot read file"):
        load_case_file("no-such-file.yaml")


# --- good files -------------------------------------------------------------------------------------


def test_defaults_and_top_level_op_apply(tmp_path: Path) -> None:
    cases = load_one(
        tmp_path,
        HEADER + "  - id: a\n  - id: b\n    kernel_size: [1, 2]\n    op: conv_transpose2d\n"
        "  - id: c\n    op: conv_transpose1d\n    input_shape: [2, 2, 5]\n",
    )
    a, b, c = cases
    assert (a.op, a.input_shape, a.params.out_channels, a.params.kernel_size) == (
        "conv_transpose2d",
        (1, 2, 4, 4),
        2,
        (3, 3),
    )
    assert a.params.stride == (1, 1) and a.params.padding == (0, 0) and a.params.output_padding == (0, 0)
    assert a.params.dilation == (1, 1) and a.params.groups == 1 and a.params.bias is True
    assert (a.dtype, a.expect, a.values, a.tags) == ("float32", "ok", "normal", ())
    assert b.params.kernel_size == (1, 2)
    assert c.op == "conv_transpose1d" and c.params.kernel_size == (3,) and c.input_shape == (2, 2, 5)
    assert [x.line for x in cases] == [7, 8, 11]
    assert all(x.file == str(tmp_path / "cases.yaml") for x in cases)
    assert a.nodeid == "cases.yaml::a"


def test_matrix_expansion_count_and_ids(tmp_path: Path) -> None:
    cases = load_one(
        tmp_path,
        HEADER + "  - id: up\n    matrix:\n      stride: [1, 2]\n      padding: [0, [1, 0]]\n"
        "      bias: [true, false]\n      values: [normal, integers]\n",
    )
    assert len(cases) == 2 * 2 * 2 * 2
    ids = [c.id for c in cases]
    assert ids[:3] == ["up-s1-p0-bias-normal", "up-s1-p0-bias-integers", "up-s1-p0-nobias-normal"]
    assert "up-s2-p1x0-nobias-integers" in ids
    assert len(set(ids)) == len(ids)
    assert all(c.family == "up" for c in cases)
    last = cases[-1]
    assert last.params.stride == (2, 2) and last.params.padding == (1, 0) and last.params.bias is False
    assert last.values == "integers"


def test_matrix_error_names_the_expanded_case(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: up\n    matrix:\n      output_padding: [0, 1]\n")
    assert_case_error(
        path, line=7, case="up-op1", field="output_padding", contains=("breaks rule output_padding_bound",)
    )


def test_matrix_with_expect_error(tmp_path: Path) -> None:
    cases = load_one(
        tmp_path, HEADER + "  - id: bad\n    expect: error\n    matrix:\n      stride: [0, -1]\n"
    )
    assert [c.id for c in cases] == ["bad-s0", "bad-s-1"]
    assert all(c.violations and c.violations[0].rule == "stride_positive" for c in cases)
    assert all(c.expected_shape is None for c in cases)


def test_seeds_default_deterministic_and_distinct(tmp_path: Path) -> None:
    text = HEADER + "  - id: a\n  - id: b\n    matrix:\n      stride: [1, 2, 3]\n"
    first = load_one(tmp_path, text)
    again = load_one(tmp_path, text)
    seeds = [c.seed for c in first]
    assert seeds == [c.seed for c in again], "default seeds changed between loads"
    assert len(set(seeds)) == len(seeds), (
        f"default seeds not distinct: {dict(zip([c.id for c in first], seeds, strict=True))}"
    )
    assert first[0].seed == zlib.crc32(b"a")  # derived from the id alone, not from the file or position
    moved = load_one(
        tmp_path / "other",
        "op: conv_transpose1d\ncases:\n  - id: x\n    input_shape: [1, 1, 2]\n"
        "    out_channels: 1\n    kernel_size: 1\n  - id: a\n"
        "    input_shape: [1, 1, 2]\n    out_channels: 1\n    kernel_size: 1\n",
    )
    assert moved[1].seed == first[0].seed


def test_explicit_seed_respected(tmp_path: Path) -> None:
    cases = load_one(
        tmp_path,
        HEADER + "  - id: a\n    seed: 7\n  - id: b\n    seed: 0\n  - id: c\n"
        "    matrix:\n      seed: [1, 2]\n",
    )
    assert [(c.id, c.seed) for c in cases] == [("a", 7), ("b", 0), ("c-seed1", 1), ("c-seed2", 2)]


def test_tolerance_tags_and_dtype(tmp_path: Path) -> None:
    (case,) = load_one(
        tmp_path,
        HEADER + "  - id: a\n    tolerance: {factor: 2, atol: 0.5}\n    tags: [x, y]\n    dtype: bfloat16\n",
    )
    assert (case.tolerance.factor, case.tolerance.atol) == (2.0, 0.5)
    assert case.tags == ("x", "y")
    assert case.dtype == "bfloat16"


def test_select_with_globs(tmp_path: Path) -> None:
    cases = load_one(
        tmp_path,
        HEADER + "  - id: unet-up\n    matrix:\n      stride: [1, 2]\n  - id: plain\n  - id: unet.down\n",
    )
    assert [c.id for c in select(cases)] == ["unet-up-s1", "unet-up-s2", "plain", "unet.down"]
    assert [c.id for c in select(cases, ["unet-*"])] == ["unet-up-s1", "unet-up-s2"]
    assert [c.id for c in select(cases, ["*-s2", "plain"])] == ["unet-up-s2", "plain"]
    assert [c.id for c in select(cases, ["unet?down"])] == ["unet.down"]
    assert [c.id for c in select(cases, ["nothing*"])] == []
    assert [c.id for c in select(cases, ["Plain"])] == [], "select must be case-sensitive"


def test_case_files_on_a_directory(tmp_path: Path) -> None:
    body = (
        "op: conv_transpose1d\ncases:\n  - id: {id}\n"
        "    input_shape: [1, 1, 3]\n    out_channels: 1\n    kernel_size: 2\n"
    )
    write(tmp_path, body.format(id="b"), "b.yaml")
    write(tmp_path, body.format(id="a"), "sub/a.yml")
    write(tmp_path, "divergences: []\n", "known_divergences.yaml")
    write(tmp_path, "not yaml at all: [", "notes.txt")
    found = case_files([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["b.yaml", "sub/a.yml"]
    assert [c.id for c in load_cases([tmp_path])] == ["b", "a"]


def test_expected_shape(tmp_path: Path) -> None:
    cases = load_one(
        tmp_path,
        HEADER + "  - id: a\n    stride: 2\n    padding: 1\n    output_padding: 1\n"
        "  - id: b\n    out_channels: 6\n    groups: 2\n    dilation: [1, 2]\n"
        "  - id: c\n    groups: 3\n    expect: error\n",
    )
    a, b, c = cases
    assert a.expected_shape == (1, 2, 8, 8)
    assert b.expected_shape == (1, 6, 6, 8)
    assert c.expected_shape is None
    assert [v.rule for v in c.violations] == ["in_channels_divisible", "out_channels_divisible"]
    assert a.params_record()["stride"] == [2, 2] and a.params_record()["dtype"] == "float32"


# --- inputs ----------------------------------------------------------------------------------------

INPUT_CASES = (
    HEADER
    + """\
  - id: f32
  - id: f32-same-seed
    seed: {seed}
  - id: nobias
    bias: false
    dtype: float16
  - id: bf16
    dtype: bfloat16
    out_channels: 4
    groups: 2
  - id: ints
    values: integers
    dtype: float64
  - id: uniform
    values: uniform
    input_shape: [2, 2, 5, 3]
"""
)


@pytest.fixture
def input_cases(tmp_path: Path) -> dict[str, Case]:
    text = INPUT_CASES.replace("{seed}", str(zlib.crc32(b"f32")))
    return {c.id: c for c in load_one(tmp_path, text)}


def test_make_inputs_shapes_and_dtypes(input_cases: dict[str, Case]) -> None:
    expected_dtypes = {
        "f32": np.float32,
        "nobias": np.float16,
        "bf16": ml_dtypes.bfloat16,
        "ints": np.float64,
        "uniform": np.float32,
    }
    for case_id, dtype in expected_dtypes.items():
        case = input_cases[case_id]
        inputs = make_inputs(case)
        assert inputs.x.shape == case.input_shape, case_id
        assert inputs.weight.shape == case.params.weight_shape(), case_id
        for name, a in (("x", inputs.x), ("weight", inputs.weight), ("bias", inputs.bias)):
            if a is not None:
                assert a.dtype == np.dtype(dtype), (
                    f"make_inputs({case_id}).{name} is {a.dtype}, expected {dtype}"
                )
        if case.params.bias:
            assert inputs.bias is not None and inputs.bias.shape == (case.params.out_channels,), case_id
    assert input_cases["bf16"].params.weight_shape() == (2, 2, 3, 3)
    assert make_inputs(input_cases["nobias"]).bias is None


def test_make_inputs_deterministic_per_seed(input_cases: dict[str, Case]) -> None:
    a, b = make_inputs(input_cases["f32"]), make_inputs(input_cases["f32"])
    for name in ("x", "weight", "bias"):
        np.testing.assert_array_equal(
            getattr(a, name), getattr(b, name), err_msg=f"make_inputs not deterministic: {name}"
        )
    same = make_inputs(input_cases["f32-same-seed"])  # another id, explicitly the same seed
    np.testing.assert_array_equal(a.x, same.x)
    other = make_inputs(input_cases["uniform"])
    assert not np.array_equal(a.x, other.x[:1, :, :4, :3])


def test_make_inputs_distributions(input_cases: dict[str, Case]) -> None:
    ints = make_inputs(input_cases["ints"])
    for a in (ints.x, ints.weight, ints.bias):
        assert (a == np.round(a)).all() and np.abs(a).max() <= 2, "integers distribution gave non-integers"
    uniform = make_inputs(input_cases["uniform"])
    assert np.abs(uniform.x).max() <= 1.0
    bf16 = make_inputs(input_cases["bf16"])
    assert len(np.unique(bf16.x.astype(np.float64))) > 1


def test_make_cotangent(input_cases: dict[str, Case]) -> None:
    case = input_cases["bf16"]
    g = make_cotangent(case)
    assert g.shape == case.expected_shape and g.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(g, make_cotangent(case))


# --- known bugs (strict xfail: they start failing the suite once fixed, so the marker gets removed) ----


def test_yaml_merge_key_override(tmp_path: Path) -> None:
    text = (
        "op: conv_transpose2d\ncases:\n  - &base\n    id: base\n    input_shape: [1, 2, 4, 4]\n"
        "    out_channels: 2\n    kernel_size: 3\n  - <<: *base\n    id: strided\n    stride: 2\n"
    )
    base, strided = load_one(tmp_path, text)
    assert (base.id, strided.id, strided.params.stride) == ("base", "strided", (2, 2))
    assert strided.input_shape == base.input_shape


def test_ok_case_error_names_the_rule_id(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "  - id: broken\n    output_padding: 1\n")
    assert_case_error(path, line=8, case="broken", field="output_padding", contains=("output_padding_bound",))


def test_new_dimensions_of_the_space_load(tmp_path: Path) -> None:
    """Asymmetric and string padding, output_size, unbatched and empty-batch inputs as written."""
    path = write(
        tmp_path,
        HEADER
        + "  - id: pairs\n    padding: [[2, 1], 0]\n    stride: 2\n"
        + "  - id: same\n    padding: same\n    stride: 2\n"
        + "  - id: lower\n    padding: same_lower\n    stride: 2\n"
        + "  - id: sized\n    stride: 2\n    padding: 1\n    output_size: [8, 7]\n"
        + "  - id: unbatched\n    input_shape: [2, 4, 4]\n"
        + "  - id: empty\n    input_shape: [0, 2, 4, 4]\n"
        + "  - id: modes\n    stride: 2\n    matrix:\n      padding: [same, [[1, 0], 2]]\n",
    )
    cases = {c.id: c for c in load_case_file(path)}
    assert cases["pairs"].params.padding_pairs == ((2, 1), (0, 0)), cases["pairs"].params
    assert cases["pairs"].expected_shape == (1, 2, 6, 9), cases["pairs"].expected_shape
    assert cases["same"].params.padding_pairs == ((0, 1), (0, 1)), cases["same"].params
    assert cases["same"].expected_shape == (1, 2, 8, 8), cases["same"].expected_shape
    assert cases["lower"].params.padding_pairs == ((1, 0), (1, 0)), cases["lower"].params
    assert cases["sized"].params.output_padding == (1, 0), cases["sized"].params
    assert cases["sized"].expected_shape == (1, 2, 8, 7), cases["sized"].expected_shape
    assert cases["unbatched"].expected_shape == (2, 6, 6), cases["unbatched"].expected_shape
    assert cases["empty"].expected_shape == (0, 2, 6, 6), cases["empty"].expected_shape
    assert {"modes-psame", "modes-p1_0x2"} <= set(cases), sorted(cases)
    record = cases["pairs"].params_record()
    assert record["padding"] == [[2, 1], 0], record
    assert cases["sized"].params_record()["output_size"] == [8, 7], cases["sized"].params_record()
    assert cases["same"].params_record()["padding"] == "same", cases["same"].params_record()


def test_readme_case_format_example_loads(tmp_path: Path) -> None:
    """The README's case-file example is valid and means what its comments say."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Case format", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    cases = {c.id: c for c in load_case_file(write(tmp_path, example))}
    assert cases["asymmetric"].params.padding_pairs == ((2, 1), (0, 0)), cases["asymmetric"].params
    assert cases["keras-same"].expected_shape == (2, 8, 12, 12), cases["keras-same"].expected_shape
    assert cases["sized"].params.output_padding == (1, 1), cases["sized"].params
    assert cases["one-image"].expected_shape == (8, 8, 8) and cases["one-image"].layout == "channels_last"
