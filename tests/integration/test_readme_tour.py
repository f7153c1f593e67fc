"""The README's tour, request by request, so that what a new user copies works."""

from __future__ import annotations

import orjson
from starlette.testclient import TestClient

FHIR = {"Content-Type": "application/fhir+json"}


def test_the_readme_tour(client: TestClient) -> None:
    assert client.get("/fhir/metadata").json()["resourceType"] == "CapabilityStatement"
    created = client.post(
        "/fhir/Patient",
        content=b'{"resourceType": "Patient", "name": [{"family": "Example"}], '
        b'"birthDate": "1980-02-29"}',
        headers=FHIR,
    )
    assert created.status_code == 201
    pid = created.json()["id"]
    found = client.post(
        "/fhir/Patient/_search",
        data={"family": "Exam", "birthdate": "ge1980"},
    ).json()
    assert [e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "match"] == [pid]
    patched = client.patch(
        f"/fhir/Patient/{pid}",
        content=b'[{"op": "add", "path": "/active", "value": true}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.json()["active"] is True
    history = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert [e["response"]["etag"] for e in history["entry"]] == ['W/"2"', 'W/"1"']
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:6f1e9b52-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient", "name": [{"family": "Bundled"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "pulse"},
                    "subject": {"reference": "urn:uuid:6f1e9b52-0000-4000-8000-000000000001"},
                    "valueQuantity": {"value": 72, "unit": "/min"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = client.post("/fhir", content=orjson.dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert all(s.startswith("201") for s in statuses)
