"""Requested and granted scopes (RFC 6749 sec. 3.3; SMART App Launch 2.2 scopes-and-launch-context).

A request's ``scope`` is space-separated. Hearth understands resource scopes (``SmartScope``),
launch scopes (``launch``, ``launch/patient``, ``launch/encounter``, SMART-LC-01/02), identity
scopes (``openid``, ``fhirUser``, ``profile``; SMART-SC-10) and ``offline_access`` /
``online_access``. Anything else is refused with ``invalid_scope``: a scope we do not know is
never silently granted or ignored.

What is granted is what was asked for **within** what the client is registered for
(SMART-SC-05, ASVS 10.4.11): each requested resource scope is intersected with each allowed one,
and other scopes are granted only when registered. A v1 scope granted whole is echoed in its v1
form (SMART-SC-03).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hearth.domain import HearthError, SmartScope, errors, intersect_scopes, is_resource_scope

__all__ = [
    "IDENTITY_SCOPES",
    "LAUNCH_SCOPES",
    "REFRESH_SCOPES",
    "ScopeRequest",
    "grant_scopes",
    "requested_all",
    "scope_strings",
]

LAUNCH_SCOPES = frozenset({"launch", "launch/patient", "launch/encounter"})
IDENTITY_SCOPES = frozenset({"openid", "fhirUser", "profile"})
REFRESH_SCOPES = frozenset({"offline_access", "online_access"})
_OTHER = LAUNCH_SCOPES | IDENTITY_SCOPES | REFRESH_SCOPES


@dataclass(frozen=True, slots=True)
class ScopeRequest:
    """A parsed ``scope`` parameter: resource scopes as (text as written, parsed), and the rest."""

    resource: tuple[tuple[str, SmartScope], ...]
    other: frozenset[str]

    @classmethod
    def parse(cls, text: str | None) -> ScopeRequest:
        if text is None or not text.strip():
            raise HearthError(errors.INVALID_SCOPE, "The scope parameter is required.")
        if len(text) > 4096:
            raise HearthError(errors.INVALID_SCOPE, "The scope parameter is too long.")
        resource: dict[str, SmartScope] = {}
        other: set[str] = set()
        for token in text.split():
            if token in _OTHER:
                other.add(token)
            elif is_resource_scope(token):
                resource[token] = SmartScope.parse(token)
            else:
                raise HearthError(errors.INVALID_SCOPE, "A requested scope is not supported.")
        return cls(tuple(resource.items()), frozenset(other))

    @property
    def scopes(self) -> frozenset[SmartScope]:
        return frozenset(scope for _, scope in self.resource)

    def text(self) -> str:
        return " ".join([*sorted(self.other), *(t for t, _ in self.resource)])


def _minimal(pieces: set[SmartScope]) -> list[SmartScope]:
    """Drop pieces another piece already covers; sorted for a stable ``scope`` string."""
    kept = [p for p in pieces if not any(q != p and q.covers(p) for q in pieces)]
    return sorted(kept, key=str)


def grant_scopes(request: ScopeRequest, allowed: ScopeRequest) -> ScopeRequest:
    """What may be granted of ``request`` to a client registered for ``allowed``."""
    granted: dict[str, SmartScope] = {}
    for text, wanted in request.resource:
        pieces = {p for a in allowed.scopes if (p := intersect_scopes(wanted, a)) is not None}
        for piece in _minimal(pieces):
            granted[text if piece == wanted else str(piece)] = piece
    # A piece reached through two requested scopes appears once.
    unique: dict[SmartScope, str] = {}
    for text, scope in granted.items():
        unique.setdefault(scope, text)
    final = _minimal(set(unique))
    return ScopeRequest(tuple((unique[s], s) for s in final), request.other & allowed.other)


def requested_all(request: ScopeRequest, granted: ScopeRequest) -> bool:
    """Whether every requested scope was granted in full (for backend services, SMART-BS-08)."""
    have = granted.scopes
    full = all(any(g.covers(s) for g in have) for s in request.scopes)
    return full and request.other <= granted.other


def scope_strings(scopes: Iterable[SmartScope]) -> str:
    return " ".join(sorted(str(s) for s in scopes))
