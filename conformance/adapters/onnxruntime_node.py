"""ONNX Runtime (CPU provider) running a one-node ``ConvTranspose`` model built with ``onnx.helper``.

The model looks like an exported one: the weight ``(C_in, C_out/group, *K)``, torch's layout, and the
bias are initializers, the data is the graph input. Attributes: ``strides``, ``pads`` (begin values
for every axis, then end values: asymmetric padding as written), ``dilations``, ``group``,
``output_padding``, ``kernel_shape``; ``padding: same_upper | same_lower`` become ``auto_pad``
SAME_UPPER / SAME_LOWER (no pads). ONNX requires a batch axis (no unbatched inputs). ``output_shape``
is not torch's ``output_size``: ONNX derives the pads from it (spec: the odd element at the beginning
unless SAME_UPPER), where torch keeps the padding and adds output_padding at the end, so output_size
cases are not expressible. ONNX Runtime has no training API in this package, so the gradient checks
are unsupported.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from conformance.adapters import Adapter
from conformance.cases import Case
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
    if params.padding_mode is not None:
        padding = {"auto_pad": params.padding_mode.upper()}
        output_padding = params.written_output_padding()  # the mode's own extension is ONNX's to make
    else:
        padding = {"pads": [lo for lo, _ in params.padding_pairs] + [hi for _, hi in params.padding_pairs]}
        output_padding = list(params.output_padding)
    node = helper.make_node(
        "ConvTranspose",
        ["X", "W"] + (["B"] if bias is not None else []),
        ["Y"],
        kernel_shape=list(params.kernel_size),
        strides=list(params.stride),
        dilations=list(params.dilation),
        output_padding=output_padding,
        group=params.groups,
        **padding,
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
    api = "ONNX ConvTranspose"
    distribution = "onnxruntime"
    takes_padding_pairs = True
    padding_modes = frozenset({"same_upper", "same_lower"})
    unsupported_dtypes: ClassVar[dict[str, str]] = {
        "float64": NOT_IMPLEMENTED.format("float64"),
        "bfloat16": NOT_IMPLEMENTED.format("bfloat16"),
    }

    def version(self) -> str:
        return ort.__version__

    def inexpressible(self, case: Case) -> str | None:
        if case.params.output_size is not None:
            return (
                "ONNX ConvTranspose's output_shape derives the pads from the total (spec: the odd element "
                "at the beginning unless auto_pad is SAME_UPPER); torch's output_size keeps the padding and "
                "adds output_padding at the end, so it has no ONNX spelling"
            )
        return super().inexpressible(case)

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        model = conv_transpose_model(x.shape, weight, bias, params, ELEMENT_TYPES[x.dtype.name])
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {"X": x})
        return out
