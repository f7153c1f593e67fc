"""The audit entry format, its hash chain and the chain verifier. Pure: no I/O."""

from hearth.audit.entry import (
    AUDIT_FORMAT_VERSION,
    AuditRecord,
    SequencedEntry,
    chain_hash,
    checkpoint_message,
    genesis_hash,
    sealed_aad,
    sequence,
)
from hearth.audit.verify import ChainFinding, FindingKind, SignedPoint, StoredEntry, verify_chain

__all__ = [
    "AUDIT_FORMAT_VERSION",
    "AuditRecord",
    "ChainFinding",
    "FindingKind",
    "SequencedEntry",
    "SignedPoint",
    "StoredEntry",
    "chain_hash",
    "checkpoint_message",
    "genesis_hash",
    "sealed_aad",
    "sequence",
    "verify_chain",
]
