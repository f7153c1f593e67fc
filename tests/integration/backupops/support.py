"""Writing real backup chains (signed manifests, encrypted segments) straight onto targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from hearth.backupfmt import (
    BackupKind,
    BackupWriter,
    Manifest,
    SequenceRange,
    manifest_object_name,
    new_backup_id,
)
from hearth.settings import BackupSettings, BackupTargetSettings
from hearth.targets import BackupTarget, TargetSpool
from tests.unit.backupfmt.helpers import (
    T0,
    VERSION_COLUMNS,
    FixedRandom,
    Keys,
    make_keys,
    version_rows,
)

__all__ = ["Backups", "policy_for"]


@dataclass
class Backups:
    """A backup chain of one instance, written to whichever targets each call names."""

    spool: Path
    keys: Keys = field(default_factory=make_keys)
    manifests: list[Manifest] = field(default_factory=list)
    stored: dict[str, bytes] = field(default_factory=dict)  # backup id -> manifest object

    @property
    def verifier(self):  # type: ignore[no-untyped-def]
        return self.keys.signer.verifier()

    @property
    def ids(self) -> list[str]:
        return [m.backup_id for m in self.manifests]

    def add(
        self,
        targets: Sequence[BackupTarget],
        *,
        kind: BackupKind = BackupKind.INCREMENTAL,
        versions: int = 20,
        when: datetime | None = None,
        retain_until: datetime | None = None,
    ) -> Manifest:
        previous = self.manifests[-1] if self.manifests else None
        if previous is None:
            kind = BackupKind.FULL
        last = (previous.sequence.last if previous else 0) + versions
        first = 1 if kind is BackupKind.FULL else previous.sequence.last + 1  # type: ignore[union-attr]
        when = when or T0 + timedelta(hours=len(self.manifests))
        backup_id = new_backup_id(when, FixedRandom(b"id-%d" % len(self.manifests)))
        writer = BackupWriter(
            backup_id=backup_id,
            instance_id="instance-1",
            created=when,
            kind=kind,
            engine="sqlite",
            schema_version="0001",
            sequence=SequenceRange(first, last),
            previous=previous,
            encryptor=self.keys.encryptor,
            spool=TargetSpool(list(targets), self.spool, retain_until=retain_until),
            max_segment_plaintext=2048,
        )
        writer.add_table("resource_versions", VERSION_COLUMNS, version_rows(first, last))
        writer.add_table("users", ("id",), [("u1",)])
        signed = writer.finish(self.keys.signer)
        for target in targets:
            retain = retain_until if target.supports_immutability else None
            target.put_bytes(
                manifest_object_name(backup_id), signed.to_bytes(), retain_until=retain
            )
        self.manifests.append(signed.manifest)
        self.stored[backup_id] = signed.to_bytes()
        return signed.manifest


def policy_for(
    targets: Sequence[BackupTarget], *, primary: str = "primary", **settings: object
) -> BackupSettings:
    """Backup settings naming ``targets`` (by label and region)."""
    configured = tuple(
        BackupTargetSettings(name=t.label, kind="local", region=t.region) for t in targets
    )
    return BackupSettings(primary_region=primary, targets=configured, **settings)  # type: ignore[arg-type]
