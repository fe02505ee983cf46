"""Hypothesis strategies over configurations: valid ones across the whole parameter space, and
invalid ones that break exactly one validity rule. They shrink toward the simplest configuration
(1-d, stride 1, no padding, one group, float32), so a minimal failing example names only the
parameters a divergence needs.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from conformance import spec

#: bounds that keep one example cheap on every framework (and the slowest adapters) alike
MAX_OUTPUT_ELEMENTS = 6000
MAX_LENGTH = {1: 6, 2: 5, 3: 3}


def _per_axis(values: list[int]) -> int | list[int]:
    return values[0] if len(set(values)) == 1 else values


@st.composite
def valid_fields(
    draw: st.DrawFn, ndims: tuple[int, ...] = (1, 2, 3), dtypes: tuple[str, ...] = ("float32",)
) -> dict:
    """Case fields of a valid configuration (``expect: ok``)."""
    ndim = draw(st.sampled_from(ndims))
    groups = draw(st.integers(1, 4))
    cin_g, cout_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    kernel, stride, dilation, length, padding, output_padding = [], [], [], [], [], []
    for _ in range(ndim):
        k, s, d = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
        n = draw(st.integers(1, MAX_LENGTH[ndim]))
        op = draw(st.integers(0, max(s, d) - 1))
        full = (n - 1) * s + d * (k - 1) + 1 + op
        p = draw(st.integers(0, (full - 1) // 2))  # keeps the output length >= 1
        for values, v in zip(
            (kernel, stride, dilation, length, padding, output_padding), (k, s, d, n, p, op)
        ):
            values.append(v)
    fields = {
        "op": f"conv_transpose{ndim}d",
        "input_shape": [batch, groups * cin_g, *length],
        "out_channels": groups * cout_g,
        "kernel_size": _per_axis(kernel),
        "stride": _per_axis(stride),
        "padding": _per_axis(padding),
        "output_padding": _per_axis(output_padding),
        "dilation": _per_axis(dilation),
        "groups": groups,
        "bias": draw(st.booleans()),
        "dtype": draw(st.sampled_from(dtypes)),
        "seed": draw(st.integers(0, 2**16)),
    }
    params = spec.ConvParams.make(
        ndim, groups * cin_g, groups * cout_g, kernel, stride, padding, output_padding, dilation, groups
    )
    assume(not spec.violations(fields["input_shape"], params))
    out = spec.output_shape(fields["input_shape"], params)
    assume(math.prod(out) <= MAX_OUTPUT_ELEMENTS)
    return fields


def _axis_values(fields: dict, name: str, ndim: int) -> list[int]:
    value = fields[name]
    return list(value) if isinstance(value, list) else [value] * ndim


def _set_axis(fields: dict, name: str, ndim: int, axis: int, value: int) -> None:
    values = _axis_values(fields, name, ndim)
    values[axis] = value
    fields[name] = values


@st.composite
def invalid_fields(
    draw: st.DrawFn, ndims: tuple[int, ...] = (1, 2, 3), rules: tuple[str, ...] | None = None
) -> dict:
    """Case fields (``expect: error``) of a configuration that breaks one chosen rule."""
    fields = dict(draw(valid_fields(ndims=ndims)))
    rule = draw(st.sampled_from(rules or tuple(spec.RULES)))
    ndim = spec.OPS[fields["op"]]
    axis = draw(st.integers(0, ndim - 1))
    breakers: dict[str, Any] = {
        "input_rank": lambda: fields.update(input_shape=[*fields["input_shape"], 2]),
        "input_spatial_nonempty": lambda: _set_axis(fields, "input_shape", ndim + 2, axis + 2, 0),
        "kernel_size_positive": lambda: _set_axis(fields, "kernel_size", ndim, axis, 0),
        "stride_positive": lambda: _set_axis(fields, "stride", ndim, axis, draw(st.integers(-1, 0))),
        "dilation_positive": lambda: _set_axis(fields, "dilation", ndim, axis, draw(st.integers(-1, 0))),
        "groups_positive": lambda: fields.update(groups=draw(st.integers(-1, 0))),
        "padding_nonnegative": lambda: _set_axis(fields, "padding", ndim, axis, draw(st.integers(-2, -1))),
        "output_padding_nonnegative": lambda: _set_axis(fields, "output_padding", ndim, axis, -1),
        "output_padding_bound": lambda: _set_axis(
            fields,
            "output_padding",
            ndim,
            axis,
            max(_axis_values(fields, "stride", ndim)[axis], _axis_values(fields, "dilation", ndim)[axis]),
        ),
        "in_channels_divisible": lambda: fields.update(
            groups=2, input_shape=[fields["input_shape"][0], 3, *fields["input_shape"][2:]], out_channels=2
        ),
        "out_channels_divisible": lambda: fields.update(
            groups=2, input_shape=[fields["input_shape"][0], 2, *fields["input_shape"][2:]], out_channels=3
        ),
        "output_size_positive": lambda: _set_axis(fields, "padding", ndim, axis, 50),
        # far past the largest reachable length (min + stride - 1 <= 6·4 + 3·3 + 4)
        "output_size_reachable": lambda: fields.update(output_padding=0, output_size=1000),
    }
    breakers[rule]()
    fields["expect"] = "error"
    shape = fields["input_shape"]
    params = spec.ConvParams.make(
        ndim,
        shape[1] if len(shape) > 1 else 1,
        fields["out_channels"],
        *(
            _axis_values(fields, n, ndim)
            for n in ("kernel_size", "stride", "padding", "output_padding", "dilation")
        ),
        groups=fields["groups"],
        output_size=fields.get("output_size"),
        input_spatial=(list(shape[2:]) + [1] * ndim)[:ndim],
    )
    broken = {v.rule for v in spec.violations(shape, params)}
    assume(rule in broken)
    return fields
