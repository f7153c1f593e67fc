"""The audit entry format, its keyed hash chain and the chain verifier. Pure: no I/O."""

from hearth.audit.entry import (
    AUDIT_FORMAT_VERSION,
    CHAIN_PREFIX,
    AuditRecord,
    ChainLink,
    SequencedEntry,
    checkpoint_message,
    genesis_hash,
    head_message,
    sealed_aad,
    sequence,
)
from hearth.audit.verify import (
    ChainFinding,
    FindingKind,
    SignedHead,
    SignedPoint,
    StoredEntry,
    verify_chain,
)

__all__ = [
    "AUDIT_FORMAT_VERSION",
    "CHAIN_PREFIX",
    "AuditRecord",
    "ChainFinding",
    "ChainLink",
    "FindingKind",
    "SequencedEntry",
    "SignedHead",
    "SignedPoint",
    "StoredEntry",
    "checkpoint_message",
    "genesis_hash",
    "head_message",
    "sealed_aad",
    "sequence",
    "verify_chain",
]
