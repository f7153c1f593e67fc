"""Verification of whole backups and chains from stored objects: every fault is named.

Each test damages one thing the way an attacker or a failing disk would and asserts the
report names the right check on the right object, and that the raising variant raises.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from tests.unit.backupfmt.helpers import T0, Chain, FixedRandom, add_backup, small_chain

from hearth.backupfmt import (
    BackupKind,
    BackupVerificationError,
    ChainReport,
    MemoryObjects,
    SequenceRange,
    Status,
    inspect_backup,
    inspect_chain,
    manifest_object_name,
    sign_manifest,
    verify_backup,
    verify_chain,
)
from hearth.crypto.backup import AgeDecryptor, Ed25519ManifestSigner
from hearth.domain import HearthError


def _failed(report: ChainReport) -> set[tuple[str, str]]:
    return {(c.check, c.subject) for c in report.failures}


def _chain_report(chain: Chain, *, deep: bool = True, head: str | None = None) -> ChainReport:
    return inspect_chain(
        chain.objects,
        chain.keys.signer.verifier(),
        decryptor=chain.keys.decryptor if deep else None,
        expected_head=head,
    )


def _name(chain: Chain, index: int) -> str:
    return manifest_object_name(chain.ids[index])


def test_a_good_chain_verifies_deeply() -> None:
    chain = small_chain()
    report = verify_chain(
        chain.objects,
        chain.keys.signer.verifier(),
        decryptor=chain.keys.decryptor,
        expected_head=chain.ids[-1],
        instance_id="instance-1",
    )
    assert report.ok
    assert report.head == chain.ids[-1]
    statuses = {c.check: c.status for b in report.backups for c in b.checks}
    for check in ("manifest.signature", "segment.hash", "segment.decrypt", "merkle.root"):
        assert statuses[check] is Status.OK
    incremental = {c.check: c.status for c in report.backups[1].checks}
    assert incremental["merkle.chain"] is Status.OK
    assert incremental["chain.sequence"] is Status.OK
    assert report.to_json()["ok"] is True


def test_without_identity_the_merkle_check_is_skipped_not_passed() -> None:
    chain = small_chain()
    report = _chain_report(chain, deep=False)
    assert report.ok
    checks = {c.check: c for c in report.backups[0].checks}
    assert checks["merkle.root"].status is Status.SKIPPED
    assert "segment.decrypt" not in checks


def _object_of_kind(chain: Chain, kind: str) -> str:
    manifest = chain.manifests[0].manifest
    if kind == "manifest":
        return _name(chain, 0)
    table = {"versions": "resource_versions", "users": "users", "empty": "audit_entries"}[kind]
    return next(s.name for s in manifest.segments if s.table == table)


@pytest.mark.parametrize("kind", ["manifest", "versions", "users", "empty"])
@pytest.mark.parametrize("deep", [False, True])
def test_a_flipped_bit_in_every_kind_of_object_is_caught(kind: str, deep: bool) -> None:
    damaged = small_chain()
    name = _object_of_kind(damaged, kind)
    data = bytearray(damaged.objects.objects[name])
    data[len(data) // 2] ^= 0x10
    damaged.objects.objects[name] = bytes(data)
    report = _chain_report(damaged, deep=deep)
    assert not report.ok
    expected = {"segment.hash"}
    if kind == "manifest":
        expected = {"manifest.signature", "manifest.format"}
    assert {(e, name) for e in expected} & _failed(report)
    with pytest.raises(BackupVerificationError):
        verify_chain(damaged.objects, damaged.keys.signer.verifier())


def test_a_truncated_segment_is_caught() -> None:
    chain = small_chain()
    seg = chain.manifests[1].manifest.segments[0]
    chain.objects.objects[seg.name] = chain.objects.objects[seg.name][:-100]
    for deep in (False, True):
        assert ("segment.hash", seg.name) in _failed(_chain_report(chain, deep=deep))


def test_a_missing_segment_is_caught() -> None:
    chain = small_chain()
    seg = chain.manifests[0].manifest.segments[-1]
    del chain.objects.objects[seg.name]
    report = _chain_report(chain)
    assert ("segment.present", seg.name) in _failed(report)
    merkle = {c.check: c.status for c in report.backups[0].checks}["merkle.root"]
    assert merkle is Status.SKIPPED


def test_a_missing_manifest_is_caught() -> None:
    chain = small_chain()
    objects = chain.objects
    report = inspect_backup(
        objects, "20990101T000000Z-0000000000000000", chain.keys.signer.verifier()
    )
    assert [c.check for c in report.failures] == ["manifest.present"]
    with pytest.raises(BackupVerificationError) as info:
        verify_backup(objects, "20990101T000000Z-0000000000000000", chain.keys.signer.verifier())
    assert info.value.report is not None


def test_swapped_manifests_are_caught() -> None:
    chain = small_chain()
    a, b = _name(chain, 0), _name(chain, 1)
    objs = chain.objects.objects
    objs[a], objs[b] = objs[b], objs[a]
    failed = _failed(_chain_report(chain))
    assert ("manifest.name", a) in failed
    assert ("manifest.name", b) in failed


def test_a_segment_swapped_in_from_another_backup_is_caught() -> None:
    chain = small_chain()
    mine = chain.manifests[1].manifest.segments[0].name
    other = chain.manifests[0].manifest.segments[0].name
    chain.objects.objects[mine] = chain.objects.objects[other]
    assert ("segment.hash", mine) in _failed(_chain_report(chain))


def test_a_replayed_old_manifest_under_a_new_name_is_caught() -> None:
    chain = small_chain()
    add_backup(chain, kind=BackupKind.INCREMENTAL, last=60)
    objs = chain.objects.objects
    objs[_name(chain, 2)] = objs[_name(chain, 0)]
    failed = _failed(_chain_report(chain))
    assert ("manifest.name", _name(chain, 2)) in failed


def test_a_rollback_to_an_older_genuine_head_is_caught_with_the_known_head() -> None:
    chain = small_chain()
    newest = chain.ids[-1]
    del chain.objects.objects[_name(chain, 1)]
    for seg in chain.manifests[1].manifest.segments:
        del chain.objects.objects[seg.name]
    report = _chain_report(chain, head=newest)
    assert any(c.check == "chain.head" for c in report.failures)
    # Without outside knowledge of the head, an older chain is genuinely consistent.
    assert _chain_report(chain).ok


def test_a_replaced_predecessor_with_the_same_id_breaks_the_link() -> None:
    """Two genuine, signed manifests with one backup id (a writer bug or a replay from another
    run): the successor names the first by its manifest id, so the second does not fit."""
    chain = small_chain()
    first = chain.manifests[0]
    twin = sign_manifest(
        dataclasses.replace(first.manifest, engine="postgresql"), chain.keys.signer
    )
    chain.objects.objects[_name(chain, 0)] = twin.to_bytes()
    report = _chain_report(chain)
    assert ("chain.link", _name(chain, 1)) in _failed(report)


def test_a_fork_is_caught() -> None:
    chain = small_chain()
    base = chain.manifests[0]
    fork = Chain(chain.objects, chain.keys, [base])
    add_backup(fork, kind=BackupKind.INCREMENTAL, last=50, when=T0 + timedelta(minutes=30),
               rnd=FixedRandom(b"fork"))  # fmt: skip
    report = _chain_report(chain)
    assert any(c.check == "chain.fork" for c in report.failures)


def test_a_missing_predecessor_fails_an_incremental_but_not_a_full() -> None:
    chain = small_chain()
    add_backup(chain, kind=BackupKind.FULL, last=70)
    del chain.objects.objects[_name(chain, 0)]
    report = _chain_report(chain)
    assert ("chain.link", _name(chain, 1)) in _failed(report)
    chain2 = small_chain()
    add_backup(chain2, kind=BackupKind.FULL, last=70)
    for i in (0, 1):
        del chain2.objects.objects[_name(chain2, i)]
    report2 = _chain_report(chain2)
    assert report2.ok
    link = next(c for c in report2.backups[0].checks if c.check == "chain.link")
    assert link.status is Status.SKIPPED


def test_a_sequence_gap_is_caught() -> None:
    chain = small_chain()
    second = chain.manifests[1].manifest
    gap = dataclasses.replace(second, sequence=SequenceRange(43, 57))
    chain.objects.objects[_name(chain, 1)] = sign_manifest(gap, chain.keys.signer).to_bytes()
    failed = _failed(_chain_report(chain))
    assert ("chain.sequence", _name(chain, 1)) in failed


def test_a_wrong_merkle_root_is_caught_only_when_reading_versions() -> None:
    chain = small_chain()
    manifest = chain.manifests[0].manifest
    bad_merkle = dataclasses.replace(manifest.merkle, root="00" * 32, chain_root="00" * 32)
    bad = dataclasses.replace(manifest, merkle=bad_merkle)
    chain.objects.objects[_name(chain, 0)] = sign_manifest(bad, chain.keys.signer).to_bytes()
    shallow = _failed(_chain_report(chain, deep=False))
    deep = _failed(_chain_report(chain))
    assert ("merkle.root", _name(chain, 0)) in deep
    assert ("merkle.root", _name(chain, 0)) not in shallow
    # The chain peaks no longer give the root: caught by consistency even without a key.
    assert ("manifest.consistency", _name(chain, 0)) in shallow


def test_inconsistent_row_counts_are_caught() -> None:
    chain = small_chain()
    manifest = chain.manifests[0].manifest
    bad = dataclasses.replace(manifest, row_counts={**manifest.row_counts, "users": 2})
    chain.objects.objects[_name(chain, 0)] = sign_manifest(bad, chain.keys.signer).to_bytes()
    assert ("manifest.consistency", _name(chain, 0)) in _failed(_chain_report(chain, deep=False))


def test_wrong_recipient_is_caught() -> None:
    chain = small_chain()
    report = inspect_chain(
        chain.objects,
        chain.keys.signer.verifier(),
        decryptor=AgeDecryptor([chain.keys.other_identity]),
    )
    assert {c.check for c in report.failures} == {"segment.identity"}


def test_another_signing_key_is_caught() -> None:
    chain = small_chain()
    stranger = Ed25519ManifestSigner.generate(FixedRandom(b"stranger"))
    report = inspect_chain(chain.objects, stranger.verifier())
    assert {c.check for c in report.failures} == {"manifest.signature"}


def test_another_instance_is_caught() -> None:
    chain = small_chain()
    report = inspect_chain(chain.objects, chain.keys.signer.verifier(), instance_id="other")
    assert any(c.check == "chain.instance" for c in report.failures)


def test_unexpected_objects_under_manifests_are_reported() -> None:
    chain = small_chain()
    chain.objects.objects["manifests/notes.txt"] = b"x"
    report = _chain_report(chain, deep=False)
    assert ("chain.names", "manifests/notes.txt") in _failed(report)


def test_an_empty_store_does_not_verify() -> None:
    with pytest.raises(HearthError):
        verify_chain(MemoryObjects(), small_chain().keys.signer.verifier())


def test_reports_never_contain_row_values() -> None:
    chain = small_chain()
    seg = chain.manifests[0].manifest.segments[0]
    data = bytearray(chain.objects.objects[seg.name])
    data[-1] ^= 1
    chain.objects.objects[seg.name] = bytes(data)
    text = repr(_chain_report(chain).to_json())
    assert "Admin" not in text
    assert "sealed" not in text
