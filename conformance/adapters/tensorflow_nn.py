"""TensorFlow's ``tf.nn.conv{1,2,3}d_transpose``: channels-last, gradients by ``tf.GradientTape``.

A TensorFlow user writes the transposed convolution as the gradient of a convolution: data
``(N, *S, C)``, filters ``(*K, C_out, C_in)`` and the full ``output_shape`` (PyTorch's output_padding
is the extra length there). ``tf.nn.conv2d_transpose`` takes PyTorch's symmetric padding as an
explicit ``[[0, 0], [p, p], [q, q], [0, 0]]``; ``conv1d_transpose`` and ``conv3d_transpose`` take only
``'SAME'``/``'VALID'``, so a nonzero padding there has no spelling (``'VALID'`` is padding 0). There
is no grouped transposed convolution. What the API cannot express is declared unsupported; the
bias is ``tf.nn.bias_add``.
"""

from __future__ import annotations

import functools
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up banner, not its errors

import tensorflow as tf  # after the log level, which TensorFlow reads on import

from conformance import layouts
from conformance.adapters import Adapter, Variant
from conformance.cases import Case
from conformance.machine import cpu_flags
from conformance.spec import ConvParams, output_length

FUNCTIONS = {1: tf.nn.conv1d_transpose, 2: tf.nn.conv2d_transpose, 3: tf.nn.conv3d_transpose}

NO_GROUPS = (
    "TensorFlow has no grouped transposed convolution: tf.nn.conv{1,2,3}d_transpose and tf.nn.conv_transpose "
    "take no groups argument"
)
NO_EXPLICIT_PADDING = (
    "tf.nn.conv{0}d_transpose takes padding 'SAME' or 'VALID' only (explicit padding exists for "
    "conv2d_transpose alone), so a nonzero padding cannot be expressed in {0}-d"
)
NO_DILATION = (
    "{} cannot dilate: InvalidArgumentError 'Current CPU implementations do not yet support dilation rates "
    "larger than 1. [Op:Conv2DBackpropInput]' (1-d and 2-d; 3-d: 'Current CPU implementation does not ...')"
)


#: the CPU features with which TensorFlow's Linux x86 builds turn oneDNN on by default (IsMKLEnabled,
#: core/util/util.cc): on a CPU with none of them (an AVX2 machine) its own Eigen kernels run unless
#: TF_ENABLE_ONEDNN_OPTS=1 asks for oneDNN
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


@functools.lru_cache(maxsize=1)
def onednn_on() -> bool:
    """Whether this process's TensorFlow runs its oneDNN kernels: TF_ENABLE_ONEDNN_OPTS where set,
    else on by default only on CPUs with one of :data:`ONEDNN_DEFAULT_FLAGS` (as TensorFlow itself
    decides, once, at its first oneDNN question)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def onednn_why() -> str:
    """What decided :func:`onednn_on` here: the environment variable, or the CPU."""
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting is not None:
        return f"TF_ENABLE_ONEDNN_OPTS={setting}"
    found = [flag for flag in ONEDNN_DEFAULT_FLAGS if flag in cpu_flags()]
    if found:
        return f"default on a CPU with {', '.join(found)}"
    return f"default on a CPU without any of {', '.join(ONEDNN_DEFAULT_FLAGS)}"


def onednn_takes(dtype: str, flags: frozenset[str] | None = None) -> bool:
    """Whether TensorFlow hands ``dtype`` to oneDNN on a CPU with ``flags`` (this one's by default),
    as its ``IsDataTypeSupportedByOneDNNOnThisCPU`` (core/util/util.cc) decides from CPUID: float32
    always; bfloat16 with AVX-512F or AVX-NE-CONVERT; float16 with AVX-512BW and AVX512-FP16 or
    AMX-FP16, or with AVX-NE-CONVERT. Other dtypes, and these on other CPUs, run on TensorFlow's
    own kernel, which cannot dilate (float16 there: seen on an AMD EPYC with AVX-512 BF16 and no
    AVX512-FP16; an Intel Xeon with AVX512-FP16 ran it on oneDNN)."""
    flags = cpu_flags() if flags is None else flags
    if dtype == "float32":
        return True
    if dtype == "bfloat16":
        return bool({"avx512f", "avx_ne_convert"} & flags)
    if dtype == "float16":
        wide = "avx512bw" in flags and bool({"avx512_fp16", "amx_fp16"} & flags)
        return wide or "avx_ne_convert" in flags
    return False


#: the dtypes TensorFlow may hand to oneDNN (float64 never is)
HANDED = ("float32", "bfloat16", "float16")


#: what a CPU needs for TensorFlow to send each half-precision dtype to oneDNN (see onednn_takes)
ONEDNN_NEEDS = {
    "bfloat16": "AVX-512F or AVX-NE-CONVERT",
    "float16": "AVX512-FP16 or AMX-FP16 (with AVX-512BW) or AVX-NE-CONVERT",
}


def own_kernel_reason(dtype: str) -> str | None:
    """Why TensorFlow runs ``dtype`` (one oneDNN may take) on its own CPU kernel in this process:
    oneDNN is off here, or the CPU lacks what oneDNN needs for a half-precision ``dtype``; None
    where oneDNN takes it, or for another dtype."""
    if not onednn_on():
        return f"oneDNN off: {onednn_why()}"
    needs = ONEDNN_NEEDS.get(dtype)
    if needs is None or onednn_takes(dtype):
        return None
    return f"it runs {dtype} on a CPU without {needs}, for which oneDNN has no {dtype} kernels: this one"


#: TensorFlow's CPU kernel paths, pinned: oneDNN (the default only on some CPUs, see
#: ONEDNN_DEFAULT_FLAGS) and its own Eigen kernels. Plain ``tensorflow`` runs the CPU's default.
VARIANTS = {
    "eigen": Variant(
        "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0): TensorFlow's own Eigen kernels",
        {"TF_ENABLE_ONEDNN_OPTS": "0"},
    ),
    "onednn": Variant(
        "oneDNN on (TF_ENABLE_ONEDNN_OPTS=1), whatever the CPU's default",
        {"TF_ENABLE_ONEDNN_OPTS": "1"},
    ),
}


def tf_filters(weight: np.ndarray) -> np.ndarray:
    """Canonical ``(C_in, C_out, *K)`` -> TensorFlow's ``(*K, C_out, C_in)`` (ungrouped)."""
    return np.ascontiguousarray(np.moveaxis(weight, (0, 1), (-1, -2)))


def torch_weight(filters: np.ndarray) -> np.ndarray:
    """Inverse of :func:`tf_filters`."""
    return np.ascontiguousarray(np.moveaxis(filters, (-1, -2), (0, 1)))


def tf_output_shape(x_shape: tuple[int, ...], params: ConvParams) -> list[int]:
    """The ``output_shape`` a user computes: PyTorch's output lengths, channels last.

    Axis by axis over what the input has (no strict zip): an input of the wrong rank gets an
    output_shape of the wrong rank, and TensorFlow judges it.
    """
    n, *spatial, _ = x_shape
    per_axis = zip(
        spatial, params.kernel_size, params.stride, params.padding, params.output_padding, params.dilation
    )
    return [n, *(output_length(*axis) for axis in per_axis), params.out_channels]


def tf_padding(params: ConvParams) -> str | list[list[int]]:
    if not any(params.padding):
        return "VALID"
    return [[0, 0], *([p, p] for p in params.padding), [0, 0]]


def build_facts() -> dict[str, object]:
    threads = tf.config.threading
    on = onednn_on()
    return {
        # "on" / "off": what `when: {facts: {onednn: "on"}}` in the baseline scopes oneDNN's entries by
        "onednn": "on" if on else "off",
        "onednn_why": onednn_why(),
        # the dtypes this process sends to oneDNN (the rest run on TensorFlow's own kernel)
        "onednn_dtypes": " ".join(filter(onednn_takes, HANDED)) if on else "none (oneDNN off)",
        "devices": ",".join(d.name for d in tf.config.list_logical_devices()),
        "intra_op_threads": threads.get_intra_op_parallelism_threads() or "default (all cores)",
        "inter_op_threads": threads.get_inter_op_parallelism_threads() or "default",
    }


class TensorFlowNN(Adapter):
    name = "tensorflow"
    distribution = "tensorflow-cpu"
    framework_modules = ("tensorflow", "keras")
    expresses_out_channels = True  # output_shape names C_out
    variants = VARIANTS

    def version(self) -> str:
        return tf.__version__

    def build_facts(self) -> dict[str, object]:
        return build_facts()

    def unsupported(self, case: Case) -> str | None:
        params = case.params
        reason = NO_GROUPS if params.groups != 1 else None
        if reason is None and params.ndim != 2 and any(params.padding):
            reason = NO_EXPLICIT_PADDING.format(params.ndim)
        if reason is None and any(d > 1 for d in params.dilation):
            if not onednn_on():
                reason = NO_DILATION.format(f"TensorFlow's own CPU kernels (oneDNN off: {onednn_why()})")
            elif any(params.padding) or case.dtype == "float64":  # not rewritten to oneDNN's op
                reason = NO_DILATION.format(
                    "TensorFlow's own CPU kernel (it runs explicit padding and float64 even with oneDNN on)"
                )
            elif own := own_kernel_reason(case.dtype):
                reason = NO_DILATION.format(f"TensorFlow's own CPU kernel ({own})")
        return reason or super().unsupported(case)

    @staticmethod
    def _call(x: tf.Tensor, filters: tf.Tensor, bias: tf.Tensor | None, params: ConvParams) -> tf.Tensor:
        out = FUNCTIONS[params.ndim](
            x,
            filters,
            output_shape=tf_output_shape(tuple(x.shape), params),
            strides=list(params.stride),
            padding=tf_padding(params),
            dilations=list(params.dilation),
        )
        return out if bias is None else tf.nn.bias_add(out, bias)

    @staticmethod
    def _inputs(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> list[tf.Tensor]:
        tensors = [tf.constant(layouts.channels_first_to_last(x)), tf.constant(tf_filters(weight))]
        return tensors + ([tf.constant(bias)] if bias is not None else [])

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        tx, tw, *tb = self._inputs(x, weight, bias)
        out = self._call(tx, tw, tb[0] if tb else None, params)
        return np.ascontiguousarray(layouts.channels_last_to_first(out.numpy()))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        leaves = self._inputs(x, weight, bias)
        with tf.GradientTape() as tape:
            tape.watch(leaves)
            out = self._call(leaves[0], leaves[1], leaves[2] if bias is not None else None, params)
        grads = tape.gradient(
            out, leaves, output_gradients=tf.constant(layouts.channels_first_to_last(grad_out))
        )
        grad_x = np.ascontiguousarray(layouts.channels_last_to_first(grads[0].numpy()))
        grad_b = grads[2].numpy() if bias is not None else None
        return grad_x, torch_weight(grads[1].numpy()), grad_b
