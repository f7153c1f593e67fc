"""Parsing what a FHIR request carries: body, preconditions, Prefer, paging and format."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from hearth.domain import HearthError, errors
from hearth.fhir.jsonbody import parse_json_body, parse_json_value
from hearth.settings import Limits

__all__ = [
    "check_accept",
    "client_address",
    "peer_certificate",
    "pretty",
    "prefer_return",
    "prefer_handling",
    "read_form_body",
    "read_json_body",
    "parse_count",
    "parse_if_match",
    "parse_instant",
]

_JSON_TYPES = frozenset({"application/fhir+json", "application/json"})
_ACCEPTABLE = _JSON_TYPES | {"*/*", "application/*", "application/json+fhir"}
_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


async def read_body(request: Request, limits: Limits) -> bytes:
    """The raw body, refusing more than the configured limit before reading it all (413)."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HearthError(errors.BAD_REQUEST, "Content-Length is not a number.")
        if int(length) > limits.max_body_bytes:
            raise HearthError(errors.PAYLOAD_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise HearthError(errors.PAYLOAD_TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_body(
    request: Request,
    limits: Limits,
    *,
    media_types: frozenset[str] = _JSON_TYPES,
    resource: bool = True,
) -> Any:
    """The JSON body: a resource (an object with a ``resourceType``), or with ``resource=False``
    any JSON value (a patch document)."""
    media = _media_type(request.headers.get("content-type", ""))
    if media not in media_types:
        raise HearthError(
            errors.UNSUPPORTED_MEDIA_TYPE, f"Send the body as {' or '.join(sorted(media_types))}."
        )
    raw = await read_body(request, limits)
    if not resource:
        return parse_json_value(
            raw, max_depth=limits.max_json_depth, max_array=limits.max_json_array
        )
    return parse_json_body(raw, max_depth=limits.max_json_depth, max_array=limits.max_json_array)


def content_type(request: Request) -> str:
    """The request's media type, lower-cased, without parameters."""
    return _media_type(request.headers.get("content-type", ""))


def check_accept(request: Request) -> None:
    """Content negotiation (R4 http.html#mime-type): only FHIR JSON is produced (406 otherwise).

    ``_format=application/fhir+json`` written without percent-encoding arrives with its ``+``
    decoded to a space; R4 asks servers to accept that spelling too.
    """
    fmt = query_param(request, "_format")
    if fmt is not None and _media_type(fmt).replace(" ", "+") not in _FORMATS:
        raise HearthError(errors.NOT_ACCEPTABLE)
    accept = request.headers.get("accept")
    if not accept or fmt is not None:
        return
    offered = {_media_type(part) for part in accept.split(",")}
    if not offered & _ACCEPTABLE:
        raise HearthError(errors.NOT_ACCEPTABLE)


async def read_form_body(request: Request, limits: Limits) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body (``POST [type]/_search``, R4
    http.html#search), in order, with repeated names kept."""
    media = _media_type(request.headers.get("content-type", ""))
    if media != "application/x-www-form-urlencoded":
        raise HearthError(
            errors.UNSUPPORTED_MEDIA_TYPE,
            "Send the search parameters as a form body (application/x-www-form-urlencoded).",
        )
    raw = await read_body(request, limits)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HearthError(errors.BAD_REQUEST, "The form body is not UTF-8.") from None
    return parse_qsl(text, keep_blank_values=True)


def _preferences(request: Request) -> dict[str, str]:
    """The ``Prefer`` header's preferences (RFC 7240): comma-separated, possibly over several
    header lines, each ``token[=value]`` with optional ``;`` parameters, which FHIR never uses.
    The first occurrence of a preference wins."""
    found: dict[str, str] = {}
    for line in request.headers.getlist("prefer"):
        for preference in line.split(","):
            key, _, value = preference.split(";", 1)[0].strip().partition("=")
            found.setdefault(key.strip().lower(), value.strip().strip('"'))
    return found


def prefer_handling(request: Request) -> bool:
    """``Prefer: handling=strict`` (R4 search.html#errors): True for strict, else lenient."""
    return _preferences(request).get("handling", "").lower() == "strict"


def query_param(request: Request, name: str) -> str | None:
    """A query parameter's value; a request without a query string (most reads) does not
    build Starlette's parsed ``query_params`` at all."""
    if not request.scope.get("query_string"):
        return None
    return request.query_params.get(name)


def pretty(request: Request) -> bool:
    return query_param(request, "_pretty") == "true"


def prefer_return(request: Request, default: str = "representation") -> str:
    """``Prefer: return=minimal|representation|OperationOutcome`` (R4 http.html#ops)."""
    return _preferences(request).get("return") or default


def parse_if_match(request: Request) -> int | None:
    """``If-Match: W/"3"`` names the version an update expects (R4 http.html#concurrency)."""
    value = request.headers.get("if-match")
    if value is None:
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 9:
        raise HearthError(errors.BAD_IF_MATCH)
    return int(tag)


def parse_count(raw: str | None, limits: Limits) -> int:
    if raw is None:
        return limits.default_page_size
    if not raw.isdigit():
        raise HearthError(errors.BAD_PARAMETER, "_count must be a non-negative integer.")
    return max(1, min(int(raw), limits.max_page_size))


def parse_instant(raw: str | None, name: str) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise HearthError(errors.BAD_PARAMETER, f"{name} must be a FHIR instant.") from None
    if value.tzinfo is None:
        raise HearthError(errors.BAD_PARAMETER, f"{name} needs a time zone.")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise HearthError(errors.BAD_PARAMETER, f"{name} is out of range.") from None


def client_address(request: Request) -> str | None:
    # X-Forwarded-For is not trusted: a client could claim any address (ASVS 4.1.3).
    return request.client.host if request.client else None


def peer_certificate(request: Request) -> bytes | None:
    """The client certificate the TLS connection presented, as DER, if any.

    It arrives through the ASGI TLS extension (``extensions.tls.client_cert_chain``, PEM, leaf
    first), which ``hearth.web.tls`` adds to uvicorn's scope. Its chain was verified against
    the configured client CAs during the handshake; the application checks the rest.
    """
    tls = request.scope.get("extensions", {}).get("tls")
    chain = tls.get("client_cert_chain") if isinstance(tls, dict) else None
    if not chain:
        return None
    try:
        return ssl.PEM_cert_to_DER_cert(chain[0])
    except ValueError:
        raise HearthError(errors.CERTIFICATE_REFUSED) from None
