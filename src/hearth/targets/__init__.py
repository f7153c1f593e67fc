"""Backup targets: where backup objects are stored, write-once, with retries.

I/O lives here, on the storage layer beside ``hearth.storage``; the format itself is the pure
``hearth.backupfmt``. See docs/design.md, "Backup targets".
"""

from hearth.targets.base import BackupTarget, ObjectInfo, PutResult, check_name
from hearth.targets.retry import RetryPolicy, Transient

__all__ = [
    "BackupTarget",
    "ObjectInfo",
    "PutResult",
    "RetryPolicy",
    "Transient",
    "check_name",
]
