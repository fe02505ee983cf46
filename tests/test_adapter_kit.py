"""The adapter kit: exact bfloat16 conversions, layouts from params, a skeleton that runs once
filled (here with torch, taking bfloat16 through raw bits as such APIs do), and the README's pytest
example selecting what it says."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from conformance import adapter_kit as kit
from conformance import layouts
from conformance.spec import ConvParams
from tests.helpers.pytest_helpers import ROOT, run_cli


def test_bfloat16_bits_round_trip_exactly():
    values = np.array([0.0, -0.0, 1.0, -2.5, 3.0e38, 1.0e-40, np.inf, -np.inf], dtype=ml_dtypes.bfloat16)
    bits = kit.bfloat16_to_bits(values)
    assert bits.dtype == np.uint16 and bits[2] == 0x3F80 and bits[1] == 0x8000, f"bfloat16_to_bits: {bits}"
    back = kit.bits_to_bfloat16(bits)
    assert back.dtype == kit.BFLOAT16 and np.array_equal(back.view(np.uint16), bits), "bits_to_bfloat16"
    with pytest.raises(TypeError, match="bfloat16_to_bits"):
        kit.bfloat16_to_bits(np.zeros(2, np.float32))


def test_float32_to_bfloat16_rounds_to_nearest_even():
    # 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0)
    x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20], np.float32)
    got = kit.bfloat16_to_float32(kit.float32_to_bfloat16(x))
    assert got.tolist() == [1.0, 1 + 2**-6, 1 + 2**-7], f"float32_to_bfloat16({x.tolist()}) = {got.tolist()}"


def test_to_numpy_dtype_reinterprets_bits_and_casts_the_rest():
    y = np.array([1.0, -2.0], ml_dtypes.bfloat16)
    assert np.array_equal(kit.to_numpy_dtype(y.view(np.uint16), "bfloat16"), y)
    assert kit.to_numpy_dtype(np.ones(2, np.float64), np.ones(1, np.float16)).dtype == np.float16


def test_layout_helpers_follow_params():
    params = ConvParams.make(2, in_channels=4, out_channels=6, kernel_size=(2, 3), groups=2)
    weight = np.arange(np.prod(params.weight_shape()), dtype=np.float32).reshape(params.weight_shape())
    last = kit.weight_to_channels_last(weight, params)
    assert np.array_equal(last, layouts.torch_weight_to_channels_last(weight, 2)), "weight_to_channels_last"
    assert np.array_equal(kit.weight_from_channels_last(last, params), weight), "weight_from_channels_last"
    assert np.array_equal(
        kit.weight_from_grouped_oi(kit.weight_to_grouped_oi(weight, params), params), weight
    )
    x = np.arange(2 * 4 * 5 * 7, dtype=np.float32).reshape(2, 4, 5, 7)
    assert kit.to_channels_last(x).shape == (2, 5, 7, 4)
    assert np.array_equal(kit.from_channels_last(kit.to_channels_last(x)), x)
    bad = ConvParams.make(2, in_channels=4, out_channels=5, kernel_size=3, groups=2)  # C_out % groups
    assert kit.weight_to_channels_last(np.zeros(bad.weight_shape()), bad).shape == (5, 3, 3, 2)
    one = ConvParams.make(1, 2, 2, 3, stride=2, dilation=3)
    assert kit.per_axis_kwargs(one, scalar_1d=True) == {
        "stride": 2,
        "padding": 0,
        "output_padding": 0,
        "dilation": 3,
        "groups": 1,
    }
    assert kit.per_axis_kwargs(one)["stride"] == (2,)


def test_class_names():
    assert kit.class_name_for("my-conv.v2") == "MyConvV2Adapter"
    with pytest.raises(ValueError, match="adapter name"):
        kit.write_skeleton("1bad")


# What a torch user writes into TODO 3: torch.from_numpy has no bfloat16, so bfloat16 travels as
# raw bits, the way PaddlePaddle-like APIs take it.
TORCH_CALL = """\
        import torch

        def tensor(a):
            if kit.is_bfloat16(a):
                return torch.from_numpy(kit.bfloat16_to_bits(a).view(np.int16)).view(torch.bfloat16)
            return torch.from_numpy(np.ascontiguousarray(a))

        fn = getattr(torch.nn.functional, f"conv_transpose{params.ndim}d")
        b = None if bias is None else tensor(bias)
        y = fn(tensor(x), tensor(weight), b, **kit.per_axis_kwargs(params))
        if y.dtype == torch.bfloat16:
            return kit.bits_to_bfloat16(y.view(torch.int16).numpy())
        return y.numpy()
"""
SLICE = ["-k", "(conv_transpose2d and groups) or (dtypes and bfloat16 and not long)", "--check", "forward"]


def test_skeleton_reports_errors_until_filled_then_passes(tmp_path):
    pytest.importorskip("torch")
    made = run_cli("new-adapter", "mine", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    path = tmp_path / "mine_adapter.py"
    assert "mine_adapter.py:MineAdapter" in made.stdout, made.stdout
    assert run_cli("new-adapter", "mine", cwd=tmp_path).returncode == 2, "new-adapter overwrote a file"

    unfilled = run_cli("run", "--adapter", "mine_adapter.py:MineAdapter", *SLICE, "-q", cwd=tmp_path)
    assert unfilled.returncode == 1 and "TODO 3" in unfilled.stderr, unfilled.stderr[-2000:]

    text = path.read_text()
    text, n = re.subn(r"        raise NotImplementedError\(.*TODO 3.*\)\n", lambda m: TORCH_CALL, text)
    assert n == 1, "the skeleton's TODO 3 line moved: update TORCH_CALL's anchor"
    text = text.replace("framework_modules: ClassVar[tuple[str, ...]] = ()", 'framework_modules = ("torch",)')
    path.write_text(text)
    filled = run_cli("run", "--adapter", "mine_adapter.py:MineAdapter", *SLICE, "-q", cwd=tmp_path)
    assert filled.returncode == 0, filled.stdout[-2000:] + filled.stderr[-3000:]
    assert re.search(r"mine\s+unknown\s+[1-9]\d*\s+0\s+0", filled.stdout), filled.stdout


def _readme_block_commands(prefix: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [line.split("#")[0].strip() for line in text.splitlines() if line.startswith(prefix)]


def test_readme_pytest_examples_select_cases():
    pytest.importorskip("mlx.core")
    commands = _readme_block_commands("pytest cases/")
    assert commands, "README has no `pytest cases/...` example"
    first = shlex.split(commands[0])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *first[1:], "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert ids, f"README example {commands[0]!r} selects nothing:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    example = re.search(r"# ids look like: (\S+)", (ROOT / "README.md").read_text())
    assert example and any(i.endswith(example.group(1)) for i in ids), (
        f"README's example id {example and example.group(1)!r} is not among what {commands[0]!r} collects"
    )
