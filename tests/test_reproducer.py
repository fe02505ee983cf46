"""Reproducers write the wider parameter space correctly: run standalone, they compute what the case
says (asymmetric padding, output_size, memory layouts, unbatched inputs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import reproducer
from conformance.adapters import importable_builtins
from conformance.cases import make_case
from conformance.checks import base_result

CASES = {
    "asymmetric-foldable": {"input_shape": [2, 4, 5, 4], "padding": [[1, 0], [2, 1]]},
    "asymmetric-general": {"input_shape": [2, 4, 5, 4], "padding": [[0, 2], [2, 0]]},
    "output-size": {"input_shape": [2, 4, 5, 4], "padding": 1, "output_size": [10, 8]},
    "channels-last": {"input_shape": [2, 4, 5, 4], "layout": "channels_last", "groups": 2},
    "strided-unbatched": {"input_shape": [4, 5, 3], "layout": "strided"},
}
RUNS = [
    ("asymmetric-foldable", "torch"),
    ("asymmetric-foldable", "mlx.nn"),
    ("asymmetric-general", "mlx"),
    ("output-size", "torch.nn"),
    ("channels-last", "torch.nn"),
    ("channels-last", "mlx"),
    ("channels-last", "torch"),
    ("strided-unbatched", "torch"),
]
SHAPES = re.compile(r"output shape (\(.*?\)) expected (\(.*?\))")
RATIO = re.compile(r"max \|error\| / magnitude bound ([0-9.e+-]+)")


@pytest.mark.parametrize(("name", "framework"), RUNS, ids=[f"{n}-{f}" for n, f in RUNS])
def test_reproducer_computes_the_case(tmp_path: Path, name: str, framework: str) -> None:
    if framework not in importable_builtins():
        pytest.skip(f"{framework} is not installed")
    fields = {"op": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "stride": 2, **CASES[name]}
    case = make_case(fields, name)
    path = tmp_path / "repro.py"
    path.write_text(reproducer.script(case, base_result(case, framework, "forward", "fail", "planted")))
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"reproducer for {name} on {framework} failed:\n{run.stderr[-2000:]}"
    shapes, ratio = SHAPES.search(run.stdout), RATIO.search(run.stdout)
    assert shapes and shapes[1] == shapes[2] == str(case.expected_shape), (
        f"reproducer for {name} on {framework}: {run.stdout!r}, the case's shape is {case.expected_shape}"
    )
    assert ratio and float(ratio[1]) < 1e-5, f"reproducer for {name} on {framework}: {run.stdout!r}"
