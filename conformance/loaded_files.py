"""Case files and baselines as loaded, kept between runs: parsing and checking the library's YAML
and its known divergences cost every run a quarter of a second at its start (while the frameworks'
servers import, so in full), reading back what they gave a fiftieth.

A file's entry is keyed by what it was loaded as (cases or divergences), its path as given (a case
and an entry name their file by it), its bytes, the source of every module of the harness's top
level (whatever turns YAML into cases and entries, and what those compute when first asked),
PyYAML's and Python's versions. Only a file that loaded without error is stored: every message
about a bad file still comes from the loader's own checks. The entries are pickles, kept beside
the oracle's arrays (:func:`conformance.reference_cache.cache_dir`, in ``files/``) and trusted as
the user's own files are; ``CONFORMANCE_CACHE_DIR=off`` turns both off. An entry that cannot be
read is loaded again and rewritten; one that cannot be written costs the cache, never the run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import pickle
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from conformance import cases, divergences
from conformance.cases import Case
from conformance.divergences import Divergence
from conformance.reference_cache import cache_dir, write_whole

MAGIC = b"conformance-loaded-1\n"


@functools.cache
def harness_version() -> str:
    """A digest of the harness's top-level modules (the loaders and all they may call) and of what
    parses and pickles: a change to any of them makes new keys."""
    digest = hashlib.sha256(f"pyyaml {yaml.__version__} python {sys.version}".encode())
    for source in sorted(Path(cases.__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def load_case_file(path: str | Path) -> list[Case]:
    """:func:`conformance.cases.load_case_file`, read back where the same harness loaded the same
    file before."""
    return _cached("cases", cases.load_case_file, Case, path)


def load_cases(paths: Iterable[str | Path]) -> list[Case]:
    """:func:`conformance.cases.load_cases`, file by file through :func:`load_case_file`."""
    return [case for path in cases.case_files(paths) for case in load_case_file(path)]


def load_divergences(path: str | Path) -> list[Divergence]:
    """:func:`conformance.divergences.load_divergences`, read back as :func:`load_case_file` is."""
    return _cached("divergences", divergences.load_divergences, Divergence, path)


def _cached(kind: str, load: Callable[[Any], list], item: type, path: str | Path) -> list:
    directory = cache_dir()
    if directory is None:
        return load(path)
    try:
        content = Path(path).read_bytes()
    except OSError:
        return load(path)  # which says why, naming the file
    key = hashlib.sha256(f"{harness_version()} {kind} {path}\0".encode() + content).hexdigest()[:40]
    entry = os.path.join(directory, "files", f"{key}.pickle")
    found = _read(entry, item)
    if found is None:
        found = load(path)  # a bad file raises here: nothing is stored
        with contextlib.suppress(OSError):
            if Path(path).read_bytes() == content:  # (what was loaded is what the key says)
                _write(entry, found)
    return found


def _read(entry: str, item: type) -> list | None:
    try:
        with open(entry, "rb") as f:
            data = f.read()
        if not data.startswith(MAGIC):
            return None
        found = pickle.loads(data[len(MAGIC) :])
    except Exception:  # missing, truncated, or written by a harness that pickled otherwise
        return None
    return found if isinstance(found, list) and all(isinstance(x, item) for x in found) else None


def _write(entry: str, found: list) -> None:
    try:
        content = MAGIC + pickle.dumps(found, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):  # (nothing a loader makes today)
        return
    write_whole(entry, content)
