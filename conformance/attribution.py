"""Who raised: the framework under test, or the adapter's own code.

An exception counts as the framework rejecting a configuration only if the framework raised it.
An adapter whose own code fails first (a dict lookup keyed by the input's rank, a layout helper
dividing by groups = 0) has not shown that the framework rejects anything: that is an adapter
error. Python frames of the framework in the traceback show that it raised; a C function of the
framework called straight from adapter code leaves no frame, so the call is made once more under a
profile hook (``sys.setprofile``) that records which C function raised last, from which frame and
line, and the raise is the framework's when that is where the traceback ends. Only such a raise
pays for the hook and the second call: the hook fires on every Python call, which made a framework
written in Python (tinygrad, a layer API) about three times slower on every call. Extension
functions that are not plain C functions (nanobind's, pybind11's) emit no profile event: a raise
at a call instruction of adapter code with no C function recorded there is taken as theirs.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import CodeType, FrameType, TracebackType
from typing import Any

FRAMEWORK, ADAPTER = "framework", "adapter"
#: the harness's own code never counts as the framework
HARNESS = "conformance"


@dataclass
class Outcome:
    """One adapter call: its value or exception, its duration and, on an exception, who raised it."""

    value: Any = None
    exception: Exception | None = None
    seconds: float = 0.0
    raised_by: str | None = None  # FRAMEWORK | ADAPTER
    where: str = ""  # "file.py:line" of the adapter's raising line, for adapter errors
    modified: str = ""  # inputs the call wrote into (conformance.isolation.modified)


@functools.cache
def _distribution_modules(distribution: str) -> tuple[str, ...]:
    """The top-level modules ``distribution`` installs, as ``packages_distributions()`` finds them
    (its top_level.txt, else its files), read from that one distribution: the whole mapping reads
    every installed package's metadata (0.06 s, in every fork server before its workers start)."""
    import importlib.metadata  # (not at the top: see conformance/__init__.py)

    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ()
    declared = (dist.read_text("top_level.txt") or "").split()
    found = declared or [_top_level(f) for f in dist.files or () if f.suffix == ".py"]
    # some wheels also ship a top-level tests/ or private helpers: not the framework
    return tuple(sorted(m for m in set(found) if m not in ("tests", "test") and not m.startswith("_")))


def _top_level(path: PurePath) -> str:
    """The top-level module an installed file belongs to (its folder, or itself at the top)."""
    return path.parts[0] if len(path.parts) > 1 else path.with_suffix("").name


def _is_call(code: CodeType, offset: int) -> bool:
    return offset in _call_offsets(code)


@functools.cache  # disassembling a function is slow, and the same adapter functions raise case after case
def _call_offsets(code: CodeType) -> frozenset[int]:
    return frozenset(i.offset for i in dis.get_instructions(code) if i.opname.startswith(("CALL", "PRECALL")))


def _top(module: str | None) -> str:
    return (module or "").partition(".")[0]


_ATTRIBUTORS: weakref.WeakKeyDictionary[object, Attributor] = weakref.WeakKeyDictionary()


def attributor(adapter: object) -> Attributor:
    """The adapter's Attributor, made once: finding a distribution's modules reads its metadata."""
    try:
        return _ATTRIBUTORS[adapter]
    except (KeyError, TypeError):
        pass
    who = Attributor(adapter)
    with contextlib.suppress(TypeError):  # an adapter that can't be weakly referenced: not kept
        _ATTRIBUTORS[adapter] = who
    return who


class Attributor:
    """Calls an adapter's methods and says who raised what they raise."""

    def __init__(self, adapter: object) -> None:
        declared = tuple(getattr(adapter, "framework_modules", ()) or ())
        distribution = getattr(adapter, "distribution", None)
        if not declared and distribution:
            declared = _distribution_modules(distribution)
        self.modules = frozenset(_top(m) for m in declared)
        adapter_module = type(adapter).__module__
        self.adapter_module = adapter_module
        self.adapter_file = inspect.getsourcefile(type(adapter)) or ""

    def is_framework(self, module: str | None) -> bool:
        if not module:
            return False
        if self.modules:
            return _top(module) in self.modules
        # Nothing declared or discoverable: everything but the adapter's module and the harness.
        return module != self.adapter_module and _top(module) != HARNESS

    def _c_module(self, function: Any) -> str | None:
        module = getattr(function, "__module__", None)
        if module:
            return module
        owner = getattr(function, "__self__", None)  # a bound C method: the module of its type
        return None if owner is None else type(owner).__module__

    def call(self, fn: Callable[..., Any], *args: Any) -> Outcome:
        started = time.perf_counter()
        try:
            value = fn(*args)
        except Exception as exc:
            seconds = time.perf_counter() - started
            raised_by, where = self._who(exc.__traceback__, None)
            if raised_by is None:  # only the C function that raised can tell: ask again, watching
                raised_by, where = self._who_watched(fn, args, exc)
            if raised_by == ADAPTER and self._chained_from_framework(exc):
                raised_by, where = FRAMEWORK, ""  # the adapter re-raised the framework's own error
            return Outcome(None, exc, seconds, raised_by, where)
        return Outcome(value, None, time.perf_counter() - started)

    def _who_watched(self, fn: Callable[..., Any], args: tuple, first: Exception) -> tuple[str, str]:
        """Who raised ``first``, from a second call under a profile hook that records which C
        function raised last. The hook costs every Python call of the framework (2-3x for a
        framework written in Python), so only a raise that the traceback cannot attribute pays it:
        one whose innermost frame is adapter code at a call instruction."""
        last_c_raise: list[tuple[FrameType, int, Any]] = []

        def profile(frame: FrameType, event: str, arg: Any) -> None:
            if event == "c_exception":
                last_c_raise[:] = [(frame, frame.f_lasti, arg)]

        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            fn(*args)
        except Exception as again:
            sys.setprofile(previous)
            if type(again) is type(first):
                found = self._who(again.__traceback__, last_c_raise)
                if found[0] is not None:
                    return found
        finally:
            sys.setprofile(previous)
        # the second call went otherwise: what the traceback shows (a raise at a call instruction
        # of adapter code with no C function recorded counts as the framework's, as below)
        return FRAMEWORK, ""

    def _chained_from_framework(self, exc: BaseException) -> bool:
        """Whether an exception the adapter raised was raised while handling (or from) one of the
        framework's: an adapter that re-raises or translates a framework error passes it on."""
        seen: set[int] = set()
        inner = exc.__cause__ or exc.__context__
        while inner is not None and id(inner) not in seen:
            seen.add(id(inner))
            tb = inner.__traceback__
            while tb is not None:
                if self.is_framework(tb.tb_frame.f_globals.get("__name__")):
                    return True
                if tb.tb_next is None and _is_call(tb.tb_frame.f_code, tb.tb_lasti):
                    return True  # raised by an extension function called from adapter code
                tb = tb.tb_next
            inner = inner.__cause__ or inner.__context__
        return False

    def _who(self, tb: TracebackType | None, last_c_raise: list | None) -> tuple[str | None, str]:
        """``last_c_raise`` None: not watched; (None, "") when only a watched call can tell."""
        innermost: TracebackType | None = None
        tb = tb.tb_next if tb is not None else None  # skip Attributor.call's own frame
        while tb is not None:
            if self.is_framework(tb.tb_frame.f_globals.get("__name__")):
                return FRAMEWORK, ""
            innermost, tb = tb, tb.tb_next
        if innermost is None:
            return FRAMEWORK, ""  # raised by a C function called as the adapter method itself
        code = innermost.tb_frame.f_code
        if (
            last_c_raise
            and last_c_raise[0][0] is innermost.tb_frame
            and last_c_raise[0][1] == innermost.tb_lasti
        ):
            if self.is_framework(self._c_module(last_c_raise[0][2])):
                return FRAMEWORK, ""
        elif _is_call(code, innermost.tb_lasti):
            if last_c_raise is None:
                return None, ""  # a C function raised there: whose, only a watched call can tell
            return FRAMEWORK, ""  # an extension function that the profile hook cannot see
        return ADAPTER, f"{Path(code.co_filename).name}:{innermost.tb_lineno} (in {code.co_name})"
