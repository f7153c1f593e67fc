"""The gate and what lies behind it: the repository bound to a principal, audit, SQL storage.

Adapters never import this package (import-linter enforces it); ``hearth.wiring`` builds its
objects and services receive them.
"""

from hearth.storage.audit import (
    AuditTicket,
    AuditTrail,
    deferred_durability,
    wait_tickets,
    wait_tickets_async,
)
from hearth.storage.identity import ApiTokenStore, TokenGrant
from hearth.storage.repository import (
    IntegrityObserver,
    RecordRepository,
    SearchBounds,
    WriteBatch,
    from_us,
    to_us,
)
from hearth.storage.searching import SearchPage
from hearth.storage.system import (
    KeyInfo,
    SystemRepository,
    VersionFinding,
    initialise_store,
    load_wrapped_keys,
)

__all__ = [
    "ApiTokenStore",
    "AuditTicket",
    "AuditTrail",
    "IntegrityObserver",
    "KeyInfo",
    "RecordRepository",
    "SearchBounds",
    "SearchPage",
    "SystemRepository",
    "TokenGrant",
    "VersionFinding",
    "WriteBatch",
    "deferred_durability",
    "from_us",
    "initialise_store",
    "load_wrapped_keys",
    "to_us",
    "wait_tickets",
    "wait_tickets_async",
]
