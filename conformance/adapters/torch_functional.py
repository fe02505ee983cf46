"""PyTorch's ``torch.nn.functional.conv_transpose{1,2,3}d``: the reference API, channels-first.

Arrays are handed over with their strides, as torch code holds them: a channels-last array becomes
the tensor ``x.contiguous(memory_format=torch.channels_last)`` gives (same sizes and strides), a
strided one a sliced view. Asymmetric padding runs where it has PyTorch's (padding,
output_padding) form; unbatched inputs go in as they are.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch
import torch.nn.functional as F

from conformance.adapters import Adapter, Variant
from conformance.spec import ConvParams

FUNCTIONS = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

#: torch's CPU kernel paths for transposed convolution: oneDNN (the default, which takes AMX or
#: AVX-512 BF16 kernels where the CPU has them), ATen's own im2col + GEMM kernels, and oneDNN
#: capped at an older instruction set, so that a divergence names the path that has it.
VARIANTS = {
    "native": Variant("oneDNN off (torch.backends.mkldnn.enabled = False): ATen's own kernels"),
    "avx512": Variant(
        "oneDNN capped at AVX-512 without BF16 or AMX (ONEDNN_MAX_CPU_ISA=AVX512_CORE)",
        {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    ),
    "avx2": Variant("oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2)", {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
}


def configure_variant(variant: str | None) -> None:
    if variant == "native":
        torch.backends.mkldnn.enabled = False


def build_facts() -> dict[str, object]:
    config = torch.__config__.show()
    onednn = next((line.strip(" -") for line in config.splitlines() if "DNN v" in line), "")
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": onednn,
        "onednn_enabled": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "mkl": torch.backends.mkl.is_available(),
        "threads": torch.get_num_threads(),
    }


def to_torch(a: np.ndarray) -> torch.Tensor:
    """A tensor over ``a``'s memory with ``a``'s strides (torch.from_numpy keeps them)."""
    if a.dtype == ml_dtypes.bfloat16:  # no NumPy bfloat16 in torch: reinterpret the bits
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def loss(out: torch.Tensor, grad_out: np.ndarray) -> torch.Tensor:
    """The scalar whose backward pass is the VJP for ``grad_out``: ``(out * grad_out).sum()``, as
    training code calls ``loss.backward()``. Its backward hands the convolution's backward
    ``grad_out`` bit for bit (``ones * g``) and contiguous, as ``grad_outputs=g`` would (a test holds
    the two to the same gradients). ``grad_outputs`` would cost every process that runs a VJP an
    import of sympy (0.4-0.6 s), which torch's autograd makes only to compare the cotangent's shape
    with the output's (``torch.autograd._make_grads``). An output of another shape than the
    cotangent is not broadcast against it: torch's own check raises, as with ``grad_outputs``."""
    g = to_torch(grad_out)
    if out.shape != g.shape:
        torch.autograd.backward(out, g)  # raises "Mismatch in shape: grad_output[0] has a shape of ..."
    return (out * g).sum()


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


class TorchAdapter(Adapter):
    """What torch's functional and layer adapters share: the framework, its variants, its facts."""

    distribution = "torch"
    framework_modules = ("torch",)
    variants = VARIANTS

    def configure_variant(self) -> None:
        configure_variant(self.variant)

    def build_facts(self) -> dict[str, object]:
        return build_facts()


class TorchFunctional(TorchAdapter):
    name = "torch"
    api = "torch.nn.functional.conv_transpose*d"
    folds_asymmetric_padding = True
    takes_unbatched = True

    def version(self) -> str:
        return torch.__version__

    @staticmethod
    def _call(
        x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, params: ConvParams
    ) -> torch.Tensor:
        padding, output_padding = params.symmetric_padding or (params.padding, params.output_padding)
        return FUNCTIONS[params.ndim](
            x,
            weight,
            bias,
            stride=params.stride,
            padding=padding,
            output_padding=output_padding,
            groups=params.groups,
            dilation=params.dilation,
        )

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        return to_numpy(
            self._call(to_torch(x), to_torch(weight), None if bias is None else to_torch(bias), params)
        )

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        leaves = [to_torch(a).requires_grad_() for a in (x, weight, bias) if a is not None]
        out = self._call(leaves[0], leaves[1], leaves[2] if bias is not None else None, params)
        grads = torch.autograd.grad(loss(out, grad_out), leaves)
        return to_numpy(grads[0]), to_numpy(grads[1]), to_numpy(grads[2]) if bias is not None else None
