"""In-memory object store and spool: the backup format without any I/O, for tests and tools."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

from hearth.backupfmt.interfaces import Readable, Writable
from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_ARGUMENT, TARGET_OBJECT_EXISTS, TARGET_OBJECT_NOT_FOUND

__all__ = ["MemoryObjects", "MemorySpool"]


class MemoryObjects:
    """A dict of name -> bytes with write-once ``put`` and the :class:`ObjectSource` reads."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects: dict[str, bytes] = dict(objects or {})

    def put_bytes(self, name: str, data: bytes) -> None:
        if name in self.objects and self.objects[name] != data:
            raise HearthError(TARGET_OBJECT_EXISTS)
        self.objects[name] = bytes(data)

    def get_bytes(self, name: str) -> bytes:
        try:
            return self.objects[name]
        except KeyError:
            raise HearthError(TARGET_OBJECT_NOT_FOUND, f"No object {name}.") from None

    @contextmanager
    def open_read(self, name: str) -> Iterator[Readable]:
        yield io.BytesIO(self.get_bytes(name))

    def list_names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.objects if n.startswith(prefix))


class MemorySpool:
    """A :class:`SegmentSpool` that commits each segment into a :class:`MemoryObjects`."""

    def __init__(self, objects: MemoryObjects) -> None:
        self._objects = objects
        self._current: io.BytesIO | None = None

    def begin(self) -> Writable:
        self._current = io.BytesIO()
        return self._current

    def commit(self, name: str, sha256: str, length: int) -> None:
        if self._current is None:
            raise HearthError(BACKUP_ARGUMENT, "No segment was begun.")
        data = self._current.getvalue()
        if len(data) != length:
            raise HearthError(BACKUP_ARGUMENT, "The spooled segment is incomplete.")
        self._objects.put_bytes(name, data)
        self._current = None

    def abort(self) -> None:
        self._current = None
