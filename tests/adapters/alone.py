"""An adapter that fails every case when another framework was imported into its process: what
the runner's per-framework worker pools must rule out (torch's import beside it would do)."""

from __future__ import annotations

import sys

from tests.adapters.numpy_direct import DirectNumpy


class FailsBesideTorch(DirectNumpy):
    name = "fails-beside-torch"

    def forward(self, x, weight, bias, params):
        if "torch" in sys.modules:
            raise AssertionError("torch was imported into this adapter's worker process")
        return super().forward(x, weight, bias, params)
