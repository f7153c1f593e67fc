"""The narrow interfaces the backup format needs from crypto and from storage.

``hearth.backupfmt`` is pure: it signs, encrypts and reads objects only through these
Protocols. ``hearth.crypto.backup`` implements the crypto ones (Ed25519, age); every
``hearth.targets`` backup target is an :class:`ObjectSource`; :mod:`hearth.backupfmt.memory`
has in-memory versions for tests and tools.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

__all__ = [
    "ManifestSigner",
    "ManifestVerifier",
    "ObjectSource",
    "Readable",
    "SegmentDecryptor",
    "SegmentEncryptor",
    "SegmentSpool",
    "Writable",
]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class ManifestSigner(Protocol):
    """Signs manifest messages (Ed25519, RFC 8032). ``key_id`` names the public key."""

    @property
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


class ManifestVerifier(Protocol):
    def verify(self, key_id: str, signature: bytes, message: bytes) -> None:
        """Return if ``signature`` is a valid signature by key ``key_id``; raise
        ``hearth.domain.IntegrityError`` otherwise, including for an unknown key."""
        ...


class SegmentEncryptor(Protocol):
    """Encrypts a stream to the backup recipients in authenticated chunks (age v1)."""

    @property
    def recipients(self) -> tuple[str, ...]: ...

    def encrypt_stream(self, source: Readable, sink: Writable) -> None: ...


class SegmentDecryptor(Protocol):
    def decrypt_stream(self, source: Readable, sink: Writable) -> None:
        """Decrypt ``source`` into ``sink`` chunk by chunk. Raise ``HearthError`` with code
        ``BACKUP_NO_IDENTITY`` when no identity opens the header, and ``IntegrityError`` when a
        chunk fails its tag, the stream is truncated, or data follows the last chunk. Plaintext
        written before the error was authenticated chunk by chunk but is incomplete."""
        ...


class ObjectSource(Protocol):
    """Read access to stored backup objects. Missing objects raise ``HearthError`` with code
    ``TARGET_OBJECT_NOT_FOUND``."""

    def get_bytes(self, name: str) -> bytes: ...

    def open_read(self, name: str) -> AbstractContextManager[Readable]: ...

    def list_names(self, prefix: str = "") -> list[str]: ...


class SegmentSpool(Protocol):
    """Where a backup writer puts one segment at a time: ``begin`` gives a fresh sink for the
    stored bytes; ``commit`` is told the content-addressed name and must make the bytes durable
    under it (write once) before returning; ``abort`` discards a partly written segment."""

    def begin(self) -> Writable: ...

    def commit(self, name: str, sha256: str, length: int) -> None: ...

    def abort(self) -> None: ...
