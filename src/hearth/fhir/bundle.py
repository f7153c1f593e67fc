"""History Bundles the server returns (R4 http.html#history); searchsets are built in
``hearth.fhir.search.shaping``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["BundleEntry", "history_bundle", "http_date"]


def http_date(ts: datetime) -> str:
    """RFC 9110 section 5.6.7 IMF-fixdate, for Last-Modified."""
    return ts.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


@dataclass(frozen=True, slots=True)
class BundleEntry:
    res_type: str
    res_id: str
    version: int
    last_updated: datetime
    resource: dict[str, Any] | None
    method: str  # POST, PUT, PATCH or DELETE: what created this version


def history_bundle(
    base: str,
    entries: Iterable[BundleEntry],
    *,
    total: int | None,
    self_link: str,
    next_link: str | None,
    now: datetime,
) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for e in entries:
        url = f"{e.res_type}/{e.res_id}"
        entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
        if e.resource is not None:
            entry["resource"] = e.resource
        entry["request"] = {"method": e.method, "url": url if e.method != "POST" else e.res_type}
        if e.method == "DELETE":
            status = "204 No Content"
        else:  # version 1 was created, by POST or by an update-as-create PUT
            status = "201 Created" if e.version == 1 else "200 OK"
        entry["response"] = {
            "status": status,
            "etag": f'W/"{e.version}"',
            "lastModified": e.last_updated.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        out.append(entry)
    links = [{"relation": "self", "url": self_link}]
    if next_link is not None:
        links.append({"relation": "next", "url": next_link})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "meta": {"lastUpdated": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if out:  # JSON arrays are never empty in FHIR (json.html)
        bundle["entry"] = out
    return bundle
