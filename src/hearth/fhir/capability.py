"""The CapabilityStatement (FHIR R4 capabilitystatement.html) that describes what Hearth does.

It is built from the same tables the server dispatches on, so it cannot claim an interaction the
server does not implement. ``ServerFeatures`` names what the running build supports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["ServerFeatures", "capability_statement"]


@dataclass(frozen=True, slots=True)
class ServerFeatures:
    instance_interactions: tuple[str, ...] = (
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
    )
    type_interactions: tuple[str, ...] = ("create", "history-type")
    system_interactions: tuple[str, ...] = ("history-system",)
    conditional_create: bool = False
    conditional_update: bool = False
    conditional_delete: str = "not-supported"
    conditional_read: str = "not-supported"
    #: resource type -> search parameters as (code, type, definition url)
    search_params: Callable[[str], Sequence[tuple[str, str, str]]] | None = None
    #: resource type -> ``_include`` values it supports (``Observation:subject``)
    search_includes: Callable[[str], Sequence[str]] | None = None
    #: resource type -> ``_revinclude`` values it supports
    search_revincludes: Callable[[str], Sequence[str]] | None = None
    #: system-level operations: name -> definition url
    operations: Mapping[str, str] = field(default_factory=dict)
    #: operations on a resource type or its instances: type -> {name -> definition url}
    resource_operations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    security_description: str = ""
    oauth_urls: Mapping[str, str] | None = None  # authorize/token/... for the SMART extension


def capability_statement(
    *,
    base_url: str,
    software_version: str,
    resource_types: Iterable[str],
    features: ServerFeatures,
    date: datetime,
) -> dict[str, Any]:
    resources = []
    for res_type in sorted(resource_types):
        interactions = [{"code": c} for c in features.type_interactions]
        interactions += [{"code": c} for c in features.instance_interactions]
        if features.search_params is not None:
            interactions.append({"code": "search-type"})
        entry: dict[str, Any] = {
            "type": res_type,
            "interaction": sorted(interactions, key=lambda i: i["code"]),
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": features.conditional_create,
            "conditionalRead": features.conditional_read,
            "conditionalUpdate": features.conditional_update,
            "conditionalDelete": features.conditional_delete,
        }
        if features.search_params is not None:
            params = features.search_params(res_type)
            if params:
                entry["searchParam"] = [
                    {"name": code, "type": kind, "definition": url} for code, kind, url in params
                ]
        # FHIR JSON has no empty arrays: a type with nothing to include lists no element.
        includes = list(features.search_includes(res_type)) if features.search_includes else []
        if includes:
            entry["searchInclude"] = includes
        revincludes = (
            list(features.search_revincludes(res_type)) if features.search_revincludes else []
        )
        if revincludes:
            entry["searchRevInclude"] = revincludes
        operations = features.resource_operations.get(res_type)
        if operations:
            entry["operation"] = [
                {"name": name, "definition": url} for name, url in sorted(operations.items())
            ]
        resources.append(entry)
    # CORS is answered for registered SMART apps' origins (docs/design.md, "CORS").
    security: dict[str, Any] = {"cors": True, "description": features.security_description}
    if features.oauth_urls:
        security["service"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ]
        security["extension"] = [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": k, "valueUri": v} for k, v in features.oauth_urls.items()],
            }
        ]
    rest: dict[str, Any] = {
        "mode": "server",
        "security": security,
        "resource": resources,
        "interaction": [{"code": c} for c in features.system_interactions],
    }
    if features.operations:
        rest["operation"] = [
            {"name": name, "definition": url} for name, url in sorted(features.operations.items())
        ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "publisher": "Hearth",
        "kind": "instance",
        "software": {"name": "Hearth", "version": software_version},
        "implementation": {"description": "Hearth FHIR server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json"],
        "rest": [rest],
    }
