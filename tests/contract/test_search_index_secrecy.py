"""The search tables hold no plaintext PHI (BRIEF "Storage principles"), on every engine."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.support import Instance, admin

pytestmark = pytest.mark.engines

MARKER_FAMILY = "Quillfeatherova"
MARKER_GIVEN = "Zephyrine"
MARKER_BIRTH = "1947-03-29"
MARKER_MRN = "MRN98765MARKER"
MARKER_CODE = "E11.9"


def _cells(instance: Instance, table: str) -> list[bytes]:
    out: list[bytes] = []
    with instance.container.db.read.connect() as conn:
        for row in conn.execute(text(f"SELECT * FROM {table}")):
            for cell in row:
                if isinstance(cell, bytes | bytearray | memoryview):
                    out.append(bytes(cell))
                elif isinstance(cell, str):  # numbers (seq, write time) are not PHI
                    out.append(cell.encode())
    return out


def test_index_tables_hold_no_plaintext_of_planted_markers(instance: Instance) -> None:
    repo = instance.container.repository(admin())
    patient = repo.create(
        {
            "resourceType": "Patient",
            "name": [{"family": MARKER_FAMILY, "given": [MARKER_GIVEN]}],
            "birthDate": MARKER_BIRTH,
            "identifier": [{"system": "urn:example:mrn", "value": MARKER_MRN}],
        }
    )
    repo.create(
        {
            "resourceType": "Condition",
            "subject": {"reference": f"Patient/{patient.res_id}"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": MARKER_CODE}]},
            "onsetDateTime": MARKER_BIRTH,
        }
    )
    needles = {
        MARKER_FAMILY,
        MARKER_FAMILY.lower(),
        MARKER_FAMILY[:5].lower(),
        MARKER_GIVEN.lower(),
        MARKER_BIRTH,
        MARKER_BIRTH.replace("-", ""),
        MARKER_MRN,
        MARKER_MRN.lower(),
        MARKER_CODE,
        "icd-10",
    }
    tables = (
        "search_resource",
        "search_hash",
        "search_reference",
        "search_compartment",
        "search_care_link",
    )
    rows = {table: _cells(instance, table) for table in tables}
    assert rows["search_hash"], "the index must hold something for this test to mean anything"
    for table, cells in rows.items():
        blob = b"\x00".join(cells)
        for needle in needles:
            assert needle.encode() not in blob, (table, needle)
    # The clear columns hold only types, random ids, parameter codes and write times.
    with instance.container.db.read.connect() as conn:
        refs = conn.execute(
            text("SELECT param, target_type, target_id, res_type FROM search_reference")
        ).all()
    assert {tuple(r) for r in refs} >= {("subject", "Patient", patient.res_id, "Condition")}
