"""The JSON Schema shipped for editors agrees with the loader on the library and on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conformance.cases import case_files
from tests.helpers.pytest_helpers import ROOT

jsonschema = pytest.importorskip("jsonschema")

SCHEMA = json.loads((ROOT / "conformance" / "schema" / "case-file.schema.json").read_text())


@pytest.mark.parametrize("path", case_files([ROOT / "cases"]), ids=lambda p: p.name)
def test_every_library_file_validates_against_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize(
    "doc",
    [
        {"cases": [{"id": "a", "strides": 2}]},  # unknown key
        {"cases": [{"id": "a", "dtype": "float8"}]},  # unknown dtype
        {"cases": [{"id": "a b"}]},  # id with a space
        {"cases": [{"id": "a", "matrix": {"id": ["x"]}}]},  # matrix over the id
        {"cases": []},  # no cases
        {"defaults": {"id": "x"}, "cases": [{"id": "a"}]},  # id in defaults
    ],
    ids=["unknown-key", "dtype", "id-space", "matrix-id", "empty", "defaults-id"],
)
def test_schema_rejects_what_the_loader_rejects(doc: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)
