"""The key ring: every key Hearth uses, wrapped by the KEK at rest, unwrapped in memory.

Purposes:

- ``data``: AES-256-GCM keys that seal resource bodies and sealed audit fields; one is active
  for new writes, older ones stay readable until retired;
- ``mac``: HMAC-SHA-256 keys for per-version MACs; kept apart from data keys so that whoever can
  decrypt cannot also forge integrity;
- ``blind``: the HMAC key for blind search indexes;
- ``audit-sign``: Ed25519 seeds that sign audit checkpoints and the chain head;
- ``token-sign``: seeds of the ECDSA P-256 keys that sign OAuth access and ID tokens
  (``hearth.crypto.token_keys``). Rotated-out ones stay to verify tokens until they expire. An
  instance created before this purpose existed gets its first one from the token service.

A key's id is a small integer that sealed blobs and rows carry, so the ring can find the key to
open them and ``hearth keys retire`` can prove nothing still uses a key before dropping it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearth.crypto import envelope, mac
from hearth.crypto.blind import blind_index, blind_indexes
from hearth.crypto.kek import KEY_BYTES, KeyEncryptionKey
from hearth.crypto.signing import Signer, Verifier, signer_from_seed
from hearth.crypto.token_keys import p256_jwk_from_seed
from hearth.domain import HearthError, IntegrityError, Random, errors

__all__ = ["KeyPurpose", "KeyRing", "KeyState", "WrappedKey", "new_wrapped_key", "rewrap"]


class KeyPurpose(enum.StrEnum):
    DATA = "data"
    MAC = "mac"
    BLIND = "blind"
    AUDIT_SIGN = "audit-sign"
    AUDIT_CHAIN = "audit-chain"
    TOKEN_SIGN = "token-sign"  # noqa: S105 - a key purpose, not a secret


#: Purposes an instance may lack (created before the purpose existed); created on first use.
_OPTIONAL = frozenset({KeyPurpose.TOKEN_SIGN})


class KeyState(enum.StrEnum):
    ACTIVE = "active"  # used for new writes (exactly one per purpose)
    DECRYPT_ONLY = "decrypt-only"  # rotated out; still opens old data
    RETIRED = "retired"  # nothing uses it; the wrapped key is destroyed


@dataclass(frozen=True, slots=True)
class WrappedKey:
    key_id: int
    purpose: KeyPurpose
    state: KeyState
    wrapped: bytes | None  # None once retired
    kek_id: str


def _aad(key_id: int, purpose: KeyPurpose) -> bytes:
    return b"hearth/key/v1\x00%s\x00%d" % (purpose.value.encode("ascii"), key_id)


def new_wrapped_key(
    kek: KeyEncryptionKey, *, key_id: int, purpose: KeyPurpose, random: Random
) -> WrappedKey:
    """Generate a fresh 256-bit key (or Ed25519 seed) and wrap it under ``kek``."""
    material = random.token_bytes(KEY_BYTES)
    wrapped = kek.wrap(material, aad=_aad(key_id, purpose), random=random)
    return WrappedKey(key_id, purpose, KeyState.ACTIVE, wrapped, kek.kek_id)


def rewrap(
    key: WrappedKey, old: KeyEncryptionKey, new: KeyEncryptionKey, random: Random
) -> WrappedKey:
    """Re-wrap one key under a new KEK (KEK rotation); the key itself does not change."""
    if key.wrapped is None:
        return key
    material = old.unwrap(key.wrapped, aad=_aad(key.key_id, key.purpose))
    wrapped = new.wrap(material, aad=_aad(key.key_id, key.purpose), random=random)
    return WrappedKey(key.key_id, key.purpose, key.state, wrapped, new.kek_id)


class KeyRing:
    """Unwrapped keys in memory, with the operations the repository and audit need."""

    def __init__(self, keys: Iterable[WrappedKey], kek: KeyEncryptionKey) -> None:
        #: Changes at every (re)load, so that what is derived from the keys can be cached.
        self.generation = 0
        self._load(keys, kek)

    def reload(self, keys: Iterable[WrappedKey], kek: KeyEncryptionKey) -> None:
        """Pick up keys rotated by another process (``hearth keys rotate`` beside a server)."""
        self._load(keys, kek)

    def _load(self, keys: Iterable[WrappedKey], kek: KeyEncryptionKey) -> None:
        # Build everything first and assign at the end, so that a reload while other threads
        # seal and open never shows them a half-filled ring.
        data: dict[int, AESGCM] = {}
        macs: dict[int, bytes] = {}
        signers: dict[int, Signer] = {}
        token_keys: dict[int, dict[str, str]] = {}
        blind: bytes | None = None
        chain: bytes | None = None
        active: dict[KeyPurpose, int] = {}
        for key in keys:
            if key.wrapped is None or key.state is KeyState.RETIRED:
                continue
            try:
                material = kek.unwrap(key.wrapped, aad=_aad(key.key_id, key.purpose))
            except IntegrityError:
                raise HearthError(
                    errors.KEY_UNAVAILABLE,
                    "The key-encryption key does not open this instance's keys "
                    "(wrong key file or passphrase).",
                ) from None
            match key.purpose:
                case KeyPurpose.DATA:
                    data[key.key_id] = AESGCM(material)
                case KeyPurpose.MAC:
                    macs[key.key_id] = material
                case KeyPurpose.BLIND:
                    blind = material
                case KeyPurpose.AUDIT_CHAIN:
                    chain = material
                case KeyPurpose.AUDIT_SIGN:
                    signers[key.key_id] = signer_from_seed(material)
                case KeyPurpose.TOKEN_SIGN:  # pragma: no branch - the match is exhaustive
                    token_keys[key.key_id] = p256_jwk_from_seed(material)
            if key.state is KeyState.ACTIVE:
                if key.purpose in active:
                    raise HearthError(errors.KEY_UNAVAILABLE, "Two active keys for one purpose.")
                active[key.purpose] = key.key_id
        missing = [p.value for p in KeyPurpose if p not in active and p not in _OPTIONAL]
        if missing or blind is None or chain is None:
            raise HearthError(
                errors.KEY_UNAVAILABLE, f"No active key for: {', '.join(sorted(missing))}."
            )
        self._data, self._mac, self._signers, self._blind = data, macs, signers, blind
        self._chain = chain
        self._token_keys = token_keys
        self.token_key_id: int | None = active.get(KeyPurpose.TOKEN_SIGN)
        self.generation += 1
        self.data_key_id = active[KeyPurpose.DATA]
        self.mac_key_id = active[KeyPurpose.MAC]
        self.sign_key_id = active[KeyPurpose.AUDIT_SIGN]

    # -- the audit chain ------------------------------------------------------------------
    def audit_link(self, prev: bytes, body: bytes) -> bytes:
        """The keyed hash that chains an audit entry to the one before it."""
        return mac.chain_link(self._chain, prev, body)

    # -- sealing --------------------------------------------------------------------------
    def seal(self, plaintext: bytes, *, aad: bytes, random: Random) -> bytes:
        key_id = self.data_key_id
        return envelope.seal(
            plaintext, key_id=key_id, key=self._data[key_id], aad=aad, random=random
        )

    def open(self, blob: bytes, *, aad: bytes) -> bytes:
        key = self._data.get(envelope.sealed_key_id(blob))
        if key is None:
            raise IntegrityError()
        return envelope.open_sealed(blob, key=key, aad=aad)

    # -- integrity ------------------------------------------------------------------------
    def mac(
        self,
        *,
        seq: int,
        res_type: str,
        res_id: str,
        version: int,
        deleted: bool,
        ts_us: int,
        body: bytes | None,
    ) -> bytes:
        return mac.compute_mac(
            self._mac[self.mac_key_id],
            seq=seq,
            res_type=res_type,
            res_id=res_id,
            version=version,
            deleted=deleted,
            ts_us=ts_us,
            digest=mac.body_digest(body),
        )

    def verify_mac(
        self,
        tag: bytes,
        *,
        mac_key_id: int,
        seq: int,
        res_type: str,
        res_id: str,
        version: int,
        deleted: bool,
        ts_us: int,
        body: bytes | None,
    ) -> None:
        key = self._mac.get(mac_key_id)
        if key is None:
            raise IntegrityError()
        mac.verify_mac(
            key,
            tag,
            seq=seq,
            res_type=res_type,
            res_id=res_id,
            version=version,
            deleted=deleted,
            ts_us=ts_us,
            digest=mac.body_digest(body),
        )

    # -- blind indexes --------------------------------------------------------------------
    def blind(self, domain: str, value: str) -> bytes:
        return blind_index(self._blind, domain, value)

    def blind_many(self, pairs: Iterable[tuple[str, str]]) -> set[bytes]:
        """``blind`` of every (domain, value) pair, as a set (the search index of a resource)."""
        return blind_indexes(self._blind, pairs)

    # -- signing --------------------------------------------------------------------------
    def sign(self, message: bytes) -> tuple[int, bytes]:
        return self.sign_key_id, self._signers[self.sign_key_id].sign(message)

    def verifier(self, key_id: int) -> Verifier:
        signer = self._signers.get(key_id)
        if signer is None:
            raise IntegrityError()
        return signer.verifier

    def token_signing_keys(self) -> dict[int, dict[str, str]]:
        """Private JWKs of the token signing keys by key id: the active one and those rotated
        out but not yet retired (which still verify unexpired tokens). For ``hearth.auth``."""
        return dict(self._token_keys)
