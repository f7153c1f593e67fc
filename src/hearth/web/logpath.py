"""What the access log may print of a request path (docs/design.md, "FHIR REST behaviour").

A path is chosen by the client and may carry anything, a patient's name included
(``GET /fhir/Smith-John``, ``GET /fhir/Patient/123/Smith``). So the log prints only segments
it recognises: under ``/fhir``, resource type names (``hearth.fhir.definitions``),
``_history``, ``_search``, ``metadata`` and the names of FHIR operations; elsewhere, the
literal segments of the application's own routes. A resource id becomes ``:id``, a version id
``:vid``, and anything else ``:x``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from hearth.fhir.definitions import resource_types

__all__ = ["app_literals", "loggable_path", "route_literals"]

_FHIR_WORDS = frozenset({"metadata", "_history", "_search"})

#: Operations of the FHIR R4 specification (operationslist.html) and Hearth's own.
_OPERATIONS = frozenset(
    {
        "apply",
        "closure",
        "collect-data",
        "conforms",
        "data-requirements",
        "disclosures",
        "document",
        "evaluate-measure",
        "everything",
        "expand",
        "export",
        "find-matches",
        "implements",
        "lastn",
        "lookup",
        "match",
        "meta",
        "meta-add",
        "meta-delete",
        "populate",
        "process-message",
        "stats",
        "submit-data",
        "subset",
        "subsumes",
        "transform",
        "translate",
        "validate",
        "validate-code",
    }
)


_CACHE: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def route_literals(routes: Iterable[Any]) -> frozenset[str]:
    """Every fixed segment of the given Starlette routes (``/oauth/token`` gives ``oauth`` and
    ``token``; parameters such as ``{id}`` are left out), mounted sub-routes included."""
    found: set[str] = set()
    for route in routes:
        path = str(getattr(route, "path", ""))
        found.update(p for p in path.split("/") if p and "{" not in p)
        found.update(route_literals(getattr(route, "routes", None) or ()))
    return frozenset(found)


def app_literals(app: Any) -> frozenset[str]:
    """``route_literals`` of an application's routes, computed once per application."""
    if app is None:
        return frozenset()
    cached = _CACHE.get(app)
    if cached is None:
        cached = _CACHE[app] = route_literals(getattr(app, "routes", ()))
    return cached


def loggable_path(path: str, literals: frozenset[str]) -> str:
    """``path`` with every segment the log may not print replaced (module docstring)."""
    parts = path.split("/")
    if len(parts) < 2 or parts[1] != "fhir":
        return "/".join(p if not p or p in literals else ":x" for p in parts)
    types = resource_types()
    out = parts[:2]
    for part in parts[2:]:
        previous = out[-1]
        if (
            not part
            or part in types
            or part in _FHIR_WORDS
            or (part.startswith("$") and part[1:] in _OPERATIONS)
        ):
            out.append(part)
        elif previous in types:
            out.append(":id")  # [type]/[id]
        elif previous == "_history" and out[-2] == ":id":
            out.append(":vid")  # [type]/[id]/_history/[vid]
        else:
            out.append(":x")
    return "/".join(out)
