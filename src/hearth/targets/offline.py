"""A backup target on offline media: a disk that is plugged in for a backup and put away.

The medium is identified by a marker file (``.hearth-media``) holding its media id, written
once by :meth:`OfflineMediaTarget.initialise`. Every operation first checks the marker, so
an absent medium is a clear ``TARGET_UNAVAILABLE`` ("not mounted") and never a silent write
into the empty mount-point directory on the system disk. After each write the object's pages
are dropped from the page cache (``posix_fadvise(DONTNEED)``, after ``fsync``) and it is read
back and compared with the digest computed while writing.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_ARGUMENT, TARGET_READBACK_MISMATCH, TARGET_UNAVAILABLE
from hearth.targets.local import CHUNK, LocalDirectoryTarget, _fsync_dir
from hearth.targets.retry import RetryPolicy

__all__ = ["MARKER", "OfflineMediaTarget"]

MARKER = ".hearth-media"
_MEDIA_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class OfflineMediaTarget(LocalDirectoryTarget):
    def __init__(
        self,
        mount: Path,
        *,
        media_id: str,
        label: str = "offline",
        region: str = "offline",
        require_mount_point: bool = False,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not _MEDIA_ID.fullmatch(media_id):
            raise HearthError(BACKUP_ARGUMENT, "A media id is 1-64 of A-Z a-z 0-9 . _ -")
        super().__init__(Path(mount), label=label, region=region, retry=retry)
        self.media_id = media_id
        self.require_mount_point = require_mount_point

    def _unavailable(self, why: str) -> HearthError:
        return HearthError(
            TARGET_UNAVAILABLE,
            f"Offline medium {self.media_id} ({self.label}) is not available at {self.root}: "
            f"{why}. Mount it and try again.",
        )

    def _check_mount(self) -> None:
        if not self.root.is_dir():
            raise self._unavailable("the path does not exist")
        if self.require_mount_point and not os.path.ismount(self.root):
            raise self._unavailable("nothing is mounted there")

    def initialise(self) -> None:
        """Mark an empty (or already ours) medium as this media id."""
        self._check_mount()
        marker = self.root / MARKER
        if marker.exists():
            if marker.read_text().strip() != self.media_id:
                raise HearthError(BACKUP_ARGUMENT, "That medium belongs to another media id.")
            return
        with marker.open("x") as handle:
            handle.write(self.media_id + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(self.root)

    def _ready(self) -> None:
        self._check_mount()
        try:
            found = (self.root / MARKER).read_text().strip()
        except OSError:
            raise self._unavailable(
                "no Hearth media marker (not mounted, or not initialised)"
            ) from None
        if found != self.media_id:
            raise self._unavailable("another medium is mounted there")

    def _after_write(self, name: str, final: Path, sha: str) -> None:
        digest = hashlib.sha256()
        fd = os.open(final, os.O_RDONLY)
        try:
            # Written pages are clean after fsync; dropping them makes the read-back come from
            # the medium rather than from memory.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            with os.fdopen(os.dup(fd), "rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
        finally:
            os.close(fd)
        if digest.hexdigest() != sha:
            final.unlink(missing_ok=True)
            raise HearthError(TARGET_READBACK_MISMATCH, f"{name} read back wrong; removed it.")

    def verify_object(self, name: str, sha256: str) -> None:
        """Re-read one object later (scheduled verification) and compare its digest."""
        self._ready()
        path = self._path(name)
        if not path.is_file():
            raise self._not_found(name)
        self._after_write(name, path, sha256)
