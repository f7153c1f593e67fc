"""FHIR REST conventions (R4 http.html), end to end through the ASGI app."""

from __future__ import annotations

import orjson
import pytest
from starlette.testclient import TestClient

FHIR = "application/fhir+json"


def create(client: TestClient, body: dict[str, object] | None = None) -> dict[str, object]:
    response = client.post(
        "/fhir/Patient",
        content=orjson.dumps(body or {"resourceType": "Patient", "name": [{"family": "Rest"}]}),
        headers={"Content-Type": FHIR},
    )
    assert response.status_code == 201, response.text
    result: dict[str, object] = response.json()
    return result


def test_metadata_needs_no_authentication_and_tells_the_truth(client: TestClient) -> None:
    response = client.get("/fhir/metadata", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"
    statement = response.json()
    assert statement["fhirVersion"] == "4.0.1"
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in patient["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "create", "history-instance"} <= codes


def test_phi_routes_require_authentication(client: TestClient) -> None:
    for method, path in (
        ("GET", "/fhir/Patient/x"),
        ("GET", "/fhir/_history"),
        ("POST", "/fhir/Patient"),
        ("DELETE", "/fhir/Patient/x"),
    ):
        response = client.request(method, path, headers={"Authorization": ""})
        assert response.status_code == 401, (method, path)
        assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "HRT-0401"
    bad = client.get("/fhir/Patient/x", headers={"Authorization": "Bearer hrt_nope_nope"})
    assert bad.status_code == 401


def test_create_sets_location_etag_and_last_modified(client: TestClient) -> None:
    response = client.post(
        "/fhir/Patient",
        content=b'{"resourceType":"Patient","id":"ignored","active":true}',
        headers={"Content-Type": FHIR},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "ignored"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert response.headers["last-modified"].endswith("GMT")


def test_if_match_and_stale_versions(client: TestClient) -> None:
    body = create(client)
    url = f"/fhir/Patient/{body['id']}"
    update = {"resourceType": "Patient", "id": body["id"], "active": False}
    ok = client.put(
        url, content=orjson.dumps(update), headers={"Content-Type": FHIR, "If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"2"'
    stale = client.put(
        url, content=orjson.dumps(update), headers={"Content-Type": FHIR, "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    bad = client.put(
        url, content=orjson.dumps(update), headers={"Content-Type": FHIR, "If-Match": "banana"}
    )
    assert bad.status_code == 400


def test_update_as_create_returns_201(client: TestClient) -> None:
    response = client.put(
        "/fhir/Patient/my-client-id",
        content=b'{"resourceType":"Patient","id":"my-client-id"}',
        headers={"Content-Type": FHIR},
    )
    assert response.status_code == 201
    assert response.headers["location"].endswith("/Patient/my-client-id/_history/1")


def test_prefer_return_minimal_and_outcome(client: TestClient) -> None:
    minimal = client.post(
        "/fhir/Patient",
        content=b'{"resourceType":"Patient"}',
        headers={"Content-Type": FHIR, "Prefer": "return=minimal"},
    )
    assert minimal.status_code == 201
    assert minimal.content == b""
    outcome = client.post(
        "/fhir/Patient",
        content=b'{"resourceType":"Patient"}',
        headers={"Content-Type": FHIR, "Prefer": "return=OperationOutcome"},
    )
    assert outcome.json()["resourceType"] == "OperationOutcome"
    # RFC 7240: several preferences, comma-separated, in any order
    both = client.post(
        "/fhir/Patient",
        content=b'{"resourceType":"Patient"}',
        headers={"Content-Type": FHIR, "Prefer": "handling=strict, return=minimal"},
    )
    assert both.status_code == 201
    assert both.content == b""


def test_json_patch_and_delete_and_gone(client: TestClient) -> None:
    body = create(client)
    url = f"/fhir/Patient/{body['id']}"
    patched = client.patch(
        url,
        content=b'[{"op":"add","path":"/active","value":true}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 200
    assert patched.json()["active"] is True
    assert client.delete(url).status_code == 204
    gone = client.get(url)
    assert gone.status_code == 410
    assert client.get(f"{url}/_history/2").json()["active"] is True


def test_history_names_the_method_that_made_each_version(client: TestClient) -> None:
    """A history entry's request is the interaction that created the version (R4
    http.html#history): a JSON Patch made version 2, a merge patch 3, a PUT 4, a DELETE 5.
    The patched versions were reported as PUT."""
    body = create(client)
    url = f"/fhir/Patient/{body['id']}"
    patch = client.patch(
        url,
        content=b'[{"op":"add","path":"/active","value":true}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patch.status_code == 200, patch.text
    merge = client.patch(
        url, content=b'{"gender":"other"}', headers={"Content-Type": "application/merge-patch+json"}
    )
    assert merge.status_code == 200, merge.text
    put = client.put(
        url,
        content=orjson.dumps({"resourceType": "Patient", "id": body["id"], "active": False}),
        headers={"Content-Type": FHIR},
    )
    assert put.status_code == 200, put.text
    assert client.delete(url).status_code == 204
    expected = [
        ("DELETE", f"Patient/{body['id']}", 'W/"5"'),
        ("PUT", f"Patient/{body['id']}", 'W/"4"'),
        ("PATCH", f"Patient/{body['id']}", 'W/"3"'),
        ("PATCH", f"Patient/{body['id']}", 'W/"2"'),
        ("POST", "Patient", 'W/"1"'),
    ]
    for history in (f"{url}/_history", "/fhir/Patient/_history", "/fhir/_history"):
        entries = client.get(history).json()["entry"]
        assert [
            (e["request"]["method"], e["request"]["url"], e["response"]["etag"]) for e in entries
        ] == expected, history
        assert [e["response"]["status"] for e in entries] == [
            "204 No Content",
            "200 OK",
            "200 OK",
            "200 OK",
            "201 Created",
        ]


def test_history_shows_an_update_as_create_as_the_put_that_created(client: TestClient) -> None:
    """A PUT with a new id is an update that creates (R4 http.html#update): its history entry
    says PUT, with the 201 the client was answered."""
    put = client.put(
        "/fhir/Patient/chosen-by-client",
        content=orjson.dumps({"resourceType": "Patient", "id": "chosen-by-client"}),
        headers={"Content-Type": FHIR},
    )
    assert put.status_code == 201, put.text
    (entry,) = client.get("/fhir/Patient/chosen-by-client/_history").json()["entry"]
    assert entry["request"] == {"method": "PUT", "url": "Patient/chosen-by-client"}
    assert entry["response"]["status"] == "201 Created"


def test_history_paging_with_opaque_links(client: TestClient) -> None:
    body = create(client)
    url = f"/fhir/Patient/{body['id']}"
    for n in range(4):
        client.put(
            url,
            content=orjson.dumps(
                {"resourceType": "Patient", "id": body["id"], "birthDate": f"190{n}"}
            ),
            headers={"Content-Type": FHIR},
        )
    first = client.get(f"{url}/_history", params={"_count": "2"}).json()
    assert first["type"] == "history"
    assert first["total"] == 5
    assert [e["response"]["etag"] for e in first["entry"]] == ['W/"5"', 'W/"4"']
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "1903" not in next_url
    second = client.get(next_url.replace("http://127.0.0.1", "")).json()
    assert [e["response"]["etag"] for e in second["entry"]] == ['W/"3"', 'W/"2"']
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert links["self"].endswith(f"{url}/_history?_count=2")
    assert {link["relation"]: link["url"] for link in second["link"]}["self"] == next_url
    tampered = client.get(next_url.replace("http://127.0.0.1", "")[:-3] + "AAA")
    assert tampered.status_code == 400


def test_type_and_system_history(client: TestClient) -> None:
    create(client)
    client.post(
        "/fhir/Basic",
        content=b'{"resourceType":"Basic","code":{"text":"x"}}',
        headers={"Content-Type": FHIR},
    )
    assert len(client.get("/fhir/Patient/_history").json()["entry"]) == 1
    assert len(client.get("/fhir/_history").json()["entry"]) == 2


def test_pretty_output(client: TestClient) -> None:
    body = create(client)
    pretty = client.get(f"/fhir/Patient/{body['id']}", params={"_pretty": "true"})
    assert b'\n  "' in pretty.content


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Accept": "application/fhir+xml"}, 406),
        ({"Accept": "application/fhir+json"}, 200),
        ({"Accept": "application/json"}, 200),
        ({"Accept": "*/*"}, 200),
    ],
)
def test_content_negotiation(client: TestClient, headers: dict[str, str], status: int) -> None:
    assert client.get("/fhir/metadata", headers=headers).status_code == status
    assert client.get("/fhir/metadata", params={"_format": "xml"}).status_code == 406
    # "+" typed into a URL unencoded arrives as a space
    assert client.get("/fhir/metadata?_format=application/fhir+json").status_code == 200


def test_decimal_precision_survives_create_read_patch_and_history(client: TestClient) -> None:
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        b'"valueQuantity":{"value":1.50,"unit":"mg"}}'
    )
    created = client.post("/fhir/Observation", content=body, headers={"Content-Type": FHIR})
    assert b'"value":1.50' in created.content
    url = f"/fhir/Observation/{created.json()['id']}"
    assert b'"value":1.50' in client.get(url).content
    patched = client.patch(
        url,
        content=b'[{"op":"replace","path":"/valueQuantity/value","value":2.500}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert b'"value":2.500' in patched.content
    history = client.get(f"{url}/_history").content
    assert b'"value":2.500' in history
    assert b'"value":1.50' in history


def test_an_out_of_range_since_is_a_clear_400(client: TestClient) -> None:
    response = client.get("/fhir/_history", params={"_since": "9999-12-31T23:59:59-14:00"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_merge_patch_from_a_partial_resource(client: TestClient) -> None:
    """fhirpy's ``patch()`` sends a partial resource: JSON Merge Patch (RFC 7386)."""
    body = create(
        client,
        {
            "resourceType": "Patient",
            "active": True,
            "gender": "female",
            "name": [{"family": "Merge"}],
        },
    )
    url = f"/fhir/Patient/{body['id']}"
    patched = client.patch(
        url,
        content=b'{"active": false, "gender": null}',
        headers={"Content-Type": "application/json"},
    )
    assert patched.status_code == 200, patched.text
    result = patched.json()
    assert result["active"] is False
    assert "gender" not in result
    assert result["name"] == [{"family": "Merge"}]
    refused = client.patch(
        url, content=b'{"id": "other"}', headers={"Content-Type": "application/merge-patch+json"}
    )
    assert refused.status_code == 400


def test_new_user_mistakes_get_answers_that_say_what_to_do(client: TestClient) -> None:
    base = client.get("/fhir")
    assert base.status_code == 405
    assert "metadata" in base.json()["issue"][0]["diagnostics"]
    lower = client.get("/fhir/patient/x")
    assert lower.status_code == 404
    assert "did you mean Patient?" in lower.json()["issue"][0]["diagnostics"]
    token = client.headers["Authorization"].split(" ", 1)[1]
    no_scheme = client.get("/fhir/Patient/x", headers={"Authorization": token})
    assert no_scheme.status_code == 401
    assert "Bearer" in no_scheme.json()["issue"][0]["diagnostics"]
    no_id = client.put(
        "/fhir/Patient/abc", content=b'{"resourceType":"Patient"}', headers={"Content-Type": FHIR}
    )
    assert no_id.status_code == 400
    assert "no id" in no_id.json()["issue"][0]["diagnostics"]
    wrong_type = client.patch(
        "/fhir/Patient/abc", content=b"[]", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert "application/json-patch+json" in wrong_type.json()["issue"][0]["diagnostics"]
