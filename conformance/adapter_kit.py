"""What every adapter writes, written once: bfloat16 to and from float32 or raw bits, channels-last
data and group-aware weight layouts from ``params``, and the adapter skeleton that
``conformance new-adapter NAME`` writes.

The harness hands an adapter NumPy arrays in the canonical (PyTorch) layouts, with bfloat16 as
``ml_dtypes.bfloat16``. Frameworks that have no NumPy bfloat16 take and return it as float32 or as
the raw 16 bits in a uint16 array (PaddlePaddle's ``to_tensor`` rejects ``ml_dtypes`` arrays and
its ``.numpy()`` gives uint16); the helpers below convert exactly, with no rounding surprises:
float32 -> bfloat16 rounds to nearest even, like every framework's cast.
"""

from __future__ import annotations

import re
from pathlib import Path

import ml_dtypes
import numpy as np

from conformance import layouts
from conformance.dtypes import dtype_name
from conformance.spec import ConvParams

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
# beside this module, shipped through MANIFEST.in (templates/ belongs to the reports)
TEMPLATE = Path(__file__).resolve().parent / "adapter_skeleton.py.txt"


def is_bfloat16(a: np.ndarray) -> bool:
    return np.asarray(a).dtype == BFLOAT16


def bfloat16_to_bits(a: np.ndarray) -> np.ndarray:
    """``ml_dtypes.bfloat16`` array -> uint16 array of the same bits (what uint16-bfloat16 APIs take)."""
    a = np.asarray(a)
    if a.dtype != BFLOAT16:
        raise TypeError(f"bfloat16_to_bits: expected a bfloat16 array, got {a.dtype}")
    return np.ascontiguousarray(a).view(np.uint16)


def bits_to_bfloat16(bits: np.ndarray) -> np.ndarray:
    """uint16 (or int16) array of bfloat16 bits -> ``ml_dtypes.bfloat16`` array with those values."""
    bits = np.asarray(bits)
    if bits.dtype not in (np.uint16, np.int16):
        raise TypeError(f"bits_to_bfloat16: expected uint16 bits, got {bits.dtype}")
    return np.ascontiguousarray(bits).view(BFLOAT16)


def bfloat16_to_float32(a: np.ndarray) -> np.ndarray:
    """Exact: every bfloat16 value is a float32 value."""
    return np.asarray(a).astype(np.float32)


def float32_to_bfloat16(a: np.ndarray) -> np.ndarray:
    """Round to nearest even, as frameworks cast."""
    return np.asarray(a).astype(BFLOAT16)


def to_numpy_dtype(a: np.ndarray, like: np.ndarray | str) -> np.ndarray:
    """A framework's result as a NumPy array of ``like``'s dtype (an array or a case dtype name):
    uint16 bits become bfloat16 by reinterpretation, anything else is cast. Use it only where the
    framework documents returning that representation, so that a wrong dtype still fails."""
    want = dtype_name(like.dtype) if isinstance(like, np.ndarray) else like
    a = np.asarray(a)
    if want == "bfloat16" and a.dtype in (np.uint16, np.int16):
        return bits_to_bfloat16(a)
    return a.astype(BFLOAT16 if want == "bfloat16" else np.dtype(want))


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """``(N, C, *S)`` -> ``(N, *S, C)``, contiguous."""
    return np.ascontiguousarray(layouts.channels_first_to_last(x))


def from_channels_last(y: np.ndarray) -> np.ndarray:
    """``(N, *S, C)`` -> ``(N, C, *S)``, contiguous."""
    return np.ascontiguousarray(layouts.channels_last_to_first(y))


def weight_to_channels_last(weight: np.ndarray, params: ConvParams) -> np.ndarray:
    """Canonical ``(C_in, C_out/g, *K)`` -> ``(C_out, *K, C_in/g)`` (MLX's layout), per group.

    A configuration that breaks a divisibility rule has no value-preserving conversion; it gets
    the shape a user of that framework would pass (values repeated), so the framework judges it."""
    g = params.groups
    if g >= 1 and params.in_channels % g == 0 and params.out_channels % g == 0:
        return layouts.torch_weight_to_channels_last(weight, g)
    shape = layouts.channels_last_weight_shape(params.in_channels, params.out_channels, params.kernel_size, g)
    return np.resize(weight, shape)


def weight_from_channels_last(weight: np.ndarray, params: ConvParams) -> np.ndarray:
    """Inverse of :func:`weight_to_channels_last` (for gradients)."""
    return layouts.channels_last_weight_to_torch(weight, params.groups)


def weight_to_grouped_oi(weight: np.ndarray, params: ConvParams) -> np.ndarray:
    """Canonical -> ``(C_out, C_in/g, *K)`` (JAX / ordinary grouped convolutions' layout)."""
    return layouts.torch_weight_to_grouped_oi(weight, params.groups)


def weight_from_grouped_oi(weight: np.ndarray, params: ConvParams) -> np.ndarray:
    return layouts.grouped_oi_weight_to_torch(weight, params.groups)


def per_axis_kwargs(params: ConvParams, scalar_1d: bool = False) -> dict[str, int | tuple[int, ...]]:
    """``stride``, ``padding``, ``output_padding``, ``dilation`` as keyword arguments (tuples; plain
    ints for 1-d when the API wants them, ``scalar_1d=True``), and ``groups``."""

    def value(axes: tuple[int, ...]) -> int | tuple[int, ...]:
        return axes[0] if scalar_1d and params.ndim == 1 else tuple(axes)

    return {
        "stride": value(params.stride),
        "padding": value(params.padding),
        "output_padding": value(params.output_padding),
        "dilation": value(params.dilation),
        "groups": params.groups,
    }


def class_name_for(name: str) -> str:
    """``'my-conv.v2'`` -> ``'MyConvV2Adapter'``."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    return "".join(w[:1].upper() + w[1:] for w in words) + "Adapter"


def write_skeleton(name: str, out: str | Path | None = None) -> tuple[Path, str]:
    """Write the commented adapter skeleton for ``name``; returns (path, class name). Refuses to
    overwrite a file."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
        raise ValueError(f"adapter name {name!r}: use letters, digits, '_', '.', '-', starting with a letter")
    path = Path(out) if out else Path(f"{re.sub(r'[^A-Za-z0-9_]', '_', name)}_adapter.py")
    if path.exists():
        raise FileExistsError(f"{path} exists; give --out FILE or remove it")
    class_name = class_name_for(name)
    text = TEMPLATE.read_text(encoding="utf-8")
    text = text.replace("{{NAME}}", name).replace("{{CLASS}}", class_name).replace("{{FILE}}", path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path, class_name
