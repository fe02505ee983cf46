"""conformance.spec: the output-length formula, the validity rules, and their agreement with torch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import spec
from tests.helpers.hypothesis_helpers import (
    INVALID_STRATEGIES,
    NOT_EXPRESSIBLE_IN_TORCH_FUNCTIONAL,
    ConvConfig,
    conv_configs,
    invalid_configs,
    minimal_invalid,
    minimal_valid,
)

ALL_RULES = tuple(spec.RULES)


# --- assertion helpers ----------------------------------------------------------------------------


def assert_violations(config: ConvConfig, expected_rules: list[str]) -> list[spec.Violation]:
    __tracebackhide__ = True
    found = spec.violations(config.input_shape, config.params())
    rules = [v.rule for v in found]
    assert rules == expected_rules, (
        f"spec.violations({config}) gave rules {rules}, expected {expected_rules}: {[str(v) for v in found]}"
    )
    return found


def torch_call(config: ConvConfig):
    """torch's output for ``config``: the functional API, or the layer's forward(output_size=...)."""
    torch = pytest.importorskip("torch")
    x, w, b = (None if a is None else torch.from_numpy(a) for a in config.arrays(seed=0))
    if config.output_size is None:
        return getattr(torch.nn.functional, config.op)(x, w, b, **config.kwargs())
    layer = getattr(torch.nn, f"ConvTranspose{config.ndim}d")(
        config.in_channels,
        config.out_channels,
        config.kernel_size,
        stride=config.stride,
        padding=config.padding,
        groups=config.groups,
        bias=config.bias,
        dilation=config.dilation,
    ).double()
    with torch.no_grad():
        layer.weight.copy_(w)
        if b is not None:
            layer.bias.copy_(b)
        return layer(x, output_size=list(config.output_size))


def assert_torch_accepts(config: ConvConfig) -> None:
    __tracebackhide__ = True
    try:
        out = torch_call(config)
    except (RuntimeError, ValueError) as exc:
        pytest.fail(f"torch.nn.functional.{config.op} rejected valid {config}: {exc}")
    expected = spec.output_shape(config.input_shape, config.params())
    assert tuple(out.shape) == expected, (
        f"torch.nn.functional.{config.op}({config}) has shape {tuple(out.shape)}, "
        f"spec.output_shape says {expected}"
    )


def assert_torch_rejects(config: ConvConfig, rule: str) -> None:
    __tracebackhide__ = True
    try:
        out = torch_call(config)
    except (RuntimeError, ValueError):
        return
    pytest.fail(
        f"torch.nn.functional.{config.op} accepted {config} (breaks {rule}), output shape {tuple(out.shape)}"
    )


# --- output_length ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # (length, kernel, stride, padding, output_padding, dilation)
        ((5, 3, 1, 0, 0, 1), 7),
        ((1, 1, 1, 0, 0, 1), 1),
        ((4, 3, 2, 0, 0, 1), 9),
        ((4, 3, 1, 0, 0, 2), 8),  # dilated kernel extent 2·(3-1)+1 = 5
        ((4, 3, 2, 1, 1, 1), 8),  # stride-2 "same" upsampling doubles the length
        # torch docs, ConvTranspose2d(16, 33, (3, 5), stride=(2, 1), padding=(4, 2)) on (20, 16, 50, 100)
        ((50, 3, 2, 4, 0, 1), 93),
        ((100, 5, 1, 2, 0, 1), 100),
        # torch docs: Conv2d(16, 16, 3, stride=2, padding=1) 12 -> 6, the transpose with output_size=12
        ((6, 3, 2, 1, 1, 1), 12),
        ((6, 3, 2, 1, 0, 1), 11),
        ((3, 3, 1, 2, 0, 1), 1),  # padding equal to the kernel extent still leaves one element
        ((3, 3, 1, 3, 0, 1), -1),
    ],
)
def test_output_length_known_values(args: tuple[int, ...], expected: int) -> None:
    got = spec.output_length(*args)
    assert got == expected, f"output_length{args} = {got}, expected {expected}"


def test_output_shape_torch_docs_example() -> None:
    p = spec.ConvParams.make(2, 16, 33, (3, 5), stride=(2, 1), padding=(4, 2))
    assert spec.output_shape((20, 16, 50, 100), p) == (20, 33, 93, 100)


def test_output_shape_raises_with_every_violation() -> None:
    p = spec.ConvParams.make(1, 3, 2, 3, stride=0, groups=2)
    with pytest.raises(ValueError, match="stride_positive") as info:
        spec.output_shape((1, 3, 4), p)
    assert "in_channels_divisible" in str(info.value), str(info.value)


# --- the rules ----------------------------------------------------------------------------------


def test_every_rule_has_an_invalid_strategy_and_a_minimal_breaker() -> None:
    assert set(INVALID_STRATEGIES) == set(spec.RULES)
    for rule in spec.RULES:
        minimal_invalid(rule)  # raises KeyError when a rule has no minimal breaker


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_minimal_valid_config_has_no_violations(ndim: int) -> None:
    assert_violations(minimal_valid(ndim), [])


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("rule", ALL_RULES)
def test_rule_triggered_alone(rule: str, ndim: int) -> None:
    config = minimal_invalid(rule, ndim)
    (found,) = assert_violations(config, [rule])
    expected = spec.RULES[rule]
    assert found.field == expected.field, (
        f"{rule}: reported against field {found.field!r}, not {expected.field!r}"
    )
    assert expected.text in found.message, f"{rule}: message {found.message!r} lacks the rule text"
    assert str(found).startswith(f"{rule}: "), (
        f"str(Violation) {str(found)!r} does not start with the rule id"
    )
    with pytest.raises(ValueError, match=rule):
        spec.output_shape(config.input_shape, config.params())


@pytest.mark.parametrize(
    ("stride", "dilation", "output_padding", "valid"),
    [
        (1, 2, 1, True),  # >= stride but < dilation: allowed (torch agrees)
        (1, 3, 2, True),
        (2, 1, 1, True),
        (2, 3, 2, True),
        (1, 2, 2, False),
        (2, 2, 2, False),
        (3, 1, 3, False),
    ],
)
def test_output_padding_bound(stride: int, dilation: int, output_padding: int, valid: bool) -> None:
    config = ConvConfig(
        ndim=1,
        input_shape=(1, 1, 3),
        out_channels=1,
        kernel_size=(2,),
        stride=(stride,),
        padding=(0,),
        output_padding=(output_padding,),
        dilation=(dilation,),
    )
    assert_violations(config, [] if valid else ["output_padding_bound"])
    if valid:
        assert_torch_accepts(config)
    else:
        assert_torch_rejects(config, "output_padding_bound")


def test_output_padding_bound_names_only_bad_axes() -> None:
    p = spec.ConvParams.make(3, 1, 1, 2, stride=(2, 1, 1), output_padding=(1, 1, 0), dilation=(1, 1, 1))
    (v,) = spec.violations((1, 1, 3, 3, 3), p)
    assert v.rule == "output_padding_bound"
    assert "axes [1]" in v.message, v.message


def test_rules_are_reported_in_a_stable_order() -> None:
    p = spec.ConvParams.make(
        2, 3, 3, 3, stride=(0, 1), dilation=(1, 0), padding=-1, output_padding=-1, groups=2
    )
    rules = [v.rule for v in spec.violations((1, 3, 4, 4), p)]
    assert rules == sorted(rules, key=ALL_RULES.index), rules
    assert set(rules) == {
        "stride_positive",
        "dilation_positive",
        "padding_nonnegative",
        "output_padding_nonnegative",
        "in_channels_divisible",
        "out_channels_divisible",
    }


# --- per_axis, ConvParams, reduction_length ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ndim", "expected"),
    [(2, 1, (2,)), (2, 3, (2, 2, 2)), ((1, 2), 2, (1, 2)), ([1, 2, 3], 3, (1, 2, 3)), (0, 2, (0, 0))],
)
def test_per_axis_expands(value: object, ndim: int, expected: tuple[int, ...]) -> None:
    assert spec.per_axis(value, ndim) == expected


@pytest.mark.parametrize(
    ("value", "ndim"),
    [(True, 2), (False, 1), ((1, 2), 3), ([1, 2, 3], 2), ([1.0, 2], 2), ([True, 1], 2), (["1"], 1), ((), 1)],
)
def test_per_axis_errors(value: object, ndim: int) -> None:
    with pytest.raises(TypeError, match="kernel_size"):
        spec.per_axis(value, ndim, "kernel_size")


def test_conv_params_make_expands_ints() -> None:
    p = spec.ConvParams.make(
        3, 4, 6, 3, stride=2, padding=(0, 1, 2), dilation=[1, 1, 2], groups=2, bias=False
    )
    assert p.kernel_size == (3, 3, 3)
    assert p.stride == (2, 2, 2)
    assert p.padding == (0, 1, 2)
    assert p.output_padding == (0, 0, 0)
    assert p.dilation == (1, 1, 2)
    assert p.op == "conv_transpose3d"
    assert p.weight_shape() == (4, 3, 3, 3, 3)
    with pytest.raises(TypeError, match="stride"):
        spec.ConvParams.make(2, 1, 1, 3, stride=(1, 2, 3))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"ndim": 1, "in_channels": 4, "out_channels": 2, "kernel_size": 3}, 12),
        ({"ndim": 2, "in_channels": 4, "out_channels": 2, "kernel_size": (3, 5), "groups": 2}, 30),
        ({"ndim": 2, "in_channels": 32, "out_channels": 8, "kernel_size": 5}, 800),
        ({"ndim": 3, "in_channels": 6, "out_channels": 6, "kernel_size": (1, 2, 3), "groups": 6}, 6),
        (
            {"ndim": 1, "in_channels": 4, "out_channels": 4, "kernel_size": 2, "groups": 0},
            8,
        ),  # groups < 1 as 1
        ({"ndim": 1, "in_channels": 1, "out_channels": 4, "kernel_size": 1, "groups": 4}, 1),  # at least 1
    ],
)
def test_reduction_length(kwargs: dict, expected: int) -> None:
    p = spec.ConvParams.make(**kwargs)
    assert spec.reduction_length(p) == expected, f"reduction_length({kwargs})"


def test_gradient_reduction_lengths() -> None:
    p = spec.ConvParams.make(2, 4, 6, (3, 2), stride=2, groups=2)
    got = spec.gradient_reduction_lengths((3, 4, 5, 7), p)
    out = spec.output_spatial((5, 7), p)
    assert got == {"grad_input": 3 * 6, "grad_weight": 3 * 5 * 7, "grad_bias": 3 * out[0] * out[1]}, got


# --- spec vs the formula and vs torch on drawn configurations ---------------------------------------


@settings(max_examples=150, deadline=None)
@given(conv_configs())
def test_drawn_valid_configs_have_no_violations(config: ConvConfig) -> None:
    assert_violations(config, [])
    got = spec.output_shape(config.input_shape, config.params())
    assert got == config.output_shape, f"spec.output_shape({config}) = {got}, expected {config.output_shape}"


@settings(max_examples=200, deadline=None)
@given(invalid_configs())
def test_drawn_invalid_configs_break_exactly_their_rule(drawn: tuple[str, ConvConfig]) -> None:
    rule, config = drawn
    (found,) = assert_violations(config, [rule])
    assert found.field == spec.RULES[rule].field


@settings(max_examples=80, deadline=None)
@given(conv_configs())
def test_torch_accepts_valid_configs(config: ConvConfig) -> None:
    assert_torch_accepts(config)


TORCH_RULES = tuple(r for r in ALL_RULES if r not in NOT_EXPRESSIBLE_IN_TORCH_FUNCTIONAL)


@pytest.mark.parametrize("rule", TORCH_RULES)
@pytest.mark.parametrize("ndim", [1, 2])
def test_torch_rejects_minimal_invalid(rule: str, ndim: int) -> None:
    assert_torch_rejects(minimal_invalid(rule, ndim), rule)


@settings(max_examples=120, deadline=None)
@given(invalid_configs(TORCH_RULES))
def test_torch_rejects_invalid_configs(drawn: tuple[str, ConvConfig]) -> None:
    rule, config = drawn
    assert_violations(config, [rule])
    assert_torch_rejects(config, rule)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_torch_agrees_with_spec_on_mixed_configs(data: st.DataObject) -> None:
    """One property over valid and invalid configurations: torch accepts iff spec finds no violation."""
    config = data.draw(
        st.one_of(conv_configs(max_size=400), invalid_configs(TORCH_RULES).map(lambda rc: rc[1]))
    )
    if spec.violations(config.input_shape, config.params()):
        assert_torch_rejects(config, "a rule")
    else:
        assert_torch_accepts(config)


# --- known gaps (strict xfail: they start failing the suite once fixed, so the marker gets removed) ---


@pytest.mark.parametrize(
    ("input_shape", "kernel"),
    [((1, 2, 4), 0), ((1, 2, 0), 3), ((2, 2, 3, 0), 2)],
    ids=["kernel-0", "empty-spatial-1d", "empty-spatial-2d"],
)
def test_spec_rejects_what_torch_rejects(input_shape: tuple[int, ...], kernel: int) -> None:
    ndim = len(input_shape) - 2
    config = ConvConfig(
        ndim, input_shape, 2, (kernel,) * ndim, (1,) * ndim, (0,) * ndim, (0,) * ndim, (1,) * ndim
    )
    assert_torch_rejects(config, "kernel/spatial size")
    assert spec.violations(config.input_shape, config.params()) != [], f"spec finds {config} valid"
