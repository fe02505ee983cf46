"""``torch.nn.ConvTranspose{1,2,3}d``: the layer, built from the case and loaded via ``load_state_dict``."""

from __future__ import annotations

import numpy as np
import torch

from conformance.adapters.torch_functional import TorchAdapter, to_numpy, to_torch
from conformance.layer_api import LayerIntrospection
from conformance.spec import ConvParams

LAYERS = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}


class TorchLayer(TorchAdapter):
    name = "torch.nn"
    expresses_out_channels = True  # the constructor takes out_channels and checks it against groups

    def version(self) -> str:
        return torch.__version__

    @staticmethod
    def build(weight: np.ndarray, bias: np.ndarray | None, params: ConvParams) -> torch.nn.Module:
        layer = LAYERS[params.ndim](
            params.in_channels,
            params.out_channels,
            params.kernel_size,
            stride=params.stride,
            padding=params.padding,
            output_padding=params.output_padding,
            groups=params.groups,
            bias=bias is not None,
            dilation=params.dilation,
        )
        state = {"weight": to_torch(weight)}
        if bias is not None:
            state["bias"] = to_torch(bias)
        layer = layer.to(state["weight"].dtype)
        layer.load_state_dict(state)  # strict: shapes must match the layer's own parameters
        return layer

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        layer = self.build(weight, bias, params)
        with torch.no_grad():
            return to_numpy(layer(to_torch(x)))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        layer = self.build(weight, bias, params)
        tx = to_torch(x).requires_grad_()
        layer(tx).backward(to_torch(grad_out))
        grad_bias = to_numpy(layer.bias.grad) if bias is not None else None
        return to_numpy(tx.grad), to_numpy(layer.weight.grad), grad_bias

    def layer_api(self) -> LayerIntrospection:
        def init_sample(cin: int, cout: int, kernel: tuple[int, int], groups: int):
            layer = torch.nn.ConvTranspose2d(cin, cout, kernel, groups=groups)
            return to_numpy(layer.weight), to_numpy(layer.bias)

        return LayerIntrospection(
            framework=self.name,
            version=self.version(),
            classes=LAYERS,
            init_sample=init_sample,
            weight_layout="weight (C_in, C_out/groups, *K), bias (C_out,)",
            data_layout="channels-first (N, C, *S); unbatched (C, *S) also accepted",
            documented_init="weight and bias ~ U(-sqrt(k), sqrt(k)), k = groups / (C_out · prod(kernel))",
        )
