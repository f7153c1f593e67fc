"""Backup targets: where backup objects are stored, write-once, with retries.

I/O lives here, on the storage layer beside ``hearth.storage``; the format itself is the pure
``hearth.backupfmt``. See docs/design.md, "Backup targets".
"""

from hearth.targets.base import BackupTarget, ObjectInfo, PutResult, check_name
from hearth.targets.factory import build_target, open_target, open_targets
from hearth.targets.local import LocalDirectoryTarget
from hearth.targets.offline import OfflineMediaTarget
from hearth.targets.retry import RetryPolicy, Transient
from hearth.targets.s3 import S3Target
from hearth.targets.sftp import SftpTarget, parse_host_key
from hearth.targets.spool import TargetSpool

__all__ = [
    "BackupTarget",
    "LocalDirectoryTarget",
    "OfflineMediaTarget",
    "S3Target",
    "SftpTarget",
    "TargetSpool",
    "parse_host_key",
    "ObjectInfo",
    "PutResult",
    "RetryPolicy",
    "Transient",
    "check_name",
    "build_target",
    "open_target",
    "open_targets",
]
