"""The backup target interface: write-once object storage with streaming and retention.

Every target (local directory, offline media, S3-compatible, SFTP) implements
:class:`BackupTarget` and passes the one conformance suite in ``tests/integration/targets/``
(restic's model: one contract, many backends). Targets are also ``hearth.backupfmt``
``ObjectSource`` objects, so the format's verifier reads from them directly.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from hearth.domain import HearthError
from hearth.domain.errors import TARGET_BAD_NAME

__all__ = ["BackupTarget", "ObjectInfo", "PutResult", "check_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,7}")


def check_name(name: str) -> str:
    """Object names are relative ASCII paths: ``[A-Za-z0-9][A-Za-z0-9._-]*`` segments joined by
    ``/``. No ``..``, no leading dot or slash, no space or backslash, so none escapes a
    directory or hides among the dot-files a target keeps for itself. (Backup object names
    never differ only by case, so case-insensitive media are safe.)"""
    if not _NAME.fullmatch(name) or ".." in name:
        raise HearthError(TARGET_BAD_NAME)
    return name


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a put stored: its SHA-256 (hex) and size, and whether it was already there."""

    name: str
    sha256: str
    size: int
    existed: bool


@runtime_checkable
class BackupTarget(Protocol):
    """Write-once object storage for backups.

    - ``put_bytes``/``put_file``: store an object atomically (visible only when complete). An
      existing name with identical bytes is a no-op (``existed=True``), so a retry after a lost
      reply is safe; with other bytes it raises ``TARGET_OBJECT_EXISTS``. ``retain_until``
      makes the object immutable until then, or raises ``TARGET_IMMUTABILITY_UNSUPPORTED``.
    - ``get_bytes`` (small objects), ``get_file`` and ``open_read`` (streaming) raise
      ``TARGET_OBJECT_NOT_FOUND`` for a missing name.
    - ``delete`` raises ``TARGET_OBJECT_NOT_FOUND`` or ``TARGET_OBJECT_LOCKED``.
    - ``list_names(prefix)`` returns sorted names.
    - Transient failures are retried with backoff; what remains raises ``TARGET_UNAVAILABLE``.
    """

    @property
    def label(self) -> str: ...

    @property
    def region(self) -> str: ...

    @property
    def supports_immutability(self) -> bool: ...

    def put_bytes(
        self, name: str, data: bytes, *, retain_until: datetime | None = None
    ) -> PutResult: ...

    def put_file(
        self, name: str, path: Path, *, retain_until: datetime | None = None
    ) -> PutResult: ...

    def get_bytes(self, name: str) -> bytes: ...

    def get_file(self, name: str, path: Path) -> ObjectInfo: ...

    def open_read(self, name: str) -> AbstractContextManager[BinaryIO]: ...

    def exists(self, name: str) -> bool: ...

    def stat(self, name: str) -> ObjectInfo: ...

    def list_names(self, prefix: str = "") -> list[str]: ...

    def delete(self, name: str) -> None: ...

    def immutable_until(self, name: str) -> datetime | None: ...
