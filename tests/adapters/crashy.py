"""An adapter that takes its process down on chosen cases, the ways native libraries do."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from conformance.adapters import Adapter
from conformance.oracle import conv_transpose
from conformance.spec import ConvParams, violations


class Crashy(Adapter):
    name = "crashy"
    framework_modules = (__name__,)  # its validation stands for the framework's

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        stride = params.stride[0]
        if stride == 2:
            print("native library: about to abort", file=sys.stderr, flush=True)
            os.abort()
        if stride == 3:
            os._exit(0)  # a silent exit(0) from inside a native library
        if stride == 4:
            time.sleep(3600)
        if violations(x.shape, params):
            raise ValueError("invalid configuration")
        # output of an earlier case in the same worker: a crash report must not quote it
        print("native library: finished a call", file=sys.stderr, flush=True)
        p = params
        return conv_transpose(
            x, weight, bias, p.stride, p.padding, p.output_padding, p.groups, p.dilation
        ).astype(x.dtype)


class CrashyBeside(Crashy):
    """Crashy in a worker process it shares with :class:`SteadyBeside`, which runs first."""

    name = "crashy-beside"
    process_group = "crashy-and-steady"


class SteadyBeside(Adapter):
    """A correct adapter sharing its worker processes with :class:`CrashyBeside`."""

    name = "steady-beside"
    framework_modules = (__name__,)
    process_group = "crashy-and-steady"

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        if violations(x.shape, params):
            raise ValueError("invalid configuration")
        p = params
        return conv_transpose(
            x, weight, bias, p.stride, p.padding, p.output_padding, p.groups, p.dilation
        ).astype(x.dtype)


class CrashyTellsCoreLimit(Crashy):
    """Crashy, telling in its build facts what core dump its worker process may write."""

    name = "crashy-core-limit"

    def build_facts(self) -> dict[str, int]:
        import resource

        from conformance.runner import dumpable

        # dumpable 0: no dump of any kind, piped to a crash collector included
        return {"core_limit": resource.getrlimit(resource.RLIMIT_CORE)[0], "dumpable": dumpable()}
