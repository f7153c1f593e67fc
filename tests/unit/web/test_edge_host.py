"""The Host check of ``EdgeMiddleware`` (DNS rebinding; RFC 9110 sec. 7.2), without a server."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from hearth.web.middleware import EdgeMiddleware


async def _unreached(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the application was reached")


def edge(public: tuple[str, int] | None = ("ehr.example.org", 443)) -> EdgeMiddleware:
    return EdgeMiddleware(_unreached, ["127.0.0.1", "localhost"], public=public)


def scope(*hosts: bytes, scheme: str = "http", port: int = 8080) -> dict[str, Any]:
    return {
        "type": "http",
        "headers": [(b"host", host) for host in hosts],
        "scheme": scheme,
        "server": ("127.0.0.1", port),
    }


@pytest.mark.parametrize("host", [b"ehr.example.org", b"EHR.Example.org"])
def test_a_proxy_terminating_tls_forwards_the_public_name_without_a_port(host: bytes) -> None:
    """nginx or Caddy serves https://ehr.example.org and forwards plain HTTP to 127.0.0.1:8080
    keeping the client's Host: the public URL's name with no port is that URL's origin."""
    assert edge()._checked_host(scope(host)) == b"ehr.example.org"
    assert edge(("ehr.example.org", 8443))._checked_host(scope(host)) == b"ehr.example.org"


@pytest.mark.parametrize(
    "host", [b"ehr.example.org:80", b"ehr.example.org:8443", b"ehr.example.org:1"]
)
def test_the_public_name_with_another_port_is_still_refused(host: bytes) -> None:
    assert edge()._checked_host(scope(host)) is None


def test_the_public_name_with_its_port_and_the_serving_port_rules_hold() -> None:
    assert edge()._checked_host(scope(b"ehr.example.org:443")) == b"ehr.example.org:443"
    assert edge()._checked_host(scope(b"127.0.0.1:8080")) == b"127.0.0.1:8080"
    assert edge()._checked_host(scope(b"127.0.0.1")) is None  # port 80, not 8080
    assert edge()._checked_host(scope(b"evil.example")) is None
    assert edge(None)._checked_host(scope(b"ehr.example.org")) is None


@pytest.mark.parametrize(
    "hosts",
    [
        (b"127.0.0.1:8080", b"127.0.0.1:8080"),
        (b"127.0.0.1:8080", b"evil.example"),
        (b"ehr.example.org", b"evil.example:8080"),
    ],
)
def test_more_than_one_host_field_is_refused(hosts: tuple[bytes, ...]) -> None:
    """RFC 9112 sec. 3.2: a request with more than one Host field is answered 400; only the
    first used to be checked."""
    assert edge()._checked_host(scope(*hosts)) is None
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(edge()(scope(*hosts), receive, send))
    assert sent[0]["status"] == 400
    outcome = orjson.loads(sent[1]["body"])
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "HRT-0109"
    assert "one Host" in outcome["issue"][0]["diagnostics"]
    assert b"evil" not in sent[1]["body"]
