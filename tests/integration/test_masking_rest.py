"""Minimum necessary over HTTP: the security tester's two findings for the front desk, each
reproduced and closed (docs/design.md, "Labels, masks, Consent").

1. Update, JSON Patch and merge patch answered 200 with the stored ``Appointment.comment``,
   which the role may not see: every answer that carries a resource is now masked as a read.
2. ``Encounter?reason-code=...``, ``:text`` and ``_has`` found resources by the masked
   ``Encounter.reasonCode``: a search that reads a masked element is now refused (403,
   ``HRT-1113``), audited as denied; searches by unmasked elements work as before."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.support import Instance

SNOMED = "http://snomed.info/sct"
DIABETES = "44054006"
COMMENT = "Discuss the biopsy result."
OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"


@pytest.fixture
def desk(sqlite_instance: Instance) -> dict[str, str]:
    users = sqlite_instance.container.users
    users.add("desk", roles=frozenset({"front-desk"}), by="test", user_id="u-desk")
    token = users.issue_api_token("desk", ttl=timedelta(days=7), by="test")
    return {"Authorization": f"Bearer {token}"}


def seed(client: TestClient) -> dict[str, str]:
    def post(body: dict[str, Any]) -> str:
        response = client.post(f"/fhir/{body['resourceType']}", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    patient = post({"resourceType": "Patient", "name": [{"family": "Masked"}]})
    encounter = post(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{patient}"},
            "reasonCode": [{"coding": [{"system": SNOMED, "code": DIABETES}], "text": "sugar"}],
        }
    )
    appointment = post(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "description": "Review",
            "comment": COMMENT,
            "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
        }
    )
    return {"patient": patient, "encounter": encounter, "appointment": appointment}


def masked(resource: dict[str, Any]) -> bool:
    """Without the comment, and marked REDACTED as a read is (R4 security-labels.html)."""
    marks = [(c["system"], c["code"]) for c in resource["meta"].get("security", [])]
    return "comment" not in resource and (OBSERVATION_VALUE, "REDACTED") in marks


def test_write_answers_are_masked_as_reads_are(client: TestClient, desk: dict[str, str]) -> None:
    ids = seed(client)
    url = f"/fhir/Appointment/{ids['appointment']}"
    read = client.get(url, headers=desk)
    assert read.status_code == 200
    assert masked(read.json())
    body = {k: v for k, v in read.json().items() if k != "meta"}

    answers = [
        client.put(url, json={**body, "status": "arrived"}, headers=desk),
        client.patch(
            url,
            json=[{"op": "replace", "path": "/description", "value": "x"}],
            headers={**desk, "Content-Type": "application/json-patch+json"},
        ),
        client.patch(
            url,
            json={"description": "merged"},
            headers={**desk, "Content-Type": "application/merge-patch+json"},
        ),
        client.put(
            "/fhir/Appointment",
            params={"_id": ids["appointment"]},
            json={**body, "status": "booked"},
            headers=desk,
        ),
        client.post(  # conditional create: 200 with the match
            "/fhir/Appointment",
            json={"resourceType": "Appointment", "status": "proposed", "participant": []},
            headers={**desk, "If-None-Exist": f"_id={ids['appointment']}"},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert masked(answer.json()), answer.request.method
        assert COMMENT not in answer.text

    minimal = client.put(
        url, json=body, headers={**desk, "Prefer": "return=minimal"}
    )  # as before: no body at all
    assert minimal.status_code == 200
    assert minimal.content == b""

    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**body, "status": "arrived"},
                "request": {"method": "PUT", "url": f"Appointment/{ids['appointment']}"},
            },
            {"request": {"method": "GET", "url": f"Appointment/{ids['appointment']}"}},
        ],
    }
    bundle = client.post(
        "/fhir", json=transaction, headers={**desk, "Prefer": "return=representation"}
    )
    assert bundle.status_code == 200, bundle.text
    assert all(masked(e["resource"]) for e in bundle.json()["entry"])
    assert COMMENT not in bundle.text

    history = client.get(f"{url}/_history", headers=desk)
    assert history.status_code == 200
    assert COMMENT not in history.text
    # The comment was carried into every version the front desk wrote.
    assert client.get(url).json()["comment"] == COMMENT


def test_searches_by_masked_elements_are_refused(
    client: TestClient, desk: dict[str, str], sqlite_instance: Instance
) -> None:
    ids = seed(client)
    probes = [
        ("Encounter", {"reason-code": f"{SNOMED}|{DIABETES}"}),
        ("Encounter", {"reason-code:text": "sugar"}),
        ("Patient", {"_has:Encounter:subject:reason-code": f"{SNOMED}|{DIABETES}"}),
        ("Encounter", {"_sort": "reason-code"}),
        ("Patient", {"_revinclude": "Encounter:reason-reference"}),
    ]
    for res_type, params in probes:
        # The tester's probes, as the administrator (no masks) still runs them.
        assert client.get(f"/fhir/{res_type}", params=params).status_code == 200
        for answer in (
            client.get(f"/fhir/{res_type}", params=params, headers=desk),
            client.post(f"/fhir/{res_type}/_search", data=params, headers=desk),
        ):
            assert answer.status_code == 403, (params, answer.text)
            outcome = answer.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HRT-1113"
            assert DIABETES not in answer.text
            assert "sugar" not in answer.text
    # Each refusal is audited as a denied search.
    c = sqlite_instance.container
    with c.db.read.connect() as conn:
        denied = conn.execute(
            text(
                "SELECT count(*) FROM audit_entry "
                "WHERE actor = 'u-desk' AND action = 'search' AND outcome = 'denied'"
            )
        ).scalar_one()
    assert denied == 2 * len(probes)

    # Searches by unmasked elements work as before.
    found = client.get(
        "/fhir/Encounter", params={"patient": ids["patient"], "status": "finished"}, headers=desk
    )
    assert found.status_code == 200
    assert found.json()["total"] == 1
    assert "reasonCode" not in found.text  # and the match is masked
    has = client.get(
        "/fhir/Patient", params={"_has:Encounter:subject:status": "finished"}, headers=desk
    )
    assert [e["resource"]["id"] for e in has.json()["entry"]] == [ids["patient"]]
