"""ONNX Runtime (CPU provider) running a one-node ``ConvTranspose`` model built with ``onnx.helper``.

The model looks like an exported one: the weight ``(C_in, C_out/group, *K)``, torch's layout, and the
bias are initializers, the data is the graph input. Attributes: ``strides``, ``pads`` (begin values
for every axis, then end values), ``dilations``, ``group``, ``output_padding``, ``kernel_shape``.
ONNX Runtime has no training API in this package, so the gradient checks are unsupported.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from conformance.adapters import Adapter
from conformance.spec import ConvParams

#: ConvTranspose's current definition (changed last in opset 22). onnx 1.23 stamps models with IR 14,
#: which onnxruntime 1.31 refuses to load; IR 10 is one both read.
OPSET = 22
IR_VERSION = 10
ELEMENT_TYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}
#: The CPU execution provider registers ConvTranspose for tensor(float) only (docs/OperatorKernels.md);
#: a float16 node still runs because the session inserts Casts to float32 and back around it, while
#: float64 and bfloat16 fail at session creation with this error.
NOT_IMPLEMENTED = (
    "onnxruntime's CPU execution provider has no {} ConvTranspose kernel (OperatorKernels.md: T = "
    "tensor(float)): NOT_IMPLEMENTED 'Could not find an implementation for ConvTranspose(22) node'"
)


def conv_transpose_model(
    x_shape: tuple[int, ...],
    weight: np.ndarray,
    bias: np.ndarray | None,
    params: ConvParams,
    element_type: int,
) -> onnx.ModelProto:
    """A one-node model ``Y = ConvTranspose(X, W[, B])`` with W and B as initializers."""
    initializers = [numpy_helper.from_array(weight, "W")]
    if bias is not None:
        initializers.append(numpy_helper.from_array(bias, "B"))
    node = helper.make_node(
        "ConvTranspose",
        ["X", "W"] + (["B"] if bias is not None else []),
        ["Y"],
        kernel_shape=list(params.kernel_size),
        strides=list(params.stride),
        pads=list(params.padding) * 2,
        dilations=list(params.dilation),
        output_padding=list(params.output_padding),
        group=params.groups,
    )
    graph = helper.make_graph(
        [node],
        "conv_transpose",
        [helper.make_tensor_value_info("X", element_type, list(x_shape))],
        # the output's rank is known, its lengths are left to the runtime
        [helper.make_tensor_value_info("Y", element_type, [None] * len(x_shape))],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


class OnnxRuntime(Adapter):
    name = "onnxruntime"
    distribution = "onnxruntime"
    unsupported_dtypes: ClassVar[dict[str, str]] = {
        "float64": NOT_IMPLEMENTED.format("float64"),
        "bfloat16": NOT_IMPLEMENTED.format("bfloat16"),
    }

    def version(self) -> str:
        return ort.__version__

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        model = conv_transpose_model(x.shape, weight, bias, params, ELEMENT_TYPES[x.dtype.name])
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"X": x})
        return out
