"""Reference semantics of transposed convolution: parameters, output shapes and validity rules.

The reference is PyTorch's functional ``conv_transpose{1,2,3}d``: data ``(N, C_in, *spatial)``,
weight ``(C_in, C_out / groups, *kernel)``, bias ``(C_out,)``. Every other module asks this one
whether a configuration is valid and what shape it produces; nothing else restates these rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

OPS: dict[str, int] = {"conv_transpose1d": 1, "conv_transpose2d": 2, "conv_transpose3d": 3}
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "float64")
PER_AXIS_FIELDS: tuple[str, ...] = ("kernel_size", "stride", "padding", "output_padding", "dilation")


@dataclass(frozen=True)
class Rule:
    """One validity rule. ``field`` is the case field a violation is reported against."""

    id: str
    field: str
    text: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule("input_rank", "input_shape", "input rank must equal spatial dims + 2 (N, C_in, *spatial)"),
        Rule("input_spatial_nonempty", "input_shape", "every spatial input length must be >= 1"),
        Rule("kernel_size_positive", "kernel_size", "kernel_size must be >= 1 on every axis"),
        Rule("stride_positive", "stride", "stride must be >= 1 on every axis"),
        Rule("dilation_positive", "dilation", "dilation must be >= 1 on every axis"),
        Rule("groups_positive", "groups", "groups must be >= 1"),
        Rule("padding_nonnegative", "padding", "padding must be >= 0 on every axis"),
        Rule("output_padding_nonnegative", "output_padding", "output_padding must be >= 0 on every axis"),
        Rule(
            "output_padding_bound",
            "output_padding",
            "output_padding must be smaller than stride or smaller than dilation on every axis",
        ),
        Rule("in_channels_divisible", "groups", "C_in must be divisible by groups"),
        Rule("out_channels_divisible", "groups", "C_out must be divisible by groups"),
        Rule("output_size_positive", "padding", "output length must be >= 1 on every axis"),
    )
}


@dataclass(frozen=True)
class Violation:
    rule: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


def per_axis(value: int | Sequence[int], ndim: int, name: str = "value") -> tuple[int, ...]:
    """Expand an int to ``ndim`` axes; check a sequence has exactly ``ndim`` entries."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a list of {ndim} ints, got a bool")
    if isinstance(value, int):
        return (value,) * ndim
    values = tuple(value)
    if len(values) != ndim or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be an int or a list of {ndim} ints, got {list(values)!r}")
    return values


@dataclass(frozen=True)
class ConvParams:
    """Hyper-parameters of one transposed convolution, per-axis tuples throughout.

    ``in_channels`` is the input's channel count and ``out_channels`` the requested C_out; both
    are carried explicitly because the functional weight layout only implies C_out.
    """

    ndim: int
    in_channels: int
    out_channels: int
    kernel_size: tuple[int, ...]
    stride: tuple[int, ...] = field(default=())
    padding: tuple[int, ...] = field(default=())
    output_padding: tuple[int, ...] = field(default=())
    dilation: tuple[int, ...] = field(default=())
    groups: int = 1
    bias: bool = True

    @classmethod
    def make(
        cls,
        ndim: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> ConvParams:
        return cls(
            ndim=ndim,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=per_axis(kernel_size, ndim, "kernel_size"),
            stride=per_axis(stride, ndim, "stride"),
            padding=per_axis(padding, ndim, "padding"),
            output_padding=per_axis(output_padding, ndim, "output_padding"),
            dilation=per_axis(dilation, ndim, "dilation"),
            groups=groups,
            bias=bias,
        )

    @property
    def op(self) -> str:
        return f"conv_transpose{self.ndim}d"

    def weight_shape(self) -> tuple[int, ...]:
        """Canonical weight shape ``(C_in, C_out / groups, *kernel)``; groups < 1 counts as 1."""
        return (self.in_channels, self.out_channels // max(self.groups, 1), *self.kernel_size)

    def as_dict(self) -> dict:
        return {
            "op": self.op,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "output_padding": list(self.output_padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.bias,
        }


def output_length(
    length: int, kernel: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    """``(L - 1)·s - 2p + d·(k - 1) + output_padding + 1``."""
    return (length - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def output_spatial(spatial: Sequence[int], p: ConvParams) -> tuple[int, ...]:
    return tuple(
        output_length(length, k, s, pad, op, d)
        for length, k, s, pad, op, d in zip(
            spatial, p.kernel_size, p.stride, p.padding, p.output_padding, p.dilation, strict=True
        )
    )


def violations(input_shape: Sequence[int], p: ConvParams) -> list[Violation]:
    """Every rule the configuration breaks, in a stable order; empty when it is valid."""
    found: list[Violation] = []

    def broken(rule: str, detail: str) -> None:
        found.append(Violation(rule, RULES[rule].field, f"{RULES[rule].text} ({detail})"))

    rank_ok = len(input_shape) == p.ndim + 2
    if not rank_ok:
        broken("input_rank", f"{p.op} needs rank {p.ndim + 2}, input_shape has rank {len(input_shape)}")
    elif any(length < 1 for length in input_shape[2:]):
        broken("input_spatial_nonempty", f"input spatial {list(input_shape[2:])}")
    for name, low, rule in (
        ("kernel_size", 1, "kernel_size_positive"),
        ("stride", 1, "stride_positive"),
        ("dilation", 1, "dilation_positive"),
        ("padding", 0, "padding_nonnegative"),
        ("output_padding", 0, "output_padding_nonnegative"),
    ):
        values = getattr(p, name)
        if any(v < low for v in values):
            broken(rule, f"{name}={list(values)}")
    if p.groups < 1:
        broken("groups_positive", f"groups={p.groups}")
    bad_axes = [
        i for i, (op, s, d) in enumerate(zip(p.output_padding, p.stride, p.dilation)) if op >= s and op >= d
    ]
    if bad_axes:
        broken(
            "output_padding_bound",
            f"output_padding={list(p.output_padding)}, stride={list(p.stride)}, "
            f"dilation={list(p.dilation)}, axes {bad_axes}",
        )
    if p.groups >= 1:
        if p.in_channels % p.groups:
            broken("in_channels_divisible", f"C_in={p.in_channels}, groups={p.groups}")
        if p.out_channels % p.groups:
            broken("out_channels_divisible", f"C_out={p.out_channels}, groups={p.groups}")
    if (
        rank_ok
        and all(s >= 1 for s in p.stride)
        and all(d >= 1 for d in p.dilation)
        and not any(length < 1 for length in input_shape[2:])
    ):
        out = output_spatial(input_shape[2:], p)
        if any(o < 1 for o in out):
            broken("output_size_positive", f"input spatial {list(input_shape[2:])} gives output {list(out)}")
    return found


def output_shape(input_shape: Sequence[int], p: ConvParams) -> tuple[int, ...]:
    """Output shape ``(N, C_out, *spatial_out)`` of a valid configuration; ValueError otherwise."""
    broken = violations(input_shape, p)
    if broken:
        raise ValueError("; ".join(str(v) for v in broken))
    return (input_shape[0], p.out_channels, *output_spatial(input_shape[2:], p))


def reduction_length(p: ConvParams) -> int:
    """Largest number of products summed into one output element: C_in/groups · prod(kernel)."""
    n = p.in_channels // max(p.groups, 1)
    for k in p.kernel_size:
        n *= k
    return max(n, 1)


def gradient_reduction_lengths(input_shape: Sequence[int], p: ConvParams) -> dict[str, int]:
    """Largest number of products summed into one element of each gradient."""
    kernel = 1
    for k in p.kernel_size:
        kernel *= k
    batch_in = input_shape[0]
    for length in input_shape[2:]:
        batch_in *= length
    batch_out = input_shape[0]
    for length in output_spatial(input_shape[2:], p):
        batch_out *= length
    return {
        "grad_input": max(p.out_channels // max(p.groups, 1) * kernel, 1),
        "grad_weight": max(batch_in, 1),
        "grad_bias": max(batch_out, 1),
    }
