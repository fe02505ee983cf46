"""One configuration per new dimension of the parameter space, and what each built-in adapter
declares it can express there: the adapter tests of every environment check the same table."""

from __future__ import annotations

from conformance.adapters import Adapter
from conformance.cases import make_case
from conformance.checks import run_checks

BASE = {
    "op": "conv_transpose2d",
    "input_shape": [2, 4, 5, 4],
    "out_channels": 4,
    "kernel_size": 3,
    "stride": 2,
}
#: dimension -> the case fields that exercise it (all valid)
SPACE = {
    "asymmetric-foldable": {"padding": [[1, 0], [2, 1]]},  # (padding, output_padding) = ([1, 2], [1, 1])
    "asymmetric": {"padding": [[0, 2], [2, 0]]},  # lo < hi on one axis: no symmetric form
    "same": {"padding": "same"},
    "valid": {"padding": "valid"},
    "same_upper": {"padding": "same_upper"},
    "same_lower": {"padding": "same_lower"},
    "output_size": {"padding": 1, "output_size": [10, 8]},
    "unbatched": {"input_shape": [4, 5, 4]},
    "empty-batch": {"input_shape": [0, 4, 5, 4]},
    "channels_last": {"layout": "channels_last", "padding": 1},
    "strided": {"layout": "strided", "padding": 1},
}
#: adapter -> the dimensions it reports unsupported (a fragment of its reason each)
INEXPRESSIBLE = {
    "torch": {
        "asymmetric": "no (padding, output_padding) form",
        **{m: f"takes no padding='{m}'" for m in ("same", "valid", "same_upper", "same_lower")},
        "output_size": "takes no output_size",
    },
    "torch.nn": {
        "asymmetric": "no (padding, output_padding) form",
        **{m: f"takes no padding='{m}'" for m in ("same", "valid", "same_upper", "same_lower")},
    },
    "mlx": {
        **{m: f"takes no padding='{m}'" for m in ("same", "valid", "same_upper", "same_lower")},
        "output_size": "takes no output_size",
        "unbatched": "takes batched inputs",
    },
    "mlx.nn": {
        "asymmetric": "no (padding, output_padding) form",
        **{m: f"takes no padding='{m}'" for m in ("same", "valid", "same_upper", "same_lower")},
        "output_size": "takes no output_size",
        "unbatched": "takes batched inputs",
    },
    "jax": {
        "same_upper": "takes no padding='same_upper'",
        "same_lower": "takes no padding='same_lower'",
        "output_size": "takes no output_size",
        "unbatched": "takes batched inputs",
    },
    "onnxruntime": {
        "same": "takes no padding='same'",
        "valid": "takes no padding='valid'",
        "output_size": "output_shape derives the pads",
        "unbatched": "takes batched inputs",
    },
}


def assert_expresses_its_declared_space(adapter: Adapter, skip: tuple[str, ...] = ()) -> None:
    """Every dimension the adapter's table lists is unsupported with that reason; every other one
    runs and passes the forward check (``skip``: dimensions whose verdict a baseline records)."""
    __tracebackhide__ = True
    declared = INEXPRESSIBLE[adapter.name]
    for dimension, fields in SPACE.items():
        if dimension in skip:
            continue
        case = make_case({**BASE, **fields}, dimension)
        (result,) = run_checks(case, adapter, selected=["forward"])
        if dimension in declared:
            assert result.status == "unsupported" and declared[dimension] in result.message, (
                f"{adapter.name} on {dimension} ({fields}): {result.status} {result.message!r}, expected "
                f"unsupported with {declared[dimension]!r}"
            )
        else:
            assert result.status == "pass", (
                f"{adapter.name} on {dimension} ({fields}): {result.status} {result.message!r}, expected pass"
            )
