"""Build glue pyproject.toml cannot express (the metadata is all there): the case library lives once,
in cases/ at the top level, and the wheel and sdist carry it as ``conformance._cases``, where
:mod:`conformance.library` finds it in an installed copy. Its files are package data through
MANIFEST.in (pyproject's package-data table would replace a ``package_data`` given here)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["conformance", "conformance.*"]), "conformance._cases"],
    package_dir={"conformance._cases": "cases"},
)
