"""hearth.fhir.references: the literal forms of Reference.reference (references.html#literal)."""

from __future__ import annotations

import pytest

from hearth.fhir.references import ParsedReference, ReferenceKind, parse_reference


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Patient/123", ParsedReference(ReferenceKind.RELATIVE, "Patient", "123")),
        (
            "Patient/a.b-c/_history/7",
            ParsedReference(ReferenceKind.RELATIVE, "Patient", "a.b-c", "7"),
        ),
        ("http://x.org/fhir/Patient/1", ParsedReference(ReferenceKind.ABSOLUTE, "Patient", "1")),
        (
            "https://x.org/Patient/1/_history/2",
            ParsedReference(ReferenceKind.ABSOLUTE, "Patient", "1", "2"),
        ),
        ("https://x.org/docs/page.html", ParsedReference(ReferenceKind.ABSOLUTE)),
        ("#p1", ParsedReference(ReferenceKind.LOCAL, id="p1")),
        ("#", ParsedReference(ReferenceKind.LOCAL)),
        ("urn:uuid:C757873D-ec9a-4326-a141-556f43239520", ParsedReference(ReferenceKind.UUID)),
        ("urn:oid:2.16.840.1", ParsedReference(ReferenceKind.OID)),
        ("Patient?identifier=a|b", ParsedReference(ReferenceKind.CONDITIONAL, "Patient")),
    ],
)
def test_forms(value: str, expected: ParsedReference) -> None:
    assert parse_reference(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Patient",
        "Patient/",
        "/Patient/1",
        "patient/1",
        "Patient/1 ",
        "Patient/" + "x" * 65,
        "#a b",
        "#" + "x" * 65,
        "urn:uuid:123",
        "urn:oid:3.1",
        "urn:isbn:123",
        "http://",
        "http://x y/Patient/1",
        "ftp://x/Patient/1",
        "Patient?",
        "u",
        "h",
        "x" * 5000,
    ],
)
def test_bad_forms(value: str) -> None:
    assert parse_reference(value) is None
