"""conformance.divergences: loading the known-divergences baseline and applying it to results."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from conformance.cases import CaseFileError
from conformance.divergences import Divergence, apply, load_divergences
from conformance.results import FAILING, Result


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "known_divergences.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def result(
    case: str = "unet-up-s2",
    status: str = "fail",
    framework: str = "mlx",
    check: str = "forward",
    file: str = "cases/conv_transpose2d.yaml",
) -> Result:
    return Result(case=case, file=file, framework=framework, check=check, status=status, message="original")


def entry(
    case: str = "unet-*",
    framework: str = "mlx",
    check: str | None = None,
    link: str | None = None,
    statuses: tuple[str, ...] | None = None,
) -> Divergence:
    extra = {} if statuses is None else {"statuses": statuses}
    return Divergence(
        framework=framework,
        case=case,
        reason="groups with C_out/g > 1 mis-index",
        check=check,
        link=link,
        line=3,
        **extra,
    )


# --- assertion helpers ----------------------------------------------------------------------------


def assert_load_error(
    path: Path, *, line: int | None, case: str | None, field: str | None, fragment: str
) -> None:
    __tracebackhide__ = True
    with pytest.raises(CaseFileError) as info:
        load_divergences(path)
    err, text = info.value, str(info.value)
    where = f"{path}:{line}" if line else str(path)
    assert text.startswith(where + ":"), f"load_divergences: {text!r} does not start with {where!r}"
    assert (err.line, err.case, err.field) == (line, case, field), (
        f"load_divergences: (line, case, field) = {(err.line, err.case, err.field)}, "
        f"expected {(line, case, field)}"
    )
    assert fragment in text, f"load_divergences: {fragment!r} not in {text!r}"


def assert_status(r: Result, status: str, what: str) -> None:
    __tracebackhide__ = True
    assert r.status == status, f"apply(): {what}: status {r.status!r}, expected {status!r} ({r.message})"


# --- load_divergences ------------------------------------------------------------------------------


def test_load_valid_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        # header comment
        divergences:
          - framework: mlx
            case: "unet-*"
            check: forward
            reason: >
              MLX mis-indexes the weight when
              C_out/groups > 1
            link: https://example.invalid/issue/1
          - framework: torch
            case: "conv_transpose2d.yaml::odd-*"
            reason: rounding
            status: crash
          - framework: jax
            case: "*"
            reason: hangs
            status: [timeout, fail]
        """,
    )
    first, second, third = load_divergences(path)
    assert first == Divergence(
        "mlx",
        "unet-*",
        "MLX mis-indexes the weight when C_out/groups > 1",
        "forward",
        "https://example.invalid/issue/1",
        3,
    )
    assert (second.framework, second.case, second.check, second.link, second.line) == (
        "torch",
        "conv_transpose2d.yaml::odd-*",
        None,
        None,
        10,
    )
    assert first.statuses == ("fail", "error"), "an entry covers fail and error by default"
    assert second.statuses == ("crash",)
    assert third.statuses == ("timeout", "fail")


@pytest.mark.parametrize("text", ["", "divergences: []\n", "divergences:\n", "# nothing\n"])
def test_load_empty(tmp_path: Path, text: str) -> None:
    assert load_divergences(write(tmp_path, text)) == []


def test_the_repository_baseline_loads() -> None:
    baseline = Path(__file__).resolve().parent.parent / "cases" / "known_divergences.yaml"
    if not baseline.exists():
        pytest.skip("no cases/known_divergences.yaml")
    assert isinstance(load_divergences(baseline), list)


def test_unknown_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        divergences:
          - framework: mlx
            case: a
            reason: r
          - framework: mlx
            case: b
            reason: r
            issue: 12
        """,
    )
    assert_load_error(path, line=5, case="#2", field="issue", fragment="unknown key")


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ("framework: mlx\n    case: a\n", "reason", "is required"),
        ("framework: mlx\n    case: a\n    reason: '   '\n", "reason", "non-empty string"),
        ("framework: mlx\n    case: a\n    reason: 3\n", "reason", "must be a non-empty string"),
        ("case: a\n    reason: r\n", "framework", "is required"),
        ("framework: mlx\n    reason: r\n", "case", "is required"),
        ("framework: mlx\n    case: a\n    reason: r\n    check: [forward]\n", "check", "must be a string"),
        ("framework: mlx\n    case: a\n    reason: r\n    link: 7\n", "link", "must be a string"),
        ("framework: mlx\n    case: a\n    reason: r\n    status: pass\n", "status", "'crash'"),
        ("framework: mlx\n    case: a\n    reason: r\n    status: [fail, xfail]\n", "status", "'timeout'"),
        ("framework: mlx\n    case: a\n    reason: r\n    status: []\n", "status", "must be one or a list"),
        ("framework: mlx\n    case: a\n    reason: r\n    status: 3\n", "status", "must be one or a list"),
    ],
)
def test_missing_or_bad_field(tmp_path: Path, body: str, field: str, fragment: str) -> None:
    path = write(tmp_path, "divergences:\n  - " + body)
    assert_load_error(path, line=2, case="#1", field=field, fragment=fragment)


@pytest.mark.parametrize(
    ("text", "line", "case", "fragment"),
    [
        ("divergence: []\n", 1, None, "single 'divergences:' list"),
        ("- framework: mlx\n", 1, None, "mapping"),
        ("divergences: {framework: mlx}\n", 1, None, "'divergences' must be a list"),
        ("divergences:\n  - mlx\n", None, "#1", "must be a mapping"),
        ("divergences:\n  - framework: mlx\n    framework: torch\n", 3, None, "duplicate key 'framework'"),
        ("divergences:\n  - [\n", 3, None, "YAML error"),
    ],
)
def test_bad_structure(tmp_path: Path, text: str, line: int | None, case: str | None, fragment: str) -> None:
    assert_load_error(write(tmp_path, text), line=line, case=case, field=None, fragment=fragment)


# --- apply -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "statuses"),
    [
        ("fail", None),
        ("error", None),
        ("crash", ("crash",)),
        ("timeout", ("timeout",)),
        ("fail", ("fail", "timeout")),
        ("timeout", ("fail", "timeout")),
    ],
)
def test_failure_becomes_xfail(status: str, statuses: tuple[str, ...] | None) -> None:
    r = result(status=status)
    warnings = apply([r], [entry(link="https://example.invalid/1", statuses=statuses)]).warnings
    assert_status(r, "xfail", f"a matching {status}")
    assert r.divergence == {
        "reason": "groups with C_out/g > 1 mis-index",
        "link": "https://example.invalid/1",
        "entry": "unet-*",
    }
    assert r.message == "original", "xfail must keep the failure's own message"
    assert warnings == []
    assert r.status not in FAILING


@pytest.mark.parametrize(
    ("status", "statuses"),
    [
        ("crash", None),
        ("timeout", None),
        ("fail", ("crash",)),
        ("error", ("timeout",)),
        ("crash", ("timeout",)),
    ],
)
def test_failure_not_named_by_the_entry_stays(status: str, statuses: tuple[str, ...] | None) -> None:
    """A crash or a hang is hidden only when the entry names it; an entry for a crash hides nothing else."""
    r = result(status=status)
    apply([r], [entry(statuses=statuses)])
    assert_status(r, status, f"a {status} against an entry covering {statuses or 'the default statuses'}")
    assert r.divergence is None and r.status in FAILING


@pytest.mark.parametrize("statuses", [None, ("crash",), ("timeout", "error")])
def test_pass_becomes_xpass_whatever_statuses_the_entry_names(statuses: tuple[str, ...] | None) -> None:
    r = result(status="pass")
    apply([r], [entry(statuses=statuses)])
    assert_status(r, "xpass", f"a pass against an entry covering {statuses}")


def test_xfail_without_link() -> None:
    r = result()
    apply([r], [entry()])
    assert r.divergence == {"reason": "groups with C_out/g > 1 mis-index", "entry": "unet-*"}


def test_pass_becomes_xpass_telling_to_remove_the_entry() -> None:
    r = result(status="pass")
    apply([r], [entry()])
    assert_status(r, "xpass", "a matching pass")
    assert "remove the entry 'unet-*'" in r.message and "line 3" in r.message, r.message
    assert r.divergence is not None and r.divergence["entry"] == "unet-*"
    assert r.status in FAILING, "an xpass must fail the gate"


@pytest.mark.parametrize("status", ["unsupported", "xfail", "xpass"])
def test_other_statuses_untouched(status: str) -> None:
    r = result(status=status)
    warnings = apply([r], [entry()]).warnings
    assert_status(r, status, f"a matching {status}")
    assert r.divergence is None and r.message == "original"
    assert warnings == [], "an entry that matched an unsupported result is not stale"


def test_non_matching_results_untouched() -> None:
    results = [
        result(case="down-s2"),  # id does not match the glob
        result(framework="torch"),  # other framework
        result(case="unet"),  # glob needs the dash
    ]
    apply(results, [entry()])
    for r in results:
        assert_status(r, "fail", f"non-matching {r.framework}/{r.case}")


@pytest.mark.parametrize(
    ("pattern", "case", "file", "matches"),
    [
        ("unet-*", "unet-up-s2", "cases/conv_transpose2d.yaml", True),
        ("unet-?p-s[0-9]", "unet-up-s2", "cases/conv_transpose2d.yaml", True),
        ("*-s2", "unet-up-s3", "cases/conv_transpose2d.yaml", False),
        ("UNET-*", "unet-up-s2", "cases/conv_transpose2d.yaml", False),  # case-sensitive
        ("conv_transpose2d.yaml::unet-*", "unet-up-s2", "cases/conv_transpose2d.yaml", True),
        ("conv_transpose2d.yaml::unet-*", "unet-up-s2", "/abs/elsewhere/conv_transpose2d.yaml", True),
        ("conv_transpose2d.yaml::unet-*", "unet-up-s2", "cases/conv_transpose3d.yaml", False),
        ("conv_transpose?d.yaml::*", "anything", "cases/conv_transpose1d.yaml", True),
        ("*::unet-up-s2", "unet-up-s2", "x.yaml", True),
        # plain names (no glob) are looked up, not tried on every case: the same answers
        ("unet-up-s2", "unet-up-s2", "cases/conv_transpose2d.yaml", True),
        ("conv_transpose2d.yaml::unet-up-s2", "unet-up-s2", "cases/conv_transpose2d.yaml", True),
        ("conv_transpose2d.yaml::unet-up-s2", "unet-up-s2", "/abs/elsewhere/conv_transpose2d.yaml", True),
        ("conv_transpose2d.yaml::unet-up-s2", "unet-up-s2", "cases/conv_transpose3d.yaml", False),
        ("conv_transpose2d.yaml::unet-up", "unet-up-s2", "cases/conv_transpose2d.yaml", False),
        ("cases/conv_transpose2d.yaml::unet-up-s2", "unet-up-s2", "cases/conv_transpose2d.yaml", False),
        (
            "cases/conv_transpose2d.yaml::unet-*",
            "unet-up-s2",
            "cases/conv_transpose2d.yaml",
            False,
        ),  # file name only
    ],
)
def test_glob_on_id_and_on_file_id(pattern: str, case: str, file: str, matches: bool) -> None:
    r = result(case=case, file=file)
    apply([r], [entry(case=pattern)])
    assert_status(r, "xfail" if matches else "fail", f"pattern {pattern!r} vs {file}::{case}")


def test_check_filter() -> None:
    forward, grad = result(check="forward"), result(check="grad_input")
    warnings = apply([forward, grad], [entry(check="grad_input")]).warnings
    assert_status(forward, "fail", "a forward result against a grad_input entry")
    assert_status(grad, "xfail", "a grad_input result against a grad_input entry")
    assert warnings == []
    unfiltered = [result(check="forward"), result(check="grad_weight")]
    apply(unfiltered, [entry()])
    assert [r.status for r in unfiltered] == ["xfail", "xfail"], "an entry without check matches every check"


def test_first_matching_entry_wins() -> None:
    r = result()
    entries = [entry(case="unet-up-*", link="first"), entry(case="unet-*", link="second")]
    warnings = apply([r], entries).warnings
    assert r.divergence is not None and r.divergence["link"] == "first"
    assert len(warnings) == 1 and "'unet-*'" in warnings[0]


@pytest.mark.parametrize("named_first", ["by-file-and-id", "by-glob"])
def test_first_matching_entry_wins_however_each_names_the_case(named_first: str) -> None:
    """Entries that name a case by a plain FILE::ID are looked up, globs tried on every case: the
    first in file order still wins, and an entry naming the case twice matches it once."""
    r = result(case="unet-up-s2", file="cases/conv_transpose2d.yaml")
    plain = entry(case=("conv_transpose2d.yaml::unet-up-s2", "unet-up-s2"), link="plain")
    glob = entry(case="unet-*", link="glob")
    entries = [plain, glob] if named_first == "by-file-and-id" else [glob, plain]
    warnings = apply([r], entries).warnings
    assert r.divergence is not None and r.divergence["link"] == entries[0].link, r.divergence
    assert len(warnings) == 1 and entries[1].label in warnings[0], warnings


def test_entries_naming_cases_plainly_are_never_compiled() -> None:
    """An entry found by its plain names is not asked again through its globs' regular
    expressions (compiling the shipped baselines' was a tenth of the baseline phase)."""
    r = result(case="unet-up-s2", file="cases/conv_transpose2d.yaml")
    plain = entry(case=("conv_transpose2d.yaml::unet-up-s2", "other"), link="plain")
    glob = entry(case="unet-*", check="grad_input", link="glob")
    apply([r], [plain, glob])
    assert r.divergence is not None and r.divergence["link"] == "plain"
    assert "_case_patterns" not in vars(plain), "a plainly named entry's patterns were compiled"
    assert "_case_patterns" in vars(glob), "a glob entry is asked whether it names the case"


def test_stale_entry_warning_only_for_frameworks_that_ran() -> None:
    entries = [
        entry(case="unet-*"),
        entry(case="gone-*"),  # mlx ran, nothing matches: stale
        entry(case="gone-*", framework="jax"),  # jax did not run: not judged
        entry(case="unet-*", check="grad_input"),  # mlx ran, no grad_input result: stale
    ]
    warnings = apply([result(), result(case="other", framework="torch")], entries).warnings
    assert len(warnings) == 2, warnings
    assert "'gone-*'" in warnings[0] and "mlx" in warnings[0] and "line 3" in warnings[0], warnings[0]
    assert "check grad_input" in warnings[1], warnings[1]
    assert not any("jax" in w for w in warnings)
    assert apply([], entries).warnings == [], "no framework ran: no entry can be judged stale"


def test_apply_accepts_a_generator() -> None:
    results = [result(), result(case="unet-b", status="pass")]
    warnings = apply((r for r in results), [entry()]).warnings
    assert [r.status for r in results] == ["xfail", "xpass"]
    assert warnings == []
