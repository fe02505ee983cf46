"""torch's adapters take the VJP as training code does, through a scalar loss's ``backward()``: the
gradients must be those of ``torch.autograd.grad(out, leaves, grad_outputs=g)`` bit for bit, in
every layout and dtype, and a VJP must not import sympy (what ``grad_outputs`` costs a process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conformance.adapters import load_adapter  # noqa: E402
from conformance.adapters.torch_functional import TorchFunctional, loss, to_numpy, to_torch  # noqa: E402
from conformance.adapters.torch_nn import TorchLayer  # noqa: E402
from conformance.cases import Case  # noqa: E402
from conformance.inputs import make_cotangent, make_inputs  # noqa: E402
from tests.helpers.pytest_helpers import load_slice  # noqa: E402

SLICE = """
op: conv_transpose2d
defaults: {input_shape: [2, 4, 5, 6], out_channels: 6, kernel_size: [3, 2], stride: 2, padding: [1, 0]}
cases:
  - id: layouts
    matrix:
      layout: [contiguous, channels_last, strided]
      dtype: [float32, float16, bfloat16, float64]
      groups: [1, 2]
  - id: one-d-no-bias
    op: conv_transpose1d
    input_shape: [1, 4, 7]
    out_channels: 2
    kernel_size: 4
    padding: 1
    bias: false
  - id: three-d-channels-last
    op: conv_transpose3d
    input_shape: [1, 4, 3, 2, 3]
    out_channels: 4
    kernel_size: 2
    padding: 0
    layout: channels_last
  - id: unbatched
    input_shape: [4, 5, 6]
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return load_slice(Path(tmp_path_factory.mktemp("slice")), SLICE)


def _grad_outputs_vjp(name: str, case: Case) -> list[np.ndarray | None]:
    """The VJP through ``torch.autograd.grad(..., grad_outputs=g)``, on what the adapter is given."""
    inputs = make_inputs(case)
    x, weight, bias = inputs.x, inputs.weight, inputs.bias
    grad_out = to_torch(make_cotangent(case))
    params = case.params
    if name == "torch":
        leaves = [to_torch(a).requires_grad_() for a in (x, weight, bias) if a is not None]
        out = TorchFunctional._call(leaves[0], leaves[1], leaves[2] if bias is not None else None, params)
    else:
        layer = TorchLayer.build(weight, bias, params)
        leaves = [to_torch(x).requires_grad_(), layer.weight] + ([layer.bias] if bias is not None else [])
        out = TorchLayer()._call(layer, leaves[0], params)
    grads = [to_numpy(g) for g in torch.autograd.grad(out, leaves, grad_outputs=grad_out)]
    return grads + [None] * (3 - len(grads))


@pytest.mark.parametrize("name", ["torch", "torch.nn"])
def test_the_scalar_loss_vjp_is_the_grad_outputs_vjp_bit_for_bit(name: str, cases: list[Case]) -> None:
    adapter = load_adapter(name)
    assert len(cases) == 27  # the whole slice: a failed load cannot pass unseen
    for case in cases:
        inputs = make_inputs(case)
        x, weight, bias = inputs.x, inputs.weight, inputs.bias
        got = adapter.vjp(x, weight, bias, case.params, make_cotangent(case))
        want = _grad_outputs_vjp(name, case)
        for which, g, w in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
            where = f"{name} {case.id} {which}"
            if w is None:
                assert g is None, where
                continue
            assert g.shape == w.shape and g.dtype == w.dtype, where
            assert g.tobytes() == w.tobytes(), f"{where}: the scalar loss's gradient differs"


def test_a_torch_vjp_does_not_import_sympy() -> None:
    """``grad_outputs=`` makes autograd import torch.fx's symbolic shapes, and sympy with them
    (0.4-0.6 s in every process that runs a VJP); the adapters' scalar loss does not."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from conformance.adapters import load_adapter
        from conformance.spec import ConvParams
        params = ConvParams.make(2, 2, 3, (2, 2), stride=(2, 2))
        x, w, b = np.ones((1, 2, 3, 3), np.float32), np.ones((2, 3, 2, 2), np.float32), np.ones(3, np.float32)
        for name in ("torch", "torch.nn"):
            grads = load_adapter(name).vjp(x, w, b, params, np.ones((1, 3, 6, 6), np.float32))
            assert grads[0].shape == x.shape, grads[0].shape
        print(sorted(m for m in sys.modules if m in ("sympy", "torch.fx.experimental.symbolic_shapes")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"a VJP imported {done.stdout.strip()}"


@pytest.mark.parametrize("shape", [(2, 3), (3, 2), (1, 3)])
def test_an_output_of_another_shape_than_the_cotangent_is_torchs_own_error(shape: tuple[int, int]) -> None:
    """Never broadcast against the cotangent (a (1, 3) output against a (2, 3) one would give a
    VJP of something else): torch's own check raises, as ``grad_outputs=`` did."""
    out = torch.zeros(shape, requires_grad=True) * 2
    cotangent = np.ones((2, 3), np.float32)
    if shape == (2, 3):
        assert loss(out, cotangent).shape == ()
        return
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        loss(out, cotangent)
