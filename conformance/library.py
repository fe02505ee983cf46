"""Where the case library and its baselines are: shipped inside the installed package, or the
repository's ``cases/`` in a source checkout.

``cases/`` at the repository's top level is the one source. The wheel maps it into the package as
``conformance/_cases/`` (``package-dir`` in pyproject.toml), so ``conformance run`` with no paths
runs the library of the installed version, from any directory. An editable install or a checkout
on ``PYTHONPATH`` has no ``_cases`` inside the package and reads the repository's ``cases/``.
"""

from __future__ import annotations

from pathlib import Path

import conformance

PACKAGE = Path(conformance.__file__).resolve().parent
INSTALLED = PACKAGE / "_cases"  # in a built wheel
CHECKOUT = PACKAGE.parent / "cases"  # beside the package in the repository
BASELINE_GLOB = "known_divergences*.yaml"


class LibraryNotFound(Exception):
    pass


def location() -> Path:
    """The directory holding the shipped case files and baselines."""
    for candidate in (INSTALLED, CHECKOUT):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    raise LibraryNotFound(
        f"no case library: neither {INSTALLED} (an installed wheel) nor {CHECKOUT} (a checkout) holds "
        "case files; reinstall conformance, or give case files as paths"
    )


def is_baseline(path: Path) -> bool:
    return path.name.startswith("known_divergences")


def case_files() -> list[Path]:
    """The shipped case files (top level of the library: what the wheel carries), sorted."""
    return sorted(p for p in location().glob("*.yaml") if not is_baseline(p))


def baseline_files() -> list[Path]:
    """The shipped known-divergences files, one per framework of the field, sorted."""
    return sorted(location().glob(BASELINE_GLOB))
