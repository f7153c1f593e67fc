"""Hostile input gets a clear OperationOutcome, stores nothing, and the server keeps serving."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.support import Instance

FHIR = {"Content-Type": "application/fhir+json"}


def stored_versions(instance: Instance) -> int:
    with instance.container.db.read.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM resource_version")).scalar_one())


def code_of(response_json: dict[str, object]) -> str:
    issue = response_json["issue"][0]  # type: ignore[index]
    return str(issue["details"]["coding"][0]["code"])


CASES = [
    ("POST", "/fhir/Patient", b"{not json", FHIR, 400, "HRT-0101"),
    ("POST", "/fhir/Patient", b"[]", FHIR, 400, None),
    (
        "POST",
        "/fhir/Patient",
        b'{"resourceType":"Patient"}',
        {"Content-Type": "text/plain"},
        415,
        "HRT-0102",
    ),
    ("POST", "/fhir/Patient", b'{"resourceType":"Patient"}', {}, 415, "HRT-0102"),
    ("POST", "/fhir/Observation", b'{"resourceType":"Patient"}', FHIR, 400, "HRT-0202"),
    ("POST", "/fhir/NotAType", b'{"resourceType":"NotAType"}', FHIR, 404, "HRT-0106"),
    (
        "POST",
        "/fhir/Patient",
        b'{"resourceType":"Patient","gender":"banana"}',
        FHIR,
        400,
        "HRT-0214",
    ),
    (
        "POST",
        "/fhir/Observation",
        b'{"resourceType":"Observation","status":"bogus","code":{"text":"x"}}',
        FHIR,
        400,
        "HRT-0214",
    ),
    ("GET", "/fhir/NotAType/1", b"", {}, 404, "HRT-0106"),
    ("GET", "/fhir/Patient/" + "a" * 65, b"", {}, 400, "HRT-0105"),
    ("GET", "/fhir/Patient/bad$id", b"", {}, 400, "HRT-0105"),
    # Operations the server does not have: named as such, not as a bad id or type.
    ("GET", "/fhir/Patient/$foo", b"", {}, 400, "HRT-0116"),
    ("GET", "/fhir/$export", b"", {}, 400, "HRT-0116"),
    ("GET", "/fhir/Patient/1/$validate", b"", {}, 400, "HRT-0116"),
    ("POST", "/fhir/Patient/$validate", b'{"resourceType":"Parameters"}', FHIR, 400, "HRT-0116"),
    ("POST", "/fhir/Patient/1", b'{"resourceType":"Patient"}', FHIR, 405, "HRT-0107"),
    # A bad id stays a bad id where no operation could be meant.
    ("PUT", "/fhir/Patient/$x", b'{"resourceType":"Patient","id":"$x"}', FHIR, 400, "HRT-0105"),
    ("DELETE", "/fhir/Patient/$x", b"", {}, 400, "HRT-0105"),
    ("GET", "/fhir/Patient/x/_history/abc", b"", {}, 400, "HRT-0112"),
    ("GET", "/fhir/Patient/..%2F..%2Fetc", b"", {}, 404, None),
    ("GET", "/fhir/../../etc/passwd", b"", {}, 404, None),
    ("PUT", "/fhir/Patient/abc", b'{"resourceType":"Patient","id":"other"}', FHIR, 400, "HRT-0203"),
    (
        "PATCH",
        "/fhir/Patient/abc",
        b'{"op":"replace"}',
        {"Content-Type": "application/json-patch+json"},
        400,
        None,
    ),
    ("DELETE", "/fhir/metadata", b"", {}, 405, "HRT-0107"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code"), CASES)
def test_each_bad_request_is_refused_clearly(
    client: TestClient,
    sqlite_instance: Instance,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    if code is not None:
        assert code_of(outcome) == code
    assert stored_versions(sqlite_instance) == 0
    assert client.get("/fhir/metadata").status_code == 200


def test_body_over_the_limit_is_refused(client: TestClient, sqlite_instance: Instance) -> None:
    limit = sqlite_instance.container.settings.limits.max_body_bytes
    big = b'{"resourceType":"Patient","text":{"status":"generated","div":"' + b"x" * limit + b'"}}'
    response = client.post("/fhir/Patient", content=big, headers=FHIR)
    assert response.status_code == 413
    assert code_of(response.json()) == "HRT-0103"
    assert stored_versions(sqlite_instance) == 0


def test_deep_nesting_and_huge_arrays_are_refused(
    client: TestClient, sqlite_instance: Instance
) -> None:
    deep = b'{"resourceType":"Patient","extension":' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = client.post("/fhir/Patient", content=deep, headers=FHIR)
    assert response.status_code == 400
    wide = b'{"resourceType":"Patient","name":[' + b",".join([b'{"family":"x"}'] * 20_001) + b"]}"
    response = client.post("/fhir/Patient", content=wide, headers=FHIR)
    assert response.status_code == 400
    assert stored_versions(sqlite_instance) == 0


def test_errors_never_echo_request_values(client: TestClient) -> None:
    secret = "Sensitivemarkervalue"
    response = client.post(
        "/fhir/Patient",
        content=('{"resourceType":"Patient","unknownThing":"' + secret + '"}').encode(),
        headers=FHIR,
    )
    assert response.status_code == 400
    assert secret not in response.text
    response = client.post(
        "/fhir/Patient",
        content=('{"resourceType":"Patient","gender":"' + secret + '"}').encode(),
        headers=FHIR,
    )
    assert response.status_code == 400
    assert code_of(response.json()) == "HRT-0214"
    assert response.json()["issue"][0]["expression"] == ["Patient.gender"]
    assert secret not in response.text


def test_wrong_host_header_is_refused(client: TestClient) -> None:
    response = client.get("/fhir/metadata", headers={"Host": "evil.example"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:1",  # another port: the issuer and audience would have named it
        "localhost:8080",
        "127.0.0.1:080",  # port 80 spelled another way
        "127.0.0.1:",
        "127.0.0.1:+80",
        "127.0.0.1:80:80",
        "[::1",
        "::1",
        ":80",
    ],
)
def test_a_host_with_another_port_is_refused(client: TestClient, host: str) -> None:
    """The Host's port must be the one the connection arrived on (80 for this client): the
    OAuth issuer, the token audience and every link are built from the Host."""
    response = client.get("/.well-known/smart-configuration", headers={"Host": host})
    assert response.status_code == 400
    assert "issuer" not in response.text


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:80", "LOCALHOST", "localhost:80"])
def test_links_use_one_spelling_of_the_host(client: TestClient, host: str) -> None:
    """A Host the server is known by is put in one spelling (lower case, no default port)
    before the issuer and links are built from it."""
    name = host.partition(":")[0].lower()
    config = client.get("/.well-known/smart-configuration", headers={"Host": host}).json()
    assert config["issuer"] == f"http://{name}/fhir"
    client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR)
    bundle = client.get("/fhir/Patient", headers={"Host": host}).json()
    assert bundle["link"][0]["url"].startswith(f"http://{name}/fhir/Patient")
