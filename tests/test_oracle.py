"""conformance.oracle: the scatter-form NumPy kernel against the definitional loop and torch float64."""

from __future__ import annotations

from dataclasses import replace

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, find, given, settings
from hypothesis import strategies as st

from conformance import oracle, spec
from tests.helpers.hypothesis_helpers import ConvConfig, asymmetric_configs, conv_configs, minimal_invalid
from tests.helpers.reference_loops import conv_transpose_loops

# --- assertion helpers ----------------------------------------------------------------------------


def assert_matches_loops(config: ConvConfig, seed: int = 0, atol: float = 1e-10) -> np.ndarray:
    __tracebackhide__ = True
    x, w, b = config.arrays(seed)
    got = oracle.conv_transpose(x, w, b, **config.kwargs())
    want = conv_transpose_loops(x, w, b, **config.kwargs())
    assert got.dtype == np.float64, f"oracle.conv_transpose({config}) returned {got.dtype}"
    assert got.shape == want.shape, (
        f"oracle.conv_transpose({config}): shape {got.shape}, loop gives {want.shape}"
    )
    np.testing.assert_allclose(
        got, want, rtol=0, atol=atol, err_msg=f"oracle.conv_transpose({config}) vs loop"
    )
    return got


def assert_matches_torch(config: ConvConfig, seed: int = 0) -> None:
    __tracebackhide__ = True
    torch = pytest.importorskip("torch")
    x, w, b = config.arrays(seed)
    got = oracle.conv_transpose(x, w, b, **config.kwargs())
    fn = getattr(torch.nn.functional, config.op)
    want = fn(*(None if a is None else torch.from_numpy(a) for a in (x, w, b)), **config.kwargs()).numpy()
    assert got.shape == want.shape, (
        f"oracle.conv_transpose({config}): shape {got.shape}, torch gives {want.shape}"
    )
    np.testing.assert_allclose(
        got, want, rtol=1e-12, atol=1e-12, err_msg=f"oracle.conv_transpose({config}) vs torch"
    )


def config(
    input_shape: tuple[int, ...],
    out_channels: int,
    kernel: int | tuple[int, ...],
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] = 0,
    output_padding: int | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    bias: bool = True,
) -> ConvConfig:
    ndim = len(input_shape) - 2

    def axes(v: int | tuple[int, ...]) -> tuple[int, ...]:
        return (v,) * ndim if isinstance(v, int) else tuple(v)

    return ConvConfig(
        ndim,
        tuple(input_shape),
        out_channels,
        axes(kernel),
        axes(stride),
        axes(padding),
        axes(output_padding),
        axes(dilation),
        groups,
        bias,
    )


# Configurations each test below must see, whatever hypothesis draws.
EDGE_CONFIGS = {
    "groups-cout-per-group-3": config((1, 4, 3), 6, 3, stride=2, groups=2),  # the ONNX reference's bug
    "groups-4-cout-per-group-2-2d": config((1, 8, 3, 2), 8, (2, 3), stride=(2, 1), groups=4),
    "depthwise-multiplier-2": config((2, 3, 4), 6, 2, stride=3, groups=3),
    "dilation": config((1, 2, 3, 3), 2, 3, dilation=(2, 3)),
    "output-padding-ge-stride-below-dilation": config(
        (1, 2, 4), 3, 3, stride=1, dilation=3, output_padding=2
    ),
    "output-padding-ge-stride-below-dilation-2d": config(
        (1, 1, 3, 3), 2, 2, stride=(1, 2), dilation=(2, 1), output_padding=(1, 1)
    ),
    "padding-beyond-kernel-extent": config((1, 2, 6), 2, 2, stride=2, padding=3),
    "padding-beyond-kernel-extent-dilated": config(
        (1, 1, 5, 4), 1, 2, stride=(1, 2), padding=(2, 2), dilation=2
    ),
    "everything-3d": config(
        (1, 4, 2, 3, 2),
        4,
        (2, 1, 2),
        stride=(2, 1, 3),
        padding=(1, 0, 2),
        output_padding=(1, 0, 1),
        dilation=(1, 2, 2),
        groups=2,
    ),
    "single-output-element": config((1, 1, 1), 1, 1),
    "no-bias": config((2, 2, 3, 3), 4, 2, stride=2, groups=2, bias=False),
}


def with_edges(test):
    for c in EDGE_CONFIGS.values():
        test = example(c)(test)
    return test


# --- against the definitional loop and against torch ----------------------------------------------


@pytest.mark.parametrize("name", list(EDGE_CONFIGS))
def test_edge_configs_are_valid(name: str) -> None:
    c = EDGE_CONFIGS[name]
    assert spec.violations(c.input_shape, c.params()) == [], f"{name}: {c} should be valid"


@settings(max_examples=150, deadline=None)
@given(conv_configs())
@with_edges
def test_oracle_matches_definitional_loop(config: ConvConfig) -> None:
    assert_matches_loops(config)


@settings(max_examples=150, deadline=None)
@given(conv_configs(max_size=4000, max_work=200_000))
@with_edges
def test_oracle_matches_torch_float64(config: ConvConfig) -> None:
    assert_matches_torch(config)


@pytest.mark.parametrize("cout_per_group", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2, 3, 4])
def test_groups_every_cell(groups: int, cout_per_group: int) -> None:
    """Each output channel depends on exactly its group's input channels, and the values are right."""
    cin_per_group = 2
    c = config(
        (1, groups * cin_per_group, 3, 2), groups * cout_per_group, (2, 2), stride=(2, 1), groups=groups
    )
    x, w, b = c.arrays(seed=groups * 10 + cout_per_group)
    base = assert_matches_loops(c, seed=groups * 10 + cout_per_group)
    for ci in range(c.in_channels):
        bumped = x.copy()
        bumped[:, ci] += 1.0
        changed = np.abs(oracle.conv_transpose(bumped, w, b, **c.kwargs()) - base).max(axis=(0, 2, 3)) > 0
        group = ci // cin_per_group
        expected = np.zeros(c.out_channels, dtype=bool)
        expected[group * cout_per_group : (group + 1) * cout_per_group] = True
        assert (changed == expected).all(), (
            f"groups={groups}, C_out/g={cout_per_group}: perturbing input channel {ci} "
            f"changed output channels "
            f"{np.flatnonzero(changed).tolist()}, expected {np.flatnonzero(expected).tolist()}"
        )


# --- invalid arguments ------------------------------------------------------------------------------

# C_out is weight.shape[1] * groups in the functional signature, so it is always divisible.
# the oracle takes C_out from the weight and output_padding resolved (output_size is the spec's)
ORACLE_RULES = [r for r in spec.RULES if r not in ("out_channels_divisible", "output_size_reachable")]


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("rule", ORACLE_RULES)
def test_invalid_args_raise_naming_the_rule(rule: str, ndim: int) -> None:
    c = minimal_invalid(rule, ndim)
    x, w, b = c.arrays()
    with pytest.raises(ValueError, match=rule) as info:
        oracle.conv_transpose(x, w, b, **c.kwargs())
    assert spec.RULES[rule].text in str(info.value), (
        f"oracle error for {rule} lacks the rule text: {info.value}"
    )


def test_channel_mismatch_raises() -> None:
    x = np.zeros((1, 2, 4))
    w = np.zeros((3, 1, 3))
    with pytest.raises(ValueError, match=r"C_in=2 .*weight\.shape\[0\]=3"):
        oracle.conv_transpose(x, w)


@pytest.mark.parametrize("bias_shape", [(3,), (1,), (2, 1), (), (4,)])
def test_wrong_bias_shape_raises(bias_shape: tuple[int, ...]) -> None:
    x = np.zeros((1, 2, 4))
    w = np.zeros((2, 1, 3))  # groups=2: C_out = 2
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        oracle.conv_transpose(x, w, np.zeros(bias_shape), groups=2)


@pytest.mark.parametrize("weight_rank", [2, 6])
def test_wrong_weight_rank_raises(weight_rank: int) -> None:
    with pytest.raises(ValueError, match="weight must have rank"):
        oracle.conv_transpose(np.zeros((1, 2, 3)), np.zeros((2,) * weight_rank))


def test_invalid_args_raise_before_computing() -> None:
    # a huge input with an invalid stride must fail on the rule, not on memory
    x = np.broadcast_to(np.float64(1.0), (1, 1, 10**9))
    with pytest.raises(ValueError, match="stride_positive"):
        oracle.conv_transpose(x, np.zeros((1, 1, 2)), stride=0)


# --- argument forms and dtypes -----------------------------------------------------------------------


def test_accepts_int_or_tuple_args() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 3, 4))
    w = rng.standard_normal((4, 3, 2, 2))
    as_ints = oracle.conv_transpose(x, w, None, 2, 1, 1, 2, 2)
    as_tuples = oracle.conv_transpose(x, w, None, (2, 2), (1, 1), (1, 1), 2, (2, 2))
    as_lists = oracle.conv_transpose(
        x, w, None, stride=[2, 2], padding=[1, 1], output_padding=[1, 1], groups=2, dilation=[2, 2]
    )
    np.testing.assert_array_equal(as_ints, as_tuples)
    np.testing.assert_array_equal(as_ints, as_lists)
    mixed = oracle.conv_transpose(x, w, None, stride=(2, 1), padding=(1, 0), groups=2)
    assert mixed.shape == (1, 6, 2 * 2 - 2 + 1 + 1, 3 + 1 + 1), mixed.shape


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64])
def test_returns_float64(dtype: type) -> None:
    c = EDGE_CONFIGS["groups-cout-per-group-3"]
    x, w, b = c.arrays(seed=5, dtype=dtype)
    got = oracle.conv_transpose(x, w, b, **c.kwargs())
    assert got.dtype == np.float64, f"oracle.conv_transpose on {np.dtype(dtype).name} returned {got.dtype}"
    want = conv_transpose_loops(
        x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **c.kwargs()
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    bound = oracle.magnitude_bound(x, w, b, **c.kwargs())
    assert bound.dtype == np.float64


# --- magnitude_bound -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(conv_configs())
def test_magnitude_bound_dominates(config: ConvConfig) -> None:
    x, w, b = config.arrays(seed=1)
    value = oracle.conv_transpose(x, w, b, **config.kwargs())
    bound = oracle.magnitude_bound(x, w, b, **config.kwargs())
    assert bound.shape == value.shape
    assert (bound >= np.abs(value) - 1e-12).all(), f"magnitude_bound < |conv_transpose| for {config}"
    # equality for non-negative inputs
    ax, aw, ab = np.abs(x), np.abs(w), None if b is None else np.abs(b)
    np.testing.assert_allclose(
        oracle.magnitude_bound(ax, aw, ab, **config.kwargs()),
        oracle.conv_transpose(ax, aw, ab, **config.kwargs()),
        rtol=1e-15,
        atol=0,
        err_msg=f"magnitude_bound != conv_transpose on non-negative inputs for {config}",
    )
    np.testing.assert_array_equal(bound, oracle.magnitude_bound(ax, aw, ab, **config.kwargs()))


def test_magnitude_bound_is_the_sum_of_magnitudes() -> None:
    # one output element: x = [1, -2], w taps [3, -4]; out[1] = 1·(-4) + (-2)·3 = -10, bound 4 + 6 = 10
    x = np.array([[[1.0, -2.0]]])
    w = np.array([[[3.0, -4.0]]])
    b = np.array([-0.5])
    np.testing.assert_array_equal(oracle.conv_transpose(x, w, b), [[[2.5, -10.5, 7.5]]])
    np.testing.assert_array_equal(oracle.magnitude_bound(x, w, b), [[[3.5, 10.5, 8.5]]])


# --- the VJP ----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(conv_configs(max_size=800))
@with_edges
def test_vjp_matches_torch_autograd_float64(config: ConvConfig) -> None:
    torch = pytest.importorskip("torch")
    x, w, b = config.arrays(seed=2)
    g = np.random.default_rng(9).standard_normal(config.output_shape)
    got = oracle.conv_transpose_vjp(x, w, b, g, **config.kwargs())
    leaves = [torch.from_numpy(a).requires_grad_() for a in (x, w, b) if a is not None]
    fn = getattr(torch.nn.functional, config.op)
    out = fn(leaves[0], leaves[1], leaves[2] if b is not None else None, **config.kwargs())
    want = torch.autograd.grad(out, leaves, grad_outputs=torch.from_numpy(g))
    for name, mine, theirs in zip(("grad_x", "grad_weight", "grad_bias"), got, want, strict=False):
        np.testing.assert_allclose(
            mine, theirs.numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{name} for {config}"
        )
    assert (got[2] is None) == (b is None)


# --- the strategy reaches the regions these tests are about -----------------------------------------


@pytest.mark.parametrize(
    "region",
    [
        "3d",
        "grouped-cout-per-group-gt-1",
        "depthwise",
        "output-padding-ge-stride",
        "padding-beyond-kernel-extent",
        "dilation-gt-1",
        "no-bias",
    ],
)
def test_strategy_reaches(region: str) -> None:
    predicates = {
        "3d": lambda c: c.ndim == 3 and c.groups > 1,
        "grouped-cout-per-group-gt-1": lambda c: c.groups > 1 and c.out_channels // c.groups > 1,
        "depthwise": lambda c: c.groups > 1 and c.in_channels == c.groups,
        "output-padding-ge-stride": lambda c: any(
            op >= s for op, s in zip(c.output_padding, c.stride, strict=True)
        ),
        "padding-beyond-kernel-extent": lambda c: any(
            p > d * (k - 1) for p, d, k in zip(c.padding, c.dilation, c.kernel_size, strict=True)
        ),
        "dilation-gt-1": lambda c: max(c.dilation) > 1 and c.ndim == 2,
        "no-bias": lambda c: not c.bias,
    }
    found = find(conv_configs(), predicates[region], settings=settings(max_examples=2000, database=None))
    assert spec.violations(found.input_shape, found.params()) == []


# --- known bugs (strict xfail: they start failing the suite once fixed, so the marker gets removed) ----


def test_empty_batch() -> None:
    torch = pytest.importorskip("torch")
    x, w = np.zeros((0, 2, 4)), np.zeros((2, 3, 3))
    assert spec.violations(x.shape, oracle.params_for(x.shape, w.shape)) == []
    want = torch.nn.functional.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(w), stride=2)
    got = oracle.conv_transpose(x, w, stride=2)
    assert got.shape == tuple(want.shape) == (0, 3, 9)


@settings(max_examples=25, deadline=None)
@given(conv_configs(max_size=200, max_work=1500))
def test_vjp_matches_central_finite_differences(config: ConvConfig) -> None:
    """<g, f(θ + h·e) - f(θ - h·e)> / 2h for random directions e: the forward is linear in x and in w
    (bilinear overall), so central differences are exact up to rounding."""
    x, w, b = config.arrays(seed=4)
    rng = np.random.default_rng(11)
    g = rng.standard_normal(config.output_shape)
    grad_x, grad_w, grad_b = oracle.conv_transpose_vjp(x, w, b, g, **config.kwargs())

    def loss(xv: np.ndarray, wv: np.ndarray, bv: np.ndarray | None) -> float:
        return float(np.sum(g * oracle.conv_transpose(xv, wv, bv, **config.kwargs())))

    h = 1e-3
    for name, grad, perturb in (
        ("grad_x", grad_x, lambda d: (x + d, w, b)),
        ("grad_weight", grad_w, lambda d: (x, w + d, b)),
        *((("grad_bias", grad_b, lambda d: (x, w, b + d)),) if b is not None else ()),
    ):
        direction = rng.standard_normal(grad.shape)
        numeric = (loss(*perturb(h * direction)) - loss(*perturb(-h * direction))) / (2 * h)
        analytic = float(np.sum(grad * direction))
        assert numeric == pytest.approx(analytic, rel=1e-7, abs=1e-7), f"{name} for {config}"


def test_vjp_magnitude_bound_dominates_every_gradient() -> None:
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 4, 5, 3)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)
    kwargs = {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "groups": 2, "dilation": (1, 2)}
    out_shape = oracle.conv_transpose(x, w, b, **kwargs).shape
    g = rng.standard_normal(out_shape)
    grads = oracle.conv_transpose_vjp(x, w, b, g, **kwargs)
    bounds = oracle.vjp_magnitude_bound(x, w, b, g, **kwargs)
    for name, grad, bound in zip(("grad_x", "grad_weight", "grad_bias"), grads, bounds, strict=True):
        assert np.all(np.abs(grad) <= bound + 1e-12), name
    equal = oracle.conv_transpose_vjp(np.abs(x), np.abs(w), np.abs(b), np.abs(g), **kwargs)
    for grad, bound in zip(equal, bounds, strict=True):
        np.testing.assert_allclose(grad, bound)


def test_vjp_rejects_a_cotangent_of_the_wrong_shape() -> None:
    x, w = np.ones((1, 2, 4)), np.ones((2, 3, 3))
    with pytest.raises(ValueError, match="grad_out must have the output's shape"):
        oracle.conv_transpose_vjp(x, w, None, np.ones((1, 3, 5)))


# --- the wider parameter space: asymmetric and string padding, output_size, unbatched, N = 0 -------


def torch_form(config: ConvConfig) -> ConvConfig | None:
    """The same configuration in torch's symmetric form, via spec.ConvParams.symmetric_padding."""
    form = config.params().symmetric_padding
    return None if form is None else replace(config, padding=form[0], output_padding=form[1])


@settings(max_examples=120, deadline=None)
@given(asymmetric_configs())
@example(config((1, 2, 5), 3, 3, stride=2, padding=((2, 0),)))  # lo > hi
@example(config((1, 2, 4, 3), 2, (3, 2), stride=(2, 1), padding=((0, 2), (1, 0))))  # lo < hi, mixed
def test_asymmetric_padding_matches_loops(config: ConvConfig) -> None:
    got = assert_matches_loops(config)
    assert got.shape == spec.output_shape(config.input_shape, config.params()), (
        f"oracle.conv_transpose({config}): shape {got.shape} is not spec.output_shape's"
    )


@st.composite
def torch_expressible_asymmetric_configs(draw: st.DrawFn) -> ConvConfig:
    """(lo, hi) pairs with lo − hi + op in [0, max(stride, dilation)): torch has a form for them."""
    base = draw(conv_configs(max_size=600, max_work=6000))
    pairs = []
    for length, k, s, d, op in zip(
        base.input_shape[2:], base.kernel_size, base.stride, base.dilation, base.output_padding
    ):
        full = (length - 1) * s + d * (k - 1) + 1 + op
        torch_op = draw(st.integers(0, max(s, d) - 1))
        lo = draw(st.integers(max(torch_op - op, 0), max(torch_op - op, 0) + 3))
        hi = lo - torch_op + op
        assume(full - lo - hi >= 1)
        pairs.append((lo, hi))
    assume(any(lo != hi for lo, hi in pairs))
    return replace(base, padding=tuple(pairs))


# Most drawn configurations have stride and dilation 1 on some axis, where torch's form is symmetric
# only, so many are filtered out; the 80 that remain are what the test needs.
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(torch_expressible_asymmetric_configs())
def test_asymmetric_padding_matches_torch_where_torch_expresses_it(config: ConvConfig) -> None:
    """(lo, hi) with op is torch's padding lo, output_padding lo - hi + op when that is valid."""
    torch_config = torch_form(config)
    assert torch_config is not None, f"spec.ConvParams.symmetric_padding found no torch form for {config}"
    x, w, b = config.arrays()
    np.testing.assert_allclose(
        oracle.conv_transpose(x, w, b, **config.kwargs()),
        oracle.conv_transpose(x, w, b, **torch_config.kwargs()),
        rtol=0,
        atol=0,
        err_msg=f"oracle: {config} differs from its torch form {torch_config}",
    )
    assert_matches_torch(torch_config)


@pytest.mark.parametrize(
    ("mode", "kernel", "stride", "dilation", "pairs", "extra"),
    [
        ("same", 3, 1, 1, (1, 1), 0),
        ("same", 3, 2, 1, (0, 1), 0),  # keras-team/keras#22876's region: the extra crop at the end
        ("same", 4, 2, 1, (1, 1), 0),
        ("same", 5, 3, 1, (1, 1), 0),
        ("same", 4, 3, 1, (0, 1), 0),
        ("same", 1, 2, 1, (0, 0), 1),  # kernel below stride: extended at the end to L·s
        ("same", 3, 2, 2, (1, 2), 0),  # dilated extent 5
        ("same_upper", 3, 2, 1, (0, 1), 0),
        ("same_lower", 3, 2, 1, (1, 0), 0),
        ("same_lower", 6, 1, 1, (3, 2), 0),
        ("same_upper", 6, 1, 1, (2, 3), 0),
        ("valid", 3, 2, 1, (0, 0), 0),
        ("valid", 2, 3, 1, (0, 0), 1),  # L·s + max(k - s, 0): one more than (L-1)·s + k
    ],
)
def test_padding_modes_resolve(mode: str, kernel: int, stride: int, dilation: int, pairs, extra) -> None:
    got = spec.resolve_padding_mode(mode, (kernel,), (stride,), (dilation,))
    assert got == ((pairs,), (extra,)), (
        f"spec.resolve_padding_mode({mode!r}, k={kernel}, s={stride}, d={dilation}) gave {got}, "
        f"expected {((pairs,), (extra,))}"
    )
    length = 5
    p = spec.ConvParams.make(1, 1, 1, kernel, stride, mode, dilation=dilation)
    (out,) = spec.output_spatial((length,), p)
    e = dilation * (kernel - 1) + 1
    want = length * stride + (max(e - stride, 0) if mode == "valid" else 0)
    assert out == want, f"padding {mode!r}, k={kernel}, s={stride}, d={dilation}: length {out}, want {want}"


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("where", ["low", "high"])
def test_output_size_matches_torch_layer(ndim: int, where: str) -> None:
    """output_size at both ends of its reachable range gives torch.nn's forward(output_size) result."""
    torch = pytest.importorskip("torch")
    base = config((2, 2, *(3,) * ndim), 4, 3, stride=3, padding=1, groups=2)
    low = spec.output_spatial(base.input_shape[2:], base.params())
    size = low if where == "low" else tuple(v + 2 for v in low)
    sized = replace(base, output_size=size)
    assert spec.violations(sized.input_shape, sized.params()) == [], f"{sized} should be reachable"
    x, w, b = sized.arrays()
    p = sized.params()
    got = oracle.conv_transpose(x, w, b, p.stride, p.padding_pairs, p.output_padding, p.groups, p.dilation)
    layer = getattr(torch.nn, f"ConvTranspose{ndim}d")(2, 4, 3, stride=3, padding=1, groups=2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        layer.bias.copy_(torch.from_numpy(b))
        want = layer(torch.from_numpy(x), output_size=list(size)).numpy()
    assert got.shape == want.shape, f"output_size={size}: oracle {got.shape}, torch {want.shape}"
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"output_size={size}")


@pytest.mark.parametrize(
    "shape", [(2, 5), (2, 4, 3), (2, 3, 2, 3), (0, 2, 5), (0, 2, 4, 3), (0, 2, 2, 2, 3)], ids=str
)
def test_unbatched_and_empty_batch_match_torch(shape: tuple[int, ...]) -> None:
    """Forward and VJP of unbatched (C_in, *L) and empty-batch inputs against torch float64."""
    torch = pytest.importorskip("torch")
    batched = len(shape) in (4, 5) or shape[0] == 0
    ndim = len(shape) - (2 if batched else 1)
    cin = shape[1] if batched else shape[0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((cin, 3, *(2,) * ndim))
    b = rng.standard_normal(3)
    kwargs = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 1, "dilation": 1}
    got = oracle.conv_transpose(x, w, b, **kwargs)
    leaves = [torch.from_numpy(a).requires_grad_() for a in (x, w, b)]
    out = getattr(torch.nn.functional, f"conv_transpose{ndim}d")(*leaves, **kwargs)
    assert got.shape == tuple(out.shape), f"shape {shape}: oracle {got.shape}, torch {tuple(out.shape)}"
    np.testing.assert_allclose(got, out.detach().numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{shape}")
    g = rng.standard_normal(got.shape)
    want = torch.autograd.grad(out, leaves, torch.from_numpy(g))
    for name, mine, theirs in zip(
        ("grad_x", "grad_w", "grad_b"), oracle.conv_transpose_vjp(x, w, b, g, **kwargs), want
    ):
        np.testing.assert_allclose(
            mine, theirs.numpy(), rtol=1e-12, atol=1e-12, err_msg=f"{name} of input shape {shape}"
        )
