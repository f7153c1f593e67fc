"""A backup chain written through the spool to every target at once, then verified from each
target alone, deeply; damage on one copy is found on that copy only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from hearth.backupfmt import (
    BackupKind,
    BackupWriter,
    SequenceRange,
    inspect_chain,
    manifest_object_name,
    new_backup_id,
    verify_chain,
)
from hearth.targets import BackupTarget, TargetSpool
from tests.integration.targets.conftest import KINDS
from tests.unit.backupfmt.helpers import T0, VERSION_COLUMNS, FixedRandom, make_keys, version_rows


def test_chain_on_every_target(make_target: Callable[[str], BackupTarget], tmp_path: Path) -> None:
    targets = [make_target(kind) for kind in KINDS]
    keys = make_keys()
    previous = None
    head = ""
    for index, (kind, last) in enumerate(
        [(BackupKind.FULL, 300), (BackupKind.INCREMENTAL, 330), (BackupKind.INCREMENTAL, 331)]
    ):
        when = T0 + timedelta(hours=index)
        first = 1 if previous is None else previous.sequence.last + 1
        head = new_backup_id(when, FixedRandom(b"%d" % index))
        writer = BackupWriter(
            backup_id=head,
            instance_id="instance-1",
            created=when,
            kind=kind,
            engine="sqlite",
            schema_version="0001",
            sequence=SequenceRange(first, last),
            previous=previous,
            encryptor=keys.encryptor,
            spool=TargetSpool(targets, tmp_path / "spool"),
            max_segment_plaintext=8192,
        )
        writer.add_table("resource_versions", VERSION_COLUMNS, version_rows(first, last))
        writer.add_table("users", ("id",), [("u1",)])
        signed = writer.finish(keys.signer)
        for target in targets:
            target.put_bytes(manifest_object_name(head), signed.to_bytes())
        previous = signed.manifest
    assert list((tmp_path / "spool").iterdir()) == []  # nothing left staged
    for target in targets:
        report = verify_chain(
            target, keys.signer.verifier(), decryptor=keys.decryptor, expected_head=head
        )
        assert len(report.backups) == 3, target.label
    # Flip one bit of one segment on the S3 copy: only that copy fails, naming the segment.
    s3 = targets[KINDS.index("s3")]
    assert previous is not None
    name = previous.segments[0].name
    data = bytearray(s3.get_bytes(name))
    data[len(data) // 2] ^= 1
    raw = s3  # the S3 target is write-once: replace the object underneath it, as an attacker would
    raw._client.put_object(  # type: ignore[attr-defined]
        Bucket=raw.bucket,
        Key=raw.prefix + name,
        Body=bytes(data),  # type: ignore[attr-defined]
    )
    failed = {(c.check, c.subject) for c in inspect_chain(s3, keys.signer.verifier()).failures}
    assert failed == {("segment.hash", name)}
    for target in targets:
        if target is not s3:
            assert inspect_chain(target, keys.signer.verifier()).ok
