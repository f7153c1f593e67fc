"""Value types shared by every layer. Pure: no I/O, no third-party imports."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from hearth.domain.scopes import SmartScope

__all__ = [
    "Action",
    "Clock",
    "Outcome",
    "Principal",
    "PrincipalKind",
    "Random",
    "ResourceRef",
    "Secret",
    "StoredResource",
    "SystemClock",
    "SystemRandom",
    "ID_PATTERN",
]

#: FHIR R4 ``id`` datatype: 1 to 64 characters of ``[A-Za-z0-9\-\.]`` (datatypes.html#id).
ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """A resource, or one version of it, named by type and id. Ids are never derived from PHI."""

    type: str
    id: str
    version: int | None = None

    def aad(self, version: int) -> bytes:
        """Associated data that binds a sealed body to exactly this row (type, id, version)."""
        return b"hearth/resource/v1\x00%s\x00%s\x00%d" % (
            self.type.encode("ascii"),
            self.id.encode("ascii"),
            version,
        )

    def __str__(self) -> str:
        base = f"{self.type}/{self.id}"
        return base if self.version is None else f"{base}/_history/{self.version}"


class PrincipalKind(enum.StrEnum):
    USER = "user"
    CLIENT = "client"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a unique user, a registered client, or Hearth itself.

    ``subject`` is the immutable unique id that every audit entry carries (HIPAA
    164.312(a)(2)(i)): the user id for a user (also when an app acts for them), the client id
    for a backend service. ``source`` is the network address the request came from.
    """

    subject: str
    kind: PrincipalKind = PrincipalKind.USER
    roles: frozenset[str] = frozenset()
    #: None when the principal acts on its own rights (a console session, a bootstrap token);
    #: otherwise the SMART scopes it was granted, which limit those rights (SMART-SC-05).
    scopes: frozenset[SmartScope] | None = None
    #: The patient in launch context (SMART-LC-03); ``patient/`` scopes reach only this one.
    patient: str | None = None
    #: The OAuth client acting (for a user's token, the app; for a backend service, itself).
    client_id: str | None = None
    purpose_of_use: str = "TREAT"
    source: str | None = None
    session: str | None = None
    attributes: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


class Action(enum.StrEnum):
    """The interactions the gate decides on and audits (FHIR R4 http.html, plus Hearth's own)."""

    READ = "read"
    VREAD = "vread"
    SEARCH = "search"
    HISTORY = "history"
    CREATE = "create"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"

    @property
    def is_write(self) -> bool:
        return self in _WRITES


_WRITES = frozenset({Action.CREATE, Action.UPDATE, Action.PATCH, Action.DELETE})


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    DENIED = "denied"
    NOT_FOUND = "not-found"
    INVALID = "invalid"
    ERROR = "error"


class Secret:
    """A string that refuses to print (starlette's ``Secret``): ``repr`` shows ``**********``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Random(Protocol):
    def token_bytes(self, n: int) -> bytes: ...


class SystemRandom:
    def token_bytes(self, n: int) -> bytes:
        import secrets

        return secrets.token_bytes(n)


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One resource version as it leaves the gate: opened, verified and allowed."""

    res_type: str
    res_id: str
    version: int
    seq: int
    last_updated: datetime
    deleted: bool
    resource: dict[str, Any] | None  # None for a deletion (tombstone)

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def ref(self) -> ResourceRef:
        return ResourceRef(self.res_type, self.res_id, self.version)
