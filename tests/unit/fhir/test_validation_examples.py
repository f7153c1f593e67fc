"""Real R4 example resources validate cleanly (positive tests for hearth.fhir.validation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.fhir.jsonbody import parse_json_body
from hearth.fhir.validation import collect_issues, validate_resource

from .conftest import example_paths

PATHS = example_paths()


def test_there_are_about_forty_varied_examples() -> None:
    assert len(PATHS) >= 38
    types = {p.name.split("-", 1)[0] for p in PATHS}
    assert len(types) >= 25


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_example_validates(path: Path) -> None:
    resource = parse_json_body(path.read_bytes(), max_depth=64)
    assert collect_issues(resource) == []
    validate_resource(resource, resource_type=resource["resourceType"])
