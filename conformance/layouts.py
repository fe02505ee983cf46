"""Layout conversions between the canonical (PyTorch) layouts and other frameworks', group-aware.

Canonical: data ``(N, C, *S)``, weight ``(C_in, C_out/groups, *K)``.
Channels-last (MLX): data ``(N, *S, C)``, weight ``(C_out, *K, C_in/groups)``.
Grouped OI (JAX ``conv_general_dilated``, ordinary grouped convolutions): ``(C_out, C_in/groups, *K)``.

For a configuration that breaks a divisibility rule no value-preserving conversion exists; the
``*_shape`` helpers then give the shape a user of that framework would pass, so an adapter can
still ask the framework to judge the configuration.
"""

from __future__ import annotations

import numpy as np


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
