"""FHIR JSON Patch (R4 http.html#patch): RFC 6902 via the ``jsonpatch`` library; and JSON
Merge Patch (RFC 7386), which clients such as fhirpy send as a partial resource.

A patch may not change ``resourceType`` or ``id``, and the result must still be a valid
resource; the caller validates it before it is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jsonpatch
import jsonpointer

from hearth.domain import HearthError, errors

__all__ = ["Change", "apply_json_patch", "apply_merge_patch", "parse_json_patch", "patch_change"]

#: What a patch does to the current resource (the result still to be validated).
Change = Callable[[Mapping[str, Any]], dict[str, Any]]

_OPS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


def parse_json_patch(document: object) -> list[dict[str, Any]]:
    """Check the shape of a JSON Patch document (RFC 6902 section 4) without applying it."""
    if not isinstance(document, list) or not document:
        raise HearthError(errors.BAD_PATCH, "A JSON Patch is a non-empty array of operations.")
    ops: list[dict[str, Any]] = []
    for index, op in enumerate(document):
        if not isinstance(op, dict) or op.get("op") not in _OPS:
            raise HearthError(errors.BAD_PATCH, f"Operation {index} has no valid 'op'.")
        if not isinstance(op.get("path"), str):
            raise HearthError(errors.BAD_PATCH, f"Operation {index} has no 'path'.")
        if op["op"] in ("add", "replace", "test") and "value" not in op:
            raise HearthError(errors.BAD_PATCH, f"Operation {index} needs a 'value'.")
        if op["op"] in ("move", "copy") and not isinstance(op.get("from"), str):
            raise HearthError(errors.BAD_PATCH, f"Operation {index} needs a 'from'.")
        for key in ("path", "from"):
            if key in op and op[key].split("/")[1:2] in (["id"], ["resourceType"]):
                raise HearthError(
                    errors.BAD_PATCH, f"Operation {index} may not change id or resourceType."
                )
        ops.append(op)
    return ops


def apply_json_patch(resource: Mapping[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        result = jsonpatch.JsonPatch(ops).apply(dict(resource))
    except jsonpatch.JsonPatchTestFailed:
        raise HearthError(errors.PATCH_FAILED, "A 'test' operation did not match.") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException):
        raise HearthError(errors.PATCH_FAILED) from None
    if not isinstance(result, dict):
        raise HearthError(errors.PATCH_FAILED)
    return result


def apply_merge_patch(resource: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Merge Patch (RFC 7386 section 2): members replace, ``null`` removes, objects merge."""
    for key in ("id", "resourceType"):
        if key in patch and patch[key] != resource.get(key):
            raise HearthError(errors.BAD_PATCH, "A patch may not change id or resourceType.")
    return _merge(dict(resource), patch)


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            current = result.get(key)
            result[key] = _merge(current if isinstance(current, dict) else {}, value)
        else:
            result[key] = value
    return result


def patch_change(document: object, *, merge: bool) -> Change:
    """The change a PATCH body makes, its shape checked now and applied to the current version
    later: a JSON Patch (``application/json-patch+json``), or with ``merge`` a JSON Merge Patch
    (``application/merge-patch+json``, or ``application/json`` as fhirpy sends a partial
    resource). Instance, conditional and (JSON Patch) Bundle entry PATCH share it, so each
    accepts the same documents."""
    if merge:
        if not isinstance(document, dict):
            raise HearthError(errors.BAD_PATCH, "A merge patch is a JSON object.")
        partial: dict[str, Any] = document
        return lambda current: apply_merge_patch(current, partial)
    ops = parse_json_patch(document)
    return lambda current: apply_json_patch(current, ops)
