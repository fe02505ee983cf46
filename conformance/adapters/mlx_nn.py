"""``mlx.nn.ConvTranspose{1,2,3}d``: the layer, built from the case and loaded via ``load_weights``."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from conformance import layouts
from conformance.adapters import Adapter
from conformance.adapters.mlx_functional import to_mlx, to_numpy
from conformance.cases import Case
from conformance.layer_api import LayerIntrospection
from conformance.spec import ConvParams

LAYERS = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


class MlxLayer(Adapter):
    name = "mlx.nn"
    api = "mlx.nn.ConvTranspose*d"
    distribution = "mlx"
    # (declared: finding the distribution's modules reads every installed package's file list)
    framework_modules = ("mlx",)
    expresses_out_channels = True
    folds_asymmetric_padding = True  # the constructor's (padding, output_padding)

    def version(self) -> str:
        return mx.__version__

    def unsupported(self, case: Case) -> str | None:
        if case.params.groups != 1:
            return "mlx.nn.ConvTranspose1d/2d/3d take no groups argument (grouped only via mlx.core)"
        return super().unsupported(case)

    @staticmethod
    def build(weight: np.ndarray, bias: np.ndarray | None, params: ConvParams) -> nn.Module:
        # mlx.nn.ConvTranspose1d takes plain ints; 2d/3d take tuples.
        def arg(values: tuple[int, ...]) -> int | tuple[int, ...]:
            return values[0] if params.ndim == 1 else values

        padding, output_padding = params.symmetric_padding or (params.padding, params.output_padding)
        layer = LAYERS[params.ndim](
            params.in_channels,
            params.out_channels,
            arg(params.kernel_size),
            stride=arg(params.stride),
            padding=arg(padding),
            dilation=arg(params.dilation),
            output_padding=arg(output_padding),
            bias=bias is not None,
        )
        weights = [("weight", to_mlx(layouts.torch_weight_to_channels_last(weight, 1)))]
        if bias is not None:
            weights.append(("bias", to_mlx(bias)))
        layer.load_weights(weights)  # strict: names and shapes must match the layer's own
        return layer

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        layer = self.build(weight, bias, params)
        out = layer(to_mlx(layouts.channels_first_to_last(x)))
        mx.eval(out)
        return np.ascontiguousarray(layouts.channels_last_to_first(to_numpy(out)))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        layer = self.build(weight, bias, params)

        names = ["weight", "bias"] if bias is not None else ["weight"]

        def fn(x_in: mx.array, *values: mx.array) -> mx.array:
            layer.update(dict(zip(names, values)))  # differentiate through the layer's own parameters
            return layer(x_in)

        primals = [to_mlx(layouts.channels_first_to_last(x)), *(layer.parameters()[n] for n in names)]
        _, grads = mx.vjp(fn, primals, [to_mlx(layouts.channels_first_to_last(grad_out))])
        mx.eval(grads)
        grad_x = np.ascontiguousarray(layouts.channels_last_to_first(to_numpy(grads[0])))
        grad_w = layouts.channels_last_weight_to_torch(to_numpy(grads[1]), 1)
        grad_b = to_numpy(grads[2]) if bias is not None else None
        return grad_x, grad_w, grad_b

    def layer_api(self) -> LayerIntrospection:
        def init_sample(cin: int, cout: int, kernel: tuple[int, int], groups: int):
            if groups != 1:
                raise TypeError("mlx.nn.ConvTranspose2d has no groups argument")
            layer = nn.ConvTranspose2d(cin, cout, kernel)
            weight = layouts.channels_last_weight_to_torch(to_numpy(layer.weight), 1)
            return weight, to_numpy(layer.bias)

        return LayerIntrospection(
            framework=self.name,
            version=self.version(),
            classes=LAYERS,
            init_sample=init_sample,
            weight_layout="weight (C_out, *K, C_in), bias (C_out,); no groups",
            data_layout="channels-last (N, *S, C)",
            documented_init="not documented in the layer's API reference; source: weight ~ U(-s, s), "
            "s = sqrt(1 / (C_in · prod(kernel_size))), bias zeros",
            forward_name="__call__",
        )
