"""Deterministic keys and small backups for the backup-format tests."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hearth.backupfmt import (
    BackupKind,
    BackupWriter,
    MemoryObjects,
    MemorySpool,
    SequenceRange,
    SignedManifest,
    manifest_object_name,
    new_backup_id,
)
from hearth.crypto.backup import (
    AgeDecryptor,
    AgeEncryptor,
    Ed25519ManifestSigner,
    generate_backup_identity,
)
from hearth.domain import Secret

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
VERSION_COLUMNS = ("seq", "res_type", "res_id", "version", "mac", "body")


class FixedRandom:
    """Randomness as a parameter: a counter-mode SHA-256 stream from a seed."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def token_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            self._counter += 1
            out += hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
        return out[:n]


def fake_mac(seq: int) -> bytes:
    return hashlib.sha256(b"mac-%d" % seq).digest()


def version_rows(first: int, last: int) -> Iterator[tuple[object, ...]]:
    for seq in range(first, last + 1):
        yield (seq, "Patient", f"p-{seq % 7}", seq // 7 + 1, fake_mac(seq), b"sealed" * 8)


@dataclass
class Keys:
    signer: Ed25519ManifestSigner
    identity: Secret
    recipient: str
    other_identity: Secret

    @property
    def encryptor(self) -> AgeEncryptor:
        return AgeEncryptor([self.recipient])

    @property
    def decryptor(self) -> AgeDecryptor:
        return AgeDecryptor([self.identity])


def make_keys(seed: bytes = b"test-keys") -> Keys:
    rnd = FixedRandom(seed)
    signer = Ed25519ManifestSigner.generate(rnd)
    identity, recipient = generate_backup_identity(rnd)
    other, _ = generate_backup_identity(rnd)
    return Keys(signer, identity, recipient, other)


@dataclass
class Chain:
    objects: MemoryObjects
    keys: Keys
    manifests: list[SignedManifest] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [m.manifest.backup_id for m in self.manifests]


def add_backup(
    chain: Chain,
    *,
    kind: BackupKind,
    last: int,
    when: datetime | None = None,
    max_segment: int = 4096,
    store: bool = True,
    rnd: FixedRandom | None = None,
    backup_id: str | None = None,
) -> SignedManifest:
    previous = chain.manifests[-1].manifest if chain.manifests else None
    first = 1 if kind is BackupKind.FULL or previous is None else previous.sequence.last + 1
    when = when or T0 + timedelta(hours=len(chain.manifests))
    rnd = rnd or FixedRandom(b"ids-%d" % len(chain.manifests))
    writer = BackupWriter(
        backup_id=backup_id or new_backup_id(when, rnd),
        instance_id="instance-1",
        created=when,
        kind=kind,
        engine="sqlite",
        schema_version="0001",
        sequence=SequenceRange(first, last),
        previous=previous,
        encryptor=chain.keys.encryptor,
        spool=MemorySpool(chain.objects),
        max_segment_plaintext=max_segment,
    )
    writer.add_table("resource_versions", VERSION_COLUMNS, version_rows(first, last))
    writer.add_table("users", ("id", "name", "active"), [("u1", "Admin", True)])
    writer.add_table("audit_entries", ("seq", "entry"), [])
    signed = writer.finish(chain.keys.signer)
    if store:
        chain.objects.put_bytes(manifest_object_name(signed.manifest.backup_id), signed.to_bytes())
    chain.manifests.append(signed)
    return signed


def small_chain(keys: Keys | None = None) -> Chain:
    """A full backup of versions 1..40 and an incremental of 41..55."""
    chain = Chain(MemoryObjects(), keys or make_keys())
    add_backup(chain, kind=BackupKind.FULL, last=40)
    add_backup(chain, kind=BackupKind.INCREMENTAL, last=55)
    return chain
