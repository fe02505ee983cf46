"""OpenVINO (CPU plugin) running a one-node model: opset ``ConvolutionBackpropData``, or
``GroupConvolutionBackpropData`` when groups > 1.

The model looks like a converted one: the data is the graph's parameter, the filter a constant in
``(C_in, C_out, *K)`` (grouped: ``(G, C_in/G, C_out/G, *K)``, a reshape of the canonical layout) and
the bias an ``Add`` of a ``(1, C_out, 1, ...)`` constant. Attributes: ``strides``, ``pads_begin`` and
``pads_end`` (PyTorch's symmetric padding), ``dilations``, ``output_padding``. The group count comes
from the filter's shape, so groups < 1 cannot be expressed, and C_out is G·(C_out/G).

The CPU plugin picks an inference precision by hardware (``INFERENCE_PRECISION_HINT``: bf16 on CPUs
with AMX, f32 elsewhere); the default variant takes that choice, ``openvino[f32]`` forces f32. The
precision actually chosen is a build fact (``inference_precision``). An inference runtime: no
gradients, so the gradient checks are unsupported.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import openvino as ov
import openvino.opset16 as ops

from conformance.adapters import Adapter, Variant
from conformance.cases import Case
from conformance.spec import ConvParams

ELEMENT_TYPES = {
    "float32": ov.Type.f32,
    "float16": ov.Type.f16,
    "float64": ov.Type.f64,
    "bfloat16": ov.Type.bf16,
}
NO_GROUPS_BELOW_ONE = (
    "OpenVINO's GroupConvolutionBackpropData takes the group count from the filter's shape (G, C_in/G, "
    "C_out/G, *K); there is no groups attribute, so groups < 1 cannot be expressed"
)
PROBE = ConvParams.make(1, 1, 1, 2)
VARIANTS = {
    "f32": Variant("the CPU plugin with INFERENCE_PRECISION_HINT='f32' (no bf16/f16 inference on any CPU)"),
}


def to_openvino(a: np.ndarray) -> ov.Tensor | np.ndarray:
    """The Python API rejects ``ml_dtypes.bfloat16`` arrays: a bfloat16 array goes in as its bits,
    copied into a tensor of OpenVINO's own (an ``ov.Tensor`` made from an array shares its memory,
    which a temporary array would free before the model is compiled)."""
    if a.dtype == ml_dtypes.bfloat16:
        tensor = ov.Tensor(ov.Type.bf16, list(a.shape))
        tensor.data.view(np.uint16)[...] = a.view(np.uint16)
        return tensor
    return np.ascontiguousarray(a)


def from_openvino(tensor: ov.Tensor) -> np.ndarray:
    """A bf16 output's ``.data`` is a float16-typed array holding bfloat16 bits."""
    data = np.array(tensor.data)  # a copy: the request's buffer is reused
    if tensor.element_type == ov.Type.bf16:
        return data.view(np.uint16).view(ml_dtypes.bfloat16)
    return data


def openvino_filter(weight: np.ndarray, groups: int) -> np.ndarray:
    """Canonical ``(C_in, C_out/g, *K)`` -> ``(g, C_in/g, C_out/g, *K)`` for groups > 1 (as it is otherwise).

    A grouping that breaks a rule has no value-preserving conversion; the filter then gets the
    grouped shape a user would write and OpenVINO judges it.
    """
    if groups == 1:
        return weight
    cin, cout_g, *kernel = weight.shape
    shape = (groups, cin // groups, cout_g, *kernel)
    return weight.reshape(shape) if cin % groups == 0 else np.resize(weight, shape)


def conv_transpose_model(
    x_shape: tuple[int, ...], weight: np.ndarray, bias: np.ndarray | None, params: ConvParams, dtype: str
) -> ov.Model:
    data = ops.parameter(list(x_shape), ELEMENT_TYPES[dtype], name="X")
    filters = ops.constant(to_openvino(openvino_filter(weight, params.groups)))
    build = ops.group_convolution_backprop_data if params.groups > 1 else ops.convolution_backprop_data
    node = build(
        data,
        filters,
        list(params.stride),
        pads_begin=list(params.padding),
        pads_end=list(params.padding),
        dilations=list(params.dilation),
        output_padding=list(params.output_padding),
    )
    if bias is not None:
        node = ops.add(node, ops.constant(to_openvino(bias.reshape(1, -1, *(1,) * params.ndim))))
    return ov.Model([node], [data], "conv_transpose")


class OpenVino(Adapter):
    name = "openvino"
    distribution = "openvino"
    framework_modules = ("openvino",)
    variants = VARIANTS

    def __init__(self) -> None:
        self.core = ov.Core()
        self.config: dict[str, str] = {}

    def configure_variant(self) -> None:
        if self.variant == "f32":
            self.config = {"INFERENCE_PRECISION_HINT": "f32"}

    def version(self) -> str:
        return ov.get_version().split("-")[0]

    def build_facts(self) -> dict[str, object]:
        # What a compiled float32 model gets on this CPU under this variant's configuration: the
        # precision the plugin settles on, and the one its Deconvolution node actually runs in.
        probe = conv_transpose_model((1, 1, 2), np.zeros((1, 1, 2), np.float32), None, PROBE, "float32")
        compiled = self.core.compile_model(probe, "CPU", self.config)
        runtime = {
            str(op.get_rt_info()["layerType"].astype(str)): str(
                op.get_rt_info()["runtimePrecision"].astype(str)
            )
            for op in compiled.get_runtime_model().get_ordered_ops()
        }
        return {
            "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "deconvolution_precision": runtime.get("Deconvolution", "unknown"),
            "device": self.core.get_property("CPU", "FULL_DEVICE_NAME"),
            "capabilities": " ".join(self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
            "threads": compiled.get_property("INFERENCE_NUM_THREADS"),
            "build": ov.get_version(),
        }

    def unsupported(self, case: Case) -> str | None:
        if case.params.groups < 1:
            return NO_GROUPS_BELOW_ONE
        return super().unsupported(case)

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        model = conv_transpose_model(x.shape, weight, bias, params, x.dtype.name)
        compiled = self.core.compile_model(model, "CPU", self.config)
        request = compiled.create_infer_request()
        request.infer({0: to_openvino(x)})
        return from_openvino(request.get_output_tensor(0))
