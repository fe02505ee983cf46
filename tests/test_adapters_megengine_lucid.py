"""The MegEngine and Lucid adapters: each passes a slice of configurations its framework gets right,
declares its limits as unsupported, reports a real version, and every divergence recorded in
cases/known_divergences.{megengine,lucid}.yaml still happens.

MegEngine (Python <= 3.10, numpy < 2) and Lucid 2.9.0 (Python >= 3.12) never share an interpreter,
so each test skips where its framework is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.adapters import load_adapter
from conformance.checks import CHECKS
from conformance.layer_api import describe
from conformance.runner import run
from tests.helpers.pytest_helpers import load_slice, results_by_case

# Lucid's layer constructors cast an uninitialised np.empty buffer to float32 before initialising it.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

PACKAGES = {"megengine": "megengine", "megengine.module": "megengine", "lucid": "lucid", "lucid.nn": "lucid"}


def needs(name: str) -> None:
    pytest.importorskip(PACKAGES[name])


# --- configurations each framework gets right -----------------------------------------------------

# MegEngine: 2-d and 3-d, float32 and float16; output_padding only where MegEngine handles it
# (on the first axis or all axes, groups 1, float32); 1-d, float64 and bfloat16 are unsupported.
MEGENGINE_SLICE = """
op: conv_transpose2d
defaults: {input_shape: [2, 4, 5, 6], out_channels: 6, kernel_size: [3, 2], padding: [1, 0]}
cases:
  - id: sweep
    matrix:
      stride: [1, 2, [2, 3]]
      groups: [1, 2]
      dtype: [float32, float16]
  - id: depthwise-multiplier
    groups: 4
    out_channels: 8
    stride: 2
  - id: dilated
    stride: 2
    dilation: [2, 3]
    padding: [2, 1]
  - id: output-padding
    stride: [2, 3]
    output_padding: [1, 2]
    matrix:
      bias: [true, false]
  - id: three-d
    op: conv_transpose3d
    input_shape: [2, 4, 3, 2, 3]
    kernel_size: 2
    padding: [1, 0, 0]
    stride: [2, 1, 2]
    output_padding: [1, 0, 1]
    bias: false
  - id: three-d-half
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    kernel_size: 2
    padding: 0
    stride: 2
    dtype: float16
  - id: rejects-groups-not-dividing
    input_shape: [1, 3, 4, 4]
    groups: 2
    expect: error
  - id: one-d-unsupported
    op: conv_transpose1d
    input_shape: [1, 4, 7]
    kernel_size: 3
    padding: 0
  - id: bfloat16-unsupported
    dtype: bfloat16
  - id: float64-unsupported
    dtype: float64
"""
# megengine.module.ConvTranspose3d drops groups (a known divergence): grouped 3-d is functional-only
MEGENGINE_FUNCTIONAL_ONLY = """
  - id: three-d-grouped
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    out_channels: 6
    kernel_size: 2
    padding: [0, 1, 0]
    stride: 2
    groups: 2
"""

# Lucid (functional): stride > 1 turns float32/float16 into float64 and the bias gradient is wrong
# for N > 1 (known divergences), so strided cases run in float64 and everything has N = 1.
LUCID_SLICE = """
op: conv_transpose2d
defaults: {input_shape: [1, 4, 5, 6], out_channels: 6, kernel_size: [3, 2], padding: [1, 0]}
cases:
  - id: stride-one
    matrix:
      groups: [1, 2]
      dtype: [float32, float16, float64]
  - id: strided-float64
    stride: [2, 3]
    output_padding: [1, 2]
    dtype: float64
    matrix:
      groups: [1, 2]
      bias: [true, false]
  - id: dilated
    dilation: [2, 3]
    padding: [2, 1]
  - id: one-d
    op: conv_transpose1d
    input_shape: [1, 4, 7]
    out_channels: 2
    kernel_size: 4
    padding: 1
    dtype: float16
  - id: three-d
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    kernel_size: 2
    padding: 0
    stride: 2
    groups: 2
    dtype: float64
  - id: rejects-groups-not-dividing
    input_shape: [1, 3, 4, 4]
    groups: 2
    expect: error
  - id: bfloat16-unsupported
    dtype: bfloat16
"""

# lucid.nn: a layer loaded with float16 or float64 weights computes in float32 (a known
# divergence), so the layer gets float32 only.
LUCID_NN_SLICE = """
op: conv_transpose2d
defaults: {input_shape: [1, 4, 5, 6], out_channels: 6, kernel_size: [3, 2], padding: [1, 0]}
cases:
  - id: stride-one
    matrix:
      groups: [1, 2]
      bias: [true, false]
  - id: dilated
    dilation: [2, 3]
    padding: [2, 1]
  - id: one-d
    op: conv_transpose1d
    input_shape: [1, 4, 7]
    out_channels: 2
    kernel_size: 4
    padding: 1
  - id: three-d
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    kernel_size: 2
    padding: 0
    groups: 2
  - id: rejects-groups-not-dividing
    input_shape: [1, 3, 4, 4]
    groups: 2
    expect: error
  - id: rejects-cout-not-dividing
    out_channels: 5
    groups: 2
    expect: error
  - id: bfloat16-unsupported
    dtype: bfloat16
"""

SLICES = {
    "megengine": MEGENGINE_SLICE + MEGENGINE_FUNCTIONAL_ONLY,
    "megengine.module": MEGENGINE_SLICE,
    "lucid": LUCID_SLICE,
    "lucid.nn": LUCID_NN_SLICE,
}


@pytest.mark.parametrize("name", sorted(SLICES))
def test_adapter_passes_configurations_its_framework_gets_right(name: str, tmp_path: Path) -> None:
    needs(name)
    checks_seen = set()
    for case_id, results in results_by_case(load_slice(tmp_path, SLICES[name]), name).items():
        for check, result in results.items():
            checks_seen.add(check)
            if case_id.endswith("-unsupported"):
                assert result.status == "unsupported" and result.message, f"{name} {case_id} [{check}]"
                continue
            assert result.status == "pass", f"{name} {case_id} [{check}]: {result.message}"
    assert checks_seen == {*CHECKS}


@pytest.mark.parametrize("name", sorted(SLICES))
def test_adapter_reports_the_installed_version(name: str) -> None:
    needs(name)
    version = load_adapter(name).version()
    assert version and version != "unknown" and version[0].isdigit()


@pytest.mark.parametrize("name", ["megengine.module", "lucid.nn"])
def test_layer_api_introspection(name: str) -> None:
    needs(name)
    entry = describe(load_adapter(name).layer_api())
    constructor = [p["name"] for p in entry["classes"]["2d"]["constructor"]]
    # both order the constructor like this; torch puts groups and bias before dilation
    assert constructor[:9] == [
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "output_padding",
        "dilation",
        "groups",
        "bias",
    ]
    first = entry["init"][0]  # C_in=64, C_out=8, 3x3
    assert first["weight_shape"] == [64, 8, 3, 3], "init samples come back in the canonical layout"
    assert all("error" not in row for row in entry["init"]), "both layers take groups"
    if name == "megengine.module":
        # weight ~ N(0, 1 / (C_out · K)) (groups ignored), bias zeros
        assert first["bias"] == "all zeros"
        assert first["weight_bound_from_std"] / 3**0.5 == pytest.approx(1 / (8 * 9) ** 0.5, rel=0.05)
    else:
        # weight ~ U(-a, a), a = sqrt(6 / (C_out/g · K)); bias ~ U(-b, b), b = 1/sqrt(the same)
        assert first["weight_bound_from_std"] == pytest.approx((6 / (8 * 9)) ** 0.5, rel=0.05)
        assert first["bias"].startswith("max |b|")


# --- every recorded divergence still happens ------------------------------------------------------

# (adapters, check, expected status, text the message contains, case file)
DIVERGENCES: dict[str, tuple[list[str], str, str, str, str]] = {
    # MegEngine
    "megengine-op-ge-stride-below-dilation": (
        ["megengine", "megengine.module"],
        "forward",
        "error",
        "shoule be less than stride",
        "{input_shape: [1, 2, 4, 4], out_channels: 2, kernel_size: 2, dilation: 3, output_padding: [2, 0]}",
    ),
    "megengine-grouped-output-padding": (
        ["megengine", "megengine.module"],
        "forward",
        "error",
        "group conv channel mismatch",
        "{input_shape: [1, 4, 3, 3], out_channels: 4, kernel_size: 2, stride: 2, output_padding: 1, "
        "groups: 2}",
    ),
    "megengine-output-padding-on-width-only-ignored": (
        ["megengine", "megengine.module"],
        "forward",
        "fail",
        "shape (1, 2, 6, 6) instead of (1, 2, 6, 7)",
        "{input_shape: [1, 2, 3, 3], out_channels: 2, kernel_size: 2, stride: 2, output_padding: [0, 1]}",
    ),
    "megengine-output-length-one-through-output-padding": (
        ["megengine", "megengine.module"],
        "forward",
        "error",
        "i > pad * 2",
        "{input_shape: [1, 4, 1, 1], out_channels: 4, kernel_size: 2, stride: 2, padding: 1, "
        "output_padding: 1}",
    ),
    "megengine-float16-output-padding-returns-float32": (
        ["megengine", "megengine.module"],
        "forward",
        "fail",
        "dtype float32 instead of float16",
        "{input_shape: [1, 2, 3, 3], out_channels: 2, kernel_size: 3, stride: 2, output_padding: 1, "
        "dtype: float16}",
    ),
    "megengine-module-3d-drops-groups": (
        ["megengine.module"],
        "forward",
        "error",
        "bad filter ndim for dense convolution",
        "{op: conv_transpose3d, input_shape: [1, 4, 2, 2, 2], out_channels: 4, kernel_size: 2, groups: 2}",
    ),
    # Lucid
    "lucid-stride-returns-float64": (
        ["lucid", "lucid.nn"],
        "forward",
        "fail",
        "dtype float64 instead of float32",
        "{input_shape: [1, 2, 3, 3], out_channels: 2, kernel_size: 2, stride: 2}",
    ),
    "lucid-bias-gradient-mixes-batch-and-channel": (
        ["lucid", "lucid.nn"],
        "grad_bias",
        "fail",
        "outside tolerance",
        "{input_shape: [2, 2, 3, 3], out_channels: 3, kernel_size: 2}",
    ),
    "lucid-op-ge-stride-below-dilation": (
        ["lucid", "lucid.nn"],
        "forward",
        "error",
        "output_padding[0] must be in range [0, 1), got 2",
        "{input_shape: [1, 2, 4, 4], out_channels: 2, kernel_size: 2, dilation: 3, output_padding: [2, 0]}",
    ),
    "lucid-padding-beyond-kernel-extent": (
        ["lucid", "lucid.nn"],
        "forward",
        "error",
        "index can't contain negative values",
        "{input_shape: [1, 2, 5, 5], out_channels: 2, kernel_size: 2, stride: 2, padding: [2, 0]}",
    ),
    "lucid-accepts-dilation-zero": (
        ["lucid", "lucid.nn"],
        "error_parity",
        "fail",
        "instead of raising",
        "{op: conv_transpose1d, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, dilation: 0, "
        "expect: error}",
    ),
    "lucid-accepts-negative-padding": (
        ["lucid", "lucid.nn"],
        "error_parity",
        "fail",
        "instead of raising",
        "{op: conv_transpose1d, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, padding: -1, "
        "expect: error}",
    ),
    "lucid-accepts-empty-spatial-input": (
        ["lucid", "lucid.nn"],
        "error_parity",
        "fail",
        "instead of raising",
        "{op: conv_transpose1d, input_shape: [1, 2, 0], out_channels: 2, kernel_size: 3, expect: error}",
    ),
    "lucid-nn-float16-weights-compute-in-float32": (
        ["lucid.nn"],
        "forward",
        "fail",
        "dtype float32 instead of float16",
        "{input_shape: [1, 2, 3, 3], out_channels: 2, kernel_size: 2, dtype: float16}",
    ),
    "lucid-nn-float64-weights-rounded-to-float32": (
        ["lucid.nn"],
        "forward",
        "fail",
        "outside tolerance",
        "{input_shape: [1, 2, 3, 3], out_channels: 2, kernel_size: 2, dtype: float64}",
    ),
}


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
def test_recorded_divergence_still_happens(divergence: str, tmp_path: Path) -> None:
    names, check, status, text, case = DIVERGENCES[divergence]
    needs(names[0])
    cases = load_slice(tmp_path, f"op: conv_transpose2d\ncases:\n  - {{id: it, {case[1:]}\n")
    for name in names:
        result = results_by_case(cases, name)["it"][check]
        assert result.status == status and text in result.message, f"{name}: {result.status} {result.message}"


def test_megengine_stride_zero_kills_the_process(tmp_path: Path) -> None:
    """SIGFPE in native code: only the runner's worker process can observe it."""
    needs("megengine")
    cases = load_slice(
        tmp_path,
        """
        op: conv_transpose2d
        cases:
          - {id: stride-zero, input_shape: [1, 2, 4, 4], out_channels: 2, kernel_size: 3, stride: [1, 0],
             expect: error}
        """,
    )
    outcome = run(cases, ["megengine"], workers=1, timeout=60)
    [result] = outcome.results
    assert result.status == "crash" and "SIGFPE" in result.message, result.message
