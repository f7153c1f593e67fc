"""``_summary`` and ``_elements``: returning part of each resource (search.html#summary).

A resource returned in part carries the ``SUBSETTED`` tag in ``meta.tag`` (R4
valueset-observation-value) so that a client cannot mistake it for the whole and write it back.
Mandatory elements (minimum cardinality 1 in the R4 definitions) are always kept, as are
``resourceType``, ``id`` and ``meta``.
"""

from __future__ import annotations

import gzip
import importlib.resources
from collections.abc import Iterable
from functools import cache
from typing import Any

import orjson

from hearth.fhir import definitions

__all__ = ["SUBSETTED", "searchset_bundle", "shape", "summary_elements"]

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _mandatory(res_type: str) -> frozenset[str]:
    typedef = definitions.type_definition(res_type)
    if typedef is None:
        return frozenset()
    out: set[str] = set()
    for rel, element in typedef.elements.items():
        if "." in rel or element.min < 1:
            continue
        if element.choices:
            out.update(element.choices)
        else:
            out.add(rel.removesuffix("[x]"))
    return frozenset(out)


@cache
def _summary_elements() -> dict[str, frozenset[str]]:
    """Top-level elements R4 marks ``isSummary``, per type (``scripts/gen_summary_elements.py``)."""
    raw = importlib.resources.files("hearth.fhir").joinpath("data", "summary.json.gz").read_bytes()
    table = orjson.loads(gzip.decompress(raw))["summary"]
    return {name: frozenset(elements) for name, elements in table.items()}


def summary_elements(res_type: str) -> frozenset[str]:
    return _summary_elements().get(res_type, frozenset())


def _subsetted(resource: dict[str, Any], keep: Iterable[str]) -> dict[str, Any]:
    wanted = set(keep) | set(_ALWAYS) | _mandatory(str(resource.get("resourceType")))
    out = {k: v for k, v in resource.items() if k in wanted or k.lstrip("_") in wanted}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out


def shape(
    resource: dict[str, Any], *, summary: str | None, elements: tuple[str, ...]
) -> dict[str, Any]:
    """``resource`` as ``_summary`` / ``_elements`` ask (the whole of it when neither does)."""
    if summary == "true":
        return _subsetted(resource, summary_elements(str(resource.get("resourceType"))))
    if summary == "text":
        return _subsetted(resource, ("text",))
    if summary == "data":
        if "text" not in resource:
            return resource
        return _subsetted(resource, [k for k in resource if k != "text"])
    if elements:
        return _subsetted(resource, elements)
    return resource


def searchset_bundle(
    *,
    base: str,
    matches: Iterable[dict[str, Any]],
    included: Iterable[dict[str, Any]],
    total: int | None,
    links: dict[str, str],
    last_updated: str,
    outcome: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``searchset`` Bundle (R4 bundle.html, search.html#return)."""
    entries: list[dict[str, Any]] = []
    for mode, resources in (("match", matches), ("include", included)):
        for resource in resources:
            entries.append(
                {
                    "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                    "resource": resource,
                    "search": {"mode": mode},
                }
            )
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "meta": {"lastUpdated": last_updated},
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    if entries:  # JSON arrays are never empty in FHIR (json.html): no matches, no ``entry``
        bundle["entry"] = entries
    return bundle
