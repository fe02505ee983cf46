"""PaddlePaddle's ``paddle.nn.functional.conv{1,2,3}d_transpose``: channels-first, torch's weight layout.

The weight is ``(C_in, C_out/groups, *K)`` and the bias ``(C_out,)``, as in PyTorch, so no layout
conversion is needed. Arguments are passed by keyword: the functions' positional order differs by
dimension (1-d and 3-d: ``..., groups, dilation``; 2-d: ``..., dilation, groups``). Gradients come
from ``paddle.grad``. The CPU build registers ``conv2d_transpose`` (which serves all three) for
float32 and float64 only, so float16 and bfloat16 are declared unsupported with Paddle's own error.
"""

from __future__ import annotations

import os
import sys
from typing import ClassVar

import ml_dtypes
import numpy as np

# Measured with paddlepaddle 3.3.1 and tensorflow-cpu 2.21.0: `import tensorflow; import paddle` kills
# the process with SIGSEGV while paddle loads its core extension (paddle/base/core.py); the other order
# works. A clear error instead of a dead process, so no result depends on the order adapters load in.
if "tensorflow" in sys.modules and "paddle" not in sys.modules:
    raise ImportError(
        "PaddlePaddle must be imported before TensorFlow in one process (importing it after TensorFlow "
        "segfaults): list paddle/paddle.nn before tensorflow/keras, or run them separately"
    )

import paddle
import paddle.nn.functional as F

from conformance.adapters import Adapter
from conformance.spec import ConvParams

FUNCTIONS = {1: F.conv1d_transpose, 2: F.conv2d_transpose, 3: F.conv3d_transpose}

NO_KERNEL = (
    "PaddlePaddle 3.3.1's CPU build has no {0} transposed-convolution kernel: RuntimeError '(NotFound) The "
    "kernel with key (CPU, Undefined(AnyLayout), {0}) of kernel `conv2d_transpose` is not registered. "
    "Selected wrong DataType `{0}`. Paddle support following DataTypes: float64, float32.'"
)
DTYPE_LIMITS = {dtype: NO_KERNEL.format(dtype) for dtype in ("float16", "bfloat16")}


def to_paddle(a: np.ndarray) -> paddle.Tensor:
    """A NumPy array as a Paddle tensor of the same dtype.

    ``paddle.to_tensor`` rejects ``ml_dtypes.bfloat16`` arrays; a bfloat16 array goes through float32
    (exact) and ``astype('bfloat16')``, as Paddle's users convert.
    """
    a = np.ascontiguousarray(a)
    if a.dtype == ml_dtypes.bfloat16:
        return paddle.to_tensor(a.astype(np.float32)).astype("bfloat16")
    return paddle.to_tensor(a)


def to_numpy(t: paddle.Tensor) -> np.ndarray:
    """``.numpy()``, except that a bfloat16 tensor's ``.numpy()`` gives its raw uint16 bits."""
    out = t.numpy()
    if t.dtype == paddle.bfloat16:
        return out.view(ml_dtypes.bfloat16)
    return out


def build_facts() -> dict[str, object]:
    return {
        "device": paddle.get_device(),
        "onednn": paddle.base.core.is_compiled_with_onednn(),
        "use_onednn": bool(paddle.get_flags(["FLAGS_use_mkldnn"])["FLAGS_use_mkldnn"]),
        "cuda": paddle.is_compiled_with_cuda(),
        # Paddle's CPU kernels take their thread count from OMP_NUM_THREADS (default: 1 per op)
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
    }


class PaddleAdapter(Adapter):
    """What Paddle's functional and layer adapters share: the framework, its limits, its facts."""

    distribution = "paddlepaddle"
    framework_modules = ("paddle",)
    process_group = "paddle"  # workers of its own: a worker that loaded TensorFlow first would segfault
    unsupported_dtypes: ClassVar[dict[str, str]] = DTYPE_LIMITS

    def version(self) -> str:
        return paddle.__version__

    def build_facts(self) -> dict[str, object]:
        return build_facts()


def _grads(
    out: paddle.Tensor, leaves: list[paddle.Tensor], grad_out: np.ndarray, has_bias: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    grads = paddle.grad([out], leaves, grad_outputs=[to_paddle(grad_out)])
    return to_numpy(grads[0]), to_numpy(grads[1]), to_numpy(grads[2]) if has_bias else None


class PaddleFunctional(PaddleAdapter):
    name = "paddle"

    @staticmethod
    def _call(
        x: paddle.Tensor, weight: paddle.Tensor, bias: paddle.Tensor | None, params: ConvParams
    ) -> paddle.Tensor:
        return FUNCTIONS[params.ndim](
            x,
            weight,
            bias,
            stride=list(params.stride),
            padding=list(params.padding),
            output_padding=list(params.output_padding),
            dilation=list(params.dilation),
            groups=params.groups,
        )

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        tb = None if bias is None else to_paddle(bias)
        with paddle.no_grad():
            return to_numpy(self._call(to_paddle(x), to_paddle(weight), tb, params))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        leaves = [to_paddle(a) for a in (x, weight, bias) if a is not None]
        for leaf in leaves:
            leaf.stop_gradient = False
        out = self._call(leaves[0], leaves[1], leaves[2] if bias is not None else None, params)
        return _grads(out, leaves, grad_out, bias is not None)
