"""A planted harness bug: importing this module makes the worker's judging abort or hang on chosen
cases of :class:`JudgedBadly`, whose framework calls all return. :class:`SteadyAfter` shares its
worker processes and is called after it, so a judging crash blamed on "the adapter the worker ran
last" would land on the steady one."""

from __future__ import annotations

import os
import time

import numpy as np

from conformance import runner
from conformance.adapters import Adapter
from conformance.checks import Calls
from conformance.oracle import conv_transpose
from conformance.spec import ConvParams, violations

_judge = runner.judge


def _planted(calls: Calls) -> list:
    if calls.framework == "judged-badly":
        if calls.case.id == "abort-here":
            os.abort()
        if calls.case.id == "hang-here":
            time.sleep(3600)
    return _judge(calls)


runner.judge = _planted  # what the worker's loop calls to judge a job's calls


class _OracleAdapter(Adapter):
    framework_modules = (__name__,)  # its validation stands for the framework's
    process_group = "judged-badly-then-steady"

    def forward(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams
    ) -> np.ndarray:
        if violations(x.shape, params):
            raise ValueError("invalid configuration")
        p = params
        return conv_transpose(
            x, weight, bias, p.stride, p.padding, p.output_padding, p.groups, p.dilation
        ).astype(x.dtype)


class JudgedBadly(_OracleAdapter):
    name = "judged-badly"


class SteadyAfter(_OracleAdapter):
    name = "steady-after"
