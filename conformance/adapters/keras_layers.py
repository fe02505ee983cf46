"""Keras 3's ``keras.layers.Conv{1,2,3}DTranspose`` on the TensorFlow backend, weights set by ``set_weights``.

The layers are channels-last with kernel ``(*K, C_out, C_in)``. Their padding is ``'valid'`` or
``'same'`` only: ``'valid'`` is PyTorch's padding 0, and ``'same'`` is PyTorch's symmetric padding
``dilation·(kernel−1)/2`` (Keras's own output-length rule, ``(L−1)·stride + 1 + output_padding`` for an
odd dilated kernel extent). Any other padding, and groups (the layers have none), cannot be expressed
and are declared unsupported. Gradients: ``tf.GradientTape`` over the input and the layer's own
trainable weights.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # read by keras on import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # after KERAS_BACKEND
import tensorflow as tf

from conformance import layouts
from conformance.adapters import Adapter
from conformance.adapters.tensorflow_nn import (
    NO_DILATION,
    VARIANTS,
    own_kernel_reason,
    tf_filters,
    torch_weight,
)
from conformance.adapters.tensorflow_nn import build_facts as tensorflow_facts
from conformance.cases import Case
from conformance.layer_api import LayerIntrospection
from conformance.spec import ConvParams

LAYERS = {1: keras.layers.Conv1DTranspose, 2: keras.layers.Conv2DTranspose, 3: keras.layers.Conv3DTranspose}

NO_GROUPS = "keras.layers.Conv{1,2,3}DTranspose take no groups argument"
NO_STRIDED_DILATION = (
    "keras.layers.Conv{1,2,3}DTranspose cannot combine strides > 1 with dilation_rate > 1 (documented: "
    "'specifying any dilation_rate value != 1 is incompatible with specifying any stride value != 1'; "
    "ValueError '`strides > 1` not supported in conjunction with `dilation_rate > 1`')"
)
NO_PADDING = (
    "keras.layers.Conv{{1,2,3}}DTranspose take padding 'valid' (PyTorch's 0) or 'same' (PyTorch's "
    "dilation·(kernel−1)/2 where that is a whole number) only; padding {} has no spelling"
)


def keras_padding(params: ConvParams) -> str | None:
    """The case's own ``'valid'``/``'same'``, else the one that means its PyTorch padding on every
    axis, or None where neither does."""
    if params.padding_mode is not None:
        return params.padding_mode if params.padding_mode in KerasLayer.padding_modes else None
    if not any(params.padding):
        return "valid"
    same = [d * (k - 1) for k, d in zip(params.kernel_size, params.dilation)]
    if all(extent % 2 == 0 and p == extent // 2 for p, extent in zip(params.padding, same)):
        return "same"
    return None


def build(weight: np.ndarray, bias: np.ndarray | None, params: ConvParams, dtype: str) -> keras.layers.Layer:
    """The layer for the case, built for the input's rank, its weights loaded through ``set_weights``."""
    layer = LAYERS[params.ndim](
        filters=params.out_channels,
        kernel_size=params.kernel_size,
        strides=params.stride,
        padding=keras_padding(params),
        # with a string padding the case has no output_padding, and Keras users leave it None (the
        # layer then infers it: L·stride for 'same'); 0 would ask for (L−1)·stride + 1
        output_padding=None if params.padding_mode is not None else params.output_padding,
        dilation_rate=params.dilation,
        use_bias=bias is not None,
        dtype=dtype,
    )
    layer.build((None, *(None,) * params.ndim, params.in_channels))
    layer.set_weights([tf_filters(weight)] + ([bias] if bias is not None else []))
    return layer


class KerasLayer(Adapter):
    name = "keras"
    distribution = "keras"
    framework_modules = ("keras", "tensorflow")
    expresses_out_channels = True  # filters = C_out
    variants = VARIANTS  # TensorFlow's kernel paths, pinned (plain ``keras`` runs the CPU's default)
    # padding='same' / 'valid' as written (padding_modes) is not declared yet: with kernel 1 and
    # stride > 1 ('same' or 'valid') Keras 3.15 on TensorFlow 2.21's oneDNN path corrupts the heap
    # (glibc: "free(): invalid next size (fast)", "corrupted size vs. prev_size", SIGABRT) after a few
    # calls in one process, so whether a run sees it depends on what ran before in its worker: no
    # baseline entry can hold that. The library's PyTorch-style cases keep their spelling below.
    padding_modes: frozenset[str] = frozenset()

    def version(self) -> str:
        return keras.__version__

    def build_facts(self) -> dict[str, object]:
        return {"backend": keras.backend.backend(), "tensorflow": tf.__version__, **tensorflow_facts()}

    def unsupported(self, case: Case) -> str | None:
        if case.params.groups != 1:
            return NO_GROUPS
        if any(s > 1 for s in case.params.stride) and any(d > 1 for d in case.params.dilation):
            return NO_STRIDED_DILATION
        if any(d > 1 for d in case.params.dilation) and (own := own_kernel_reason(case.dtype)):
            where = "keras.layers.Conv{1,2,3}DTranspose on TensorFlow's own CPU kernel"
            return NO_DILATION.format(f"{where} ({own})")
        if keras_padding(case.params) is None and case.params.padding_mode is None:
            return NO_PADDING.format(list(case.params.padding))
        return super().unsupported(case)

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        layer = build(weight, bias, params, x.dtype.name)
        out = layer(tf.constant(layouts.channels_first_to_last(x)))
        return np.ascontiguousarray(layouts.channels_last_to_first(keras.ops.convert_to_numpy(out)))

    def vjp(
        self,
        x: np.ndarray,
        weight: np.ndarray,
        bias: np.ndarray | None,
        params: ConvParams,
        grad_out: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        layer = build(weight, bias, params, x.dtype.name)
        tx = tf.constant(layouts.channels_first_to_last(x))
        variables = [layer.kernel.value] + ([layer.bias.value] if bias is not None else [])
        with tf.GradientTape() as tape:
            tape.watch(tx)
            out = layer(tx)
        cotangent = tf.constant(layouts.channels_first_to_last(grad_out))
        grads = tape.gradient(out, [tx, *variables], output_gradients=cotangent)
        grad_x = np.ascontiguousarray(layouts.channels_last_to_first(grads[0].numpy()))
        grad_b = grads[2].numpy() if bias is not None else None
        return grad_x, torch_weight(grads[1].numpy()), grad_b

    def layer_api(self) -> LayerIntrospection:
        def init_sample(cin: int, cout: int, kernel: tuple[int, int], groups: int):
            if groups != 1:
                raise TypeError("keras.layers.Conv2DTranspose has no groups argument")
            layer = keras.layers.Conv2DTranspose(cout, kernel)
            layer.build((None, None, None, cin))
            weight, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
            return torch_weight(weight), bias

        return LayerIntrospection(
            framework=self.name,
            version=self.version(),
            classes=LAYERS,
            init_sample=init_sample,
            weight_layout="kernel (*K, C_out, C_in), bias (C_out,); no groups",
            data_layout="channels-last (N, *S, C) by default (data_format='channels_first' too)",
            documented_init="kernel_initializer='glorot_uniform', bias_initializer='zeros' (constructor "
            "defaults)",
            forward_name="call",
        )
