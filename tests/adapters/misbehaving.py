"""Adapters over torch that misbehave in ways a verdict must not be fooled by (issue: verdicts that
hold beside any adapter). Each computes through torch, the framework under test, and plants one flaw."""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from conformance.adapters.torch_functional import TorchFunctional, to_numpy, to_torch
from conformance.spec import ConvParams


class WritesIntoInputs(TorchFunctional):
    """Right output, then zeroes x and weight in place (an in-place kernel)."""

    name = "writes-inputs"

    def forward(self, x, weight, bias, params):  # type: ignore[override]
        out = super().forward(x, weight, bias, params)
        x[...] = 0
        weight[...] = 0
        return out


_FUNCS = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class PicksOpByRank(TorchFunctional):
    """Picks the op from x's rank: on a rank-mismatched input its own dict lookup raises KeyError
    before torch is called, which must be an adapter error, not a correct rejection."""

    name = "picks-by-rank"

    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams):  # type: ignore[override]
        fn = _FUNCS[x.ndim - 2]
        b = None if bias is None else to_torch(bias)
        out = fn(
            to_torch(x),
            to_torch(weight),
            b,
            params.stride,
            params.padding,
            params.output_padding,
            params.groups,
            params.dilation,
        )
        return to_numpy(out)


class OneUlpJitter(TorchFunctional):
    """Every second call moves one element by one ulp: inside any tolerance, not repeatable."""

    name = "ulp-jitter"
    calls = 0

    def forward(self, x, weight, bias, params):  # type: ignore[override]
        out = super().forward(x, weight, bias, params).copy()
        type(self).calls += 1
        if type(self).calls % 2 == 0 and out.size:
            out.reshape(-1).view(np.dtype(f"u{out.itemsize}"))[0] += 1  # the next float: one ulp away
        return out
