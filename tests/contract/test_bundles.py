"""Batch and transaction Bundles and conditional interactions on every engine (R4 http.html)."""

from __future__ import annotations

import base64
import random
from collections import Counter
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from hearth.domain import HearthError, errors
from hearth.services.bundles import BundleService
from tests.support import Instance, admin
from tests.synthea import NPI, SYNTHEA, patient_bundle, provider_pool

pytestmark = pytest.mark.engines

BASE = "http://127.0.0.1/fhir"


def service(instance: Instance) -> BundleService:
    return instance.container.bundles(admin())


def count(instance: Instance, res_type: str | None = None) -> int:
    sql = "SELECT COUNT(*) FROM search_resource"
    with instance.container.db.read.connect() as conn:
        if res_type is None:
            return int(conn.execute(text(sql)).scalar_one())
        return int(conn.execute(text(sql + " WHERE res_type = :t"), {"t": res_type}).scalar_one())


def test_synthea_shaped_transactions_load_and_share_providers(instance: Instance) -> None:
    rng = random.Random(7)
    providers = provider_pool(rng, 2)
    bundles = service(instance)
    total_entries = 0
    for _ in range(4):
        made = patient_bundle(rng, providers, encounters=3, observations_per_encounter=4)
        total_entries += made.entries
        response = bundles.process(made.bundle, base=BASE, representation=False)
        assert response["type"] == "transaction-response"
        statuses = Counter(e["response"]["status"] for e in response["entry"])
        assert set(statuses) <= {"201 Created", "200 OK"}
    types = {t: count(instance, t) for t in ("Organization", "Practitioner", "Location")}
    assert all(1 <= n <= 2 for n in types.values()), types  # created once per provider
    assert count(instance, "Patient") == 4
    assert count(instance, "Observation") == 4 * 3 * 4
    # A connection closed at once: one left open holds MariaDB's metadata locks on the table,
    # and the fixture's DROP DATABASE then waits for it until the test times out.
    with instance.container.db.read.connect() as conn:
        rows = conn.execute(text("SELECT DISTINCT res_type FROM search_resource")).all()
    kinds = {row[0] for row in rows}
    assert len(kinds) >= 17
    # urn:uuid references were rewritten to the ids the server assigned.
    repo = instance.container.repository(admin())
    from hearth.fhir.search import Context, parse_search

    request = parse_search(
        "Observation",
        [("subject:Patient.identifier", f"{SYNTHEA}|{made.patient_uuid}")],
        ctx=Context(now_us=0),
        default_count=100,
        max_count=100,
    )
    page = repo.search(request)
    assert page.total == 12
    assert all(
        s.resource and s.resource["subject"]["reference"].startswith("Patient/")
        for s in page.matches
    )


def _patient(i: int) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": f"Atomic{i}"}]}


def test_a_transaction_is_all_or_nothing(instance: Instance) -> None:
    before = count(instance)
    entries: list[dict[str, Any]] = [
        {"resource": _patient(i), "request": {"method": "POST", "url": "Patient"}}
        for i in range(100)
    ]
    entries[49] = {  # the 50th entry fails: a stale version precondition on a missing resource
        "resource": {"resourceType": "Patient", "id": "nope"},
        "request": {"method": "PUT", "url": "Patient/nope", "ifMatch": 'W/"7"'},
    }
    with pytest.raises(HearthError) as exc:
        service(instance).process(
            {"resourceType": "Bundle", "type": "transaction", "entry": entries},
            base=BASE,
            representation=False,
        )
    assert exc.value.code is errors.VERSION_CONFLICT
    assert "entry 49" in exc.value.detail
    assert count(instance) == before
    with instance.container.db.read.connect() as conn:
        versions = conn.execute(text("SELECT COUNT(*) FROM resource_version")).scalar_one()
    assert versions == 0


def test_batch_entries_succeed_or_fail_alone(instance: Instance) -> None:
    response = service(instance).process(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"resource": _patient(1), "request": {"method": "POST", "url": "Patient"}},
                {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
                {"resource": _patient(2), "request": {"method": "POST", "url": "Patient"}},
            ],
        },
        base=BASE,
        representation=True,
    )
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created", "404", "201 Created"]
    assert response["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert response["entry"][0]["resource"]["name"][0]["family"] == "Atomic1"


def test_references_conditional_references_and_preconditions(instance: Instance) -> None:
    bundles = service(instance)
    setup = bundles.process(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:6f1c3a2e-0000-4000-8000-000000000001",
                    "resource": {
                        "resourceType": "Practitioner",
                        "identifier": [{"system": NPI, "value": "42"}],
                    },
                    "request": {"method": "POST", "url": "Practitioner"},
                },
                {
                    "fullUrl": "urn:uuid:6f1c3a2e-0000-4000-8000-000000000002",
                    "resource": {
                        "resourceType": "Patient",
                        "generalPractitioner": [
                            {"reference": "urn:uuid:6f1c3a2e-0000-4000-8000-000000000001"}
                        ],
                    },
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "resource": {"resourceType": "Patient", "id": "fixed-id", "active": True},
                    "request": {"method": "PUT", "url": "Patient/fixed-id"},
                },
            ],
        },
        base=BASE,
        representation=True,
    )
    practitioner = setup["entry"][0]["response"]["location"].split("/")[1]
    assert setup["entry"][1]["resource"]["generalPractitioner"][0]["reference"] == (
        f"Practitioner/{practitioner}"
    )
    follow = bundles.process(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Patient",
                        "generalPractitioner": [{"reference": f"Practitioner?identifier={NPI}|42"}],
                    },
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "resource": {
                        "resourceType": "Practitioner",
                        "identifier": [{"system": NPI, "value": "42"}],
                    },
                    "request": {
                        "method": "POST",
                        "url": "Practitioner",
                        "ifNoneExist": f"identifier={NPI}|42",
                    },
                },
                {"request": {"method": "GET", "url": "Patient/fixed-id", "ifNoneMatch": 'W/"1"'}},
                {
                    "request": {
                        "method": "GET",
                        "url": "Patient/fixed-id",
                        "ifModifiedSince": "2000-01-01T00:00:00Z",
                    }
                },
                {
                    "resource": {
                        "resourceType": "Binary",
                        "contentType": "application/json-patch+json",
                        "data": base64.b64encode(
                            orjson.dumps([{"op": "replace", "path": "/active", "value": False}])
                        ).decode(),
                    },
                    "request": {"method": "PATCH", "url": "Patient/fixed-id", "ifMatch": 'W/"1"'},
                },
            ],
        },
        base=BASE,
        representation=True,
    )
    entries = follow["entry"]
    assert entries[0]["resource"]["generalPractitioner"][0]["reference"] == (
        f"Practitioner/{practitioner}"
    )
    assert entries[1]["response"]["status"] == "200 OK"  # ifNoneExist matched: nothing created
    assert entries[1]["response"]["location"].startswith(f"Practitioner/{practitioner}/")
    # GETs run after the writes (http.html#trules): the PATCH made version 2 already.
    assert entries[2]["response"]["status"] == "200 OK"
    assert entries[3]["response"]["etag"] == 'W/"2"'
    assert entries[4]["resource"]["active"] is False
    with pytest.raises(HearthError) as missing:
        bundles.process(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Patient",
                            "generalPractitioner": [
                                {"reference": f"Practitioner?identifier={NPI}|no-such"}
                            ],
                        },
                        "request": {"method": "POST", "url": "Patient"},
                    }
                ],
            },
            base=BASE,
            representation=False,
        )
    assert missing.value.code is errors.UNRESOLVED_REFERENCE


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    return {"fullUrl": full_url, **entry} if full_url else entry


def _observation_of(reference: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": reference},
    }


def test_a_placeholder_naming_no_entry_is_refused(instance: Instance) -> None:
    """A ``urn:uuid:`` reference that is no entry's fullUrl would be stored pointing nowhere."""
    bundles = service(instance)
    stray = "urn:uuid:c431f773-0000-4000-8000-000000000001"
    for kind in ("transaction", "batch"):
        bundle = _bundle(
            kind,
            _post({"resourceType": "Patient"}, "urn:uuid:c431f773-0000-4000-8000-000000000002"),
            _post(_observation_of(stray)),
        )
        if kind == "transaction":
            with pytest.raises(HearthError) as refused:
                bundles.process(bundle, base=BASE, representation=False)
            assert refused.value.code is errors.UNKNOWN_PLACEHOLDER
            assert refused.value.issues[0].expression == "Bundle.entry[1]"
            assert stray not in str(refused.value)
            assert count(instance) == 0  # nothing of the transaction was stored
        else:
            response = bundles.process(bundle, base=BASE, representation=False)
            statuses = [e["response"]["status"] for e in response["entry"]]
            assert statuses == ["201 Created", "400"]
            outcome = response["entry"][1]["response"]["outcome"]
            assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HRT-0910"
    # A placeholder is found whatever the letter case of its UUID (they are case-insensitive).
    upper = "urn:uuid:C431F773-0000-4000-8000-0000000000AA"
    response = bundles.process(
        _bundle(
            "transaction",
            _post({"resourceType": "Patient"}, upper),
            _post(_observation_of(upper.lower())),
        ),
        base=BASE,
        representation=True,
    )
    patient_id = response["entry"][0]["fullUrl"].rsplit("/", 1)[1]
    assert response["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"
    # A document Bundle stored by a transaction keeps its own placeholders: they name its entries.
    author = "urn:uuid:d0000000-0000-4000-8000-000000000002"
    composition = {
        "resourceType": "Composition",
        "status": "final",
        "type": {"text": "note"},
        "date": "2026-01-01",
        "author": [{"reference": author}],
        "title": "Note",
    }
    document = _bundle(
        "document",
        {"fullUrl": "urn:uuid:d0000000-0000-4000-8000-000000000001", "resource": composition},
        {"fullUrl": author, "resource": {"resourceType": "Practitioner"}},
    )
    response = bundles.process(
        _bundle("transaction", _post(document)), base=BASE, representation=True
    )
    stored = response["entry"][0]["resource"]
    assert stored["entry"][0]["resource"]["author"] == composition["author"]
    # Immunization.education.reference is a uri, alone in its object (imm-1): any URI.
    immunization = {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"text": "flu"},
        "patient": {"reference": f"Patient/{patient_id}"},
        "occurrenceDateTime": "2026-01-01",
        "education": [{"reference": stray}],
    }
    response = bundles.process(
        _bundle("transaction", _post(immunization)), base=BASE, representation=True
    )
    assert response["entry"][0]["resource"]["education"] == [{"reference": stray}]
    # A uri element named reference may hold any URI, a urn:uuid included.
    issue = {"resourceType": "DetectedIssue", "status": "final", "reference": stray}
    response = bundles.process(_bundle("transaction", _post(issue)), base=BASE, representation=True)
    assert response["entry"][0]["resource"]["reference"] == stray


def test_a_condition_holds_criteria_only(instance: Instance) -> None:
    """Result parameters and blank values would leave a condition matching every resource of
    the type: a conditional create would hand back an unrelated record."""
    bundles = service(instance)
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "c1"}]}
    bundles.conditional_create("Patient", body, [("identifier", "urn:mrn|c1")])
    for condition in (
        [("_summary", "true")],
        [("_count", "1")],
        [("_sort", "family")],
        [("identifier", "urn:mrn|c1"), ("_elements", "name")],
        [("identifier", "")],
        [("_format", "json")],
    ):
        with pytest.raises(HearthError) as refused:
            bundles.conditional_create("Patient", {"resourceType": "Patient"}, condition)
        assert refused.value.code is errors.BAD_PARAMETER, condition
    assert count(instance, "Patient") == 1


def test_a_conditional_create_discloses_its_match_as_a_read(instance: Instance) -> None:
    """The match a conditional create returns is read: decided, masked and audited."""
    bundles = service(instance)
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "r1"}]}
    first = bundles.conditional_create("Patient", body, [("identifier", "urn:mrn|r1")])
    assert first.stored is not None
    reads = "SELECT COUNT(*) FROM audit_entry WHERE action = 'read' AND res_id = :id"
    with instance.container.db.read.connect() as conn:
        before = conn.execute(text(reads), {"id": first.stored.res_id}).scalar_one()
    again = bundles.conditional_create("Patient", body, [("identifier", "urn:mrn|r1")])
    assert again.status == 200
    assert again.stored is not None
    assert again.stored.res_id == first.stored.res_id
    with instance.container.db.read.connect() as conn:
        after = conn.execute(text(reads), {"id": first.stored.res_id}).scalar_one()
    assert after == before + 1


def test_conditional_create_update_patch_delete(instance: Instance) -> None:
    bundles = service(instance)
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]}
    first = bundles.conditional_create("Patient", body, [("identifier", "urn:mrn|7")])
    again = bundles.conditional_create("Patient", body, [("identifier", "urn:mrn|7")])
    assert (first.status, again.status) == (201, 200)
    assert first.stored is not None
    assert again.stored is not None
    assert again.stored.res_id == first.stored.res_id
    updated = bundles.conditional_update(
        "Patient", [("identifier", "urn:mrn|7")], {**body, "active": True}
    )
    assert updated.status == 200
    assert updated.stored is not None
    assert updated.stored.version == 2
    created = bundles.conditional_update(
        "Patient", [("identifier", "urn:mrn|8")], {**body, "identifier": [{"value": "8"}]}
    )
    assert created.status == 201
    patched = bundles.conditional_patch(
        "Patient",
        [("identifier", "urn:mrn|7")],
        [{"op": "replace", "path": "/active", "value": False}],
    )
    assert patched.stored is not None
    assert patched.stored.version == 3
    bundles.conditional_create("Patient", body, [("_id", "unused-id")])  # a second urn:mrn|7
    for attempt in (
        lambda: bundles.conditional_create("Patient", body, [("identifier", "urn:mrn|7")]),
        lambda: bundles.conditional_update("Patient", [("identifier", "urn:mrn|7")], body),
        lambda: bundles.conditional_patch(
            "Patient", [("identifier", "urn:mrn|7")], [{"op": "remove", "path": "/active"}]
        ),
    ):
        with pytest.raises(HearthError) as ambiguous:
            attempt()
        assert ambiguous.value.code is errors.MULTIPLE_MATCHES
        assert ambiguous.value.status == 412
    assert bundles.conditional_delete("Patient", [("identifier", "urn:mrn|7")]) == 2
    assert count(instance, "Patient") == 1
    with pytest.raises(HearthError) as unknown:
        bundles.conditional_delete("Patient", [("no-such-param", "x")])
    assert unknown.value.code is errors.UNKNOWN_SEARCH_PARAMETER


def _json_patch_binary(ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(ops)).decode(),
    }


def test_history_reports_patch_for_every_kind_of_patch(instance: Instance) -> None:
    """Versions written by a JSON Patch by id, a conditional patch, and a PATCH entry of a
    transaction and of a batch are PATCH in instance, type and system history (R4
    http.html#history); they were reported as PUT."""
    bundles = service(instance)
    records = instance.container.records(admin())
    mrn = [("identifier", "urn:mrn|patched")]
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "patched"}]}
    created = bundles.conditional_create("Patient", body, mrn).stored
    assert created is not None
    res_id = created.res_id
    records.patch("Patient", res_id, [{"op": "add", "path": "/active", "value": True}])
    bundles.conditional_patch(
        "Patient", mrn, [{"op": "replace", "path": "/active", "value": False}]
    )
    for kind in ("transaction", "batch"):
        response = bundles.process(
            {
                "resourceType": "Bundle",
                "type": kind,
                "entry": [
                    {
                        "resource": _json_patch_binary(
                            [{"op": "replace", "path": "/active", "value": kind == "batch"}]
                        ),
                        "request": {"method": "PATCH", "url": f"Patient/{res_id}"},
                    }
                ],
            },
            base=BASE,
            representation=False,
        )
        assert response["entry"][0]["response"]["status"] == "200 OK"
    records.update("Patient", res_id, {**body, "id": res_id, "active": True})
    records.delete("Patient", res_id)
    expected = ["DELETE", "PUT", "PATCH", "PATCH", "PATCH", "PATCH", "POST"]
    for res_type, one in (("Patient", res_id), ("Patient", None), (None, None)):
        page = records.history(res_type=res_type, res_id=one, since=None, before_seq=None, count=20)
        mine = [e for e in page.entries if e.res_id == res_id]
        assert [e.version for e in mine] == [7, 6, 5, 4, 3, 2, 1]
        assert [e.method for e in mine] == expected, (res_type, one)
