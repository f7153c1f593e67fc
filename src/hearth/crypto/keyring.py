"""The key ring: every key Hearth uses, wrapped by the KEK at rest, unwrapped in memory.

Purposes (docs/design.md, "Keys"), one per kind of protected data, so that each can be rotated
and retired on its own terms:

- ``data``: AES-256-GCM keys that seal resource bodies, and nothing else;
- ``audit-seal``: AES-256-GCM keys that seal audit details (query strings). The sealed bytes
  are part of a hash-chained entry, so these are never re-sealed, and a key is kept for as long
  as an entry it sealed is retained;
- ``secrets``: AES-256-GCM keys that seal account secrets (TOTP seeds) and short-lived state
  (session data, page tokens); TOTP seeds are re-sealed on rotation, the rest expires;
- ``mac``: HMAC-SHA-256 keys for per-version MACs, apart from the data keys;
- ``blind``: the HMAC key for blind search indexes;
- ``audit-sign``: Ed25519 seeds that sign audit checkpoints and the chain head;
- ``audit-chain``: the HMAC key that links each audit entry to the one before it; it links every
  entry, so it never rotates;
- ``token-sign``: seeds of the ECDSA P-256 keys that sign OAuth access and ID tokens
  (``hearth.crypto.token_keys``). Rotated-out ones stay to verify tokens until they expire. An
  instance created before this purpose existed gets its first one from the token service.

Each sealing purpose has its own pair of methods (``seal_resource``/``open_resource``,
``seal_audit_detail``/``open_audit_detail``, ``seal_secret``/``open_secret``), so a call site
says what it protects and cannot pick another purpose's key by accident. Instances created
before ``audit-seal`` and ``secrets`` existed sealed those things with ``data`` keys: their
openers also accept a ``data`` key, and nothing new is sealed that way.

A key's id is a small integer that sealed blobs and rows carry, so the ring can find the key to
open them and ``hearth keys retire`` can prove nothing still uses a key before dropping it.
The ring also counts how many messages each AES-GCM key has sealed, for the nonce budget.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearth.crypto import envelope, mac, versions
from hearth.crypto.blind import Blinder
from hearth.crypto.kek import KEY_BYTES, KeyEncryptionKey
from hearth.crypto.pseudonym import pseudonym, pseudonym_key
from hearth.crypto.signing import Signer, Verifier, signer_from_seed
from hearth.crypto.token_keys import p256_jwk_from_seed
from hearth.domain import HearthError, IntegrityError, Random, errors

__all__ = [
    "SEALING_PURPOSES",
    "KeyPurpose",
    "KeyRing",
    "KeyState",
    "WrappedKey",
    "new_wrapped_key",
    "rewrap",
]


class KeyPurpose(enum.StrEnum):
    DATA = "data"
    MAC = "mac"
    BLIND = "blind"
    AUDIT_SIGN = "audit-sign"
    AUDIT_CHAIN = "audit-chain"
    TOKEN_SIGN = "token-sign"  # noqa: S105 - a key purpose, not a secret
    AUDIT_SEAL = "audit-seal"
    SECRETS = "secrets"


#: Purposes whose keys are AES-256-GCM sealing keys (and so spend random nonces).
SEALING_PURPOSES = frozenset({KeyPurpose.DATA, KeyPurpose.AUDIT_SEAL, KeyPurpose.SECRETS})

#: Purposes an instance may lack (created before the purpose existed); created on first use.
_OPTIONAL = frozenset({KeyPurpose.TOKEN_SIGN})

#: Which keys may open what a purpose sealed: its own, and, for data sealed before the purpose
#: existed, a ``data`` key.
_OPENERS: Mapping[KeyPurpose, frozenset[KeyPurpose]] = {
    KeyPurpose.DATA: frozenset({KeyPurpose.DATA}),
    KeyPurpose.AUDIT_SEAL: frozenset({KeyPurpose.AUDIT_SEAL, KeyPurpose.DATA}),
    KeyPurpose.SECRETS: frozenset({KeyPurpose.SECRETS, KeyPurpose.DATA}),
}


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


@dataclass(frozen=True, slots=True)
class _Keys:
    """One consistent set of unwrapped keys. The ring swaps whole sets, so a thread that seals
    or opens while another reloads sees the old set or the new one, never a mixture."""

    epoch: int
    material: dict[int, tuple[KeyPurpose, bytes]]
    aead: dict[int, tuple[KeyPurpose, AESGCM]]
    macs: dict[int, bytes]
    signers: dict[int, Signer]
    token_keys: dict[int, dict[str, str]]
    blind: Blinder
    chain: bytes
    active: dict[KeyPurpose, int] = field(default_factory=dict)


def _data_keys(keys: _Keys) -> dict[int, AESGCM]:
    """The AES-GCM keys that may open a resource body (``data`` keys only)."""
    return {k: key for k, (purpose, key) in keys.aead.items() if purpose is KeyPurpose.DATA}


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
    """Unwrapped keys in memory, with the operations the repository, audit and services need.

    ``on_unknown_key`` (set by the composition root) is called once when a blob or row names a
    key id the ring does not hold, before the ring gives up: another process may have rotated
    keys since this one last loaded them.
    """

    def __init__(
        self,
        keys: Iterable[WrappedKey],
        kek: KeyEncryptionKey,
        *,
        epoch: int = 0,
        blind_memo: int = 0,
    ) -> None:
        """``blind_memo`` > 0 makes ``blind_many`` remember up to that many (domain, value)
        tokens: for a ring that one bulk job owns (a restore's index rebuild), never for the
        server's, which would then hold search values in memory for its lifetime."""
        self._keys = self._build(list(keys), kek, epoch, {})
        self._blind_memo_limit = blind_memo
        self._blind_memo: dict[tuple[str, str], bytes] = {}
        self._blind_memo_key = b""
        #: Changes at every (re)load, so that what is derived from the keys can be cached.
        self.generation = 1
        self.on_unknown_key: Callable[[], None] | None = None
        self._counts: dict[int, int] = {}
        self._count_lock = threading.Lock()
        self._pseudonym_keys: dict[bytes, bytes] = {}

    # -- loading ----------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The key epoch these keys were loaded at (``instance_meta.key_epoch``)."""
        return self._keys.epoch

    def reload(self, keys: Iterable[WrappedKey], kek: KeyEncryptionKey, *, epoch: int) -> None:
        """Pick up keys rotated, retired or re-wrapped by another process.

        A key already held is kept as it is (its material cannot change, only its wrapping),
        so only keys new to this process are unwrapped: a KEK rotation (``hearth keys rewrap``)
        needs nothing from the new KEK until a key is created under it. Raises
        ``KEY_UNAVAILABLE``, leaving the ring unchanged, if a new key does not unwrap.
        """
        self._keys = self._build(list(keys), kek, epoch, self._keys.material)
        self.generation += 1

    def forget(self, key_ids: Iterable[int]) -> None:
        """Drop keys (retired elsewhere) without loading anything new: what a process that
        cannot reload does, so that it never seals under a destroyed key. A purpose whose
        active key is dropped has none, and sealing for it fails with ``KEY_UNAVAILABLE``."""
        gone = set(key_ids)
        old = self._keys
        if not gone & set(old.material):
            return
        self._keys = _Keys(
            epoch=old.epoch,
            material={k: v for k, v in old.material.items() if k not in gone},
            aead={k: v for k, v in old.aead.items() if k not in gone},
            macs={k: v for k, v in old.macs.items() if k not in gone},
            signers={k: v for k, v in old.signers.items() if k not in gone},
            token_keys={k: v for k, v in old.token_keys.items() if k not in gone},
            blind=old.blind,
            chain=old.chain,
            active={p: k for p, k in old.active.items() if k not in gone},
        )
        self.generation += 1

    @staticmethod
    def _build(
        keys: list[WrappedKey],
        kek: KeyEncryptionKey,
        epoch: int,
        known: Mapping[int, tuple[KeyPurpose, bytes]],
    ) -> _Keys:
        material: dict[int, tuple[KeyPurpose, bytes]] = {}
        aead: dict[int, tuple[KeyPurpose, AESGCM]] = {}
        macs: dict[int, bytes] = {}
        signers: dict[int, Signer] = {}
        token_keys: dict[int, dict[str, str]] = {}
        blind: bytes | None = None
        chain: bytes | None = None
        active: dict[KeyPurpose, int] = {}
        for key in keys:
            if key.wrapped is None or key.state is KeyState.RETIRED:
                continue
            held = known.get(key.key_id)
            if held is not None and held[0] is key.purpose:
                secret = held[1]
            else:
                try:
                    secret = kek.unwrap(key.wrapped, aad=_aad(key.key_id, key.purpose))
                except IntegrityError:
                    raise HearthError(
                        errors.KEY_UNAVAILABLE,
                        "The key-encryption key does not open this instance's keys "
                        "(wrong key file or passphrase).",
                    ) from None
            material[key.key_id] = (key.purpose, secret)
            match key.purpose:
                case KeyPurpose.DATA | KeyPurpose.AUDIT_SEAL | KeyPurpose.SECRETS:
                    aead[key.key_id] = (key.purpose, AESGCM(secret))
                case KeyPurpose.MAC:
                    macs[key.key_id] = secret
                case KeyPurpose.BLIND:
                    blind = secret
                case KeyPurpose.AUDIT_CHAIN:
                    chain = secret
                case KeyPurpose.AUDIT_SIGN:
                    signers[key.key_id] = signer_from_seed(secret)
                case KeyPurpose.TOKEN_SIGN:  # pragma: no branch - the match is exhaustive
                    token_keys[key.key_id] = p256_jwk_from_seed(secret)
            if key.state is KeyState.ACTIVE:
                if key.purpose in active:
                    raise HearthError(errors.KEY_UNAVAILABLE, "Two active keys for one purpose.")
                active[key.purpose] = key.key_id
        missing = [p.value for p in KeyPurpose if p not in active and p not in _OPTIONAL]
        if missing or blind is None or chain is None:
            raise HearthError(
                errors.KEY_UNAVAILABLE, f"No active key for: {', '.join(sorted(missing))}."
            )
        return _Keys(
            epoch, material, aead, macs, signers, token_keys, Blinder(blind), chain, active
        )

    # -- which keys are active ----------------------------------------------------------------
    def active_id(self, purpose: KeyPurpose) -> int:
        """The id of the active key of ``purpose``; ``KEY_UNAVAILABLE`` if there is none."""
        key_id = self._keys.active.get(purpose)
        if key_id is None:
            raise HearthError(errors.KEY_UNAVAILABLE)
        return key_id

    def has_active(self, purpose: KeyPurpose) -> bool:
        return purpose in self._keys.active

    def purpose_of(self, key_id: int) -> KeyPurpose | None:
        """The purpose of a key the ring holds, or None."""
        held = self._keys.material.get(key_id)
        return held[0] if held is not None else None

    @property
    def data_key_id(self) -> int:
        return self.active_id(KeyPurpose.DATA)

    @property
    def mac_key_id(self) -> int:
        return self.active_id(KeyPurpose.MAC)

    @property
    def sign_key_id(self) -> int:
        return self.active_id(KeyPurpose.AUDIT_SIGN)

    @property
    def token_key_id(self) -> int | None:
        return self._keys.active.get(KeyPurpose.TOKEN_SIGN)

    # -- the audit chain ----------------------------------------------------------------------
    def audit_link(self, prev: bytes, body: bytes) -> bytes:
        """The keyed hash that chains an audit entry to the one before it."""
        return mac.chain_link(self._keys.chain, prev, body)

    # -- sealing ------------------------------------------------------------------------------
    def seal_resource(self, plaintext: bytes, *, aad: bytes, random: Random) -> bytes:
        """Seal a resource body under the active ``data`` key."""
        return self._seal(KeyPurpose.DATA, plaintext, aad, random)

    def open_resource(self, blob: bytes, *, aad: bytes) -> bytes:
        return self._open(KeyPurpose.DATA, blob, aad)

    def seal_audit_detail(self, plaintext: bytes, *, aad: bytes, random: Random) -> bytes:
        """Seal an audit entry's detail under the active ``audit-seal`` key."""
        return self._seal(KeyPurpose.AUDIT_SEAL, plaintext, aad, random)

    def open_audit_detail(self, blob: bytes, *, aad: bytes) -> bytes:
        return self._open(KeyPurpose.AUDIT_SEAL, blob, aad)

    def seal_secret(self, plaintext: bytes, *, aad: bytes, random: Random) -> bytes:
        """Seal an account secret or short-lived state under the active ``secrets`` key."""
        return self._seal(KeyPurpose.SECRETS, plaintext, aad, random)

    def open_secret(self, blob: bytes, *, aad: bytes) -> bytes:
        return self._open(KeyPurpose.SECRETS, blob, aad)

    def _seal(self, purpose: KeyPurpose, plaintext: bytes, aad: bytes, random: Random) -> bytes:
        keys = self._keys
        key_id = keys.active.get(purpose)
        if key_id is None:
            raise HearthError(errors.KEY_UNAVAILABLE)
        blob = envelope.seal(
            plaintext, key_id=key_id, key=keys.aead[key_id][1], aad=aad, random=random
        )
        with self._count_lock:
            self._counts[key_id] = self._counts.get(key_id, 0) + 1
        return blob

    def _open(self, purpose: KeyPurpose, blob: bytes, aad: bytes) -> bytes:
        key_id = envelope.sealed_key_id(blob)
        found = self._keys.aead.get(key_id)
        if found is None and self._ask_for(key_id):
            found = self._keys.aead.get(key_id)
        if found is None or found[0] not in _OPENERS[purpose]:
            raise IntegrityError()
        return envelope.open_sealed(blob, key=found[1], aad=aad)

    def _ask_for(self, key_id: int) -> bool:
        """Reload once through ``on_unknown_key``; True if the ring now holds ``key_id``."""
        if self.on_unknown_key is None:
            return False
        self.on_unknown_key()
        return key_id in self._keys.material

    def take_seal_counts(self) -> dict[int, int]:
        """Messages sealed per key id since the last call (for the nonce budget), and reset."""
        with self._count_lock:
            counts, self._counts = self._counts, {}
        return counts

    # -- integrity ----------------------------------------------------------------------------
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
    ) -> tuple[int, bytes]:
        """The MAC of one version under the active MAC key: ``(key id, tag)``."""
        keys = self._keys
        key_id = keys.active.get(KeyPurpose.MAC)
        if key_id is None:
            raise HearthError(errors.KEY_UNAVAILABLE)
        tag = mac.compute_mac(
            keys.macs[key_id],
            seq=seq,
            res_type=res_type,
            res_id=res_id,
            version=version,
            deleted=deleted,
            ts_us=ts_us,
            digest=mac.body_digest(body),
        )
        return key_id, tag

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
        key = self._keys.macs.get(mac_key_id)
        if key is None and self._ask_for(mac_key_id):
            key = self._keys.macs.get(mac_key_id)
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

    def check_versions(
        self, rows: Iterable[versions.VersionTuple], *, keep: AbstractSet[int] = frozenset()
    ) -> tuple[list[tuple[int, versions.VersionProblem]], dict[int, bytes]]:
        """Open and MAC-check many stored versions at once (the integrity scanner): what is
        wrong with each damaged row, and the plaintext of the verified rows named in ``keep``
        (``hearth.crypto.versions``)."""
        keys = self._keys

        def reload() -> tuple[Mapping[int, AESGCM], Mapping[int, bytes]]:
            if self.on_unknown_key is not None:
                self.on_unknown_key()
            fresh = self._keys
            return _data_keys(fresh), fresh.macs

        return versions.check_versions(
            rows,
            aead=_data_keys(keys),
            macs=keys.macs,
            keep=keep,
            on_unknown_key=reload,
        )

    # -- blind indexes ------------------------------------------------------------------------
    def blind(self, domain: str, value: str) -> bytes:
        return self._keys.blind.token(domain, value)

    def blind_many(self, pairs: Iterable[tuple[str, str]]) -> set[bytes]:
        """``blind`` of every (domain, value) pair, as a set (the search index of a resource)."""
        blinder = self._keys.blind
        if not self._blind_memo_limit:
            return blinder.tokens(pairs)
        if blinder.key != self._blind_memo_key:
            # Tokens remembered under another blind key are not this key's tokens.
            self._blind_memo = {}
            self._blind_memo_key = blinder.key
        return blinder.tokens_memo(pairs, self._blind_memo, self._blind_memo_limit)

    def pseudonym(self, res_type: str, res_id: str) -> str:
        """The keyed pseudonym of a resource in the de-identified view
        (``hearth.crypto.pseudonym``); stable for as long as the blind-index key."""
        keys = self._keys
        derived = self._pseudonym_keys.get(keys.blind.key)
        if derived is None:
            derived = pseudonym_key(keys.blind.key)
            self._pseudonym_keys = {keys.blind.key: derived}
        return pseudonym(derived, res_type, res_id)

    # -- signing ------------------------------------------------------------------------------
    def sign(self, message: bytes) -> tuple[int, bytes]:
        keys = self._keys
        key_id = keys.active.get(KeyPurpose.AUDIT_SIGN)
        if key_id is None:
            raise HearthError(errors.KEY_UNAVAILABLE)
        return key_id, keys.signers[key_id].sign(message)

    def verifier(self, key_id: int) -> Verifier:
        signer = self._keys.signers.get(key_id)
        if signer is None and self._ask_for(key_id):
            signer = self._keys.signers.get(key_id)
        if signer is None:
            raise IntegrityError()
        return signer.verifier

    def token_signing_keys(self) -> dict[int, dict[str, str]]:
        """Private JWKs of the token signing keys by key id: the active one and those rotated
        out but not yet retired (which still verify unexpired tokens). For ``hearth.auth``."""
        return dict(self._keys.token_keys)
