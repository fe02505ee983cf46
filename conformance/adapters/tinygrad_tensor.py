"""tinygrad's ``Tensor.conv_transpose2d``: channels-first, torch's weight layout, any number of dims.

tinygrad picks its device from the ``DEV`` environment variable when it is imported. The CPU device
compiles kernels with a ``clang`` binary (Debian/Ubuntu package ``clang``); without one the adapter
falls back to the pure-Python interpreter device (correct, slow). Both are defaults only: a user's
own ``DEV`` wins.
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("DEV", "CPU" if shutil.which(os.environ.get("CC", "clang")) else "PYTHON")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
from tinygrad import Device, Tensor, dtypes  # noqa: E402

from conformance.adapters import Adapter  # noqa: E402
from conformance.dtypes import dtype_name  # noqa: E402
from conformance.spec import ConvParams  # noqa: E402

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


class Tinygrad(Adapter):
    name = "tinygrad"
    distribution = "tinygrad"

    def version(self) -> str:
        return f"{super().version()} ({Device.DEFAULT})"

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        out = conv_transpose(to_tinygrad(x), to_tinygrad(weight), None if bias is None else to_tinygrad(bias), params)
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
        # Tensor.gradient is tinygrad's vector-Jacobian product: d<out, grad_out>/d(leaves)
        grads = [to_numpy(g) for g in out.gradient(*leaves, gradient=to_tinygrad(grad_out))]
        return grads[0], grads[1], grads[2] if bias is not None else None
