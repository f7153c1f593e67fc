"""SMART v2 resource scopes as a value type (SMART App Launch 2.2 scopes-and-launch-context).

A resource scope names a context (``patient``, ``user`` or ``system``), a resource type or ``*``,
a subset of the interactions ``cruds`` written in that order, and optionally a query that narrows
it (``patient/Observation.rs?category=...|laboratory``, SMART-SC-01, SC-04). Version 1 suffixes
(``.read``, ``.write``, ``.*``) are read as their v2 equivalents (SMART-SC-03).

The type lives in ``hearth.domain`` because ``Principal`` carries it: the token verifier builds
it and the access policy reads it, and those two packages may not import each other.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import unquote

from hearth.domain.errors import INVALID_SCOPE, HearthError

__all__ = [
    "INTERACTIONS",
    "ScopeContext",
    "SmartScope",
    "intersect_scopes",
    "is_resource_scope",
]

#: The interaction letters, in the order the grammar requires (SMART-SC-02).
INTERACTIONS = "cruds"

_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\."
    r"(?P<perm>[a-z]{1,5}|read|write|\*)(?:\?(?P<query>[^\s?]+))?"
)
_PARAM = re.compile(r"[A-Za-z0-9_\-.:]{1,64}")
_V2_PERM = re.compile(r"c?r?u?d?s?")


class ScopeContext(enum.StrEnum):
    PATIENT = "patient"
    USER = "user"
    SYSTEM = "system"


def is_resource_scope(text: str) -> bool:
    """Whether ``text`` is meant as a resource scope (as opposed to ``openid``, ``launch``...)."""
    head, _, _ = text.partition("/")
    return head in ("patient", "user", "system") and not text.startswith("launch/")


@dataclass(frozen=True, slots=True)
class SmartScope:
    """One granted or requested resource scope.

    ``interactions`` is a non-empty subset of ``cruds``; ``query`` holds the narrowing search
    parameters as sorted ``(name, value)`` pairs, values percent-decoded.
    """

    context: ScopeContext
    resource_type: str  # a resource type, or "*" for every type, present and future (SC-08)
    interactions: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> SmartScope:
        """Parse one scope string (SMART-SC-01..04); raise ``INVALID_SCOPE`` when malformed.

        Out-of-order or unknown suffixes (``.dus``) are refused rather than guessed (SC-02).
        """
        match = _SCOPE.fullmatch(text)
        if match is None:
            raise HearthError(INVALID_SCOPE, "A resource scope is malformed.")
        perm = match["perm"]
        letters = _V1.get(perm, perm)
        if not _V2_PERM.fullmatch(letters) or not letters:
            raise HearthError(
                INVALID_SCOPE, "Scope permissions are a subset of cruds, in that order."
            )
        query: list[tuple[str, str]] = []
        if match["query"]:
            for part in match["query"].split("&"):
                name, sep, value = part.partition("=")
                if not sep or not _PARAM.fullmatch(name) or not value:
                    raise HearthError(INVALID_SCOPE, "A scope's query is malformed.")
                query.append((name, unquote(value)))
            names = [name for name, _ in query]
            if len(set(names)) != len(names):
                raise HearthError(INVALID_SCOPE, "A scope's query repeats a parameter.")
        return cls(
            ScopeContext(match["context"]),
            match["type"],
            frozenset(letters),
            tuple(sorted(query)),
        )

    @property
    def permissions(self) -> str:
        """The interaction letters in canonical order, e.g. ``"rs"``."""
        return "".join(c for c in INTERACTIONS if c in self.interactions)

    def __str__(self) -> str:
        text = f"{self.context.value}/{self.resource_type}.{self.permissions}"
        if self.query:
            text += "?" + "&".join(f"{name}={value}" for name, value in self.query)
        return text

    def covers(self, other: SmartScope) -> bool:
        """Whether every access ``other`` allows is also allowed by this scope."""
        return (
            self.context is other.context
            and self.resource_type in ("*", other.resource_type)
            and other.interactions <= self.interactions
            and set(self.query) <= set(other.query)
        )


def intersect_scopes(a: SmartScope, b: SmartScope) -> SmartScope | None:
    """The scope that allows exactly what both allow, or None when they share nothing.

    Used to grant a client what it asked for within what it is allowed (SMART-SC-05). Two
    queries that constrain the same parameter to different values share nothing.
    """
    if a.context is not b.context:
        return None
    if a.resource_type == "*":
        res_type = b.resource_type
    elif b.resource_type in ("*", a.resource_type):
        res_type = a.resource_type
    else:
        return None
    interactions = a.interactions & b.interactions
    if not interactions:
        return None
    merged = dict(a.query)
    for name, value in b.query:
        if merged.setdefault(name, value) != value:
            return None
    return SmartScope(a.context, res_type, interactions, tuple(sorted(merged.items())))
