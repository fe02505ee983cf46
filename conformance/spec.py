"""Reference semantics of transposed convolution: parameters, output shapes and validity rules.

The reference is PyTorch's functional ``conv_transpose{1,2,3}d``: data ``(N, C_in, *spatial)`` or
unbatched ``(C_in, *spatial)``, weight ``(C_in, C_out / groups, *kernel)``, bias ``(C_out,)``. Every
other module asks this one whether a configuration is valid and what shape it produces; nothing
else restates these rules.

Beyond PyTorch's parameters the space holds what other frameworks take, each resolved here to the
one explicit form the oracle computes: per-axis padding pairs ``(lo, hi)`` cropped from the start
and the end of the full output, and an output_padding added at the end.

- ``padding: [[lo, hi], ...]``: asymmetric padding (JAX, ONNX ``pads``, TensorFlow, OpenVINO).
- ``padding: same | valid`` follow TensorFlow / Keras / JAX (``jax.lax.conv_transpose``): ``same``
  gives ``L·s``; with the effective kernel ``e = d·(k−1)+1`` the total crop ``e − s`` is split with
  the smaller half first (``lo = (e−s)//2``, TensorFlow's rule); when ``e < s`` nothing is cropped
  and the ``s − e`` missing elements are added at the end. ``valid`` gives ``L·s + max(e − s, 0)``:
  no crop, ``max(s − e, 0)`` added at the end.
- ``padding: same_upper | same_lower`` follow ONNX ``auto_pad`` (output ``L·s``): an odd total crop
  puts its extra element at the end (SAME_UPPER) or at the beginning (SAME_LOWER); ``e < s`` as for
  ``same``. (ONNX's ``VALID`` crops nothing, ``(L−1)·s + e``: the explicit form ``padding: 0``.)
- ``output_size`` (``torch.nn.ConvTranspose*d.forward``) becomes output_padding by PyTorch's rule
  (``_ConvTransposeNd._output_padding``): ``output_size − min`` where ``min`` is the length without
  output_padding, reachable for ``min <= output_size <= min + stride − 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

OPS: dict[str, int] = {"conv_transpose1d": 1, "conv_transpose2d": 2, "conv_transpose3d": 3}
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "float64")
PER_AXIS_FIELDS: tuple[str, ...] = ("kernel_size", "stride", "padding", "output_padding", "dilation")
#: string padding: TensorFlow / Keras / JAX conventions, then ONNX auto_pad's (module docstring)
PADDING_MODES: tuple[str, ...] = ("same", "valid", "same_upper", "same_lower")


@dataclass(frozen=True)
class Rule:
    """One validity rule. ``field`` is the case field a violation is reported against."""

    id: str
    field: str
    text: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "input_rank",
            "input_shape",
            "input rank must be spatial dims + 2 (N, C_in, *spatial) or + 1 (unbatched C_in, *spatial)",
        ),
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
        Rule(
            "output_size_reachable",
            "output_size",
            "output_size must lie between the output length without output_padding and that plus "
            "stride - 1 on every axis",
        ),
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


Padding = int | str | Sequence[int | Sequence[int]]


def padding_pairs(value: Padding, ndim: int) -> tuple[tuple[int, int], ...]:
    """Explicit padding as ``(lo, hi)`` per axis: an int, or per axis an int or a pair ``[lo, hi]``."""
    if isinstance(value, (bool, str)):
        raise TypeError(f"padding must be an int or a list of {ndim} ints or [lo, hi] pairs, got {value!r}")
    if isinstance(value, int):
        return ((value, value),) * ndim
    entries = list(value)
    if len(entries) != ndim:
        raise TypeError(f"padding must have {ndim} entries, got {entries!r}")
    pairs = []
    for entry in entries:
        if isinstance(entry, int) and not isinstance(entry, bool):
            pairs.append((entry, entry))
        elif (
            isinstance(entry, (list, tuple))
            and len(entry) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in entry)
        ):
            pairs.append((entry[0], entry[1]))
        else:
            raise TypeError(f"padding entry {entry!r} must be an int or a pair [lo, hi] of ints")
    return tuple(pairs)


def resolve_padding_mode(
    mode: str, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> tuple[tuple[tuple[int, int], ...], tuple[int, ...]]:
    """String padding -> ``(pairs, output_padding)`` by the rules of the module docstring."""
    if mode not in PADDING_MODES:
        raise ValueError(f"padding must be one of {', '.join(PADDING_MODES)}, got {mode!r}")
    pairs, extra = [], []
    for k, s, d in zip(kernel, stride, dilation, strict=True):
        total = d * (k - 1) + 1 - s  # crop that makes the output L·s
        if mode == "valid":
            pairs.append((0, 0))
            extra.append(max(-total, 0))
        elif total < 0:
            pairs.append((0, 0))
            extra.append(-total)
        else:
            small = total // 2
            pairs.append((total - small, small) if mode == "same_lower" else (small, total - small))
            extra.append(0)
    return tuple(pairs), tuple(extra)


def is_batched(input_shape: Sequence[int], ndim: int) -> bool:
    """Rank spatial + 2 is batched; spatial + 1 unbatched (PyTorch's rule)."""
    return len(input_shape) != ndim + 1


def input_channels(input_shape: Sequence[int], ndim: int) -> int:
    """C_in of an input shape, batched or not (0 when the shape is too short to have one)."""
    index = 0 if len(input_shape) == ndim + 1 else 1
    return input_shape[index] if len(input_shape) > index else 0


@dataclass(frozen=True)
class ConvParams:
    """Hyper-parameters of one transposed convolution, per-axis tuples throughout.

    ``in_channels`` is the input's channel count and ``out_channels`` the requested C_out; both
    are carried explicitly because the functional weight layout only implies C_out.

    Padding is held resolved: ``padding`` crops the start of each axis and ``padding_end`` its end
    (empty: the same as ``padding``, PyTorch's symmetric form). ``padding_mode`` (a string of
    :data:`PADDING_MODES`) and ``output_size`` keep what the case wrote, for adapters whose
    framework takes them; ``output_padding`` then holds their resolution.
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
    padding_end: tuple[int, ...] = field(default=())
    padding_mode: str | None = None
    output_size: tuple[int, ...] | None = None

    @classmethod
    def make(
        cls,
        ndim: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: Padding = 0,
        output_padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        output_size: Sequence[int] | None = None,
        input_spatial: Sequence[int] | None = None,
    ) -> ConvParams:
        """Resolve written parameters: string padding to pairs, ``output_size`` to output_padding
        (which needs ``input_spatial``). Written output_padding must then be 0 (checked by callers
        that report fields; here it is added)."""
        kernel = per_axis(kernel_size, ndim, "kernel_size")
        strides = per_axis(stride, ndim, "stride")
        dilations = per_axis(dilation, ndim, "dilation")
        extra = per_axis(output_padding, ndim, "output_padding")
        mode = None
        if isinstance(padding, str):
            mode = padding
            pairs, resolved = resolve_padding_mode(padding, kernel, strides, dilations)
            extra = tuple(a + b for a, b in zip(extra, resolved))
        else:
            pairs = padding_pairs(padding, ndim)
        size = None
        if output_size is not None:
            size = per_axis(output_size, ndim, "output_size")
            if input_spatial is None:
                raise TypeError("output_size needs input_spatial to resolve output_padding")
            base = output_spatial_of(input_spatial, kernel, strides, pairs, (0,) * ndim, dilations)
            extra = tuple(o - b for o, b in zip(size, base))
        lo = tuple(a for a, _ in pairs)
        hi = tuple(b for _, b in pairs)
        return cls(
            ndim=ndim,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernel,
            stride=strides,
            padding=lo,
            output_padding=extra,
            dilation=dilations,
            groups=groups,
            bias=bias,
            padding_end=() if hi == lo else hi,
            padding_mode=mode,
            output_size=size,
        )

    @property
    def padding_pairs(self) -> tuple[tuple[int, int], ...]:
        """``(lo, hi)`` per axis: cropped from the start and from the end of the full output."""
        return tuple(zip(self.padding, self.padding_end or self.padding))

    @property
    def is_symmetric(self) -> bool:
        return not self.padding_end or self.padding_end == self.padding

    @property
    def symmetric_padding(self) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """``(padding, output_padding)`` in PyTorch's symmetric form that computes the same thing,
        or None when there is none.

        Cropping ``lo`` first and ``hi`` last with output_padding ``op`` is padding ``lo`` with
        output_padding ``lo − hi + op``, which PyTorch's rules allow when it is >= 0 and below
        stride or dilation.
        """
        padding, extra = [], []
        for (lo, hi), op, s, d in zip(self.padding_pairs, self.output_padding, self.stride, self.dilation):
            op2 = lo - hi + op
            if op2 < 0 or (op2 >= s and op2 >= d):
                return None
            padding.append(lo)
            extra.append(op2)
        return tuple(padding), tuple(extra)

    def written_padding(self) -> str | list:
        """``padding`` as a case file writes it: the string, ints, or ``[lo, hi]`` where they differ."""
        if self.padding_mode is not None:
            return self.padding_mode
        return [lo if lo == hi else [lo, hi] for lo, hi in self.padding_pairs]

    def written_output_padding(self) -> list[int]:
        """output_padding as written: 0 when string padding or output_size resolved it."""
        if self.padding_mode is not None or self.output_size is not None:
            return [0] * self.ndim
        return list(self.output_padding)

    @property
    def op(self) -> str:
        return f"conv_transpose{self.ndim}d"

    def weight_shape(self) -> tuple[int, ...]:
        """Canonical weight shape ``(C_in, C_out / groups, *kernel)``; groups < 1 counts as 1."""
        return (self.in_channels, self.out_channels // max(self.groups, 1), *self.kernel_size)

    def as_dict(self) -> dict:
        record = {
            "op": self.op,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": self.written_padding(),
            "output_padding": self.written_output_padding(),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "bias": self.bias,
        }
        if self.output_size is not None:
            record["output_size"] = list(self.output_size)
        return record


def output_length(
    length: int,
    kernel: int,
    stride: int,
    padding: int | tuple[int, int],
    output_padding: int,
    dilation: int,
) -> int:
    """``(L - 1)·s - lo - hi + d·(k - 1) + output_padding + 1``; an int padding is ``lo = hi``."""
    lo, hi = (padding, padding) if isinstance(padding, int) else padding
    return (length - 1) * stride - lo - hi + dilation * (kernel - 1) + output_padding + 1


def output_spatial_of(
    spatial: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    output_padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, ...]:
    return tuple(
        output_length(*args)
        for args in zip(spatial, kernel, stride, pairs, output_padding, dilation, strict=True)
    )


def output_spatial(spatial: Sequence[int], p: ConvParams) -> tuple[int, ...]:
    return output_spatial_of(spatial, p.kernel_size, p.stride, p.padding_pairs, p.output_padding, p.dilation)


def violations(input_shape: Sequence[int], p: ConvParams) -> list[Violation]:
    """Every rule the configuration breaks, in a stable order; empty when it is valid."""
    found: list[Violation] = []

    def broken(rule: str, detail: str) -> None:
        found.append(Violation(rule, RULES[rule].field, f"{RULES[rule].text} ({detail})"))

    rank_ok = len(input_shape) in (p.ndim + 1, p.ndim + 2)
    spatial = list(input_shape[len(input_shape) - p.ndim :]) if rank_ok else []
    if not rank_ok:
        broken(
            "input_rank",
            f"{p.op} needs rank {p.ndim + 2} or {p.ndim + 1}, input_shape has rank {len(input_shape)}",
        )
    elif any(length < 1 for length in spatial):
        broken("input_spatial_nonempty", f"input spatial {spatial}")
    sized = p.output_size is not None  # output_padding is derived: output_size_reachable judges it
    for name, low, rule in (
        ("kernel_size", 1, "kernel_size_positive"),
        ("stride", 1, "stride_positive"),
        ("dilation", 1, "dilation_positive"),
        ("padding", 0, "padding_nonnegative"),
        ("output_padding", 0, "output_padding_nonnegative"),
    ):
        if name == "output_padding" and sized:
            continue
        values = p.written_padding() if name == "padding" else getattr(p, name)
        flat = [v for pair in p.padding_pairs for v in pair] if name == "padding" else values
        if any(v < low for v in flat):
            broken(rule, f"{name}={values if isinstance(values, (list, str)) else list(values)}")
    if p.groups < 1:
        broken("groups_positive", f"groups={p.groups}")
    bad_axes = [
        i for i, (op, s, d) in enumerate(zip(p.output_padding, p.stride, p.dilation)) if op >= s and op >= d
    ]
    if bad_axes and not sized:
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
    geometry_ok = (
        rank_ok
        and all(s >= 1 for s in p.stride)
        and all(d >= 1 for d in p.dilation)
        and not any(length < 1 for length in spatial)
    )
    unreachable = False
    if geometry_ok and sized:
        low = output_spatial_of(spatial, p.kernel_size, p.stride, p.padding_pairs, (0,) * p.ndim, p.dilation)
        high = [m + s - 1 for m, s in zip(low, p.stride)]
        unreachable = any(not m <= o <= h for o, m, h in zip(p.output_size, low, high))
        if unreachable:
            # PyTorch's wording (torch/nn/modules/conv.py, _ConvTransposeNd._output_padding)
            broken(
                "output_size_reachable",
                f"requested an output size of {list(p.output_size)}, but valid sizes range from "
                f"{list(low)} to {high} (for an input of {spatial})",
            )
    if geometry_ok and not unreachable:  # an unreachable size is that rule's alone
        out = output_spatial(spatial, p)
        if any(o < 1 for o in out):
            broken("output_size_positive", f"input spatial {spatial} gives output {list(out)}")
    return found


def output_shape(input_shape: Sequence[int], p: ConvParams) -> tuple[int, ...]:
    """Output shape ``(N, C_out, *spatial_out)`` (unbatched: ``(C_out, *spatial_out)``) of a valid
    configuration; ValueError otherwise."""
    broken = violations(input_shape, p)
    if broken:
        raise ValueError("; ".join(str(v) for v in broken))
    return valid_output_shape(input_shape, p)


def valid_output_shape(input_shape: Sequence[int], p: ConvParams) -> tuple[int, ...]:
    """:func:`output_shape` of a configuration already known to break no rule (unchecked)."""
    out = output_spatial(input_shape[len(input_shape) - p.ndim :], p)
    if not is_batched(input_shape, p.ndim):
        return (p.out_channels, *out)
    return (input_shape[0], p.out_channels, *out)


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
    batch = input_shape[0] if is_batched(input_shape, p.ndim) else 1
    spatial = input_shape[len(input_shape) - p.ndim :]
    batch_in = batch_out = batch
    for length in spatial:
        batch_in *= length
    for length in output_spatial(spatial, p):
        batch_out *= length
    return {
        "grad_input": max(p.out_channels // max(p.groups, 1) * kernel, 1),
        "grad_weight": max(batch_in, 1),
        "grad_bias": max(batch_out, 1),
    }
