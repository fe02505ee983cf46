"""conformance.layouts: group-aware weight layouts, checked element by element and by behaviour."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conformance import layouts, oracle
from conformance.adapters import Adapter
from conformance.cases import make_case
from conformance.checks import run_checks
from conformance.inputs import make_inputs

# (C_in, C_out/g-per-group... expressed as C_out/g) and kernels for 1d, 2d, 3d
SHAPES = [(12, 1, (3,)), (12, 3, (2, 3)), (6, 2, (2, 1, 3)), (4, 5, (1,)), (1, 2, (2, 2))]


def group_counts(c_in: int) -> list[int]:
    return [g for g in range(1, c_in + 1) if c_in % g == 0]


LAYOUT_CASES = [
    pytest.param(c_in, cout_g, kernel, g, id=f"cin{c_in}-coutg{cout_g}-k{'x'.join(map(str, kernel))}-g{g}")
    for c_in, cout_g, kernel in SHAPES
    for g in group_counts(c_in)
]


def torch_weight(c_in: int, cout_g: int, kernel: tuple[int, ...], seed: int = 0) -> np.ndarray:
    # distinct values everywhere so a misplaced element cannot go unnoticed
    w = np.arange(c_in * cout_g * int(np.prod(kernel)), dtype=np.float64).reshape(c_in, cout_g, *kernel)
    return np.random.default_rng(seed).permutation(w.ravel()).reshape(w.shape)


# --- assertion helpers ----------------------------------------------------------------------------


def assert_array_equal(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    __tracebackhide__ = True
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, expected {expected.dtype}"
    mismatch = np.argwhere(actual != expected)
    assert mismatch.size == 0, f"{what}: {len(mismatch)} elements differ, first at {tuple(mismatch[0])}"


def assert_close_to_oracle(actual: np.ndarray, expected: np.ndarray, bound: np.ndarray, what: str) -> None:
    """float32-level agreement: |err| <= 1e-5 · magnitude bound."""
    __tracebackhide__ = True
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, oracle says {expected.shape}"
    err = np.abs(actual.astype(np.float64) - expected)
    worst = np.unravel_index(int(np.argmax(err - 1e-5 * bound)), err.shape)
    assert (err <= 1e-5 * bound).all(), (
        f"{what}: differs from the oracle at {tuple(int(i) for i in worst)}: got {actual[worst]}, "
        f"expected {expected[worst]} (|err| {err[worst]:.3g}, bound {bound[worst]:.3g})"
    )


# --- round trips and per-element formulas ---------------------------------------------------------


@pytest.mark.parametrize(("c_in", "cout_g", "kernel", "groups"), LAYOUT_CASES)
def test_channels_last_round_trip(c_in: int, cout_g: int, kernel: tuple[int, ...], groups: int) -> None:
    w = torch_weight(c_in, cout_g, kernel)
    cl = layouts.torch_weight_to_channels_last(w, groups)
    assert cl.shape == layouts.channels_last_weight_shape(c_in, cout_g * groups, kernel, groups)
    assert cl.flags.c_contiguous
    assert_array_equal(
        layouts.channels_last_weight_to_torch(cl, groups), w, f"channels-last round trip g={groups}"
    )
    back = layouts.torch_weight_to_channels_last(layouts.channels_last_weight_to_torch(cl, groups), groups)
    assert_array_equal(back, cl, f"channels-last reverse round trip g={groups}")


@pytest.mark.parametrize(("c_in", "cout_g", "kernel", "groups"), LAYOUT_CASES)
def test_grouped_oi_round_trip(c_in: int, cout_g: int, kernel: tuple[int, ...], groups: int) -> None:
    w = torch_weight(c_in, cout_g, kernel)
    oi = layouts.torch_weight_to_grouped_oi(w, groups)
    assert oi.shape == (cout_g * groups, c_in // groups, *kernel)
    assert oi.flags.c_contiguous
    assert_array_equal(layouts.grouped_oi_weight_to_torch(oi, groups), w, f"grouped-OI round trip g={groups}")


@pytest.mark.parametrize(("c_in", "cout_g", "kernel", "groups"), LAYOUT_CASES)
def test_weight_layouts_match_index_formula(
    c_in: int, cout_g: int, kernel: tuple[int, ...], groups: int
) -> None:
    """w_cl[g·Cout_g + o, *k, i] == w_oi[g·Cout_g + o, i, *k] == w_t[g·Cin_g + i, o, *k]."""
    w = torch_weight(c_in, cout_g, kernel)
    cl = layouts.torch_weight_to_channels_last(w, groups)
    oi = layouts.torch_weight_to_grouped_oi(w, groups)
    cin_g = c_in // groups
    for g, o, i in itertools.product(range(groups), range(cout_g), range(cin_g)):
        for k in itertools.product(*(range(n) for n in kernel)):
            want = w[(g * cin_g + i, o, *k)]
            got_cl = cl[(g * cout_g + o, *k, i)]
            got_oi = oi[(g * cout_g + o, i, *k)]
            assert got_cl == want, (
                f"channels-last g={groups}: w_cl[{g * cout_g + o}, {k}, {i}] = {got_cl}, want {want}"
            )
            assert got_oi == want, (
                f"grouped OI g={groups}: w_oi[{g * cout_g + o}, {i}, {k}] = {got_oi}, want {want}"
            )


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 4, 5), (1, 4, 2, 3, 5)])
def test_data_channels_first_last(shape: tuple[int, ...]) -> None:
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    cl = layouts.channels_first_to_last(x)
    assert cl.shape == (shape[0], *shape[2:], shape[1])
    for idx in itertools.product(*(range(n) for n in shape)):
        n, c, *s = idx
        assert cl[(n, *s, c)] == x[idx], f"channels_first_to_last{shape}: element {idx} misplaced"
    assert_array_equal(layouts.channels_last_to_first(cl), x, "data round trip")


@pytest.mark.parametrize(
    ("fn", "shape", "groups"),
    [
        (layouts.torch_weight_to_channels_last, (6, 2, 3), 4),
        (layouts.torch_weight_to_channels_last, (6, 2, 3), 0),
        (layouts.torch_weight_to_grouped_oi, (3, 2, 3, 3), 2),
        (layouts.torch_weight_to_grouped_oi, (3, 2, 3, 3), -1),
        (layouts.channels_last_weight_to_torch, (6, 3, 2), 4),
        (layouts.grouped_oi_weight_to_torch, (5, 2, 3), 2),
        (layouts.grouped_oi_weight_to_torch, (4, 2, 3), 0),
    ],
)
def test_indivisible_groups_raise(fn, shape: tuple[int, ...], groups: int) -> None:
    with pytest.raises(ValueError, match=f"groups={groups}"):
        fn(np.zeros(shape), groups)


def test_channels_last_weight_shape_for_invalid_groupings() -> None:
    assert layouts.channels_last_weight_shape(4, 6, (3, 3), 2) == (6, 3, 3, 2)
    assert layouts.channels_last_weight_shape(5, 6, (3,), 2) == (6, 3, 2)  # what a user would write
    assert layouts.channels_last_weight_shape(4, 6, (3,), 0) == (6, 3, 4)  # groups < 1 counts as 1


# --- behaviour: the converted weights make other formulations compute the same thing ----------------

CONV_KW = {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "dilation": (1, 2)}


@pytest.mark.parametrize("cout_g", [2, 3])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_mlx_channels_last_matches_oracle(groups: int, cout_g: int) -> None:
    mx = pytest.importorskip("mlx.core")
    rng = np.random.default_rng(groups * 10 + cout_g)
    x = rng.standard_normal((2, groups * 2, 4, 3)).astype(np.float32)
    w = rng.standard_normal((groups * 2, cout_g, 3, 2)).astype(np.float32)
    out = mx.conv_transpose2d(
        mx.array(layouts.channels_first_to_last(x)),
        mx.array(layouts.torch_weight_to_channels_last(w, groups)),
        groups=groups,
        **CONV_KW,
    )
    got = layouts.channels_last_to_first(np.array(out))
    assert_close_to_oracle(
        got,
        oracle.conv_transpose(x, w, groups=groups, **CONV_KW),
        oracle.magnitude_bound(x, w, groups=groups, **CONV_KW),
        f"mx.conv_transpose2d(groups={groups}, C_out/g={cout_g}) with torch_weight_to_channels_last",
    )


def _transpose_conv_via_grouped_oi(x, w_oi, groups, stride, padding, output_padding, dilation):
    """Transposed conv as an ordinary grouped conv: zero-insert x by the stride, pad by d·(k−1) − p
    (plus output_padding at the end; negative pads crop), correlate with the flipped OI kernel."""
    import torch
    import torch.nn.functional as F

    n, c, *spatial = x.shape
    kernel = w_oi.shape[2:]
    zero_inserted = np.zeros(
        (n, c, *((length - 1) * s + 1 for length, s in zip(spatial, stride, strict=True)))
    )
    zero_inserted[(..., *(slice(None, None, s) for s in stride))] = x
    pads = []
    # F.pad lists the last axis first
    for k, p, op, d in reversed(list(zip(kernel, padding, output_padding, dilation, strict=True))):
        pads += [d * (k - 1) - p, d * (k - 1) - p + op]
    padded = F.pad(torch.from_numpy(zero_inserted), pads)
    flipped = torch.from_numpy(np.ascontiguousarray(np.flip(w_oi, axis=tuple(range(2, w_oi.ndim)))))
    return F.conv2d(padded, flipped, groups=groups, dilation=dilation).numpy()


@pytest.mark.parametrize(
    "kw",
    [
        CONV_KW,
        {"stride": (1, 3), "padding": (0, 2), "output_padding": (0, 2), "dilation": (1, 1)},
        {"stride": (2, 2), "padding": (3, 0), "output_padding": (0, 1), "dilation": (1, 2)},  # p > d·(k−1)
    ],
    ids=["mixed", "stride3", "padding-beyond-kernel"],
)
@pytest.mark.parametrize("cout_g", [1, 3])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_oi_is_the_ordinary_conv_weight(groups: int, cout_g: int, kw: dict) -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(groups + cout_g)
    x = rng.standard_normal((2, groups * 2, 4, 3))
    w = rng.standard_normal((groups * 2, cout_g, 3, 2))
    got = _transpose_conv_via_grouped_oi(
        x, layouts.torch_weight_to_grouped_oi(w, groups), groups=groups, **kw
    )
    want = oracle.conv_transpose(x, w, groups=groups, **kw)
    assert got.shape == want.shape, f"groups={groups}, {kw}: shape {got.shape} vs oracle {want.shape}"
    np.testing.assert_allclose(
        got, want, rtol=1e-12, atol=1e-12, err_msg=f"grouped OI, groups={groups}, {kw}"
    )


# --- memory layouts of the generated arrays -----------------------------------------------------

MEMORY_SHAPES = [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 2)]


@pytest.mark.parametrize("shape", MEMORY_SHAPES, ids=str)
@pytest.mark.parametrize("layout", layouts.LAYOUTS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_with_layout_keeps_values_and_sets_strides(shape: tuple[int, ...], layout: str, dtype: str) -> None:
    from conformance.dtypes import numpy_dtype

    a = np.random.default_rng(0).standard_normal(shape).astype(numpy_dtype(dtype))
    b = layouts.with_layout(a, layout)
    assert_array_equal(b, a, f"with_layout(shape={shape}, {layout!r})")
    assert layouts.layout_of(b) == layout, f"with_layout(shape={shape}, {layout!r}): strides {b.strides}"
    if layout == "channels_last":
        assert b.strides[1] == b.itemsize, f"channels_last: channel stride {b.strides[1]}, not one element"
    if layout == "strided":
        assert b.strides[-1] == 2 * b.itemsize and not b.flags.c_contiguous and not b.flags.f_contiguous


def test_unbatched_channels_last_moves_axis_0() -> None:
    a = np.arange(24.0).reshape(2, 3, 4)
    b = layouts.with_layout(a, "channels_last", channel_axis=0)
    assert_array_equal(b, a, "with_layout(unbatched, channels_last)")
    assert b.strides[0] == b.itemsize, f"unbatched channels_last: strides {b.strides}"


class _Recording(Adapter):
    """Computes with the oracle and notes the strides it was handed."""

    name = "recording"
    framework_modules = ("conformance",)
    seen: list

    def __init__(self) -> None:
        self.seen = []

    def forward(self, x, weight, bias, params):
        self.seen.append((x.strides, weight.strides))
        return oracle.conv_transpose(
            x,
            weight,
            bias,
            params.stride,
            params.padding_pairs,
            params.output_padding,
            params.groups,
            params.dilation,
        ).astype(x.dtype)


class _ReadsMemoryAsRowMajor(_Recording):
    """A planted bug: treats the buffer under a non-contiguous array as row-major."""

    name = "reads-row-major"

    def forward(self, x, weight, bias, params):
        def row_major(a):  # the first a.size elements of a's memory, in row-major order
            strides = np.empty(a.shape, a.dtype).strides
            return np.lib.stride_tricks.as_strided(a, a.shape, strides, writeable=False).copy()

        return super().forward(row_major(x), row_major(weight), bias, params)


@pytest.mark.parametrize("layout", layouts.LAYOUTS)
@pytest.mark.parametrize("op", ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"])
def test_adapters_receive_exactly_the_case_layout(layout: str, op: str) -> None:
    ndim = int(op[-2])
    case = make_case(
        {
            "op": op,
            "input_shape": [2, 4, *(3,) * ndim],
            "out_channels": 4,
            "kernel_size": 2,
            "groups": 2,
            "layout": layout,
        },
        f"layout-{layout}",
    )
    expected = make_inputs(case)
    adapter = _Recording()
    results = run_checks(case, adapter, selected=["forward", "repeatability"])
    assert [r.status for r in results] == ["pass", "pass"], [r.message for r in results]
    assert adapter.seen == [(expected.x.strides, expected.weight.strides)] * 2, (
        f"{op}, layout {layout}: the adapter saw strides {adapter.seen}, the case's are "
        f"{(expected.x.strides, expected.weight.strides)}"
    )
    assert layouts.layout_of(expected.x) == layout and layouts.layout_of(expected.weight) == layout


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_a_layout_bug_is_caught(layout: str) -> None:
    fields = {"op": "conv_transpose2d", "input_shape": [2, 3, 4, 3], "out_channels": 2, "kernel_size": 2}
    ok = run_checks(make_case(fields, "contiguous"), _ReadsMemoryAsRowMajor(), selected=["forward"])
    assert ok[0].status == "pass", f"the planted adapter should pass contiguous input: {ok[0].message}"
    bad = run_checks(
        make_case({**fields, "layout": layout}, layout), _ReadsMemoryAsRowMajor(), selected=["forward"]
    )
    assert bad[0].status == "fail", f"reading {layout} memory as row-major went unnoticed: {bad[0].status}"


@pytest.mark.parametrize(("ndim", "fmt"), [(2, "channels_last"), (3, "channels_last_3d")])
def test_torch_gets_tensors_of_the_layout(ndim: int, fmt: str) -> None:
    torch = pytest.importorskip("torch")
    from conformance.adapters.torch_functional import to_torch
    from conformance.adapters.torch_nn import TorchLayer
    from conformance.spec import ConvParams

    x = layouts.with_layout(np.ones((2, 3, *(4,) * ndim), np.float32), "channels_last")
    w = layouts.with_layout(np.ones((3, 2, *(2,) * ndim), np.float32), "channels_last")
    memory_format = getattr(torch, fmt)
    assert to_torch(x).is_contiguous(memory_format=memory_format), (
        f"to_torch lost {fmt}: {to_torch(x).stride()}"
    )
    layer = TorchLayer.build(w, None, ConvParams.make(ndim, 3, 2, 2))
    assert layer.weight.is_contiguous(memory_format=memory_format), f"layer weight is not {fmt}"
    strided = layouts.with_layout(np.ones((2, 3, 4, 5), np.float32), "strided")
    t = to_torch(strided)
    assert not t.is_contiguous() and t.stride() == tuple(s // 4 for s in strided.strides), t.stride()
