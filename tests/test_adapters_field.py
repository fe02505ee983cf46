"""The PaddlePaddle, TensorFlow, Keras and OpenVINO adapters: each passes a slice of configurations its
framework gets right, declares what its API cannot express as unsupported (with the reason), reports
a real version and its build facts, and every divergence recorded in
cases/known_divergences.{paddle,tensorflow,keras,openvino}.yaml still happens.

They run in the paddle-openvino-tensorflow environment (constraints/paddle-openvino-tensorflow.txt);
each test skips where its framework is not installed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import pytest

with contextlib.suppress(ImportError):  # PaddlePaddle segfaults when imported after TensorFlow, and
    import paddle  # noqa: F401  (these tests import both in one process)

from conformance.adapters import load_adapter
from conformance.checks import CHECKS
from conformance.layer_api import describe
from conformance.machine import cpu_flags
from conformance.runner import run
from tests.helpers.pytest_helpers import load_slice, results_by_case

# Keras 3.15's TensorFlow backend converts tensors with np.array(x), which numpy 2 warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy:DeprecationWarning"
)

PACKAGES = {
    "paddle": "paddle",
    "paddle.nn": "paddle",
    "tensorflow": "tensorflow",
    "tensorflow[eigen]": "tensorflow",
    "tensorflow[onednn]": "tensorflow",
    "keras": "keras",
    "keras[onednn]": "keras",
    "openvino": "openvino",
    "openvino[f32]": "openvino",
}


def needs(name: str) -> None:
    pytest.importorskip(PACKAGES[name])


def onednn_here() -> bool:
    """Whether TensorFlow runs oneDNN in this process (the CPU's default: on only with some
    features; see conformance.adapters.tensorflow_nn.ONEDNN_DEFAULT_FLAGS)."""
    from conformance.adapters.tensorflow_nn import onednn_on

    return onednn_on()


def results_of(cases: list, name: str) -> dict[str, dict[str, object]]:
    """case id -> check -> Result. A variant runs in a worker, which starts with the variant's
    environment (TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at its first oneDNN question: in this
    process it has already been asked); a framework's default path runs here."""
    if "[" not in name:
        return results_by_case(cases, name)
    found: dict[str, dict[str, object]] = {}
    for result in run(cases, [name], workers=1, timeout=300).results:
        found.setdefault(result.case, {})[result.check] = result
    return found


# --- configurations each framework gets right -----------------------------------------------------

# PaddlePaddle: 1-d to 3-d, float32 and float64, groups, dilation, output_padding < stride;
# float16/bfloat16 have no CPU kernel (unsupported).
PADDLE_SLICE = """
op: conv_transpose2d
defaults: {input_shape: [2, 4, 5, 6], out_channels: 6, kernel_size: [3, 2], padding: [1, 0]}
cases:
  - id: sweep
    matrix:
      stride: [1, 2, [2, 3]]
      groups: [1, 2]
      dtype: [float32, float64]
  - id: dilated-output-padding
    stride: [2, 3]
    dilation: [2, 1]
    output_padding: [1, 2]
    matrix:
      bias: [true, false]
  - id: one-d
    op: conv_transpose1d
    input_shape: [2, 4, 7]
    kernel_size: 4
    padding: 1
    stride: 3
    output_padding: 2
    groups: 2
  - id: three-d
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    kernel_size: 2
    padding: [1, 0, 0]
    stride: [2, 1, 2]
    output_padding: [1, 0, 1]
    groups: 2
  - id: rejects-groups-not-dividing
    input_shape: [1, 3, 4, 4]
    groups: 2
    expect: error
  - id: rejects-output-padding-too-large
    stride: 2
    output_padding: 2
    expect: error
  - id: float16-unsupported
    dtype: float16
  - id: bfloat16-unsupported
    dtype: bfloat16
"""

# TensorFlow: explicit padding in 2-d only (1-d and 3-d with padding 0, 'VALID'), no groups; dilation
# only on the oneDNN path with padding 0 and not in float64 (TensorFlow's own kernels cannot dilate).
TENSORFLOW_SLICE = """
op: conv_transpose2d
defaults: {input_shape: [2, 4, 5, 6], out_channels: 3, kernel_size: [3, 2], padding: [1, 0]}
cases:
  - id: sweep
    matrix:
      stride: [1, 2, [2, 3]]
      dtype: [float32, float64, float16, bfloat16]
  - id: output-padding
    stride: [2, 3]
    output_padding: [1, 2]
    matrix:
      bias: [true, false]
  - id: one-d-valid
    op: conv_transpose1d
    input_shape: [2, 4, 7]
    kernel_size: 4
    padding: 0
    stride: 3
    output_padding: 2
  - id: three-d-valid
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    kernel_size: 2
    padding: 0
    stride: [2, 1, 2]
    output_padding: [1, 0, 1]
  - id: rejects-output-padding-too-large
    stride: 2
    output_padding: 2
    expect: error
  - id: groups-unsupported
    groups: 2
    out_channels: 4
  - id: one-d-padding-unsupported
    op: conv_transpose1d
    input_shape: [2, 4, 7]
    kernel_size: 3
    padding: 1
  - id: dilation-explicit-padding-unsupported
    dilation: 2
"""
TENSORFLOW_ONEDNN_ONLY = """
  - id: dilated-valid
    op: conv_transpose1d
    input_shape: [2, 4, 7]
    kernel_size: 3
    padding: 0
    stride: 2
    dilation: 3
    output_padding: 1
"""
#: what TensorFlow's own kernels cannot do (oneDNN off: by TF_ENABLE_ONEDNN_OPTS=0, or by default on
#: a CPU without the features that turn it on)
TENSORFLOW_EIGEN_ONLY = """
  - id: dilated-valid-unsupported
    op: conv_transpose1d
    input_shape: [2, 4, 7]
    kernel_size: 3
    padding: 0
    dilation: 3
"""

# Keras: 'valid' (padding 0) and 'same' (padding dilation·(kernel−1)/2) without output_padding, or
# 'valid' with it; strides > 1 with dilation > 1, groups and other paddings are unsupported.
KERAS_SLICE = """
op: conv_transpose2d
defaults: {input_shape: [2, 4, 5, 6], out_channels: 3, kernel_size: 3, padding: 1}
cases:
  - id: same
    matrix:
      stride: [1, 2, [2, 3]]
      dtype: [float32, float64, float16, bfloat16]
  - id: valid-output-padding
    padding: 0
    stride: [2, 3]
    output_padding: [1, 2]
    matrix:
      bias: [true, false]
  - id: three-d-valid
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    kernel_size: 2
    padding: 0
    stride: [2, 1, 2]
    output_padding: [1, 0, 1]
  - id: rejects-output-padding-too-large
    padding: 0
    stride: 2
    output_padding: 2
    expect: error
  - id: groups-unsupported
    groups: 2
    out_channels: 4
  - id: padding-neither-valid-nor-same-unsupported
    padding: 2
  - id: strided-dilation-unsupported
    padding: 2
    stride: 2
    dilation: 2
"""

#: dilated 'same': on oneDNN only (TensorFlow's own kernels cannot dilate)
KERAS_DILATED = """
  - id: same-dilated{}
    op: conv_transpose1d
    input_shape: [2, 4, 7]
    padding: 2
    dilation: 2
"""

# OpenVINO: forward only (the gradient checks are unsupported); float32, float16, bfloat16, groups,
# dilation and output_padding below stride or dilation; float64 is computed in float32 (a known
# divergence), groups < 1 cannot be expressed.
OPENVINO_SLICE = """
op: conv_transpose2d
defaults: {input_shape: [2, 4, 5, 6], out_channels: 6, kernel_size: [3, 2], padding: [1, 0]}
cases:
  - id: sweep
    matrix:
      stride: [1, 2, [2, 3]]
      groups: [1, 2]
      dtype: [float32, float16]
  - id: sweep-bfloat16-without-bias
    dtype: bfloat16
    bias: false
    matrix:
      stride: [1, 2, [2, 3]]
      groups: [1, 2]
  - id: dilated-output-padding
    stride: [1, 3]
    dilation: [2, 1]
    output_padding: [1, 2]
    matrix:
      bias: [true, false]
  - id: one-d
    op: conv_transpose1d
    input_shape: [2, 4, 7]
    kernel_size: 4
    padding: 1
    stride: 3
    output_padding: 2
    groups: 4
    out_channels: 8
  - id: three-d
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    kernel_size: 2
    padding: [1, 0, 0]
    stride: [2, 1, 2]
    output_padding: [1, 0, 1]
    groups: 2
  - id: rejects-groups-not-dividing
    input_shape: [1, 3, 4, 4]
    groups: 2
    expect: error
  - id: groups-zero-unsupported
    groups: 0
    expect: error
"""

SLICES = {
    "paddle": PADDLE_SLICE,
    "paddle.nn": PADDLE_SLICE,
    "tensorflow": None,  # the slice of the path this CPU runs by default
    "tensorflow[eigen]": TENSORFLOW_SLICE + TENSORFLOW_EIGEN_ONLY,
    "tensorflow[onednn]": TENSORFLOW_SLICE + TENSORFLOW_ONEDNN_ONLY,
    "keras": None,
    "openvino": OPENVINO_SLICE,
    "openvino[f32]": OPENVINO_SLICE,
}


def slice_of(name: str) -> str:
    if name == "tensorflow":
        return TENSORFLOW_SLICE + (TENSORFLOW_ONEDNN_ONLY if onednn_here() else TENSORFLOW_EIGEN_ONLY)
    if name == "keras":
        return KERAS_SLICE + KERAS_DILATED.format("" if onednn_here() else "-unsupported")
    return SLICES[name]


@pytest.mark.parametrize("name", sorted(SLICES))
def test_adapter_passes_configurations_its_framework_gets_right(name: str, tmp_path: Path) -> None:
    needs(name)
    checks_seen = set()
    gradients = {"grad_input", "grad_weight", "grad_bias"}
    forward_only = not load_adapter(name).has_vjp
    for case_id, results in results_of(load_slice(tmp_path, slice_of(name)), name).items():
        for check, result in results.items():
            checks_seen.add(check)
            if case_id.endswith("-unsupported") or (forward_only and check in gradients):
                assert result.status == "unsupported" and result.message, f"{name} {case_id} [{check}]"
                continue
            assert result.status == "pass", f"{name} {case_id} [{check}]: {result.message}"
    assert checks_seen == {*CHECKS}


@pytest.mark.parametrize("name", sorted(SLICES))
def test_adapter_reports_its_version_and_build_facts(name: str) -> None:
    needs(name)
    adapter = load_adapter(name)
    version = adapter.version()
    assert version and version != "unknown" and version[0].isdigit()
    facts = adapter.build_facts()
    assert facts and all(value not in (None, "") for value in facts.values()), f"{name}: {facts}"


def test_paddle_bfloat16_round_trip_reads_the_bits_as_bfloat16() -> None:
    """``.numpy()`` of a Paddle bfloat16 tensor gives uint16 bits; the adapter must hand back bfloat16."""
    needs("paddle")
    import ml_dtypes

    from conformance.adapters.paddle_functional import to_numpy, to_paddle

    a = np.array([1.5, -2.25, 3.0e-3, 65280.0], dtype=ml_dtypes.bfloat16)
    t = to_paddle(a)
    assert str(t.dtype).endswith("bfloat16")
    back = to_numpy(t)
    assert back.dtype == ml_dtypes.bfloat16 and np.array_equal(back.view(np.uint16), a.view(np.uint16))


def test_openvino_reports_the_precision_it_chose_and_f32_forces_f32() -> None:
    needs("openvino")
    default, forced = (load_adapter(name).build_facts() for name in ("openvino", "openvino[f32]"))
    assert forced["inference_precision"] == "f32", forced
    assert default["inference_precision"] in ("f32", "bf16", "f16"), default
    assert {default["deconvolution_precision"], forced["deconvolution_precision"]} <= {"f32", "bf16", "f16"}


# --- every recorded divergence still happens ------------------------------------------------------

# (adapters, check, expected status, text the message contains, case fields)
DIVERGENCES: dict[str, tuple[list[str], str, str, str, str]] = {
    "paddle-op-ge-stride-below-dilation-2d": (
        ["paddle", "paddle.nn"],
        "forward",
        "error",
        "Output_height and padding(padding_up, padding_down) are inconsistent",
        "{input_shape: [1, 2, 4, 4], out_channels: 2, kernel_size: 2, dilation: 3, output_padding: [1, 0]}",
    ),
    "paddle-op-ge-stride-below-dilation-3d": (
        ["paddle", "paddle.nn"],
        "grad_weight",
        "error",
        "are mismatching",
        "{op: conv_transpose3d, input_shape: [1, 2, 3, 3, 3], out_channels: 2, kernel_size: 3, dilation: 2, "
        "output_padding: 1}",
    ),
    "paddle-1d-output-padding-checked-against-stride-only": (
        ["paddle", "paddle.nn"],
        "forward",
        "error",
        "The size of output_padding should not be greater than stride",
        "{op: conv_transpose1d, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 2, dilation: 3, "
        "output_padding: 2}",
    ),
    "paddle-accepts-dilation-zero": (
        ["paddle", "paddle.nn"],
        "error_parity",
        "fail",
        "instead of raising",
        "{input_shape: [1, 2, 4, 4], out_channels: 2, kernel_size: 3, dilation: [1, 0], expect: error}",
    ),
    "paddle-accepts-output-length-zero": (
        ["paddle", "paddle.nn"],
        "error_parity",
        "fail",
        "instead of raising",
        "{op: conv_transpose1d, input_shape: [1, 2, 4], out_channels: 2, kernel_size: 3, padding: 3, "
        "expect: error}",
    ),
    "paddle-nn-accepts-cout-not-divisible-without-bias": (
        ["paddle.nn"],
        "error_parity",
        "fail",
        "instead of raising",
        "{input_shape: [1, 4, 3, 3], out_channels: 3, kernel_size: 2, groups: 2, bias: false, expect: error}",
    ),
    "tensorflow-onednn-op-ge-stride-below-dilation": (
        ["tensorflow[onednn]"],
        "forward",
        "error",
        "could not create a primitive descriptor for the convolution forward propagation primitive",
        "{op: conv_transpose1d, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, padding: 0, "
        "dilation: 2, output_padding: 1}",
    ),
    "tensorflow-accepts-empty-spatial-input": (
        ["tensorflow[onednn]", "tensorflow[eigen]"],
        "error_parity",
        "fail",
        "instead of raising",
        "{op: conv_transpose1d, input_shape: [1, 2, 0], out_channels: 2, kernel_size: 3, expect: error}",
    ),
    "tensorflow-onednn-accepts-kernel-zero": (
        ["tensorflow[onednn]"],
        "error_parity",
        "fail",
        "instead of raising",
        "{op: conv_transpose1d, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 0, expect: error}",
    ),
    "keras-same-with-output-padding-shifts-values": (
        ["keras"],
        "forward",
        "fail",
        "elements outside tolerance",
        "{input_shape: [1, 2, 3, 3], out_channels: 2, kernel_size: 3, stride: 2, padding: 1, "
        "output_padding: 1}",
    ),
    "keras-op-ge-stride-below-dilation": (
        ["keras[onednn]"],  # dilated: on TensorFlow's own kernels the case is unsupported
        "forward",
        "error",
        "`output_padding` must be strictly less than `strides`",
        "{op: conv_transpose1d, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, padding: 0, "
        "dilation: 2, output_padding: 1}",
    ),
    "keras-accepts-empty-spatial-input": (
        ["keras"],
        "error_parity",
        "fail",
        "instead of raising",
        "{op: conv_transpose1d, input_shape: [1, 2, 0], out_channels: 2, kernel_size: 3, padding: 0, "
        "expect: error}",
    ),
    "openvino-float64-computed-in-float32": (
        ["openvino", "openvino[f32]"],
        "forward",
        "fail",
        "elements outside tolerance",
        "{input_shape: [1, 4, 3, 3], out_channels: 2, kernel_size: 3, dtype: float64}",
    ),
    "openvino-bfloat16-bias-missing-where-no-kernel-tap-lands": (
        ["openvino", "openvino[f32]"],
        "forward",
        "fail",
        "elements outside tolerance",
        "{input_shape: [1, 4, 5, 6], out_channels: 6, kernel_size: 2, stride: 3, dtype: bfloat16}",
    ),
    "openvino-accepts-output-padding-at-stride-and-dilation": (
        ["openvino", "openvino[f32]"],
        "error_parity",
        "fail",
        "instead of raising",
        "{op: conv_transpose1d, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, output_padding: 1, "
        "expect: error}",
    ),
}


#: divergences seen only on some CPUs: the flags they need, and where they were and were not seen
MACHINE_SCOPED = {
    "openvino-bfloat16-bias-missing-where-no-kernel-tap-lands": (
        {"amx_bf16", "amx_tile"},
        "seen on an Intel Xeon with AMX; an AMD EPYC with AVX-512 BF16 and no AMX computes it right",
    ),
}


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
def test_recorded_divergence_still_happens(divergence: str, tmp_path: Path) -> None:
    names, check, status, text, case = DIVERGENCES[divergence]
    needs(names[0])
    if divergence in MACHINE_SCOPED:
        flags, where = MACHINE_SCOPED[divergence]
        if not flags <= cpu_flags():
            pytest.skip(f"holds only on CPUs with {', '.join(sorted(flags))} ({where}); this one lacks them")
    cases = load_slice(tmp_path, f"op: conv_transpose2d\ncases:\n  - {{id: it, {case[1:]}\n")
    for name in names:
        result = results_of(cases, name)["it"][check]
        assert result.status == status and text in result.message, f"{name}: {result.status} {result.message}"


def test_tensorflow_negative_stride_kills_the_process_on_the_onednn_path(tmp_path: Path) -> None:
    """SIGABRT in oneDNN's shape code: only the runner's worker process can observe it; TensorFlow's
    own kernels raise instead."""
    needs("tensorflow")
    cases = load_slice(
        tmp_path,
        """
        op: conv_transpose1d
        cases:
          - {id: stride-negative, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, stride: -1,
             padding: 0, expect: error}
        """,
    )
    outcome = run(cases, ["tensorflow[onednn]", "tensorflow[eigen]"], workers=1, timeout=120)
    by_framework = {r.framework: r for r in outcome.results}
    crash, raised = by_framework["tensorflow[onednn]"], by_framework["tensorflow[eigen]"]
    assert crash.status == "crash" and "SIGABRT" in crash.message, crash.message
    assert raised.status == "pass" and "strides should be larger than 0" in raised.message, raised.message


# --- where TensorFlow runs half precision: oneDNN or its own kernel, by the CPU ---------------------

#: CPUs by the flags TensorFlow's IsDataTypeSupportedByOneDNNOnThisCPU reads, and whether it sends
#: bfloat16 and float16 to oneDNN there
ROUTES = {
    "sapphire-rapids": ({"avx", "avx2", "avx512f", "avx512bw", "avx512_fp16", "amx_bf16"}, True, True),
    "zen4-avx512-bf16-no-fp16": ({"avx", "avx2", "avx512f", "avx512bw", "avx512_bf16"}, True, False),
    "zen3-avx2-only": ({"avx", "avx2", "fma", "f16c"}, False, False),
    "sierra-forest-avx-ne-convert": ({"avx", "avx2", "avx_vnni", "avx_ne_convert"}, True, True),
    "fp16-without-avx512bw": ({"avx", "avx512f", "avx512_fp16"}, True, False),
}


@pytest.mark.parametrize("cpu", sorted(ROUTES))
def test_tensorflow_routes_half_precision_as_its_util_cc_does(cpu: str) -> None:
    needs("tensorflow")
    from conformance.adapters.tensorflow_nn import onednn_takes

    flags, bfloat16, float16 = ROUTES[cpu]
    assert onednn_takes("float32", frozenset(flags)), cpu
    assert onednn_takes("bfloat16", frozenset(flags)) is bfloat16, cpu
    assert onednn_takes("float16", frozenset(flags)) is float16, cpu
    assert not onednn_takes("float64", frozenset(flags)), cpu


@pytest.mark.parametrize("name", ["tensorflow", "keras"])
def test_dilated_half_precision_is_unsupported_where_tensorflow_runs_its_own_kernel(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On each CPU of ROUTES, as the adapter would see it: a dilated case is unsupported in exactly
    the half-precision dtypes TensorFlow keeps on its own kernel, which cannot dilate."""
    needs(name)
    from conformance.adapters import tensorflow_nn

    cases = load_slice(
        tmp_path,
        """
        op: conv_transpose1d
        cases:
          - id: dilated
            input_shape: [2, 4, 7]
            out_channels: 3
            kernel_size: 3
            padding: 0
            dilation: 2
            matrix: {dtype: [float32, bfloat16, float16]}
        """,
    )
    adapter = load_adapter(name)
    monkeypatch.setattr(tensorflow_nn, "onednn_on", lambda: True)  # as TF_ENABLE_ONEDNN_OPTS=1 makes it
    for cpu, (flags, bfloat16, float16) in ROUTES.items():
        monkeypatch.setattr(tensorflow_nn, "cpu_flags", lambda flags=frozenset(flags): flags)
        reasons = {case.dtype: adapter.unsupported(case) for case in cases}
        assert reasons["float32"] is None, (cpu, reasons)
        for dtype, onednn in (("bfloat16", bfloat16), ("float16", float16)):
            if onednn:
                assert reasons[dtype] is None, (cpu, dtype, reasons[dtype])
            else:
                reason = reasons[dtype] or ""
                assert "own CPU kernel" in reason, (cpu, reason)
                assert f"runs {dtype} on a CPU without" in reason, (cpu, reason)


@pytest.mark.parametrize("name", ["tensorflow", "keras"])
def test_dilation_is_unsupported_in_every_dtype_where_onednn_is_off(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With oneDNN off (TF_ENABLE_ONEDNN_OPTS=0, or a CPU whose default is off), whatever the CPU's
    flags: every dtype runs on TensorFlow's own kernel, and the reason says why it is off."""
    needs(name)
    from conformance.adapters import tensorflow_nn

    cases = load_slice(
        tmp_path,
        """
        op: conv_transpose1d
        cases:
          - {id: dilated, input_shape: [2, 4, 7], out_channels: 3, kernel_size: 3, padding: 0, dilation: 2,
             matrix: {dtype: [float32, bfloat16, float16]}}
        """,
    )
    adapter = load_adapter(name)
    monkeypatch.setattr(tensorflow_nn, "onednn_on", lambda: False)
    monkeypatch.setattr(tensorflow_nn, "cpu_flags", lambda: frozenset({"avx", "avx2", "fma"}))
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    for case in cases:
        reason = adapter.unsupported(case) or ""
        assert "cannot dilate" in reason and "oneDNN off: default on a CPU without any of" in reason, (
            case.dtype,
            reason,
        )


def test_tensorflow_turns_onednn_on_by_default_exactly_on_the_cpus_the_adapter_says() -> None:
    """ONEDNN_DEFAULT_FLAGS against TensorFlow's own decision on this CPU, the variable unset (plain
    ``tensorflow`` runs oneDNN on an Intel Xeon with AVX512_VNNI and Eigen on an AVX2-only AMD EPYC),
    and each variant's pin."""
    needs("tensorflow")
    import subprocess
    import sys

    from conformance.adapters.tensorflow_nn import ONEDNN_DEFAULT_FLAGS

    script = (
        "from conformance.adapters import load_adapter\n"
        "import sys\n"
        "facts = load_adapter(sys.argv[1]).build_facts()\n"
        "print(facts['onednn'], facts['onednn_why'], sep='|')\n"
    )
    expected = {"": "on" if set(ONEDNN_DEFAULT_FLAGS) & cpu_flags() else "off", "0": "off", "1": "on"}
    for setting, onednn in expected.items():
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        if setting:
            env["TF_ENABLE_ONEDNN_OPTS"] = setting
        command = [sys.executable, "-c", script, "tensorflow"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        state, why = done.stdout.strip().splitlines()[-1].split("|")
        assert state == onednn, (setting or "unset", state, why)
        assert (f"TF_ENABLE_ONEDNN_OPTS={setting}" if setting else "default on a CPU with") in why, why


def test_tensorflow_own_kernel_cannot_dilate_in_any_dtype() -> None:
    """What the unsupported reasons above rest on: with oneDNN off, where every dtype runs on
    TensorFlow's own kernel, a dilated transposed convolution raises in float32, bfloat16 and float16."""
    needs("tensorflow")
    import subprocess
    import sys

    script = (
        "import tensorflow as tf\n"
        "for dtype in (tf.float32, tf.bfloat16, tf.float16):\n"
        "    x, f = tf.ones((1, 7, 2), dtype), tf.ones((3, 2, 2), dtype)\n"
        "    try:\n"
        "        tf.nn.conv1d_transpose(x, f, [1, 11, 2], 1, 'VALID', dilations=2)\n"
        "        print(dtype.name, 'computed')\n"
        "    except tf.errors.InvalidArgumentError as exc:\n"
        "        print(dtype.name, 'raised', exc.message.splitlines()[0])\n"
    )
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 3, lines
    assert all("raised" in line and "dilation rates larger than 1" in line for line in lines), lines


def test_paddle_after_tensorflow_is_a_clear_load_error_not_a_dead_process() -> None:
    needs("paddle")
    needs("tensorflow")
    import subprocess
    import sys

    script = (
        "import tensorflow\n"
        "from conformance.adapters import AdapterLoadError, load_adapter\n"
        "try:\n    load_adapter('paddle')\nexcept AdapterLoadError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"returncode {done.returncode}: {done.stderr[-2000:]}"
    assert "must be imported before TensorFlow" in done.stdout, done.stdout


def test_paddle_runs_in_workers_of_its_own_beside_tensorflow(tmp_path: Path) -> None:
    """Listed after TensorFlow, before and after a TensorFlow crash replaced a worker, PaddlePaddle's
    results are still its own: its adapters run in a worker pool that never loads TensorFlow (a
    worker that had would refuse to load it, or die importing it)."""
    needs("paddle")
    needs("tensorflow")
    cases = load_slice(
        tmp_path,
        """
        op: conv_transpose1d
        cases:
          - {id: valid, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, padding: 0, stride: 2}
          - {id: stride-negative, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 3, stride: -1,
             padding: 0, expect: error}
          - {id: valid-again, input_shape: [1, 2, 5], out_channels: 2, kernel_size: 2, padding: 0}
        """,
    )
    outcome = run(cases, ["tensorflow", "paddle"], workers=1, timeout=120)
    paddle = [r for r in outcome.results if r.framework == "paddle"]
    assert paddle and all(r.status == "pass" for r in paddle), [(r.case, r.check, r.message) for r in paddle]


# --- layer API ------------------------------------------------------------------------------------


def test_paddle_layer_api_names_glorot_init_and_its_per_dimension_argument_orders() -> None:
    needs("paddle.nn")
    entry = describe(load_adapter("paddle.nn").layer_api())
    first = entry["init"][0]  # C_in=64, C_out=8, 3x3: sqrt(6 / ((64 + 8)·9)) = 0.0962
    assert first["weight_matches"] == "Glorot/Xavier sqrt(6/((C_in+C_out/g)·K))", first
    assert first["weight_distribution"] == "uniform" and first["bias"] == "all zeros", first
    assert set(entry["functions"]) == {"1d", "2d", "3d"}
    assert (
        "argument order differs between dimensions: Conv1DTranspose, conv1d_transpose, conv3d_transpose take "
        "…, groups, dilation; Conv2DTranspose, Conv3DTranspose, conv2d_transpose take …, dilation, groups"
    ) in entry["notes"], entry["notes"]


def test_keras_layer_api_names_glorot_uniform() -> None:
    needs("keras")
    first = describe(load_adapter("keras").layer_api())["init"][0]
    assert first["weight_matches"] == "Glorot/Xavier sqrt(6/((C_in+C_out/g)·K))", first
