"""The pytest plugin: case files collect into case x framework x check items with readable ids."""

from __future__ import annotations

import textwrap

import pytest

from tests.helpers.pytest_helpers import DIRECT

CASES = textwrap.dedent("""
    op: conv_transpose2d
    defaults: {input_shape: [1, 4, 3, 3], out_channels: 4, kernel_size: 2}
    cases:
      - id: up
        matrix: {stride: [1, 2]}
      - id: grouped
        groups: 2
        bias: false
      - id: bad-op
        stride: 1
        output_padding: 1
        expect: error
""")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makefile(".yaml", conv_transpose2d=CASES)
    return pytester.runpytest(
        "-p", "no:cacheprovider", "--conformance-adapter", f"{DIRECT}:DirectNumpy", *args
    )


def test_items_are_case_framework_check(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "conv_transpose2d.yaml::up-s1[[]numpy-direct-forward[]]",
            "conv_transpose2d.yaml::up-s1[[]numpy-direct-grad_input[]]",
            "conv_transpose2d.yaml::up-s1[[]numpy-direct-grad_weight[]]",
            "conv_transpose2d.yaml::up-s1[[]numpy-direct-grad_bias[]]",
            "conv_transpose2d.yaml::up-s2[[]numpy-direct-forward[]]",
            "conv_transpose2d.yaml::grouped[[]numpy-direct-forward[]]",
            "conv_transpose2d.yaml::grouped[[]numpy-direct-grad_weight[]]",
            "conv_transpose2d.yaml::bad-op[[]numpy-direct-error_parity[]]",
        ]
    )
    assert "grouped[numpy-direct-grad_bias]" not in result.stdout.str(), "no grad_bias without a bias"


def test_correct_adapter_passes(pytester: pytest.Pytester) -> None:
    run(pytester).assert_outcomes(passed=5 + 5 + 4 + 1)  # forward, gradients, repeatability; error parity


def test_check_selection(pytester: pytest.Pytester) -> None:
    run(pytester, "--conformance-check", "forward,error_parity").assert_outcomes(passed=4)


def test_keyword_selection(pytester: pytest.Pytester) -> None:
    run(pytester, "-k", "up-s and not s2 and forward").assert_outcomes(passed=1)


def test_bug_fails_with_the_case_in_the_message(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", conv_transpose2d=CASES)
    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--conformance-adapter",
        f"{DIRECT}:MisreadsGroupWeight",
        "--conformance-check",
        "forward",
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*bug-group-weight-layout forward fail:*elements outside tolerance*",
            "*g=2 bias=False dtype=float32*",
        ]
    )


def test_known_divergence_is_xfail(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        known_divergences=textwrap.dedent("""
        divergences:
          - {framework: bug-accepts-large-output-padding, case: bad-op, reason: accepts op >= stride}
    """),
    )
    pytester.makefile(".yaml", conv_transpose2d=CASES)
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--conformance-adapter", f"{DIRECT}:AcceptsLargeOutputPadding", "-rx"
    )
    result.assert_outcomes(passed=14, xfailed=1)
    result.stdout.fnmatch_lines(["*known divergence: accepts op >= stride*"])


def test_bad_case_file_is_a_collection_error_naming_the_field(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        broken="op: conv_transpose1d\ncases:\n  - {id: a, input_shape: [1, 1, 4], "
        "out_channels: 1, kernel_size: 2, groups: x}\n",
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--conformance-adapter", f"{DIRECT}:DirectNumpy")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*broken.yaml:3: case 'a': field 'groups': must be an integer*"])


def test_kernel_path_variant_is_refused_in_process(pytester: pytest.Pytester) -> None:
    # In one pytest process a variant's backend switch would change the other adapters' kernels too.
    result = run(pytester, "--conformance-framework", "torch[native]")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*torch[[]native[]]*need a process of their own*conformance run*"])
