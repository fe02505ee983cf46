"""tinygrad's ``Tensor.conv_transpose2d``: channels-first, torch's weight layout, any number of dims.

tinygrad picks its device from the ``DEV`` environment variable when it is imported. The CPU device
compiles kernels with a ``clang`` binary (``$CC``; Debian/Ubuntu package ``clang``); without one the
adapter falls back to the pure-Python interpreter device (correct, but 10x and more slower). Both are
defaults only: a user's own ``DEV`` wins. The compiler's version is part of the reported version,
because it matters: clang 14 cannot compile tinygrad's bfloat16 gradient kernels.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

os.environ.setdefault("DEV", "CPU" if shutil.which(os.environ.get("CC", "clang")) else "PYTHON")

import ml_dtypes
import numpy as np
from tinygrad import Device, Tensor, dtypes

from conformance.adapters import Adapter
from conformance.dtypes import dtype_name
from conformance.spec import ConvParams

TG_DTYPES = {
    "float32": dtypes.float32,
    "float16": dtypes.float16,
    "bfloat16": dtypes.bfloat16,
    "float64": dtypes.float64,
}


def to_tinygrad(a: np.ndarray) -> Tensor:
    name = dtype_name(a.dtype)
    if name == "bfloat16":  # enter through float32 (exact for bfloat16 values), then narrow
        return Tensor(np.ascontiguousarray(a, dtype=np.float32)).cast(dtypes.bfloat16)
    return Tensor(np.ascontiguousarray(a), dtype=TG_DTYPES[name])


def to_numpy(t: Tensor) -> np.ndarray:
    if t.dtype == dtypes.bfloat16:  # tinygrad hands bfloat16 out as float32: narrow (exact) again
        return t.numpy().astype(ml_dtypes.bfloat16)
    return t.numpy()


def conv_transpose(x: Tensor, weight: Tensor, bias: Tensor | None, params: ConvParams) -> Tensor:
    return x.conv_transpose2d(
        weight,
        bias,
        groups=params.groups,
        stride=params.stride,
        dilation=params.dilation,
        padding=params.padding,
        output_padding=params.output_padding,
    )


def compiler_version() -> str:
    """The C compiler the CPU device runs (its version decides, e.g., whether bfloat16 kernels build)."""
    cc = os.environ.get("CC", "clang")
    try:
        banner = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return cc
    found = re.search(r"clang version (\S+)", banner)
    return f"clang {found.group(1)}" if found else (banner.splitlines() or [cc])[0]


class Tinygrad(Adapter):
    name = "tinygrad"
    distribution = "tinygrad"

    framework_modules = ("tinygrad",)

    def build_facts(self) -> dict[str, str]:
        device = Device.DEFAULT
        return {"device": device, "compiler": compiler_version() if device == "CPU" else ""}

    def version(self) -> str:
        device = Device.DEFAULT
        return f"{super().version()} (DEV={device}{', ' + compiler_version() if device == 'CPU' else ''})"

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        out = conv_transpose(
            to_tinygrad(x), to_tinygrad(weight), None if bias is None else to_tinygrad(bias), params
        )
        return to_numpy(out)

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        leaves = [to_tinygrad(a) for a in (x, weight, bias) if a is not None]
        out = conv_transpose(leaves[0], leaves[1], leaves[2] if bias is not None else None, params)
        # Tensor.gradient is tinygrad's vector-Jacobian product: d<out, grad_out>/d(leaves). The
        # gradients are realized together, as an optimizer step realizes its updates: one schedule,
        # about 2.5x faster than one .numpy() at a time. (Realized one at a time, identically-zero
        # gradients go wrong in tinygrad 0.14.0; realized together, a zero grad_weight of some grouped
        # 3-d configurations still holds stale memory except in a process's first computation.
        # tests/test_adapters_jax_onnxruntime_tinygrad.py keeps the three bugs in view: a library case
        # would pass or fail by whether it was its worker's first job.)
        grads = out.gradient(*leaves, gradient=to_tinygrad(grad_out))
        Tensor.realize(*grads)
        arrays = [to_numpy(g) for g in grads]
        return arrays[0], arrays[1], arrays[2] if bias is not None else None
