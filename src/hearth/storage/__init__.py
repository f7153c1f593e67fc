"""The gate and what lies behind it: the repository bound to a principal, audit, SQL storage.

Adapters never import this package (import-linter enforces it); ``hearth.wiring`` builds its
objects and services receive them.
"""

from hearth.storage.audit import (
    AuditTicket,
    AuditTrail,
    deferred_durability,
    resolve_when_durable,
    wait_tickets,
    wait_tickets_async,
)
from hearth.storage.identity import ApiTokenStore, TokenGrant
from hearth.storage.key_admin import KeyAdministration, KeyInfo, ensure_key_purposes
from hearth.storage.keys import LiveKeys
from hearth.storage.repository import (
    IntegrityObserver,
    RecordRepository,
    SearchBounds,
    WriteBatch,
    from_us,
    to_us,
)
from hearth.storage.searching import SearchPage
from hearth.storage.system import SystemRepository, VersionFinding, initialise_store

__all__ = [
    "ApiTokenStore",
    "AuditTicket",
    "AuditTrail",
    "IntegrityObserver",
    "KeyAdministration",
    "KeyInfo",
    "LiveKeys",
    "RecordRepository",
    "SearchBounds",
    "SearchPage",
    "SystemRepository",
    "TokenGrant",
    "VersionFinding",
    "WriteBatch",
    "deferred_durability",
    "resolve_when_durable",
    "ensure_key_purposes",
    "from_us",
    "initialise_store",
    "to_us",
    "wait_tickets",
    "wait_tickets_async",
]
