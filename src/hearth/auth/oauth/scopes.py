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

from dataclasses import dataclass

from hearth.domain import (
    HearthError,
    ScopeContext,
    SmartScope,
    errors,
    intersect_scopes,
    is_resource_scope,
)

__all__ = [
    "IDENTITY_SCOPES",
    "LAUNCH_SCOPES",
    "REFRESH_SCOPES",
    "ScopeRequest",
    "grant_scopes",
    "describe",
    "requested_all",
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


_VERBS = {"c": "create", "r": "read", "u": "change", "d": "delete", "s": "search"}
_OTHER_TEXT = {
    "openid": "Learn who you are (your user id).",
    "fhirUser": "Learn which person record in Hearth is you.",
    "profile": "Learn who you are (your user id).",
    "launch": "Receive the patient you are working on in Hearth.",
    "launch/patient": "Ask you which patient to work on.",
    "launch/encounter": "Ask you which encounter to work on.",
    "offline_access": "Keep this access after you sign out, until you revoke it (90 days at most).",
    "online_access": "Keep this access while you stay signed in.",
}


def describe(request: ScopeRequest) -> list[str]:
    """Plain sentences for the consent page (ASVS 10.7.2): what each granted scope lets the app
    do, with the reach of a wildcard spelled out (SMART-SC-08)."""
    lines: list[str] = []
    for _, scope in request.resource:
        verbs = [_VERBS[c] for c in scope.permissions]
        action = ", ".join(verbs[:-1]) + (" and " if len(verbs) > 1 else "") + verbs[-1]
        if scope.resource_type == "*":
            what = "every kind of record, including kinds Hearth adds in future,"
        else:
            what = f"{scope.resource_type} records"
        whose = {
            ScopeContext.PATIENT: "of the selected patient only",
            ScopeContext.USER: "that you yourself may see",
            ScopeContext.SYSTEM: "of every patient",
        }[scope.context]
        narrowed = (
            " (only those with " + ", ".join(f"{n} {v}" for n, v in scope.query) + ")"
            if scope.query
            else ""
        )
        lines.append(f"{action.capitalize()} {what} {whose}{narrowed}.")
    lines.extend(_OTHER_TEXT[o] for o in sorted(request.other) if o in _OTHER_TEXT)
    return lines
