"""``megengine.module.ConvTranspose{2,3}d``: the layer built from the case, loaded by ``load_state_dict``."""

from __future__ import annotations

from typing import ClassVar

import megengine
import megengine.module as M
import numpy as np
from megengine.autodiff import GradManager

from conformance.adapters import Adapter
from conformance.adapters.megengine_functional import (
    DTYPE_LIMITS,
    NO_1D,
    gradients,
    megengine_bias,
    megengine_weight,
    surfaced_errors,
    to_megengine,
)
from conformance.layer_api import LayerIntrospection
from conformance.spec import ConvParams

LAYERS = {2: M.ConvTranspose2d, 3: M.ConvTranspose3d}


class MegEngineModule(Adapter):
    name = "megengine.module"
    distribution = "MegEngine"
    unsupported_ndims: ClassVar[dict[int, str]] = {1: NO_1D}
    unsupported_dtypes: ClassVar[dict[str, str]] = DTYPE_LIMITS
    expresses_out_channels = True  # the constructor takes out_channels and checks it against groups

    def version(self) -> str:
        return megengine.__version__

    @staticmethod
    def build(weight: np.ndarray, bias: np.ndarray | None, params: ConvParams) -> M.Module:
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
        state = {"weight": megengine_weight(weight, params.groups)}
        if bias is not None:
            state["bias"] = megengine_bias(bias, params.ndim)
        # strict: names and shapes must match the layer's own; the parameters take the arrays' dtype
        layer.load_state_dict(state)
        return layer

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        with surfaced_errors():
            layer = self.build(weight, bias, params)
            return layer(to_megengine(x)).numpy()

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        with surfaced_errors():
            layer = self.build(weight, bias, params)
            tx = to_megengine(x)
            leaves = [tx, layer.weight] + ([layer.bias] if bias is not None else [])
            gm = GradManager().attach(leaves)
            with gm:
                gm.backward(layer(tx), to_megengine(grad_out))
            return gradients(leaves, weight.shape, None if bias is None else bias.shape)

    def layer_api(self) -> LayerIntrospection:
        def init_sample(cin: int, cout: int, kernel: tuple[int, int], groups: int):
            layer = M.ConvTranspose2d(cin, cout, kernel, groups=groups)
            weight = layer.weight.numpy().reshape(cin, cout // groups, *kernel)  # canonical layout
            return weight, layer.bias.numpy().reshape(cout)

        return LayerIntrospection(
            framework=self.name,
            version=self.version(),
            classes=LAYERS,
            init_sample=init_sample,
            weight_layout="weight (C_in, C_out, *K), grouped (groups, C_in/g, C_out/g, *K); "
            "bias (1, C_out, 1, 1[, 1])",
            data_layout="channels-first (N, C, *S); no 1-d layer",
            documented_init="not documented in the layer's API reference; source (_ConvNd.reset_parameters): "
            "weight ~ N(0, 1 / fan_in), fan_in = C_out · prod(kernel) for ConvTranspose2d "
            "(C_in · prod(kernel) for ConvTranspose3d), groups ignored; bias zeros",
            notes=[
                "ConvTranspose2d takes conv_mode and compute_mode after bias; ConvTranspose3d takes neither",
                "the weight is normal, not uniform: its std follows 1/sqrt(C_out · prod(kernel)) and "
                "the measured 'a' (std·√3) is √3 times that",
            ],
        )
