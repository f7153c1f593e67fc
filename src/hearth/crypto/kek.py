"""Key-encryption keys: what wraps the data, MAC, blind-index and signing keys.

Three sources, one small interface (``KeyEncryptionKey``):

- a key file (32 random bytes, mode 0600, by default in the instance's ``keys/`` beside, never
  inside, its ``data/``; in production a path outside the instance);
- a passphrase from the environment, stretched with scrypt (RFC 7914, N=2**17, r=8, p=1);
- an external KMS, loaded from the ``hearth.kek`` entry point group, that implements the same
  two methods.

Wrapped keys use AES-256-GCM with associated data naming the key's purpose and id, so a wrapped
key cannot be swapped for another. Format: ``0x01 | nonce (12) | ciphertext || tag``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hearth.domain import HearthError, IntegrityError, Random, Secret, errors

__all__ = [
    "KEY_BYTES",
    "FileKek",
    "KeyEncryptionKey",
    "LocalKek",
    "PassphraseKek",
    "create_key_file",
]

KEY_BYTES = 32
_WRAP_V1 = b"\x01"


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps keys. ``kek_id`` names the KEK so a wrong one is reported clearly."""

    @property
    def kek_id(self) -> str: ...

    def wrap(self, key: bytes, *, aad: bytes, random: Random) -> bytes: ...

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes: ...


class LocalKek:
    """A KEK whose 256-bit key is held in this process (from a file or a passphrase)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise HearthError(errors.KEY_UNAVAILABLE, "The key-encryption key must be 32 bytes.")
        self._aead = AESGCM(key)
        self._id = hashlib.sha256(b"hearth/kek-id/v1\x00" + key).hexdigest()[:16]

    @property
    def kek_id(self) -> str:
        return self._id

    def wrap(self, key: bytes, *, aad: bytes, random: Random) -> bytes:
        nonce = random.token_bytes(12)
        return _WRAP_V1 + nonce + self._aead.encrypt(nonce, key, aad)

    def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
        if wrapped[:1] != _WRAP_V1 or len(wrapped) < 1 + 12 + 16:
            raise IntegrityError()
        try:
            return self._aead.decrypt(wrapped[1:13], wrapped[13:], aad)
        except InvalidTag:
            raise IntegrityError() from None


def create_key_file(path: Path, random: Random) -> None:
    """Write a new 32-byte KEK to ``path`` with mode 0600, refusing to overwrite one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, random.token_bytes(KEY_BYTES).hex().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def FileKek(path: Path) -> LocalKek:
    """Load a KEK from a key file, refusing one that group or others may read or write."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise HearthError(
            errors.KEY_UNAVAILABLE,
            "The key file is missing. Restore it from your key backup or set the key source "
            "in hearth.toml.",
        ) from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise HearthError(
            errors.KEY_UNAVAILABLE, "The key file must be readable by its owner only (chmod 600)."
        )
    try:
        key = bytes.fromhex(path.read_text("ascii").strip())
    except ValueError:
        raise HearthError(errors.KEY_UNAVAILABLE, "The key file is not a hex key.") from None
    return LocalKek(key)


def PassphraseKek(passphrase: Secret, salt: bytes) -> LocalKek:
    """Derive a KEK from a passphrase with scrypt (RFC 7914); the salt is stored in hearth.toml."""
    if len(passphrase.reveal()) < 16:
        raise HearthError(errors.KEY_UNAVAILABLE, "The key passphrase must be 16+ characters.")
    kdf = Scrypt(salt=salt, length=KEY_BYTES, n=2**17, r=8, p=1)
    return LocalKek(kdf.derive(passphrase.reveal().encode("utf-8")))
