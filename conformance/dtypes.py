"""Dtype names, their NumPy representations and their rounding units.

bfloat16 has no native NumPy dtype; ``ml_dtypes.bfloat16`` (the one JAX and ONNX use) stands in,
so every adapter receives and returns arrays whose dtype names the case's dtype exactly.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

NUMPY_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}

# Unit roundoff u = eps / 2: the largest relative error of one correctly rounded operation.
UNIT_ROUNDOFF: dict[str, float] = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
}

#: each dtype's smallest positive subnormal: a product, or a rounded result, in the subnormal range
#: errs by up to half of it however small its magnitude bound
SMALLEST_SUBNORMAL: dict[str, float] = {
    "float64": 2.0**-1074,
    "float32": 2.0**-149,
    "float16": 2.0**-24,
    "bfloat16": 2.0**-133,
}

ITEMSIZE: dict[str, int] = {name: dt.itemsize for name, dt in NUMPY_DTYPES.items()}


def numpy_dtype(name: str) -> np.dtype:
    return NUMPY_DTYPES[name]


def dtype_name(dtype: np.dtype | type) -> str:
    """The case-format name of a NumPy dtype (``bfloat16`` for ml_dtypes' type)."""
    found = _NAMES.get(dtype)  # (asked of every array judged: a lookup, not four comparisons)
    if found is not None:
        return found
    dt = np.dtype(dtype)
    for name, candidate in NUMPY_DTYPES.items():
        if dt == candidate:
            return name
    return dt.name


_NAMES: dict[np.dtype | type, str] = {dt: name for name, dt in NUMPY_DTYPES.items()}


def to_float64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(np.float64)
