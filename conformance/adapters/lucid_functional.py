"""Lucid's ``lucid.nn.functional.conv_transpose{1,2,3}d``: channels-first, weight ``(C_in, C_out/g, *K)``.

Lucid 2.9.0 runs on NumPy on the CPU (``device="gpu"`` goes through MLX's Metal backend, macOS only).
Its ``Tensor.backward()`` takes no output gradient, so a vector-Jacobian product is the gradient
of ``sum(out * cotangent)``: the product's gradient with respect to ``out`` is the cotangent exactly.
"""

from __future__ import annotations

import importlib.metadata
from typing import ClassVar

import lucid
import lucid.nn.functional as F
import numpy as np

from conformance.adapters import Adapter
from conformance.spec import ConvParams

FUNCTIONS = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

DTYPE_LIMITS = {
    "bfloat16": "Lucid has no bfloat16 dtype (lucid.Float16/Float32/Float64 only): "
    "lucid.Tensor(an ml_dtypes.bfloat16 array) raises KeyError 'bfloat'",
}


def lucid_version() -> str:
    return importlib.metadata.version("lucid-dl")  # the package has no __version__


def to_lucid(a: np.ndarray, requires_grad: bool = False) -> lucid.Tensor:
    return lucid.Tensor(np.ascontiguousarray(a), requires_grad=requires_grad)


def to_numpy(t: lucid.Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(t.numpy() if isinstance(t, lucid.Tensor) else t)


def backward(out: lucid.Tensor, grad_out: np.ndarray) -> None:
    """Back-propagate the cotangent ``grad_out`` from ``out`` through Lucid's autograd."""
    (out * to_lucid(grad_out)).sum().backward()


class LucidFunctional(Adapter):
    name = "lucid"
    distribution = "lucid-dl"
    unsupported_dtypes: ClassVar[dict[str, str]] = DTYPE_LIMITS

    def version(self) -> str:
        return lucid_version()

    @staticmethod
    def _call(
        x: lucid.Tensor, weight: lucid.Tensor, bias: lucid.Tensor | None, params: ConvParams
    ) -> lucid.Tensor:
        # positionally, as Lucid's signature orders them (dilation before groups, unlike torch)
        return FUNCTIONS[params.ndim](
            x,
            weight,
            bias,
            params.stride,
            params.padding,
            params.output_padding,
            params.dilation,
            params.groups,
        )

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        out = self._call(to_lucid(x), to_lucid(weight), None if bias is None else to_lucid(bias), params)
        return to_numpy(out)

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        leaves = [to_lucid(a, requires_grad=True) for a in (x, weight, bias) if a is not None]
        out = self._call(leaves[0], leaves[1], leaves[2] if bias is not None else None, params)
        backward(out, grad_out)
        grads = [to_numpy(leaf.grad) for leaf in leaves]
        return grads[0], grads[1], grads[2] if bias is not None else None
