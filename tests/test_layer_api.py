"""Layer-API parity: initialisation formulas are named from measured samples, and the hyper-parameter
order of every dimension's class and function is compared within a framework and against PyTorch.

Runs on fake layer classes and NumPy samples, so it needs no framework; each formula test also
checks that a sample following another formula is not given this one's name.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conformance.layer_api import LayerIntrospection, argument_order_table, describe

RNG = np.random.default_rng(0)


def _sampler(draw):
    """init_sample for LayerIntrospection from ``draw(shape, cin, cout_g, taps) -> weight``."""

    def init_sample(cin: int, cout: int, kernel: tuple[int, int], groups: int):
        shape = (cin, cout // groups, *kernel)
        return draw(shape, cin, cout // groups, math.prod(kernel)), np.zeros(cout)

    return init_sample


class Ordered:  # fake layer classes: only their signatures matter
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, dilation=1):  # fmt: skip
        pass

    def forward(self, x):
        pass


class Swapped(Ordered):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 dilation=1, groups=1):  # fmt: skip
        pass


def conv1d_fn(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    pass


def conv2d_fn(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    pass


def introspection(framework: str, classes: dict, draw=None, functions=None) -> LayerIntrospection:
    draw = draw or (lambda shape, cin, cout_g, taps: RNG.uniform(-0.1, 0.1, shape))
    return LayerIntrospection(
        framework=framework,
        version="0",
        classes=classes,
        init_sample=_sampler(draw),
        weight_layout="",
        data_layout="",
        documented_init="",
        functions=functions or {},
    )


def glorot_uniform(shape, cin, cout_g, taps):
    bound = math.sqrt(6 / ((cin + cout_g) * taps))
    return RNG.uniform(-bound, bound, shape)


def he_normal_fan_in(shape, cin, cout_g, taps):
    return RNG.normal(0, math.sqrt(2 / (cin * taps)), shape)


def lecun_uniform_fan_out(shape, cin, cout_g, taps):
    bound = math.sqrt(3 / (cout_g * taps))
    return RNG.uniform(-bound, bound, shape)


def torch_default(shape, cin, cout_g, taps):
    bound = 1 / math.sqrt(cout_g * taps)
    return RNG.uniform(-bound, bound, shape)


@pytest.mark.parametrize(
    ("draw", "name", "distribution"),
    [
        (glorot_uniform, "Glorot/Xavier sqrt(6/((C_in+C_out/g)·K))", "uniform"),
        (he_normal_fan_in, "He/Kaiming sqrt(6/(C_in·K))", "normal"),
        (lecun_uniform_fan_out, "LeCun sqrt(3/(C_out/g·K))", "uniform"),
        (torch_default, "1/sqrt(C_out/g·K)", "uniform"),
    ],
)
def test_initialisation_formula_is_named(draw, name: str, distribution: str) -> None:
    rows = describe(introspection("fake", {2: Ordered}, draw))["init"]
    first = rows[0]  # C_in=64, C_out=8, 3x3: every formula gives a different bound here
    assert name in first["weight_matches"].split(" = "), f"describe: {first}"
    assert first["weight_distribution"] == distribution, f"describe: {first}"
    others = [n for n in ("Glorot", "He/Kaiming", "LeCun", "1/sqrt") if not name.startswith(n)]
    assert not any(other in first["weight_matches"] for other in others), f"describe: {first}"


def test_constant_initialisations_are_named() -> None:
    zeros = describe(introspection("fake", {2: Ordered}, lambda shape, *_: np.zeros(shape)))["init"][0]
    ones = describe(introspection("fake", {2: Ordered}, lambda shape, *_: np.full(shape, 0.5)))["init"][0]
    assert zeros["weight_matches"] == "all zeros" and zeros["bias"] == "all zeros"
    assert ones["weight_matches"] == "constant 0.5"


def test_argument_order_is_compared_across_dimensions_and_against_pytorch() -> None:
    mixed = describe(
        introspection(
            "mixed",
            {1: Ordered, 2: Swapped, 3: Swapped},
            functions={1: conv1d_fn, 2: conv2d_fn, 3: conv1d_fn},
        )
    )
    torch_like = describe(introspection("torch.nn", {1: Ordered, 2: Ordered, 3: Ordered}))
    [note] = mixed["notes"]
    assert note == (
        "argument order differs between dimensions: Ordered, conv1d_fn, conv1d_fn take …, groups, dilation; "
        "Swapped, Swapped, conv2d_fn take …, dilation, groups"
    ), note
    assert torch_like["notes"] == [], "one order in every dimension: nothing to note"
    rows = argument_order_table([mixed, torch_like])["rows"]
    verdicts = {(r[0], r[1], r[2]): (r[4], r[5]) for r in rows}
    assert verdicts[("mixed", "1d", "Ordered")] == ("differs between dimensions", "same as PyTorch")
    assert verdicts[("mixed", "2d", "Swapped")] == ("differs between dimensions", "differs from PyTorch")
    assert verdicts[("mixed", "2d", "conv2d_fn")] == ("differs between dimensions", "differs from PyTorch")
    assert verdicts[("torch.nn", "3d", "Ordered")] == ("same in every dimension", "same as PyTorch")
