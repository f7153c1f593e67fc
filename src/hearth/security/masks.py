"""Field masks: minimum necessary (HIPAA 164.502(b), ASVS 8.2.3 / 8.1.2).

A mask names top-level elements of a resource type that a role may neither read nor write:
``note``, ``text``, ``reasonCode``, or a choice element as ``value[x]``. Masks name top-level
elements only, so that putting a masked element back on a write is exact (a nested element of a
repeating parent has no stable identity to restore it to).

- Reading: ``apply_masks`` removes the elements and, if anything was removed, adds the
  ``REDACTED`` mark of v3-ObservationValue to ``meta.security`` (R4 security-labels.html), so a
  client knows the resource it holds is incomplete.
- Writing: a body that sets a masked element is refused (``masked_present``); a masked element
  of the stored version is carried into the new one (``restore_masked``), so a role that never
  saw a field can never clobber it, and the ``REDACTED`` mark a client sends back is dropped.
  What a write answers with is masked as a read is (the gate applies ``apply_masks``).
- Searching: which resources match a criterion tells something of every element it reads, so
  a search that reads a masked element is refused (``masked_reads``; the gate names the
  elements each search parameter reads).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hearth.security.labels import REDACTED

__all__ = [
    "apply_masks",
    "masked_keys",
    "masked_present",
    "masked_reads",
    "restore_masked",
    "strip_redacted",
]

#: Elements no mask removes: without them a resource is not a resource.
_NEVER_MASKED = ("resourceType", "id", "meta")


def masked_keys(resource: Mapping[str, Any], masks: Iterable[str]) -> list[str]:
    """The top-level keys of ``resource`` that ``masks`` cover, in the resource's order."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for mask in masks:
        if mask.endswith("[x]"):
            prefixes.append(mask[:-3])
        else:
            exact.add(mask)
    out = []
    for key in resource:
        if key in exact or any(
            key.startswith(p) and len(key) > len(p) and key[len(p)].isupper() for p in prefixes
        ):
            out.append(key)
    return out


def _is_redacted(coding: object) -> bool:
    return (
        isinstance(coding, dict)
        and coding.get("system") == REDACTED["system"]
        and coding.get("code") == REDACTED["code"]
    )


def strip_redacted(resource: Mapping[str, Any]) -> dict[str, Any]:
    """``resource`` without the ``REDACTED`` mark (the gate adds it; it is never stored)."""
    out = dict(resource)
    meta = out.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("security"), list):
        kept = [c for c in meta["security"] if not _is_redacted(c)]
        meta = dict(meta)
        if kept:
            meta["security"] = kept
        else:
            meta.pop("security")
        if meta:
            out["meta"] = meta
        else:
            out.pop("meta")
    return out


def apply_masks(resource: Mapping[str, Any], masks: Iterable[str]) -> dict[str, Any]:
    """A copy of ``resource`` without the masked elements, marked ``REDACTED`` if any was
    present. ``resourceType``, ``id`` and ``meta`` can never be masked."""
    hidden = [k for k in masked_keys(resource, masks) if k not in _NEVER_MASKED]
    if not hidden:
        return dict(resource)
    out = {k: v for k, v in resource.items() if k not in hidden}
    if "contained" in out:
        # A contained resource that only a masked element pointed to (``reasonReference:
        # #c1`` naming a contained Condition) would tell what that element said: it goes too.
        kept = [c for c in out["contained"] if _contained_id(c) in _reachable(out)]
        if kept:
            out["contained"] = kept
        else:
            del out["contained"]
    meta = dict(out.get("meta") or {})
    security = [c for c in meta.get("security") or [] if not _is_redacted(c)]
    security.append(dict(REDACTED))
    meta["security"] = security
    out["meta"] = meta
    return out


def masked_present(resource: Mapping[str, Any], masks: Iterable[str]) -> list[str]:
    """The masked elements a body sets (a write that sets one is refused)."""
    return masked_keys(resource, masks)


def masked_reads(elements: Iterable[str], masks: Iterable[str]) -> list[str]:
    """The masked ones among ``elements``, the top-level elements (as JSON keys) a search
    parameter reads: a search by such a parameter is refused (R4 search.html: a principal who
    may not read an element must not learn its value from which resources match)."""
    return [k for k in masked_keys(dict.fromkeys(elements), masks) if k not in _NEVER_MASKED]


def restore_masked(
    new: Mapping[str, Any], stored: Mapping[str, Any] | None, masks: Iterable[str]
) -> dict[str, Any]:
    """``new`` with every masked element taken from ``stored`` (the version it replaces), and
    the ``REDACTED`` mark removed."""
    masks = list(masks)
    out = {k: v for k, v in strip_redacted(new).items() if k not in masked_keys(new, masks)}
    if stored:
        for key in masked_keys(stored, masks):
            out[key] = stored[key]
        # The contained resources the restored elements point to, which the writer never saw
        # (``apply_masks`` left them out), come back with them.
        have = {_contained_id(c) for c in out.get("contained") or ()}
        unseen = [c for c in stored.get("contained") or () if _contained_id(c) not in have]
        reachable = _reachable({**out, "contained": [*(out.get("contained") or ()), *unseen]})
        missing = [c for c in unseen if _contained_id(c) in reachable]
        if missing:
            out["contained"] = [*(out.get("contained") or ()), *missing]
    return out


def _contained_id(contained: Any) -> str | None:
    return contained.get("id") if isinstance(contained, Mapping) else None


def _reachable(resource: Mapping[str, Any]) -> set[str]:
    """The ids of the contained resources that ``resource`` points to (``#id``) from outside
    ``contained``, directly or through other contained resources it points to."""
    by_id = {_contained_id(c): c for c in resource.get("contained") or ()}
    found: set[str] = set()
    todo = [v for k, v in resource.items() if k != "contained"]
    while todo:
        value = todo.pop()
        if isinstance(value, Mapping):
            ref = value.get("reference")
            if isinstance(ref, str) and ref.startswith("#") and ref[1:] not in found:
                found.add(ref[1:])
                if ref[1:] in by_id:
                    todo.append(by_id[ref[1:]])
            todo.extend(v for k, v in value.items() if k != "reference")
        elif isinstance(value, list):
            todo.extend(value)
    return found
