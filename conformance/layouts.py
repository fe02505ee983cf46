"""Layout conversions between the canonical (PyTorch) layouts and other frameworks', group-aware.

Canonical: data ``(N, C, *S)``, weight ``(C_in, C_out/groups, *K)``.
Channels-last (MLX): data ``(N, *S, C)``, weight ``(C_out, *K, C_in/groups)``.
Grouped OI (JAX ``conv_general_dilated``, ordinary grouped convolutions): ``(C_out, C_in/groups, *K)``.

For a configuration that breaks a divisibility rule no value-preserving conversion exists; the
``*_shape`` helpers then give the shape a user of that framework would pass, so an adapter can
still ask the framework to judge the configuration.

Memory layouts of the generated arrays (a case's ``layout``): the same shape and values in
canonical order, with other strides. ``contiguous`` (row-major), ``channels_last`` (the channel
axis, axis 1 of data and weight, innermost in memory: PyTorch's ``torch.channels_last`` /
``channels_last_3d`` memory formats, and MLX's native order), ``strided`` (a view of every second
element of a buffer twice as long on the last axis: a sliced tensor, no contiguous order at all).
"""

from __future__ import annotations

import numpy as np

LAYOUTS: tuple[str, ...] = ("contiguous", "channels_last", "strided")


def with_layout(array: np.ndarray, layout: str, channel_axis: int = 1) -> np.ndarray:
    """``array``'s values with ``layout``'s strides (over a buffer of its own).

    ``channel_axis``: the axis that ``channels_last`` puts innermost (0 for an unbatched input).
    """
    if layout == "contiguous" or array.ndim < 2:
        return np.ascontiguousarray(array)
    if layout == "channels_last":
        moved = np.ascontiguousarray(np.moveaxis(array, channel_axis, -1))
        return np.moveaxis(moved, -1, channel_axis)
    if layout == "strided":
        buffer = np.zeros((*array.shape[:-1], 2 * array.shape[-1]), dtype=array.dtype)
        view = buffer[..., ::2]
        view[...] = array
        return view
    raise ValueError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")


def layout_of(array: np.ndarray, channel_axis: int = 1) -> str:
    """Which of :data:`LAYOUTS` ``array``'s strides are (``strided`` for any other non-contiguous one)."""
    if array.flags.c_contiguous:
        return "contiguous"
    if array.ndim >= 2 and np.moveaxis(array, channel_axis, -1).flags.c_contiguous:
        return "channels_last"
    return "strided"


def channels_first_to_last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def channels_last_to_first(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, -1, 1)


def _check_groups(weight: np.ndarray, groups: int) -> tuple[int, int, tuple[int, ...]]:
    cin, cout_g, *kernel = weight.shape
    if groups < 1 or cin % groups:
        raise ValueError(f"weight with C_in={cin} cannot be split into groups={groups}")
    return cin // groups, cout_g, tuple(kernel)


def torch_weight_to_channels_last(weight: np.ndarray, groups: int) -> np.ndarray:
    """``(C_in, C_out/g, *K)`` -> ``(C_out, *K, C_in/g)`` (MLX's transposed-conv weight)."""
    cin_g, cout_g, kernel = _check_groups(weight, groups)
    w = weight.reshape(groups, cin_g, cout_g, *kernel)
    w = np.moveaxis(w, 1, -1)  # (g, C_out/g, *K, C_in/g)
    return np.ascontiguousarray(w.reshape(groups * cout_g, *kernel, cin_g))


def channels_last_weight_to_torch(weight: np.ndarray, groups: int) -> np.ndarray:
    """Inverse of :func:`torch_weight_to_channels_last`."""
    cout, *kernel, cin_g = weight.shape
    if groups < 1 or cout % groups:
        raise ValueError(f"weight with C_out={cout} cannot be split into groups={groups}")
    w = weight.reshape(groups, cout // groups, *kernel, cin_g)
    w = np.moveaxis(w, -1, 1)  # (g, C_in/g, C_out/g, *K)
    return np.ascontiguousarray(w.reshape(groups * cin_g, cout // groups, *kernel))


def torch_weight_to_grouped_oi(weight: np.ndarray, groups: int) -> np.ndarray:
    """``(C_in, C_out/g, *K)`` -> ``(C_out, C_in/g, *K)``: each group's matrix transposed."""
    cin_g, cout_g, kernel = _check_groups(weight, groups)
    w = weight.reshape(groups, cin_g, cout_g, *kernel).swapaxes(1, 2)
    return np.ascontiguousarray(w.reshape(groups * cout_g, cin_g, *kernel))


def grouped_oi_weight_to_torch(weight: np.ndarray, groups: int) -> np.ndarray:
    """Inverse of :func:`torch_weight_to_grouped_oi`."""
    cout, cin_g, *kernel = weight.shape
    if groups < 1 or cout % groups:
        raise ValueError(f"weight with C_out={cout} cannot be split into groups={groups}")
    w = weight.reshape(groups, cout // groups, cin_g, *kernel).swapaxes(1, 2)
    return np.ascontiguousarray(w.reshape(groups * cin_g, cout // groups, *kernel))


def channels_last_weight_shape(
    in_channels: int, out_channels: int, kernel: tuple[int, ...], groups: int
) -> tuple[int, ...]:
    """Shape of a channels-last weight for any configuration (groups < 1 counts as 1)."""
    return (out_channels, *kernel, in_channels // max(groups, 1))
