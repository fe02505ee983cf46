"""The oracle's reference arrays on disk: each case's computed once, then read by every run.

A run draws, for each valid case, its inputs and output cotangent and computes the oracle's output
and its magnitude bound and, for the gradient checks, three gradients and their bounds: a quarter
of what the harness itself spends on a run of the main environment, and the same again in every
environment of the gate. They depend on nothing but the case's shape, parameters, dtype, seed and
value distribution and on the code that draws the inputs and computes them, so they are stored
under a key of exactly those: the case's fields, the source of the modules that compute them (a
change to the oracle makes new keys), NumPy's version, the machine's architecture and the thread
count of NumPy's BLAS (see :func:`blas_threads`). Inputs are stored as drawn, before the case's
memory layout (which is not in the key): the reader lays them out. Whoever stores arrays may
store what it works out from them too (the checks store each target's tolerance and its facts:
see :data:`conformance.checks.STORED`), so the key also holds the case's tolerance override, the
arrays' names and this module's own code (the files' layout).

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
import math
import os
import platform
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

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
    for module in (*SOURCES, sys.modules[__name__]):  # this module's own code: the files' layout
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


MAGIC = b"conformance-oracle-4\n"
#: the dtypes an array may have, by their number in a file (the module's source is in the key)
_DTYPES = tuple(dtypes.NUMPY_DTYPES.values())
_CODES = {dtype: code for code, dtype in enumerate(_DTYPES)}
_MAX_RANK = 8
#: a file's table row per array: dtype code (-1: absent), rank, offset in the file, dimensions
_ROW = struct.Struct(f"<{3 + _MAX_RANK}q")
_COUNT = struct.Struct("<q")
#: every array starts at a multiple of this in the file: the buffer it is read into is a NumPy
#: array (16-byte aligned), so every array is aligned for its dtype (ufuncs copy unaligned ones)
_ALIGN = 16


def _read(path: str, names: tuple[str, ...]) -> Arrays | None:
    """The arrays of a file that :func:`_write` finished, or None.

    (The magic line, the number of arrays, a table of fixed rows (the arrays of ``names``, in
    order), then each array's raw bytes: a job reads a case's file between two framework calls, and
    with cold caches a JSON header alone had cost more than a comparison. NumPy's own .npz takes 15
    times longer to open, and pickle can run code.) The file is read into one aligned, read-only
    buffer that every array is a view of."""
    try:
        with open(path, "rb", buffering=0) as f:  # (unbuffered: one read, into the buffer)
            size = os.fstat(f.fileno()).st_size
            buffer = np.empty(size, np.uint8)
            if f.readinto(buffer) != size:
                return None
        data = buffer.data
        if data[: len(MAGIC)] != MAGIC:
            return None
        (count,) = _COUNT.unpack_from(data, len(MAGIC))
        if count != len(names):
            return None
        table = struct.unpack_from(f"<{count * _ROW.size // 8}q", data, len(MAGIC) + _COUNT.size)
        buffer.flags.writeable = False  # the pristine arrays: no one writes into them by mistake
        arrays: Arrays = {}
        width = 3 + _MAX_RANK
        for i, name in enumerate(names):
            code, rank, offset, *dims = table[i * width : (i + 1) * width]
            if code < 0:
                arrays[name] = None
                continue
            shape = tuple(dims[:rank])
            if not math.prod(shape):  # (a buffer's empty arrays have zero strides, which adapters see)
                arrays[name] = np.empty(shape, _DTYPES[code])
                continue
            arrays[name] = np.ndarray(shape, _DTYPES[code], buffer, offset)
        return arrays
    except Exception:  # missing, truncated, or not ours: computed again, never fatal
        return None


def _write(path: str, names: tuple[str, ...], arrays: Arrays) -> None:
    rows, chunks = [], []
    offset = _aligned(len(MAGIC) + _COUNT.size + len(names) * _ROW.size)
    for name in names:
        array = arrays[name]
        if array is None:
            rows.append(_ROW.pack(-1, 0, 0, *[0] * _MAX_RANK))
            continue
        code = _CODES.get(array.dtype)
        if code is None or array.ndim > _MAX_RANK:
            return  # (no case has such arrays: computed on every run rather than stored wrongly)
        rows.append(_ROW.pack(code, array.ndim, offset, *array.shape, *[0] * (_MAX_RANK - array.ndim)))
        raw = np.ascontiguousarray(array).tobytes()
        chunks.append((offset, raw))
        offset = _aligned(offset + len(raw))
    content = bytearray(offset)
    head = MAGIC + _COUNT.pack(len(names)) + b"".join(rows)
    content[: len(head)] = head
    for at, raw in chunks:
        content[at : at + len(raw)] = raw
    write_whole(path, content)


def write_whole(path: str, content: bytes | bytearray) -> None:
    """``content`` as the file ``path``, whole or not at all (through a temporary file and a
    rename: processes side by side may write one key at once). A read-only or full disk costs the
    cache, never the run."""
    tmp = None
    try:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def path_of(directory: Path, case: Case, group: str, names: tuple[str, ...]) -> str:
    """Where ``case``'s arrays ``names`` of ``group`` are kept (a str: Path's parsing costs)."""
    layout = ",".join(names)  # (the names, in their order, are the file's layout)
    return os.path.join(directory, f"{case_key(case, f'{group} {layout}')}.bin")


def load_or_compute(case: Case, group: str, names: tuple[str, ...], compute: Callable[[], Arrays]) -> Arrays:
    """``compute()``'s arrays ``names`` for ``case``, read from the cache where they are stored."""
    directory = cache_dir()
    if directory is None:
        return compute()
    path = path_of(directory, case, group, names)
    found = _read(path, names)
    if found is None:
        found = compute()
        _write(path, names, found)
    return found
