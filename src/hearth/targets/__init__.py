"""Backup targets: where backup objects are stored, write-once, with retries.

I/O lives here, on the storage layer beside ``hearth.storage``; the format itself is the pure
``hearth.backupfmt``. See docs/design.md, "Backup targets".

The S3 and SFTP targets (boto3, paramiko: a quarter of a second to import) are imported when
first named, so that a command using local or offline targets does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hearth.targets.base import BackupTarget, ObjectInfo, PutResult, check_name
from hearth.targets.factory import build_target, open_target, open_targets
from hearth.targets.local import LocalDirectoryTarget
from hearth.targets.offline import OfflineMediaTarget
from hearth.targets.retry import RetryPolicy, Transient
from hearth.targets.spool import TargetSpool

if TYPE_CHECKING:
    from hearth.targets.s3 import S3Target
    from hearth.targets.sftp import SftpTarget, parse_host_key


def __getattr__(name: str) -> object:
    if name == "S3Target":
        from hearth.targets.s3 import S3Target

        return S3Target
    if name in ("SftpTarget", "parse_host_key"):
        from hearth.targets import sftp

        return getattr(sftp, name)
    raise AttributeError(f"module 'hearth.targets' has no attribute {name!r}")


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
