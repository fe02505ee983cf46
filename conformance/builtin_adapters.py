"""The built-in adapters by name: where each lives and the package it needs, without importing
anything heavy (the command reads them before NumPy loads, to start the frameworks' imports).
"""

from __future__ import annotations

BUILTINS: dict[str, str] = {
    "torch": "conformance.adapters.torch_functional:TorchFunctional",
    "mlx": "conformance.adapters.mlx_functional:MlxFunctional",
    "torch.nn": "conformance.adapters.torch_nn:TorchLayer",
    "mlx.nn": "conformance.adapters.mlx_nn:MlxLayer",
    "jax": "conformance.adapters.jax_lax:JaxLax",
    "onnxruntime": "conformance.adapters.onnxruntime_node:OnnxRuntime",
    "tinygrad": "conformance.adapters.tinygrad_tensor:Tinygrad",
    "megengine": "conformance.adapters.megengine_functional:MegEngineFunctional",
    "megengine.module": "conformance.adapters.megengine_module:MegEngineModule",
    "lucid": "conformance.adapters.lucid_functional:LucidFunctional",
    "lucid.nn": "conformance.adapters.lucid_nn:LucidLayer",
    "paddle": "conformance.adapters.paddle_functional:PaddleFunctional",
    "paddle.nn": "conformance.adapters.paddle_nn:PaddleLayer",
    "tensorflow": "conformance.adapters.tensorflow_nn:TensorFlowNN",
    "keras": "conformance.adapters.keras_layers:KerasLayer",
    "openvino": "conformance.adapters.openvino_node:OpenVino",
}
#: the package each built-in needs, checked without importing it
BUILTIN_PACKAGES = {
    "torch": "torch",
    "mlx": "mlx",
    "torch.nn": "torch",
    "mlx.nn": "mlx",
    "jax": "jax",
    "onnxruntime": "onnxruntime",
    "tinygrad": "tinygrad",
    "megengine": "megengine",
    "megengine.module": "megengine",
    "lucid": "lucid",
    "lucid.nn": "lucid",
    "paddle": "paddle",
    "paddle.nn": "paddle",
    "tensorflow": "tensorflow",
    "keras": "keras",
    "openvino": "openvino",
}


def split_variant(spec: str) -> tuple[str, str | None]:
    """``'torch[native]'`` -> ``('torch', 'native')``; a spec without brackets has no variant."""
    if spec.endswith("]") and "[" in spec:
        base, _, variant = spec[:-1].rpartition("[")
        if base and variant:
            return base, variant
    return spec, None


def framework_group(spec: str) -> str:
    """The worker group of an adapter, known from its spec alone: a built-in's framework package
    (``torch.nn`` -> ``torch``), else the spec itself (without a variant)."""
    base = split_variant(spec)[0]
    return BUILTIN_PACKAGES.get(base, base)
