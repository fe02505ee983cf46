"""Cross-framework conformance harness for transposed convolution (ConvTranspose1d/2d/3d)."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Looked up when first asked: importlib.metadata costs a run's command 50 ms before it can start
    # the fork servers that import the frameworks (a core idle meanwhile).
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("conformance")
    except PackageNotFoundError:  # running from a source tree that is not installed
        found = "0.1.0+src"
    globals()["__version__"] = found
    return found
