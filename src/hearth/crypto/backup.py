"""The cryptography of backups: Ed25519 manifest signatures and age v1 segment encryption.

Implements the Protocols of :mod:`hearth.backupfmt.interfaces`, so that the format package stays
free of cryptographic libraries.

- Manifests are signed with Ed25519 (RFC 8032). A key is named by its **key id**, the first
  16 bytes (hex) of SHA-256 over the raw 32-byte public key.
- Segments are encrypted with age v1 (age-encryption.org/v1) to X25519 recipients through
  pyrage: a random file key wrapped per recipient, then ChaCha20-Poly1305 over 64 KiB chunks
  with a counter nonce and a last-chunk flag (the STREAM construction), so every chunk is
  authenticated, and truncation, reordering and appended data are all detected.
- Identities are generated from the injected :class:`~hearth.domain.Random` and encoded in
  Bech32 (BIP 173) exactly as age-keygen writes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import pyrage
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hearth.domain import HearthError, IntegrityError, Random, Secret
from hearth.domain.errors import BACKUP_ARGUMENT, BACKUP_NO_IDENTITY

__all__ = [
    "AgeDecryptor",
    "AgeEncryptor",
    "Ed25519ManifestSigner",
    "Ed25519ManifestVerifier",
    "backup_key_id",
    "generate_backup_identity",
    "recipient_of",
]


def backup_key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).digest()[:16].hex()


class Ed25519ManifestSigner:
    """Signs backup manifests with an Ed25519 key given as its 32-byte seed."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise HearthError(BACKUP_ARGUMENT, "An Ed25519 seed is 32 bytes.")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = backup_key_id(self.public_key)

    @classmethod
    def generate(cls, random: Random) -> Ed25519ManifestSigner:
        return cls(random.token_bytes(32))

    @property
    def key_id(self) -> str:
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verifier(self) -> Ed25519ManifestVerifier:
        return Ed25519ManifestVerifier([self.public_key])


class Ed25519ManifestVerifier:
    """Verifies manifest signatures against a set of trusted public keys (old keys stay
    listed after a rotation so that older backups still verify)."""

    def __init__(self, public_keys: Iterable[bytes]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for raw in public_keys:
            if len(raw) != 32:
                raise HearthError(BACKUP_ARGUMENT, "An Ed25519 public key is 32 bytes.")
            self._keys[backup_key_id(raw)] = Ed25519PublicKey.from_public_bytes(raw)

    def verify(self, key_id: str, signature: bytes, message: bytes) -> None:
        key = self._keys.get(key_id)
        if key is None:
            raise IntegrityError("The manifest is signed by an unknown key.")
        try:
            key.verify(signature, message)
        except InvalidSignature:
            raise IntegrityError("The manifest signature did not verify.") from None


# Bech32 (BIP 173), for age's key encodings.
_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate(_GENERATOR):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _bech32_encode(hrp: str, payload: bytes) -> str:
    acc = bits = 0
    data: list[int] = []
    for byte in payload:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = _polymod([*expanded, *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data + checksum)


def _parse_identity(identity: Secret) -> Any:
    try:
        return pyrage.x25519.Identity.from_str(identity.reveal())
    except Exception:  # noqa: BLE001 - pyrage's error types vary; never echo the key
        raise HearthError(BACKUP_ARGUMENT, "Not a valid age X25519 identity.") from None


def recipient_of(identity: Secret) -> str:
    """The public recipient string (``age1...``) of an identity."""
    return str(_parse_identity(identity).to_public())


def generate_backup_identity(random: Random) -> tuple[Secret, str]:
    """A new age X25519 identity from 32 random bytes, and its recipient. The caller writes
    the identity (see ``hearth.backupfmt.format_identity_file``) where the operator keeps it
    offline, and configures only the recipient on the server."""
    identity = Secret(_bech32_encode("age-secret-key-", random.token_bytes(32)).upper())
    return identity, recipient_of(identity)


class AgeEncryptor:
    """Encrypts segment streams to every configured recipient (any one identity opens them)."""

    def __init__(self, recipients: Sequence[str]) -> None:
        if not recipients:
            raise HearthError(BACKUP_ARGUMENT, "Backups need at least one recipient.")
        parsed = []
        for text in recipients:
            try:
                parsed.append(pyrage.x25519.Recipient.from_str(text))
            except Exception:  # noqa: BLE001 - pyrage raises several types for bad text
                raise HearthError(BACKUP_ARGUMENT, "Not a valid age X25519 recipient.") from None
        self._parsed = parsed
        self._recipients = tuple(recipients)

    @property
    def recipients(self) -> tuple[str, ...]:
        return self._recipients

    def encrypt_stream(self, source: Any, sink: Any) -> None:
        # pyrage drops an error raised by the sink's write when it flushes the stream's last
        # chunk, and returns as if it had been written: the sink's first error is kept here
        # and raised, so a full disk never passes for a written segment.
        guarded = _GuardedSink(sink)
        try:
            pyrage.encrypt_io(source, guarded, self._parsed)
        except Exception:
            if guarded.error is not None:
                raise guarded.error from None
            raise
        if guarded.error is not None:
            raise guarded.error


class _GuardedSink:
    """Passes writes on and remembers the first that failed; after it, every write fails."""

    def __init__(self, sink: Any) -> None:
        self._sink = sink
        self.error: Exception | None = None

    def write(self, data: Any) -> Any:
        if self.error is not None:
            raise self.error
        try:
            return self._sink.write(data)
        except Exception as exc:
            self.error = exc
            raise


class AgeDecryptor:
    """Decrypts segment streams with the operator's identities."""

    def __init__(self, identities: Sequence[Secret]) -> None:
        if not identities:
            raise HearthError(BACKUP_ARGUMENT, "Decryption needs at least one identity.")
        self._identities = [_parse_identity(i) for i in identities]

    def decrypt_stream(self, source: Any, sink: Any) -> None:
        try:
            pyrage.decrypt_io(source, sink, self._identities)
        except pyrage.DecryptError as exc:
            if "no matching keys" in str(exc).lower():
                raise HearthError(BACKUP_NO_IDENTITY) from None
            raise IntegrityError("A segment failed authentication.") from None
        except OSError:
            # pyrage reports a failed chunk tag, a cut stream and trailing data as OSError.
            raise IntegrityError("A segment failed authentication.") from None
