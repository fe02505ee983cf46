"""``paddle.nn.Conv{1,2,3}DTranspose``: the layer built from the case, loaded by ``set_state_dict``.

Constructor arguments by keyword (the positional order differs by dimension); ``bias_attr=False``
drops the bias. Paddle's layers hold the weight in torch's layout ``(C_in, C_out/groups, *K)``.
"""

from __future__ import annotations

import numpy as np
import paddle

from conformance.adapters.paddle_functional import PaddleAdapter, _grads, to_numpy, to_paddle
from conformance.layer_api import LayerIntrospection
from conformance.spec import ConvParams

LAYERS = {1: paddle.nn.Conv1DTranspose, 2: paddle.nn.Conv2DTranspose, 3: paddle.nn.Conv3DTranspose}
FUNCTIONS = {
    1: paddle.nn.functional.conv1d_transpose,
    2: paddle.nn.functional.conv2d_transpose,
    3: paddle.nn.functional.conv3d_transpose,
}


class PaddleLayer(PaddleAdapter):
    name = "paddle.nn"
    expresses_out_channels = True  # the constructor takes out_channels

    @staticmethod
    def build(weight: np.ndarray, bias: np.ndarray | None, params: ConvParams) -> paddle.nn.Layer:
        layer = LAYERS[params.ndim](
            in_channels=params.in_channels,
            out_channels=params.out_channels,
            kernel_size=list(params.kernel_size),
            stride=list(params.stride),
            padding=list(params.padding),
            output_padding=list(params.output_padding),
            dilation=list(params.dilation),
            groups=params.groups,
            bias_attr=None if bias is not None else False,
        )
        state = {"weight": to_paddle(weight)}
        if bias is not None:
            state["bias"] = to_paddle(bias)
        layer.to(dtype=state["weight"].dtype)
        missing, unexpected = layer.set_state_dict(state)
        if missing or unexpected:  # set_state_dict only warns on a mismatch
            raise ValueError(f"set_state_dict: missing {missing}, unexpected {unexpected}")
        return layer

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        layer = self.build(weight, bias, params)
        with paddle.no_grad():
            return to_numpy(layer(to_paddle(x)))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        layer = self.build(weight, bias, params)
        tx = to_paddle(x)
        tx.stop_gradient = False
        leaves = [tx, layer.weight] + ([layer.bias] if bias is not None else [])
        return _grads(layer(tx), leaves, grad_out, bias is not None)

    def layer_api(self) -> LayerIntrospection:
        def init_sample(cin: int, cout: int, kernel: tuple[int, int], groups: int):
            layer = paddle.nn.Conv2DTranspose(cin, cout, kernel, groups=groups)
            return to_numpy(layer.weight), to_numpy(layer.bias)

        return LayerIntrospection(
            framework=self.name,
            version=self.version(),
            classes=LAYERS,
            functions=FUNCTIONS,
            init_sample=init_sample,
            weight_layout="weight (C_in, C_out/groups, *K), bias (C_out,)",
            data_layout="channels-first (N, C, *S) by default; data_format='NLC'/'NHWC'/'NDHWC' too",
            documented_init="weight_attr: 'If it is not set, the parameter is initialized with Xavier' "
            "(the uniform form, bound sqrt(6 / (fan_in + fan_out))); bias zeros",
        )
