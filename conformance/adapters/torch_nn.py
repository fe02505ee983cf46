"""``torch.nn.ConvTranspose{1,2,3}d``: the layer, built from the case and loaded via ``load_state_dict``.

``output_size`` goes to ``forward``, as the layer's users pass it. A channels-last weight makes the
layer ``layer.to(memory_format=torch.channels_last)`` (``channels_last_3d`` for 3-d); a strided
weight is copied into the layer's own parameter, as ``load_state_dict`` does (a layer owns its
parameters' memory); the input goes in with its strides.
"""

from __future__ import annotations

import numpy as np
import torch

from conformance import layouts
from conformance.adapters.torch_functional import TorchAdapter, loss, to_numpy, to_torch
from conformance.cases import Case
from conformance.layer_api import LayerIntrospection
from conformance.spec import ConvParams

LAYERS = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}
MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}


class TorchLayer(TorchAdapter):
    name = "torch.nn"
    api = "torch.nn.ConvTranspose*d"
    expresses_out_channels = True  # the constructor takes out_channels and checks it against groups
    folds_asymmetric_padding = True
    takes_output_size = True
    takes_unbatched = True

    def version(self) -> str:
        return torch.__version__

    def inexpressible(self, case: Case) -> str | None:
        p = case.params
        if p.output_size is not None and not p.is_symmetric:
            return (
                f"{self.api} takes output_size with symmetric padding only (its reachable range is "
                f"computed from 2·padding): (lo, hi) = {list(p.padding_pairs)}"
            )
        return super().inexpressible(case)

    def _call(self, layer: torch.nn.Module, x: torch.Tensor, params: ConvParams) -> torch.Tensor:
        if params.output_size is None:
            return layer(x)
        return layer(x, output_size=list(params.output_size))

    @staticmethod
    def build(weight: np.ndarray, bias: np.ndarray | None, params: ConvParams) -> torch.nn.Module:
        if params.output_size is not None:  # forward() derives output_padding from it
            padding, output_padding = params.padding, (0,) * params.ndim
        else:
            padding, output_padding = params.symmetric_padding or (params.padding, params.output_padding)
        layer = LAYERS[params.ndim](
            params.in_channels,
            params.out_channels,
            params.kernel_size,
            stride=params.stride,
            padding=padding,
            output_padding=output_padding,
            groups=params.groups,
            bias=bias is not None,
            dilation=params.dilation,
        )
        state = {"weight": to_torch(weight)}
        if bias is not None:
            state["bias"] = to_torch(bias)
        layer = layer.to(state["weight"].dtype)
        if layouts.layout_of(weight) == "channels_last" and weight.ndim in MEMORY_FORMATS:
            layer = layer.to(memory_format=MEMORY_FORMATS[weight.ndim])
        layer.load_state_dict(state)  # strict: shapes must match; copies keep the layer's strides
        return layer

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        layer = self.build(weight, bias, params)
        with torch.no_grad():
            return to_numpy(self._call(layer, to_torch(x), params))

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
        loss(self._call(layer, tx, params), grad_out).backward()
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
