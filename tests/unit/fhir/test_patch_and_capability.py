from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hearth.domain import HearthError, errors
from hearth.fhir.capability import ServerFeatures, capability_statement
from hearth.fhir.patch import apply_json_patch, parse_json_patch


@pytest.mark.parametrize(
    "document",
    [
        {},
        [],
        [{"op": "explode", "path": "/a"}],
        [{"op": "add"}],
        [{"op": "add", "path": "/a"}],
        [{"op": "move", "path": "/a"}],
        [{"op": "replace", "path": "/id", "value": "x"}],
        [{"op": "remove", "path": "/resourceType"}],
        [{"op": "copy", "from": "/id", "path": "/x"}],
    ],
)
def test_bad_patches_are_refused(document: object) -> None:
    with pytest.raises(HearthError) as exc:
        parse_json_patch(document)
    assert exc.value.code is errors.BAD_PATCH


def test_patch_applies_and_test_failures_say_so() -> None:
    resource = {"resourceType": "Patient", "id": "p", "active": True}
    ops = parse_json_patch([{"op": "replace", "path": "/active", "value": False}])
    assert apply_json_patch(resource, ops)["active"] is False
    assert resource["active"] is True  # the original is untouched
    with pytest.raises(HearthError) as failed:
        apply_json_patch(
            resource, parse_json_patch([{"op": "test", "path": "/active", "value": False}])
        )
    assert failed.value.code is errors.PATCH_FAILED
    with pytest.raises(HearthError):
        apply_json_patch(resource, parse_json_patch([{"op": "remove", "path": "/nothing"}]))
    with pytest.raises(HearthError):
        apply_json_patch(resource, parse_json_patch([{"op": "replace", "path": "", "value": 1}]))


def test_capability_statement_lists_what_is_implemented() -> None:
    statement = capability_statement(
        base_url="http://h/fhir",
        software_version="1",
        resource_types=["Patient", "Observation"],
        features=ServerFeatures(
            search_params=lambda t: [("name", "string", "http://x")] if t == "Patient" else [],
            operations={"validate-all": "http://sys-op"},
            resource_operations={"Patient": {"everything": "http://op"}},
            search_includes=lambda t: ["Patient:link"] if t == "Patient" else [],
            oauth_urls={"authorize": "http://h/authorize", "token": "http://h/token"},
        ),
        date=datetime(2026, 1, 1, tzinfo=UTC),
    )
    rest = statement["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"code": "search-type"} in patient["interaction"]
    assert patient["searchParam"][0]["name"] == "name"
    observation = next(r for r in rest["resource"] if r["type"] == "Observation")
    assert "searchParam" not in observation
    assert patient["operation"] == [{"name": "everything", "definition": "http://op"}]
    assert rest["operation"] == [{"name": "validate-all", "definition": "http://sys-op"}]
    # FHIR JSON has no empty arrays
    assert patient["searchInclude"] == ["Patient:link"]
    assert "searchInclude" not in observation
    assert "operation" not in observation
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
