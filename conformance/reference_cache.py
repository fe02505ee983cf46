"""The oracle's reference arrays on disk: each case's computed once, then read by every run.

A run draws, for each valid case, its inputs and output cotangent and computes the oracle's output
and its magnitude bound and, for the gradient checks, three gradients and their bounds: a quarter
of what the harness itself spends on a run of the main environment, and the same again in every
environment of the gate. They depend on nothing but the case's shape, parameters, dtype, seed and
value distribution and on the code that draws the inputs and computes them, so they are stored
under a key of exactly those: the case's fields, the source of the modules that compute them (a
change to the oracle makes new keys), NumPy's version, the machine's architecture and the thread
count of NumPy's BLAS (see :func:`blas_threads`). Inputs are stored as drawn, before the case's
memory layout (which is not in the key): the reader lays them out. Beside the arrays, a file holds
a few facts worked out from them (what each check's tolerance is scaled by, which divisors are
positive), so the key also holds the case's tolerance override.

A case's arrays are one file, all computed on a miss: a job reads one file, not one per group (a
run reads two thousand of them, each read costing more than most of the checks' own arithmetic).

Where: ``$CONFORMANCE_CACHE_DIR``, else ``$XDG_CACHE_HOME/conformance/oracle`` (``~/.cache/...``);
``CONFORMANCE_CACHE_DIR=off`` turns the cache off. A file that cannot be read is recomputed and
written again; writes go through a temporary file and a rename, since workers of one run may
write the same key at once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from conformance import compare, dtypes, inputs, layouts, oracle, spec
from conformance.cases import Case

ENV = "CONFORMANCE_CACHE_DIR"
OFF = "off"
#: the modules whose code decides the reference arrays (and, compare's, the tolerances' facts)
SOURCES = (oracle, inputs, layouts, dtypes, spec, compare)
#: what OpenBLAS (NumPy's BLAS) reads at import for its thread count, in its order of precedence
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")

Arrays = dict[str, "np.ndarray | None"]
#: what is stored beside the arrays: plain JSON values (conformance.compare.Expected.facts())
Facts = dict[str, Any]


def cache_dir() -> Path | None:
    """Where reference arrays are kept, or None when the cache is off."""
    return _cache_dir(os.environ.get(ENV), os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))


@functools.lru_cache(maxsize=8)
def _cache_dir(configured: str | None, xdg_cache_home: str | None, home: str | None) -> Path | None:
    # asked twice per case: worked out once per setting (Path.home() and Path() cost more than reading
    # a small cached file)
    if configured is not None:
        return None if configured.strip().lower() in (OFF, "") else Path(configured)
    base = xdg_cache_home or Path.home() / ".cache"
    return Path(base) / "conformance" / "oracle"


@functools.cache
def oracle_version() -> str:
    """A digest of the code that computes reference arrays, and of what it runs on."""
    digest = hashlib.sha256()
    for module in SOURCES:
        digest.update(Path(module.__file__).read_bytes())
    digest.update(f"numpy {np.__version__} {platform.machine()} {blas_threads()}".encode())
    return digest.hexdigest()[:16]


def blas_threads() -> str:
    """What decides the thread count of NumPy's BLAS in this process. The oracle's float64 GEMMs
    split their sums across threads, so their last bits differ with it (a 3-D case's forward came
    out different at 1 and 2 threads): a run's workers (one thread each) never read what a test or
    a benchmark at the machine's default count computed, and a run's records do not depend on which
    process filled the cache first."""
    for variable in BLAS_THREAD_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            return f"{variable}={value}"
    try:  # OpenBLAS's default: the CPUs this process may run on
        return f"cpus={len(os.sched_getaffinity(0))}"
    except AttributeError:
        return f"cpus={os.cpu_count()}"


def case_key(case: Case, group: str) -> str:
    """The key of ``group`` of ``case``: its fields that decide the arrays (and its tolerance
    override, which decides the stored facts)."""
    return hashlib.sha256(f"{oracle_version()} {case.reference_fields} {group}".encode()).hexdigest()[:40]


MAGIC = b"conformance-oracle-3\n"


def _read(path: str, names: tuple[str, ...]) -> tuple[Arrays, Facts] | None:
    """The arrays and facts of a file that :func:`_write` finished, or None. (A header of facts and
    of the arrays' names, dtypes and shapes, then raw bytes: NumPy's own .npz takes 15 times longer
    to open, and pickle can run code. Dtypes by their case-format names: bfloat16's NumPy code,
    ``<V2``, would read back as bytes.)"""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data.startswith(MAGIC):
            return None
        header_end = data.index(b"\n", len(MAGIC))
        header = json.loads(data[len(MAGIC) : header_end])
        listed = header["arrays"]
        body = memoryview(data)[header_end + 1 :]
        arrays: Arrays = {}
        for name in names:
            entry = listed[name]
            if entry is None:
                arrays[name] = None
                continue
            dtype, shape, offset = dtypes.numpy_dtype(entry[0]), tuple(entry[1]), entry[2]
            count = math.prod(shape)
            if not count:  # (frombuffer's empty arrays have zero strides, which adapters see)
                arrays[name] = np.empty(shape, dtype)
                continue
            arrays[name] = np.frombuffer(body, dtype, count, offset).reshape(shape)
        return arrays, header["facts"]
    except Exception:  # missing, truncated, or not ours: computed again, never fatal
        return None


def _write(path: str, arrays: Arrays, facts: Facts) -> None:
    listed: dict[str, list | None] = {}
    chunks, offset = [], 0
    for name, array in arrays.items():
        if array is None:
            listed[name] = None
            continue
        raw = np.ascontiguousarray(array).tobytes()
        listed[name] = [dtypes.dtype_name(array.dtype), list(array.shape), offset]
        chunks.append(raw)
        offset += len(raw)
    tmp = None
    try:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + json.dumps({"arrays": listed, "facts": facts}).encode() + b"\n")
            f.writelines(chunks)
        os.replace(tmp, path)
    except OSError:  # a read-only or full disk costs the cache, never the run
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def load_or_compute(
    case: Case, group: str, names: tuple[str, ...], compute: Callable[[], tuple[Arrays, Facts]]
) -> tuple[Arrays, Facts]:
    """``compute()``'s arrays (``names``) and facts for ``case``, read from the cache where they
    are stored."""
    directory = cache_dir()
    if directory is None:
        return compute()
    path = os.path.join(directory, f"{case_key(case, group)}.bin")  # (a str: Path's parsing costs)
    found = _read(path, names)
    if found is None:
        found = compute()
        _write(path, *found)
    return found
