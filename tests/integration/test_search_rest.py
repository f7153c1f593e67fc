"""Search over HTTP (R4 http.html#search): GET, POST _search, paging links, compartments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.testclient import TestClient

from hearth.fhir.validation import validate_resource

FHIR = "application/fhir+json"
FORM = "application/x-www-form-urlencoded"
FHIR_BODY = {"Content-Type": FHIR}


def post(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(
        f"/fhir/{resource['resourceType']}",
        content=orjson.dumps(resource),
        headers={"Content-Type": FHIR},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def seed(client: TestClient) -> dict[str, str]:
    ids = {}
    for i, family in enumerate(["Rivera", "Rivers", "Rowe", "Ruiz", "Riviera"]):
        ids[family] = post(
            client,
            {
                "resourceType": "Patient",
                "name": [{"family": family}],
                "birthDate": f"19{50 + i}-01-01",
            },
        )
    for value in (90, 120, 150):
        post(
            client,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                "subject": {"reference": f"Patient/{ids['Rivera']}"},
                "valueQuantity": {"value": value},
            },
        )
    return ids


def names(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return sorted(
        e["resource"]["name"][0]["family"]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode and e["resource"]["resourceType"] == "Patient"
    )


def test_get_and_post_search_agree_and_page_with_opaque_links(client: TestClient) -> None:
    seed(client)
    got = client.get("/fhir/Patient", params={"name": "riv", "_count": "2"})
    assert got.status_code == 200, got.text
    bundle = got.json()
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 3
    links = {link["relation"]: link["url"] for link in bundle["link"]}
    assert "riv" not in links["self"]
    assert "name" not in links["next"]
    posted = client.post(
        "/fhir/Patient/_search", content="name=riv&_count=2", headers={"Content-Type": FORM}
    )
    assert posted.status_code == 200, posted.text
    assert names(posted.json()) == names(bundle)
    seen = names(bundle)
    next_url = links["next"]
    while next_url:
        page = client.get(urlsplit(next_url).path + "?" + urlsplit(next_url).query).json()
        seen += names(page)
        next_url = {link["relation"]: link["url"] for link in page["link"]}.get("next")
    assert sorted(seen) == ["Rivera", "Rivers", "Riviera"]


def test_page_links_are_bound_to_the_principal(client: TestClient, sqlite_instance: Any) -> None:
    seed(client)
    bundle = client.get("/fhir/Patient", params={"_count": "1"}).json()
    next_url = {link["relation"]: link["url"] for link in bundle["link"]}["next"]
    users = sqlite_instance.container.users
    users.add("someone-else", roles=frozenset({"bootstrap-admin"}), by="t")
    other = users.issue_api_token("someone-else", ttl=timedelta(days=7), by="t")
    parts = urlsplit(next_url)
    response = client.get(
        parts.path + "?" + parts.query, headers={"Authorization": f"Bearer {other}"}
    )
    assert response.status_code == 400
    # A code of its own, so that a client knows to search again.
    assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-0115"


def test_includes_compartment_and_everything(client: TestClient) -> None:
    ids = seed(client)
    bundle = client.get(
        "/fhir/Observation", params={"value-quantity": "gt100", "_include": "Observation:subject"}
    ).json()
    assert bundle["total"] == 2
    assert names(bundle, "include") == ["Rivera"]
    compartment = client.get(f"/fhir/Patient/{ids['Rivera']}/Observation").json()
    assert compartment["total"] == 3
    assert client.get(f"/fhir/Patient/{ids['Rowe']}/Observation").json()["total"] == 0
    everything = client.get(f"/fhir/Patient/{ids['Rivera']}/$everything").json()
    types = sorted(e["resource"]["resourceType"] for e in everything["entry"])
    assert types == ["Observation", "Observation", "Observation", "Patient"]
    missing = client.get("/fhir/Patient/no-such-patient/$everything")
    assert missing.status_code == 404


def test_everything_with_type_since_and_count(client: TestClient) -> None:
    """``Patient/[id]/$everything`` with ``_type``, ``_since`` and ``_count`` (R4
    patient-operation-everything.html), paged through opaque links."""
    ids = seed(client)
    base = f"/fhir/Patient/{ids['Rivera']}/$everything"
    only = client.get(base, params={"_type": "Observation"}).json()
    assert sorted(e["resource"]["resourceType"] for e in only["entry"]) == ["Observation"] * 3

    seen: list[str] = []
    included: set[str] = set()
    page = client.get(base, params={"_count": "2"}).json()
    while True:
        matches = [e["resource"] for e in page["entry"] if e["search"]["mode"] == "match"]
        assert len(matches) <= 2
        seen += [m["id"] for m in matches]
        included |= {
            e["resource"]["resourceType"] for e in page["entry"] if e["search"]["mode"] != "match"
        }
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        parts = urlsplit(following[0])
        assert "Rivera" not in following[0]
        page = client.get(parts.path + "?" + parts.query).json()
    assert len(seen) == len(set(seen)) == 4  # the Patient and its Observations, once each
    assert included <= {"Patient"}  # referenced from pages it is not on

    observation = next(e["resource"] for e in only["entry"])
    observation["status"] = "amended"
    updated = client.put(
        f"/fhir/Observation/{observation['id']}",
        content=orjson.dumps(observation),
        headers={"Content-Type": FHIR},
    )
    assert updated.status_code == 200, updated.text
    since = updated.json()["meta"]["lastUpdated"]
    recent = client.get(base, params={"_since": since}).json()
    assert [e["resource"]["id"] for e in recent["entry"]] == [observation["id"]]

    # Filtered to nothing is an empty page for a patient who exists, 404 for one who does not.
    none = client.get(f"/fhir/Patient/{ids['Rowe']}/$everything", params={"_type": "Observation"})
    assert none.status_code == 200
    assert "entry" not in none.json()
    missing = client.get("/fhir/Patient/no-such-patient/$everything", params={"_type": "Basic"})
    assert missing.status_code == 404


def test_strict_and_lenient_handling(client: TestClient) -> None:
    seed(client)
    strict = client.get(
        "/fhir/Patient", params={"frobnicate": "1"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-0901"
    lenient = client.get("/fhir/Patient", params={"frobnicate": "1", "family": "rowe"})
    assert lenient.status_code == 200
    bundle = lenient.json()
    assert names(bundle) == ["Rowe"]
    outcome = [e for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert "frobnicate" in outcome[0]["resource"]["issue"][0]["diagnostics"]


def test_contains_is_served_on_strings_and_refused_elsewhere(client: TestClient) -> None:
    """``:contains`` (R4 search.html#string) is answered from the trigram index on strings;
    where no index can serve it the answer is 400, under either handling, never a guess."""
    seed(client)
    found = client.get("/fhir/Patient", params={"name:contains": "iver"}).json()
    assert names(found) == ["Rivera", "Rivers"]
    assert names(client.get("/fhir/Patient", params={"family:contains": "VIER"}).json()) == [
        "Riviera"
    ]
    for path, name in [
        ("/fhir/Observation", "code:contains"),
        ("/fhir/Observation", "subject:contains"),
        ("/fhir/Observation", "date:contains"),
        ("/fhir/Patient", "identifier:contains"),
        ("/fhir/Patient", "birthdate:contains"),
    ]:
        for handling in ("strict", "lenient"):
            response = client.get(
                path, params={name: "848"}, headers={"Prefer": f"handling={handling}"}
            )
            assert response.status_code == 400, (name, handling)
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HRT-0902"
            assert "':contains' is not supported" in outcome["issue"][0]["diagnostics"]


def test_summary_and_elements_mark_the_resource_subsetted(client: TestClient) -> None:
    seed(client)
    bundle = client.get("/fhir/Patient", params={"family": "ruiz", "_elements": "birthDate"}).json()
    resource = bundle["entry"][0]["resource"]
    assert "name" not in resource
    assert resource["birthDate"] == "1953-01-01"
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])
    summary = client.get("/fhir/Patient", params={"family": "ruiz", "_summary": "true"}).json()
    summarised = summary["entry"][0]["resource"]
    assert summarised["name"][0]["family"] == "Ruiz"  # name is a summary element of Patient
    assert any(t["code"] == "SUBSETTED" for t in summarised["meta"]["tag"])
    observation = client.get("/fhir/Observation", params={"_summary": "true"}).json()
    assert "valueQuantity" in observation["entry"][0]["resource"]
    count = client.get("/fhir/Patient", params={"_summary": "count"}).json()
    assert count["total"] == 5
    assert "entry" not in count  # FHIR JSON has no empty arrays (json.html)
    validate_resource(count)
    history = client.get("/fhir/Patient/_history", params={"_since": "2999-01-01T00:00:00Z"}).json()
    assert history["type"] == "history"
    assert "entry" not in history
    validate_resource(history)
    empty = client.post(
        "/fhir", content=b'{"resourceType":"Bundle","type":"batch"}', headers=FHIR_BODY
    )
    assert empty.status_code == 200, empty.text
    assert empty.json()["type"] == "batch-response"
    assert "entry" not in empty.json()


def test_capability_statement_lists_search_parameters(client: TestClient) -> None:
    statement = client.get("/fhir/metadata").json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert "search-type" in {i["code"] for i in patient["interaction"]}
    params = {p["name"]: p["type"] for p in patient["searchParam"]}
    assert params["birthdate"] == "date"
    assert params["name"] == "string"
    assert "near" not in params
    assert "_text" not in params
    assert "Observation:subject" in patient["searchRevInclude"]


def test_bad_search_value_answers_an_outcome_without_the_value(client: TestClient) -> None:
    response = client.get("/fhir/Patient", params={"birthdate": "19xx-02"})
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "19xx" not in response.text


def test_transactions_and_conditional_interactions_over_http(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0e2c6c1a-1111-4111-8111-111111111111",
                "resource": {"resourceType": "Patient", "name": [{"family": "Http"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "note"},
                    "subject": {"reference": "urn:uuid:0e2c6c1a-1111-4111-8111-111111111111"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    for path in ("/fhir", "/fhir/"):
        response = client.post(path, content=orjson.dumps(bundle), headers={"Content-Type": FHIR})
        assert response.status_code == 200, response.text
        assert response.json()["type"] == "transaction-response"
    body = orjson.dumps({"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]})
    created = client.post(
        "/fhir/Patient",
        content=body,
        headers={"Content-Type": FHIR, "If-None-Exist": "identifier=s|1"},
    )
    found = client.post(
        "/fhir/Patient",
        content=body,
        headers={"Content-Type": FHIR, "If-None-Exist": "identifier=s|1"},
    )
    assert (created.status_code, found.status_code) == (201, 200)
    assert created.json()["id"] == found.json()["id"]
    # The condition in the query, as fhirpy's create(**params) and get_or_create send it.
    for _ in range(2):
        queried = client.post(
            "/fhir/Patient", params={"identifier": "s|1"}, content=body, headers=FHIR_BODY
        )
        assert queried.status_code == 200, queried.text
        assert queried.json()["id"] == created.json()["id"]
    other = orjson.dumps({"resourceType": "Patient", "identifier": [{"system": "s", "value": "q"}]})
    first = client.post(
        "/fhir/Patient", params={"identifier": "s|q"}, content=other, headers=FHIR_BODY
    )
    again = client.post(
        "/fhir/Patient", params={"identifier": "s|q"}, content=other, headers=FHIR_BODY
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert client.get("/fhir/Patient", params={"identifier": "s|q"}).json()["total"] == 1
    both = client.post(
        "/fhir/Patient",
        params={"identifier": "s|q"},
        content=other,
        headers={**FHIR_BODY, "If-None-Exist": "identifier=s|q"},
    )
    assert both.status_code == 400
    assert both.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-0109"
    pretty = client.post(
        "/fhir/Patient", params={"_pretty": "true"}, content=other, headers=FHIR_BODY
    )
    assert pretty.status_code == 201  # _format and _pretty are not conditions
    updated = client.put(
        "/fhir/Patient?identifier=s|1", content=body, headers={"Content-Type": FHIR}
    )
    assert updated.status_code == 200
    assert updated.headers["etag"] == 'W/"2"'
    client.post("/fhir/Patient", content=body, headers={"Content-Type": FHIR})
    ambiguous = client.put(
        "/fhir/Patient?identifier=s|1", content=body, headers={"Content-Type": FHIR}
    )
    assert ambiguous.status_code == 412
    assert client.delete("/fhir/Patient?identifier=s|1").status_code == 204
    assert client.get("/fhir/Patient", params={"identifier": "s|1"}).json()["total"] == 0
    bad = client.post(
        "/fhir",
        content=b'{"resourceType":"Bundle","type":"collection"}',
        headers={"Content-Type": FHIR},
    )
    assert bad.status_code == 400


def _code(response: Any) -> str:
    return str(response.json()["issue"][0]["details"]["coding"][0]["code"])


def test_conditional_patch_takes_the_formats_instance_patch_takes(client: TestClient) -> None:
    """``PATCH Patient?identifier=...`` takes a JSON Patch and a merge patch, as ``PATCH
    Patient/id`` does, and refuses what it refuses with the same answer. It took only JSON
    Patch media, then refused the array as "must be a JSON object"."""
    created = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "cp"}]},
        headers={"Content-Type": FHIR},
    )
    by_id = f"/fhir/Patient/{created.json()['id']}"
    by_condition = "/fhir/Patient?identifier=urn:mrn|cp"
    version = 1
    for media, body, active in (
        ("application/json-patch+json", [{"op": "add", "path": "/active", "value": True}], True),
        ("application/merge-patch+json", {"active": False}, False),
        ("application/json", {"active": True, "gender": "other"}, True),
    ):
        for target in (by_condition, by_id):
            patched = client.patch(
                target, content=orjson.dumps(body), headers={"Content-Type": media}
            )
            version += 1
            assert patched.status_code == 200, (media, target, patched.text)
            assert patched.headers["etag"] == f'W/"{version}"'
            assert patched.json()["active"] is active
    for media, raw in (
        ("application/merge-patch+json", b'[{"op": "remove", "path": "/active"}]'),
        ("application/json-patch+json", b'{"active": true}'),
        ("application/json-patch+json", b"{not json"),
        ("text/plain", b'{"active": true}'),
    ):
        answers = [
            client.patch(target, content=raw, headers={"Content-Type": media})
            for target in (by_condition, by_id)
        ]
        assert answers[0].status_code == answers[1].status_code >= 400, media
        assert _code(answers[0]) == _code(answers[1]), media
