"""Batch and transaction Bundles, planned in pure code (R4 http.html#transaction, bundle.html).

``parse_bundle`` checks the shape of a ``batch`` or ``transaction`` Bundle and turns each entry
into a ``BundleRequest``: method, type, id or condition, preconditions and the resource.
``transaction_order`` gives the processing order R4 prescribes (http.html#trules): DELETE, then
POST, then PUT and PATCH, then GET. ``rewrite_references`` replaces ``urn:uuid:`` and other
``fullUrl`` references by the ids the server assigned. Nothing here reads or writes data;
``hearth.services.bundles`` runs the plan through the gate. Error messages name the entry by
its position, never by its content.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from hearth.domain import ID_PATTERN, HearthError, Issue, errors
from hearth.fhir import definitions

__all__ = [
    "BundleRequest",
    "bundle_response",
    "parse_bundle",
    "is_placeholder",
    "parse_weak_etag",
    "placeholder_key",
    "rewrite_references",
    "transaction_order",
]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass(frozen=True, slots=True)
class BundleRequest:
    """One entry's request. ``condition`` holds the search parameters of a conditional URL."""

    index: int
    method: str
    res_type: str
    res_id: str | None
    version: str | None
    condition: tuple[tuple[str, str], ...] | None
    resource: dict[str, Any] | None
    full_url: str | None
    if_match: int | None = None
    if_none_match: str | None = None
    if_none_exist: tuple[tuple[str, str], ...] | None = None
    if_modified_since: str | None = None
    patch: list[Any] | None = None
    operation: str | None = None  # e.g. "_history" or "_search" on a GET


def _bad(index: int, text: str) -> HearthError:
    return HearthError(
        errors.BAD_BUNDLE,
        f"Bundle entry {index}: {text}",
        issues=(Issue(errors.BAD_BUNDLE, text, f"Bundle.entry[{index}]"),),
    )


def parse_weak_etag(value: str | None, index: int) -> int | None:
    """``W/"3"`` -> 3 (http.html#concurrency)."""
    if value is None:
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 9:
        raise _bad(index, 'ifMatch must be a weak ETag such as W/"3".')
    return int(tag)


def _query(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(parse_qsl(text, keep_blank_values=True))


def _patch_body(resource: Any, index: int) -> list[Any]:
    """A JSON Patch carried in a Binary (http.html#patch in a transaction)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise _bad(index, "a PATCH entry carries its JSON Patch as a Binary resource.")
    if resource.get("contentType") != "application/json-patch+json":
        raise _bad(index, "the Binary of a PATCH entry must be application/json-patch+json.")
    try:
        decoded = orjson.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise _bad(index, "the Binary of a PATCH entry does not hold a JSON Patch.") from None
    if not isinstance(decoded, list):
        raise _bad(index, "a JSON Patch is an array of operations.")
    return decoded


def _entry(index: int, raw: Any, transaction: bool) -> BundleRequest:
    if not isinstance(raw, dict):
        raise _bad(index, "an entry is an object.")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise _bad(index, "entry.request is required in a batch or transaction.")
    method = request.get("method")
    url = request.get("url")
    if method not in _METHODS or not isinstance(url, str) or not url:
        raise _bad(index, "entry.request needs a method and a url.")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise _bad(index, "entry.request.url is relative to the server base.")
    segments = [s for s in parts.path.split("/") if s]
    if not segments or not definitions.is_resource_type(segments[0]):
        raise _bad(index, "entry.request.url names an unknown resource type.")
    res_type = segments[0]
    res_id: str | None = None
    version: str | None = None
    operation: str | None = None
    if len(segments) >= 2:
        if segments[1].startswith("_"):
            operation = segments[1]
        else:
            res_id = segments[1]
            if not ID_PATTERN.fullmatch(res_id):
                raise _bad(index, "entry.request.url has a malformed id.")
    if len(segments) == 4 and segments[2] == "_history":
        version = segments[3]
    elif len(segments) > 2:
        raise _bad(index, "entry.request.url is not an interaction Hearth serves in a Bundle.")
    condition = _query(parts.query) if parts.query else None
    resource = raw.get("resource")
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise _bad(index, "entry.fullUrl is a string.")
    patch = None
    if method in ("POST", "PUT"):
        if not isinstance(resource, dict):
            raise _bad(index, f"a {method} entry carries a resource.")
        if resource.get("resourceType") != res_type:
            raise _bad(index, "the resource's type does not match entry.request.url.")
        if method == "POST" and (res_id is not None or condition is not None):
            raise _bad(index, "a POST entry's url is the resource type alone.")
        if method == "PUT" and res_id is None and condition is None:
            raise _bad(index, "a PUT entry's url names an id or a condition.")
    elif method == "PATCH":
        patch = _patch_body(resource, index)
        resource = None
        if res_id is None and condition is None:
            raise _bad(index, "a PATCH entry's url names an id or a condition.")
    elif method == "DELETE":
        if res_id is None and condition is None:
            raise _bad(index, "a DELETE entry's url names an id or a condition.")
        resource = None
    else:
        resource = None
    if_none_exist = request.get("ifNoneExist")
    return BundleRequest(
        index=index,
        method="GET" if method == "HEAD" else method,
        res_type=res_type,
        res_id=res_id,
        version=version,
        condition=condition,
        resource=resource,
        full_url=full_url,
        if_match=parse_weak_etag(request.get("ifMatch"), index),
        if_none_match=request.get("ifNoneMatch"),
        if_none_exist=_query(if_none_exist.lstrip("?").split("?", 1)[-1])
        if isinstance(if_none_exist, str) and if_none_exist
        else None,
        if_modified_since=request.get("ifModifiedSince"),
        patch=patch,
        operation=operation,
    )


def parse_bundle(bundle: Mapping[str, Any], *, max_entries: int) -> tuple[str, list[BundleRequest]]:
    """Check a ``batch``/``transaction`` Bundle; return its type and its entries' requests."""
    if bundle.get("resourceType") != "Bundle":
        raise HearthError(errors.BAD_BUNDLE, "POST a Bundle to the server base.")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise HearthError(errors.BAD_BUNDLE, "The Bundle's type must be batch or transaction.")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise HearthError(errors.BAD_BUNDLE, "Bundle.entry is an array.")
    if len(entries) > max_entries:
        raise HearthError(errors.PAYLOAD_TOO_LARGE, f"A Bundle may hold {max_entries} entries.")
    requests = [_entry(i, raw, kind == "transaction") for i, raw in enumerate(entries)]
    if kind == "transaction":
        seen: set[str] = set()
        for r in requests:
            if r.full_url is not None:
                if r.full_url in seen:
                    raise _bad(r.index, "two entries have the same fullUrl.")
                seen.add(r.full_url)
    return str(kind), requests


def transaction_order(requests: list[BundleRequest]) -> list[BundleRequest]:
    """DELETE, POST, PUT/PATCH, GET; stable within each (http.html#trules)."""
    return sorted(requests, key=lambda r: (_ORDER[r.method], r.index))


#: The elements of the Reference datatype: an object holding only these is taken for one.
_REFERENCE_KEYS = frozenset({"id", "extension", "reference", "type", "identifier", "display"})
#: Elements whose object may hold nothing but a uri element named ``reference``
#: (``Immunization.education``, imm-1): not References.
_URI_REFERENCE_PARENTS = frozenset({"education"})


def rewrite_references(
    value: Any,
    resolve: Callable[[str], str | None],
    *,
    entries: Collection[str] | None = None,
    _parent: str = "",
) -> Any:
    """Replace every ``reference`` that ``resolve`` knows (a ``urn:uuid:``, a ``fullUrl`` or a
    conditional reference) by the ``Type/id`` it names; other values are kept.

    With ``entries`` (the ``placeholder_key`` of every entry's ``fullUrl`` in the Bundle), a
    Reference to a ``urn:uuid:`` that is none of them is refused (``HRT-0910``): a placeholder
    names an entry of its Bundle, and stored as written it would point nowhere. Not checked:
    ``reference`` elements of type uri (``DetectedIssue.reference``, ``Expression.reference``,
    ``Immunization.education.reference``), which may hold any URI, and anything inside a nested
    Bundle (a document), whose placeholders name its own entries (bundle.html#references)."""
    if isinstance(value, dict):
        if value.get("resourceType") == "Bundle":
            return value
        is_reference = value.keys() <= _REFERENCE_KEYS and _parent not in _URI_REFERENCE_PARENTS
        out: dict[str, Any] = {}
        for key, inner in value.items():
            if key == "reference" and isinstance(inner, str):
                resolved = resolve(inner)
                if (
                    resolved is None
                    and entries is not None
                    and is_reference
                    and is_placeholder(inner)
                    and placeholder_key(inner) not in entries
                ):
                    raise HearthError(errors.UNKNOWN_PLACEHOLDER)
                out[key] = resolved or inner
            else:
                out[key] = rewrite_references(inner, resolve, entries=entries, _parent=key)
        return out
    if isinstance(value, list):
        return [rewrite_references(v, resolve, entries=entries, _parent=_parent) for v in value]
    return value


def is_placeholder(reference: str) -> bool:
    return reference[:9].lower() == "urn:uuid:"


def placeholder_key(url: str) -> str:
    """How a ``fullUrl`` or reference is looked up: a ``urn:uuid:`` in lower case, since UUIDs
    are case-insensitive (RFC 9562); anything else as written."""
    return url.lower() if is_placeholder(url) else url


def bundle_response(
    kind: str, entries: list[dict[str, Any]], *, last_updated: str
) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": f"{kind}-response",
        "meta": {"lastUpdated": last_updated},
    }
    if entries:  # JSON arrays are never empty in FHIR (json.html): an empty Bundle's answer
        bundle["entry"] = entries
    return bundle
