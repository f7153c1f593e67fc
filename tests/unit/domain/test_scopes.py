"""SMART v2 scope grammar (SMART App Launch 2.2, SMART-SC-01..04)."""

from __future__ import annotations

import pytest

from hearth.domain import HearthError, ScopeContext, SmartScope, errors, intersect_scopes
from hearth.domain.scopes import is_resource_scope

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("patient/*.rs", "patient/*.rs"),
        ("user/Observation.cruds", "user/Observation.cruds"),
        ("system/*.rs", "system/*.rs"),
        ("patient/Observation.rs?category=" + LAB, "patient/Observation.rs?category=" + LAB),
        ("patient/Observation.rs?category=a%7Cb", "patient/Observation.rs?category=a|b"),
        (
            "user/Observation.s?status=final&category=x",
            "user/Observation.s?category=x&status=final",
        ),
        # Version 1 suffixes read as their v2 equivalents (SMART-SC-03).
        ("patient/Patient.read", "patient/Patient.rs"),
        ("user/*.write", "user/*.cud"),
        ("system/*.*", "system/*.cruds"),
    ],
)
def test_parse_and_render(text: str, canonical: str) -> None:
    assert str(SmartScope.parse(text)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "patient/*.dus",  # out of order: never guessed (SC-02)
        "patient/*.rr",
        "patient/*.x",
        "patient/*.",
        "patient/observation.rs",  # not a resource type name
        "tenant/*.rs",
        "patient/*.rs?category",
        "patient/*.rs?category=",
        "patient/*.rs?category=a&category=b",
        "patient/*.rs?bad name=x",
        "patient/*.rs extra",
    ],
)
def test_malformed_scopes_are_refused(text: str) -> None:
    with pytest.raises(HearthError) as refused:
        SmartScope.parse(text)
    assert refused.value.code is errors.INVALID_SCOPE


def test_parsed_fields() -> None:
    scope = SmartScope.parse("patient/Observation.rs?category=" + LAB)
    assert scope.context is ScopeContext.PATIENT
    assert scope.resource_type == "Observation"
    assert scope.interactions == frozenset("rs")
    assert scope.query == (("category", LAB),)
    assert scope.permissions == "rs"


def test_is_resource_scope() -> None:
    assert is_resource_scope("patient/*.rs")
    assert is_resource_scope("system/Observation.r")
    for other in ("openid", "fhirUser", "launch", "launch/patient", "offline_access"):
        assert not is_resource_scope(other)


def test_covers() -> None:
    wide = SmartScope.parse("user/*.cruds")
    assert wide.covers(SmartScope.parse("user/Observation.rs"))
    assert wide.covers(SmartScope.parse("user/Observation.rs?category=x"))
    assert not wide.covers(SmartScope.parse("patient/Observation.rs"))
    narrow = SmartScope.parse("user/Observation.rs?category=x")
    assert not narrow.covers(SmartScope.parse("user/Observation.rs"))
    assert narrow.covers(SmartScope.parse("user/Observation.r?category=x&status=final"))
    assert not SmartScope.parse("user/Observation.r").covers(SmartScope.parse("user/*.r"))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("system/*.rs", "system/Observation.cruds", "system/Observation.rs"),
        ("system/Observation.cruds", "system/*.rs", "system/Observation.rs"),
        ("system/*.cud", "system/*.rs", None),
        ("system/Patient.r", "system/Observation.r", None),
        ("patient/*.rs", "user/*.rs", None),
        ("user/*.rs?category=a", "user/Observation.r", "user/Observation.r?category=a"),
        ("user/*.rs?category=a", "user/*.rs?category=b", None),
        ("user/*.rs?category=a", "user/*.r?status=final", "user/*.r?category=a&status=final"),
    ],
)
def test_intersection(a: str, b: str, expected: str | None) -> None:
    result = intersect_scopes(SmartScope.parse(a), SmartScope.parse(b))
    assert (str(result) if result is not None else None) == expected
