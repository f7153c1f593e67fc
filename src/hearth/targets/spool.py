"""A segment spool that stages each segment in a local file and stores it on a target.

``hearth.backupfmt.BackupWriter`` names a segment by its SHA-256 only once it is fully written,
so the bytes are staged locally (bounded memory, one segment at a time) and uploaded under the
content name on ``commit``; the upload is write-once and retried by the target.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_ARGUMENT
from hearth.targets.base import BackupTarget

__all__ = ["TargetSpool"]


class TargetSpool:
    """A ``hearth.backupfmt.SegmentSpool`` over one or more targets (each gets every segment)."""

    def __init__(
        self,
        targets: list[BackupTarget],
        spool_dir: Path,
        *,
        retain_until: datetime | None = None,
    ) -> None:
        if not targets:
            raise HearthError(BACKUP_ARGUMENT, "A spool needs at least one target.")
        self._targets = targets
        self._dir = Path(spool_dir)
        self._retain_until = retain_until
        self._file: BinaryIO | None = None
        self._path: Path | None = None

    def begin(self) -> BinaryIO:
        self.abort()
        self._dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="segment-", dir=self._dir)
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")
        return self._file

    def commit(self, name: str, sha256: str, length: int) -> None:
        if self._file is None or self._path is None:
            raise HearthError(BACKUP_ARGUMENT, "No segment was begun.")
        self._file.close()
        self._file = None
        try:
            if self._path.stat().st_size != length:
                raise HearthError(BACKUP_ARGUMENT, "The spooled segment is incomplete.")
            for target in self._targets:
                retain = self._retain_until if target.supports_immutability else None
                result = target.put_file(name, self._path, retain_until=retain)
                if result.sha256 != sha256:
                    raise HearthError(BACKUP_ARGUMENT, "The spooled segment changed on disk.")
        finally:
            self._path.unlink(missing_ok=True)
            self._path = None

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
