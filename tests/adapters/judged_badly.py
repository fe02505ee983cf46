"""A planted harness bug: importing this module makes the worker's judging abort or hang on chosen
cases of :class:`JudgedBadly`, whose framework calls all return. :class:`SteadyAfter` shares its
worker processes and is called after it, so a judging crash blamed on "the adapter the worker ran
last" would land on the steady one."""

from __future__ import annotations

import os
import time

from crashy import SteadyBeside  # (an adapter file's folder is on the path, as for a user's own)

from conformance import runner
from conformance.checks import Calls

_judge = runner.judge


def _planted(calls: Calls) -> list:
    if calls.framework == "judged-badly":
        if calls.case.id == "abort-here":
            os.abort()
        if calls.case.id == "hang-here":
            time.sleep(3600)
    return _judge(calls)


runner.judge = _planted  # what the worker's loop calls to judge a job's calls


class JudgedBadly(SteadyBeside):  # (the oracle's forward, the framework's own validation)
    name = "judged-badly"
    process_group = "judged-badly-then-steady"


class SteadyAfter(SteadyBeside):
    name = "steady-after"
    process_group = "judged-badly-then-steady"
