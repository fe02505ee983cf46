"""The built-in adapters: each passes, on its framework, configurations the framework gets right,
for every check; layouts and dtypes round-trip; declared limits are reported as unsupported."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.adapters import AdapterLoadError, importable_builtins, load_adapter
from conformance.cases import Case
from conformance.checks import run_checks
from conformance.layer_api import constructor_table, describe
from tests.helpers.pytest_helpers import load_slice
from tests.helpers.space import assert_expresses_its_declared_space

SLICE = """
op: conv_transpose2d
defaults: {input_shape: [2, 4, 5, 6], out_channels: 6, kernel_size: [3, 2], padding: [1, 0]}
cases:
  - id: sweep
    matrix:
      stride: [1, 2, [2, 3]]
      groups: [1, 2]
      dtype: [float32, float16, bfloat16]
  - id: dilated-op-below-dilation
    stride: 1
    dilation: 3
    output_padding: [2, 0]
  - id: no-bias
    bias: false
    stride: 2
    output_padding: 1
    padding: 1
  - id: one-d
    op: conv_transpose1d
    input_shape: [1, 4, 7]
    out_channels: 2
    kernel_size: 4
    stride: 2
    padding: 1
  - id: three-d
    padding: 0
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    out_channels: 4
    kernel_size: 2
    stride: 2
  - id: rejects-groups-not-dividing
    input_shape: [1, 3, 4, 4]
    groups: 2
    expect: error
"""

BUILTINS = ["torch", "torch.nn", "mlx", "mlx.nn"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return load_slice(Path(tmp_path_factory.mktemp("slice")), SLICE)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_passes_configurations_its_framework_gets_right(name: str, cases: list[Case]) -> None:
    if name not in importable_builtins():
        pytest.skip(f"{name} is not installed")
    adapter = load_adapter(name)
    seen = set()
    for case in cases:
        for result in run_checks(case, adapter):
            seen.add(result.check)
            if name == "mlx.nn" and case.params.groups != 1:
                assert result.status == "unsupported" and "groups" in result.message
                continue
            assert result.status == "pass", f"{name} {case.id} [{result.check}]: {result.message}"
    assert seen == {"forward", "grad_input", "grad_weight", "grad_bias", "repeatability", "error_parity"}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_reports_a_version(name: str) -> None:
    if name not in importable_builtins():
        pytest.skip(f"{name} is not installed")
    version = load_adapter(name).version()
    assert version and version != "unknown"


def test_unknown_adapter_spec_is_a_load_error() -> None:
    with pytest.raises(AdapterLoadError, match="unknown framework"):
        load_adapter("caffe2")
    with pytest.raises(AdapterLoadError, match="not a subclass"):
        load_adapter("conformance.spec:ConvParams")


def test_layer_api_introspection_finds_the_documented_initialisation() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("mlx.core")
    torch_entry = describe(load_adapter("torch.nn").layer_api())
    mlx_entry = describe(load_adapter("mlx.nn").layer_api())
    # C_in=64, C_out=8: the fan-in and fan-out formulas differ by a factor of sqrt(8)
    first = {e["framework"]: e["init"][0] for e in (torch_entry, mlx_entry)}
    assert first["torch.nn"]["weight_matches"] == "1/sqrt(C_out/g·K)"
    assert "1/sqrt(C_in·K)" in first["mlx.nn"]["weight_matches"]
    assert first["mlx.nn"]["bias"] == "all zeros" and first["torch.nn"]["bias"].startswith("max |b|")
    assert torch_entry["classes"]["2d"]["forward_extras"] == [{"name": "output_size", "default": "None"}]
    headers, rows = constructor_table([torch_entry, mlx_entry])
    table = {row[0]: row[1:] for row in rows}
    assert headers == ["parameter", "torch.nn", "mlx.nn"]
    assert table["groups"][1] == "— (absent)"
    assert table["dilation"] == ["#9: 1", "#6: 1"], "positional order differs between the frameworks"


@pytest.mark.parametrize("name", BUILTINS)
def test_each_adapter_expresses_its_declared_part_of_the_space(name: str) -> None:
    if name not in importable_builtins():
        pytest.skip(f"{name} is not installed")
    assert_expresses_its_declared_space(load_adapter(name))
