"""MegEngine's ``megengine.functional.conv_transpose{2,3}d``: channels-first, no 1-D.

MegEngine's transposed-convolution weight is PyTorch's when ``groups == 1`` and split by group
otherwise: ``(groups, C_in/groups, C_out/groups, *K)``, a plain reshape of the canonical
``(C_in, C_out/groups, *K)``. Its documented bias is ``(1, C_out, 1, ...)``, added by broadcasting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import megengine
import megengine.functional as F
import numpy as np
from megengine.autodiff import GradManager

from conformance.adapters import Adapter
from conformance.spec import ConvParams

# MegEngine dispatches asynchronously by default: an error surfaces later, at .numpy(), as an
# AsyncError pointing elsewhere. Level 0 is its documented switch to raise at the failing call.
megengine.config.async_level = 0

FUNCTIONS = {2: F.conv_transpose2d, 3: F.conv_transpose3d}

NO_1D = "MegEngine has no 1-D transposed convolution (only conv_transpose2d/3d, ConvTranspose2d/3d)"
DTYPE_LIMITS = {
    "float64": "MegEngine has no float64 tensors: megengine.tensor turns a float64 array into float32 and "
    "dtype='float64' raises RuntimeError 'Unable to cast Python instance to C++ type'",
    "bfloat16": "MegEngine 1.13.0 has no bfloat16 convolution on the CPU: megengine.tensor rejects "
    "ml_dtypes.bfloat16 ('unsupported numpy dtype') and its own bfloat16 raises RuntimeError 'matmul not "
    "support data type of BFloat16 * BFloat16 -> BFloat16'",
}


def megengine_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """The weight a MegEngine user passes: canonical when ungrouped, ``(g, C_in/g, C_out/g, *K)`` grouped.

    A grouping that breaks a rule has no value-preserving conversion; the weight then gets the
    grouped shape a user would write (or stays as it is for groups < 1) and MegEngine judges it.
    """
    if groups <= 1:
        return weight
    cin, cout_g, *kernel = weight.shape
    if cin % groups == 0:
        return weight.reshape(groups, cin // groups, cout_g, *kernel)
    return np.resize(weight, (groups, cin // groups, cout_g, *kernel))


def megengine_bias(bias: np.ndarray, ndim: int) -> np.ndarray:
    """``(C_out,)`` -> ``(1, C_out, 1, ...)``, the bias shape MegEngine documents and its layers hold."""
    return bias.reshape(1, -1, *(1,) * ndim)


def to_megengine(a: np.ndarray) -> megengine.Tensor:
    return megengine.tensor(np.ascontiguousarray(a))


def to_canonical(grad: np.ndarray, megengine_shape: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """A gradient in MegEngine's layout -> canonical ``shape`` (group axis merged back into C_in).

    Only a gradient with the parameter's own MegEngine shape is converted: one of any other shape is
    returned as it is, so the comparator reports the wrong shape instead of a reshape error.
    """
    return grad.reshape(shape) if grad.shape == tuple(megengine_shape) else grad


@contextmanager
def surfaced_errors() -> Iterator[None]:
    """Report the error MegEngine raised, not the wrapper it arrives in.

    Even at async_level 0 a failing kernel arrives as an ``AsyncError`` whose text only says "See
    above for the actual cause"; the cause (with MegDNN's assertion text) is chained to it. MegDNN's
    own errors carry a C++ signature and backtrace that push the point past the report's message
    limit. Only the report changes: the call and its outcome (it raised) are MegEngine's own.
    """
    try:
        yield
    except Exception as exc:
        cause = exc.__cause__
        if type(exc).__name__ == "AsyncError" and cause is not None:
            raise type(cause)(f"{condensed(str(cause))} (AsyncError)") from exc
        if isinstance(exc, RuntimeError) and "backtrace:" in str(exc):
            raise type(exc)(condensed(str(exc))) from exc
        raise


def condensed(text: str) -> str:
    """MegDNN's error text without the C++ signature and backtrace that bury its point."""
    lines = text.split("backtrace:")[0].strip().splitlines() or [""]
    first = lines[0].split(" failed at ")[0] + " failed" if " failed at " in lines[0] else lines[0]
    extra = [line.strip() for line in lines[1:] if line.startswith("extra message")]
    return " ".join([first, *extra])


def gradients(
    leaves: list[megengine.Tensor], weight_shape: tuple[int, ...], bias_shape: tuple[int, ...] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(grad_x, grad_weight, grad_bias)`` of the leaves ``[x, weight(, bias)]`` in canonical layouts."""
    grad_w = to_canonical(leaves[1].grad.numpy(), leaves[1].shape, weight_shape)
    grad_b = None if bias_shape is None else to_canonical(leaves[2].grad.numpy(), leaves[2].shape, bias_shape)
    return leaves[0].grad.numpy(), grad_w, grad_b


class MegEngineFunctional(Adapter):
    name = "megengine"
    distribution = "MegEngine"
    unsupported_ndims: ClassVar[dict[int, str]] = {1: NO_1D}
    unsupported_dtypes: ClassVar[dict[str, str]] = DTYPE_LIMITS

    def version(self) -> str:
        return megengine.__version__

    @staticmethod
    def _call(
        x: megengine.Tensor, weight: megengine.Tensor, bias: megengine.Tensor | None, params: ConvParams
    ) -> megengine.Tensor:
        # Per-axis tuples throughout: MegEngine's own output_padding path indexes stride[0] etc.
        return FUNCTIONS[params.ndim](
            x,
            weight,
            bias,
            stride=params.stride,
            padding=params.padding,
            output_padding=params.output_padding,
            dilation=params.dilation,
            groups=params.groups,
        )

    @staticmethod
    def _inputs(
        x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> list[megengine.Tensor]:
        tensors = [to_megengine(x), to_megengine(megengine_weight(weight, params.groups))]
        if bias is not None:
            tensors.append(to_megengine(megengine_bias(bias, params.ndim)))
        return tensors

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        with surfaced_errors():
            tx, tw, *tb = self._inputs(x, weight, bias, params)
            return self._call(tx, tw, tb[0] if tb else None, params).numpy()

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        with surfaced_errors():
            leaves = self._inputs(x, weight, bias, params)
            gm = GradManager().attach(leaves)
            with gm:
                out = self._call(leaves[0], leaves[1], leaves[2] if bias is not None else None, params)
                gm.backward(out, to_megengine(grad_out))
            return gradients(leaves, weight.shape, None if bias is None else bias.shape)
