"""Hypothesis strategies for transposed-convolution configurations, valid and invalid.

A :class:`ConvConfig` holds everything a functional call needs; ``conv_configs`` draws valid ones
small enough for :mod:`tests.helpers.reference_loops`, and ``invalid_configs`` draws configurations
that break exactly one rule of :data:`conformance.spec.RULES` (one strategy per rule id).

The strategies compute validity from the rules as written in the spec's docstrings, not by asking
:func:`conformance.spec.violations`, so tests can check the spec against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from conformance import spec
from tests.helpers.reference_loops import multiply_adds, output_length_loops


@dataclass(frozen=True)
class ConvConfig:
    """One transposed-convolution configuration in the functional (PyTorch) convention."""

    ndim: int
    input_shape: tuple[int, ...]
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1
    bias: bool = True
    #: ``torch.nn.ConvTranspose*d.forward``'s output_size; output_padding is then 0 as written
    output_size: tuple[int, ...] | None = None

    @property
    def op(self) -> str:
        return f"conv_transpose{self.ndim}d"

    @property
    def in_channels(self) -> int:
        return self.input_shape[1]

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.out_channels // max(self.groups, 1), *self.kernel_size)

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(
            output_length_loops(*a)
            for a in zip(
                self.input_shape[2:],
                self.kernel_size,
                self.stride,
                self.padding,
                self.output_padding,
                self.dilation,
                strict=True,
            )
        )

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.input_shape[0], self.out_channels, *self.out_spatial)

    @property
    def work(self) -> int:
        return multiply_adds(self.input_shape, self.weight_shape, self.groups, self.out_spatial)

    def params(self) -> spec.ConvParams:
        return spec.ConvParams.make(
            self.ndim,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            groups=self.groups,
            bias=self.bias,
            output_size=self.output_size,
            input_spatial=self.input_shape[2:],
        )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``conv_transpose{1,2,3}d`` / ``oracle.conv_transpose``."""
        return {
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "groups": self.groups,
            "dilation": self.dilation,
        }

    def arrays(
        self, seed: int = 0, dtype: Any = np.float64
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Random ``(x, weight, bias)`` of this configuration's shapes."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.input_shape).astype(dtype)
        w = rng.standard_normal(self.weight_shape).astype(dtype)
        b = rng.standard_normal(self.out_channels).astype(dtype) if self.bias else None
        return x, w, b

    def __str__(self) -> str:
        return (
            f"{self.op}(input_shape={list(self.input_shape)}, C_out={self.out_channels}, "
            f"kernel={list(self.kernel_size)}, stride={list(self.stride)}, padding={list(self.padding)}, "
            f"output_padding={list(self.output_padding)}, dilation={list(self.dilation)}, "
            f"groups={self.groups}, bias={self.bias})"
        )


# Per-dimensionality bounds that keep the definitional loop fast.
_BOUNDS = {
    1: {"length": 6, "kernel": 4, "stride": 3, "dilation": 3, "batch": 2},
    2: {"length": 4, "kernel": 3, "stride": 3, "dilation": 2, "batch": 2},
    3: {"length": 3, "kernel": 2, "stride": 2, "dilation": 2, "batch": 1},
}
GROUPINGS = ("single", "grouped", "depthwise")


@st.composite
def _axis(draw: st.DrawFn, ndim: int) -> tuple[int, int, int, int, int, int]:
    """(length, kernel, stride, padding, output_padding, dilation) of one valid axis."""
    b = _BOUNDS[ndim]
    length = draw(st.integers(1, b["length"]))
    kernel = draw(st.integers(1, b["kernel"]))
    stride = draw(st.integers(1, b["stride"]))
    dilation = draw(st.integers(1, b["dilation"]))
    # up to max(stride, dilation) - 1: covers output_padding >= stride when dilation is larger
    output_padding = draw(st.integers(0, max(stride, dilation) - 1))
    # any padding that leaves at least one output element, beyond d·(k-1) included
    full = (length - 1) * stride + dilation * (kernel - 1) + output_padding + 1
    padding = draw(st.integers(0, (full - 1) // 2))
    return length, kernel, stride, padding, output_padding, dilation


@st.composite
def conv_configs(
    draw: st.DrawFn,
    ndims: tuple[int, ...] = (1, 2, 3),
    max_size: int = 1500,
    max_work: int = 12_000,
    max_groups: int = 4,
    max_per_group: int = 3,
    bias: bool | None = None,
) -> ConvConfig:
    """A valid configuration with at most ``max_size`` output elements and ``max_work`` multiply-adds.

    Groupings: a single group, several groups with C_in/g and C_out/g each 1..``max_per_group``
    (C_out/g > 1 included), and depthwise (C_in == groups).
    """
    ndim = draw(st.sampled_from(ndims))
    grouping = draw(st.sampled_from(GROUPINGS))
    groups = 1 if grouping == "single" else draw(st.integers(2, max_groups))
    cin_g = 1 if grouping == "depthwise" else draw(st.integers(1, max_per_group))
    cout_g = draw(st.integers(1, max_per_group))
    axes = [draw(_axis(ndim)) for _ in range(ndim)]
    length, kernel, stride, padding, output_padding, dilation = (tuple(v) for v in zip(*axes, strict=True))
    n = draw(st.integers(1, _BOUNDS[ndim]["batch"]))
    config = ConvConfig(
        ndim=ndim,
        input_shape=(n, groups * cin_g, *length),
        out_channels=groups * cout_g,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()) if bias is None else bias,
    )
    assume(math.prod(config.output_shape) <= max_size and config.work <= max_work)
    return config


# --- invalid configurations: exactly one rule broken ---------------------------------------------


def _set_axis(values: tuple[int, ...], axis: int, value: int) -> tuple[int, ...]:
    return (*values[:axis], value, *values[axis + 1 :])


@st.composite
def _breaks_input_rank(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    # one axis too many (rank spatial+3); rank spatial+1 would be an unbatched input to torch
    return replace(base, input_shape=(*base.input_shape, draw(st.integers(1, 3))))


@st.composite
def _breaks_stride_positive(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    return replace(
        base,
        stride=_set_axis(base.stride, axis, draw(st.integers(-2, 0))),
        output_padding=_set_axis(base.output_padding, axis, 0),  # stays < dilation
    )


@st.composite
def _breaks_dilation_positive(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    return replace(
        base,
        dilation=_set_axis(base.dilation, axis, draw(st.integers(-2, 0))),
        output_padding=_set_axis(base.output_padding, axis, 0),  # stays < stride
    )


@st.composite
def _breaks_groups_positive(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    return replace(base, groups=draw(st.integers(-2, 0)))


@st.composite
def _breaks_padding_nonnegative(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    return replace(base, padding=_set_axis(base.padding, axis, draw(st.integers(-3, -1))))


@st.composite
def _breaks_output_padding_nonnegative(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    length, k, s, d = (
        base.input_shape[2 + axis],
        base.kernel_size[axis],
        base.stride[axis],
        base.dilation[axis],
    )
    # with padding 0 the axis keeps (L-1)·s + d·(k-1) + 1 - 1 output elements: needs to be >= 1
    assume((length - 1) * s + d * (k - 1) >= 1)
    return replace(
        base,
        output_padding=_set_axis(base.output_padding, axis, -1),
        padding=_set_axis(base.padding, axis, 0),
    )


@st.composite
def _breaks_output_padding_bound(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    low = max(base.stride[axis], base.dilation[axis])
    return replace(base, output_padding=_set_axis(base.output_padding, axis, draw(st.integers(low, low + 2))))


@st.composite
def _breaks_in_channels_divisible(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    groups = draw(st.integers(2, 4))
    cin = draw(st.integers(1, 3 * groups).filter(lambda c: c % groups))  # C_in < groups included
    cout_g = draw(st.integers(1, 3))
    return replace(
        base,
        groups=groups,
        input_shape=(base.input_shape[0], cin, *base.input_shape[2:]),
        out_channels=groups * cout_g,
    )


@st.composite
def _breaks_out_channels_divisible(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    groups = draw(st.integers(2, 4))
    cout = draw(st.integers(1, 3 * groups).filter(lambda c: c % groups))
    return replace(
        base,
        groups=groups,
        input_shape=(base.input_shape[0], groups * draw(st.integers(1, 2)), *base.input_shape[2:]),
        out_channels=cout,
    )


@st.composite
def _breaks_output_size_positive(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    length, k, s, op, d = (
        base.input_shape[2 + axis],
        base.kernel_size[axis],
        base.stride[axis],
        base.output_padding[axis],
        base.dilation[axis],
    )
    full = (length - 1) * s + d * (k - 1) + op + 1
    padding = (full + 1) // 2 + draw(st.integers(0, 2))  # full - 2·padding <= 0
    return replace(base, padding=_set_axis(base.padding, axis, padding))


@st.composite
def _breaks_input_spatial_nonempty(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    shape = list(base.input_shape)
    shape[2 + axis] = 0
    return replace(base, input_shape=tuple(shape))


@st.composite
def _breaks_kernel_size_positive(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    length, s, op, d = (
        base.input_shape[2 + axis],
        base.stride[axis],
        base.output_padding[axis],
        base.dilation[axis],
    )
    # with kernel 0 and padding 0 the axis keeps (L-1)·s - d + op + 1 elements: needs to be >= 1
    assume((length - 1) * s - d + op + 1 >= 1)
    return replace(
        base, kernel_size=_set_axis(base.kernel_size, axis, 0), padding=_set_axis(base.padding, axis, 0)
    )


@st.composite
def _breaks_output_size_reachable(draw: st.DrawFn, base: ConvConfig) -> ConvConfig:
    axis = draw(st.integers(0, base.ndim - 1))
    low = tuple(
        output_length_loops(length, k, s, p, 0, d)
        for length, k, s, p, d in zip(
            base.input_shape[2:], base.kernel_size, base.stride, base.padding, base.dilation
        )
    )
    assume(min(low) >= 1)
    # one axis past either end of [low, low + stride - 1]
    size = draw(st.sampled_from([low[axis] - 1, low[axis] + base.stride[axis]]))
    assume(size >= 0)
    return replace(base, output_padding=(0,) * base.ndim, output_size=_set_axis(low, axis, size))


INVALID_STRATEGIES = {
    "input_rank": _breaks_input_rank,
    "input_spatial_nonempty": _breaks_input_spatial_nonempty,
    "kernel_size_positive": _breaks_kernel_size_positive,
    "stride_positive": _breaks_stride_positive,
    "dilation_positive": _breaks_dilation_positive,
    "groups_positive": _breaks_groups_positive,
    "padding_nonnegative": _breaks_padding_nonnegative,
    "output_padding_nonnegative": _breaks_output_padding_nonnegative,
    "output_padding_bound": _breaks_output_padding_bound,
    "in_channels_divisible": _breaks_in_channels_divisible,
    "out_channels_divisible": _breaks_out_channels_divisible,
    "output_size_positive": _breaks_output_size_positive,
    "output_size_reachable": _breaks_output_size_reachable,
}
#: rules whose violation torch.nn.functional cannot express (C_out is weight.shape[1] * groups there)
NOT_EXPRESSIBLE_IN_TORCH_FUNCTIONAL = frozenset({"out_channels_divisible"})


def invalid_config(rule: str, ndims: tuple[int, ...] = (1, 2, 3)) -> st.SearchStrategy[ConvConfig]:
    """Configurations that break ``rule`` and no other."""
    return conv_configs(ndims=ndims, max_size=400, max_work=4000).flatmap(INVALID_STRATEGIES[rule])


def invalid_configs(
    rules: tuple[str, ...] | None = None, ndims: tuple[int, ...] = (1, 2, 3)
) -> st.SearchStrategy[tuple[str, ConvConfig]]:
    """``(rule id, configuration breaking exactly that rule)``, over ``rules`` (default: all of RULES)."""
    chosen = tuple(spec.RULES) if rules is None else rules
    return st.one_of(*(invalid_config(rule, ndims).map(lambda c, r=rule: (r, c)) for rule in chosen))


# --- hand-written minimal configurations ---------------------------------------------------------


def minimal_valid(ndim: int = 1) -> ConvConfig:
    """``(1, 2, 4, ...)`` input, 2 output channels, kernel 3, everything else default."""
    return ConvConfig(
        ndim=ndim,
        input_shape=(1, 2, *(4,) * ndim),
        out_channels=2,
        kernel_size=(3,) * ndim,
        stride=(1,) * ndim,
        padding=(0,) * ndim,
        output_padding=(0,) * ndim,
        dilation=(1,) * ndim,
    )


def minimal_invalid(rule: str, ndim: int = 1) -> ConvConfig:
    """:func:`minimal_valid` with one change that breaks ``rule``.

    Per-axis rules are broken on the last axis only.
    """
    base = minimal_valid(ndim)
    last = ndim - 1
    changes: dict[str, dict[str, Any]] = {
        "input_rank": {"input_shape": (*base.input_shape, 4)},
        "input_spatial_nonempty": {"input_shape": (*base.input_shape[:-1], 0)},
        "kernel_size_positive": {"kernel_size": _set_axis(base.kernel_size, last, 0)},
        "stride_positive": {"stride": _set_axis(base.stride, last, 0)},
        "dilation_positive": {"dilation": _set_axis(base.dilation, last, 0)},
        "groups_positive": {"groups": 0},
        "padding_nonnegative": {"padding": _set_axis(base.padding, last, -1)},
        "output_padding_nonnegative": {"output_padding": _set_axis(base.output_padding, last, -1)},
        "output_padding_bound": {"output_padding": _set_axis(base.output_padding, last, 1)},
        "in_channels_divisible": {"input_shape": (1, 3, *base.input_shape[2:]), "groups": 2},
        "out_channels_divisible": {"out_channels": 3, "groups": 2},
        # (4-1)·1 + 1·(3-1) + 1 - 2·3 = 0 output elements
        "output_size_positive": {"padding": _set_axis(base.padding, last, 3)},
        # reachable: exactly (4-1)·1 + 1·(3-1) + 1 = 6 (stride 1 leaves no room)
        "output_size_reachable": {"output_size": _set_axis((6,) * ndim, last, 7)},
    }
    return replace(base, **changes[rule])


# --- the wider space ------------------------------------------------------------------------------


@st.composite
def asymmetric_configs(draw: st.DrawFn) -> ConvConfig:
    """A valid configuration whose padding is redrawn as (lo, hi) pairs, lo != hi on some axis."""
    base = draw(conv_configs(max_size=600, max_work=6000))
    pairs = []
    for length, k, s, d, op in zip(
        base.input_shape[2:], base.kernel_size, base.stride, base.dilation, base.output_padding
    ):
        full = (length - 1) * s + d * (k - 1) + 1 + op
        lo = draw(st.integers(0, full - 1))
        hi = draw(st.integers(0, full - 1 - lo))  # at least one output element
        pairs.append((lo, hi))
    assume(any(lo != hi for lo, hi in pairs))
    return replace(base, padding=tuple(pairs))
