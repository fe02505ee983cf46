"""``lucid.nn.ConvTranspose{1,2,3}d``: the layer, built from the case and loaded via ``load_state_dict``."""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import lucid.nn as nn
import numpy as np

from conformance.adapters import Adapter
from conformance.adapters.lucid_functional import DTYPE_LIMITS, backward, lucid_version, to_lucid, to_numpy
from conformance.layer_api import LayerIntrospection
from conformance.spec import ConvParams

LAYERS = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class LucidLayer(Adapter):
    name = "lucid.nn"
    distribution = "lucid-dl"
    unsupported_dtypes: ClassVar[dict[str, str]] = DTYPE_LIMITS
    expresses_out_channels = True  # the constructor takes out_channels and checks it against groups

    def version(self) -> str:
        return lucid_version()

    @staticmethod
    def build(weight: np.ndarray, bias: np.ndarray | None, params: ConvParams) -> nn.Module:
        layer = LAYERS[params.ndim](
            params.in_channels,
            params.out_channels,
            params.kernel_size,
            stride=params.stride,
            padding=params.padding,
            output_padding=params.output_padding,
            dilation=params.dilation,
            groups=params.groups,
            bias=bias is not None,
        )
        state = OrderedDict(weight=np.ascontiguousarray(weight))
        if bias is not None:
            state["bias"] = np.ascontiguousarray(bias)
        layer.load_state_dict(state)  # strict: the names must be the layer's own
        return layer

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        layer = self.build(weight, bias, params)
        return to_numpy(layer(to_lucid(x)))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        layer = self.build(weight, bias, params)
        tx = to_lucid(x, requires_grad=True)
        backward(layer(tx), grad_out)
        grad_bias = to_numpy(layer.bias.grad) if bias is not None else None
        return to_numpy(tx.grad), to_numpy(layer.weight.grad), grad_bias

    def layer_api(self) -> LayerIntrospection:
        def init_sample(cin: int, cout: int, kernel: tuple[int, int], groups: int):
            layer = nn.ConvTranspose2d(cin, cout, kernel, groups=groups)
            return to_numpy(layer.weight), to_numpy(layer.bias)

        return LayerIntrospection(
            framework=self.name,
            version=self.version(),
            classes=LAYERS,
            init_sample=init_sample,
            weight_layout="weight (C_in, C_out/groups, *K), bias (C_out,)",
            data_layout="channels-first (N, C, *S)",
            documented_init="not documented in the layer's API reference; source (reset_parameters): "
            "weight ~ U(-a, a), a = sqrt(6 / fan_in) with fan_in = weight.shape[1] · prod(kernel) "
            "= C_out/groups · prod(kernel) (kaiming_uniform without torch's a=sqrt(5)); "
            "bias ~ U(-b, b), b = 1 / sqrt(the same fan_in)",
            notes=[
                "lucid-dl 2.9.0 orders the constructor (…, padding, output_padding, dilation, groups, "
                "bias); the 3.x documentation shows (…, padding, output_padding, groups, bias, dilation, "
                "device, dtype)",
            ],
        )
