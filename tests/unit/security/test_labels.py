"""Security labels: which restrict, canonical names, fail closed on the unknown (FHIR-SL-01..03)."""

from __future__ import annotations

from hearth.security.labels import (
    ACT_CODE,
    CONFIDENTIALITY,
    KNOWN_RESTRICTING,
    OBSERVATION_VALUE,
    PRIVACY_LAW,
    PURPOSE_OF_USE,
    carry_restricting,
    held_labels,
    lacking_labels,
    restricting_labels,
)


def labelled(*codings: dict[str, object]) -> dict[str, object]:
    return {"resourceType": "Observation", "meta": {"security": list(codings)}}


def test_normal_confidentiality_and_handling_marks_restrict_nothing() -> None:
    resource = labelled(
        {"system": CONFIDENTIALITY, "code": "N"},
        {"system": CONFIDENTIALITY, "code": "M"},
        {"system": OBSERVATION_VALUE, "code": "REDACTED"},
        {"system": PURPOSE_OF_USE, "code": "TREAT"},
    )
    assert restricting_labels(resource) == frozenset()
    assert restricting_labels(None) == frozenset()
    assert restricting_labels({"meta": {"security": "not a list"}}) == frozenset()
    assert restricting_labels({"meta": "odd"}) == frozenset()


def test_restricted_sensitive_and_legal_labels_restrict() -> None:
    resource = labelled(
        {"system": CONFIDENTIALITY, "code": "R"},
        {"system": ACT_CODE, "code": "HIV"},
        {"system": PRIVACY_LAW, "code": "42CFRPart2"},
    )
    assert restricting_labels(resource) == {"R", "HIV", "42CFRPart2"}


def test_anything_unrecognised_is_question_mark() -> None:
    for coding in (
        {"system": CONFIDENTIALITY, "code": "X"},
        {"system": ACT_CODE, "code": "NOTASENSITIVITY"},
        {"system": PRIVACY_LAW, "code": "SomeLaw"},
        {"system": "urn:local", "code": "SECRET"},
        {"code": "R"},  # no system: not trusted to mean v3 Confidentiality
        {"system": CONFIDENTIALITY},  # no code
    ):
        assert restricting_labels(labelled(coding)) == {"?"}, coding
    assert "?" in KNOWN_RESTRICTING


def test_holding_and_lacking() -> None:
    assert held_labels(["*", "R"]) is None
    assert lacking_labels(None) == frozenset()
    assert lacking_labels(held_labels(["R"])) == KNOWN_RESTRICTING - {"R"}


def test_restricting_labels_are_carried_into_a_write_that_drops_them() -> None:
    stored = labelled(
        {"system": CONFIDENTIALITY, "code": "R"},
        {"system": CONFIDENTIALITY, "code": "R"},  # a duplicate is carried once
        {"system": CONFIDENTIALITY, "code": "N"},  # not restricting: not carried
        "junk",  # type: ignore[arg-type]
    )
    new = {"resourceType": "Observation", "status": "final"}
    carried = carry_restricting(new, stored)
    assert carried["meta"]["security"] == [{"system": CONFIDENTIALITY, "code": "R"}]
    assert carry_restricting(carried, stored) == carried
    assert carry_restricting(new, {"resourceType": "Observation"}) == new
