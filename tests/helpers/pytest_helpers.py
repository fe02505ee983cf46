"""Helpers shared by the adapter tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conformance.cases import Case, load_case_file


def load_slice(tmp_path: Path, text: str) -> list[Case]:
    """The cases of a YAML case-file text (a small slice of configurations), validated by the loader."""
    path = tmp_path / "slice.yaml"
    path.write_text(textwrap.dedent(text))
    return load_case_file(path)
