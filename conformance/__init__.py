"""Cross-framework conformance harness for transposed convolution (ConvTranspose1d/2d/3d)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("conformance")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0+src"
