"""Every adapter call gets its own copies of the inputs, and the harness checks them afterwards.

An adapter (or the framework under it) that writes into its inputs would otherwise change what the
oracle, a second check or the next adapter sees, so verdicts would depend on which adapters ran and
in what order. The pristine arrays stay with the harness, read-only; an adapter gets fresh copies
with exactly the same strides (a channels-last or strided view stays one), and a call that changed
them fails, naming the input.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def frozen(array: np.ndarray) -> np.ndarray:
    """``array`` made read-only, so harness code cannot change a pristine input by mistake."""
    array.flags.writeable = False
    return array


def copy_exact(array: np.ndarray) -> np.ndarray:
    """A writable copy with the same shape, dtype and strides (over a buffer of its own)."""
    if array.size == 0 or array.flags.c_contiguous:
        return array.copy()  # (C order: ndarray.copy's default)
    low = sum(s * (n - 1) for s, n in zip(array.strides, array.shape) if s < 0)
    high = sum(s * (n - 1) for s, n in zip(array.strides, array.shape) if s > 0) + array.itemsize
    buffer = bytearray(high - low)
    copy = np.ndarray(array.shape, array.dtype, buffer=buffer, offset=-low, strides=array.strides)
    copy[...] = array
    return copy


def fresh(arrays: Mapping[str, np.ndarray | None]) -> dict[str, np.ndarray | None]:
    """Copies for one call: name -> copy (None stays None)."""
    return {name: None if a is None else copy_exact(a) for name, a in arrays.items()}


def modified(pristine: Mapping[str, np.ndarray | None], handed: Mapping[str, np.ndarray | None]) -> str:
    """Which inputs the call changed, e.g. "x (96 of 96 elements), weight (72 of 72)"; "" if none.

    Compared bit for bit, so a NaN written over a NaN or -0.0 over 0.0 counts too.
    """
    changes = []
    for name, before in pristine.items():
        after = handed.get(name)
        if before is None or after is None:
            continue
        if before.shape != after.shape or before.dtype != after.dtype:
            changes.append(f"{name} (shape or dtype changed to {after.shape} {after.dtype})")
            continue
        if before.tobytes() == after.tobytes():  # the usual answer, from one memcmp
            continue
        width = np.dtype(f"u{before.itemsize}")
        differ = np.ascontiguousarray(before).view(width) != np.ascontiguousarray(after).view(width)
        count = int(np.count_nonzero(differ))
        if count:
            changes.append(f"{name} ({count} of {before.size} elements)")
    return ", ".join(changes)
