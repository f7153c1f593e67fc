"""A backup target in a local directory: atomic, durable, write-once files.

Write path (the classic durable-rename sequence): copy into ``.tmp/<random>`` while hashing,
``fsync`` the file, ``link`` it to its final name (``link`` refuses to replace an existing
name, unlike ``rename``), ``fsync`` the directory so the new entry survives a power cut, then
remove the temporary name. File systems without hard links (FAT, exFAT on removable media) fall
back to ``rename`` after an existence check, which is safe with one writer per target.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from hearth.domain import HearthError
from hearth.domain.errors import (
    TARGET_IMMUTABILITY_UNSUPPORTED,
    TARGET_OBJECT_EXISTS,
    TARGET_OBJECT_NOT_FOUND,
)
from hearth.targets.base import ObjectInfo, PutResult, check_name
from hearth.targets.retry import RetryPolicy, Transient

__all__ = ["LocalDirectoryTarget"]

T = TypeVar("T")
CHUNK = 1024 * 1024
TMP_DIR = ".tmp"
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT}
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class LocalDirectoryTarget:
    """Objects as files under ``root`` (created if missing)."""

    supports_immutability = False

    def __init__(
        self,
        root: Path,
        *,
        label: str = "local",
        region: str = "local",
        retry: RetryPolicy | None = None,
    ) -> None:
        self.root = Path(root)
        self._label = label
        self._region = region
        self._retry = retry or RetryPolicy()

    @property
    def label(self) -> str:
        return self._label

    @property
    def region(self) -> str:
        return self._region

    # -- helpers -------------------------------------------------------------------------

    def _ready(self) -> None:
        """Hook for subclasses (offline media checks that the medium is there)."""
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def _run(self, operation: Callable[[], T], what: str) -> T:
        def attempt() -> T:
            self._ready()
            try:
                return operation()
            except OSError as exc:
                if exc.errno in _TRANSIENT_ERRNOS:
                    raise Transient(os.strerror(exc.errno or 0)) from exc
                raise

        return self._retry.run(attempt, f"{what} on {self._label}")

    def _not_found(self, name: str) -> HearthError:
        return HearthError(TARGET_OBJECT_NOT_FOUND, f"No object {name} on {self._label}.")

    # -- writes --------------------------------------------------------------------------

    def put_bytes(
        self, name: str, data: bytes, *, retain_until: datetime | None = None
    ) -> PutResult:
        return self._put(name, lambda sink: sink.write(data), retain_until)

    def put_file(self, name: str, path: Path, *, retain_until: datetime | None = None) -> PutResult:
        def copy(sink: BinaryIO) -> None:
            with Path(path).open("rb") as source:
                shutil.copyfileobj(source, sink, CHUNK)

        return self._put(name, copy, retain_until)

    def _put(
        self, name: str, fill: Callable[[BinaryIO], object], retain_until: datetime | None
    ) -> PutResult:
        final = self._path(name)
        if retain_until is not None:
            raise HearthError(TARGET_IMMUTABILITY_UNSUPPORTED, f"{self._label} has no retention.")

        def attempt() -> PutResult:
            tmp_dir = self.root / TMP_DIR
            tmp_dir.mkdir(exist_ok=True)
            tmp = tmp_dir / secrets.token_hex(16)
            try:
                with tmp.open("xb") as sink:
                    fill(sink)
                    sink.flush()
                    os.fsync(sink.fileno())
                sha, size = file_digest(tmp)
                existed = self._publish(tmp, final, sha)
            finally:
                tmp.unlink(missing_ok=True)
            if not existed:
                self._after_write(name, final, sha)
            return PutResult(name, sha, size, existed)

        return self._run(attempt, f"put {name}")

    def _publish(self, tmp: Path, final: Path, sha: str) -> bool:
        """Give ``tmp`` the name ``final`` without ever replacing an object; True if an
        identical object was already there."""
        created = []
        parent = final.parent
        while not parent.exists():
            created.append(parent)
            parent = parent.parent
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return self._same(final, sha)
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if final.exists():
                return self._same(final, sha)
            tmp.replace(final)
        for directory in [final.parent, *[c.parent for c in reversed(created)]]:
            _fsync_dir(directory)
        return False

    def _same(self, final: Path, sha: str) -> bool:
        if file_digest(final)[0] != sha:
            raise HearthError(
                TARGET_OBJECT_EXISTS, f"{final.name} on {self._label} holds other bytes."
            )
        return True

    def _after_write(self, name: str, final: Path, sha: str) -> None:
        """Hook for subclasses (offline media reads the object back)."""

    # -- reads ---------------------------------------------------------------------------

    def get_bytes(self, name: str) -> bytes:
        path = self._path(name)

        def attempt() -> bytes:
            try:
                return path.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise self._not_found(name) from None

        return self._run(attempt, f"get {name}")

    def get_file(self, name: str, path: Path) -> ObjectInfo:
        source = self._path(name)
        destination = Path(path)

        def attempt() -> ObjectInfo:
            tmp = destination.with_name(f".{destination.name}.{secrets.token_hex(8)}")
            try:
                with source.open("rb") as reader, tmp.open("xb") as writer:
                    shutil.copyfileobj(reader, writer, CHUNK)
                    writer.flush()
                    os.fsync(writer.fileno())
                tmp.replace(destination)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                if not source.is_file():
                    raise self._not_found(name) from None
                raise
            finally:
                tmp.unlink(missing_ok=True)
            return ObjectInfo(name, destination.stat().st_size)

        return self._run(attempt, f"get {name}")

    @contextmanager
    def open_read(self, name: str) -> Iterator[BinaryIO]:
        path = self._path(name)

        def attempt() -> BinaryIO:
            try:
                return path.open("rb")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                raise self._not_found(name) from None

        handle = self._run(attempt, f"open {name}")
        with handle:
            yield handle

    def exists(self, name: str) -> bool:
        path = self._path(name)
        return self._run(path.is_file, f"exists {name}")

    def stat(self, name: str) -> ObjectInfo:
        path = self._path(name)

        def attempt() -> ObjectInfo:
            if not path.is_file():
                raise self._not_found(name)
            return ObjectInfo(name, path.stat().st_size)

        return self._run(attempt, f"stat {name}")

    def list_names(self, prefix: str = "") -> list[str]:
        def attempt() -> list[str]:
            names: list[str] = []
            for directory, subdirs, files in os.walk(self.root):
                # Temporary files and markers start with a dot; object names never do.
                subdirs[:] = [d for d in subdirs if not d.startswith(".")]
                rel = Path(directory).relative_to(self.root)
                for file in files:
                    if file.startswith("."):
                        continue
                    name = (rel / file).as_posix() if rel.parts else file
                    if name.startswith(prefix):
                        names.append(name)
            return sorted(names)

        return self._run(attempt, "list")

    def delete(self, name: str) -> None:
        path = self._path(name)

        def attempt() -> None:
            try:
                path.unlink()
            except (FileNotFoundError, IsADirectoryError):
                raise self._not_found(name) from None
            _fsync_dir(path.parent)

        self._run(attempt, f"delete {name}")

    def immutable_until(self, name: str) -> datetime | None:
        self.stat(name)
        return None
