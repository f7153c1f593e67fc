"""The outside anchor file, the writer thread's periodic anchoring, and verification corners."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from hearth.audit import FindingKind, SignedHead
from hearth.domain import HearthError, errors
from hearth.services.integrity import verify_audit, verify_integrity
from hearth.settings import load_settings
from hearth.storage.anchor import AnchorFile
from hearth.storage.audit import AuditTrail
from hearth.wiring import Container, init_instance
from tests.support import Instance, admin


def test_anchor_file_round_trip_and_refusals(tmp_path: Path) -> None:
    anchor = AnchorFile(tmp_path / "audit-anchor.json")
    assert anchor.read() is None
    anchor.write(SignedHead(1, b"\x01" * 32, 2, 3, None))  # unsigned: never anchored
    assert anchor.read() is None
    head = SignedHead(5, b"\x02" * 32, 7, 3, b"\x03" * 64)
    anchor.write(head)
    assert anchor.read() == head
    for junk in (b"not json", b'{"format": "other", "version": 1}', b'{"format": 1}'):
        anchor.path.write_bytes(junk)
        forged = anchor.read()
        assert forged is not None
        assert forged.signature == b""


def test_a_garbage_anchor_is_reported(sqlite_instance: Instance) -> None:
    c = sqlite_instance.container
    c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    c.anchor.path.write_text("garbage")
    found = verify_audit(c.system_repository("test")).findings
    assert FindingKind.BAD_SIGNATURE in {f.kind for f in found}


def test_the_writer_anchors_while_idle_and_survives_a_failing_anchor(
    sqlite_instance: Instance, caplog: pytest.LogCaptureFixture
) -> None:
    c = sqlite_instance.container
    written: list[SignedHead] = []
    trail = AuditTrail(c.store, c.keyring, c.random, anchor=written.append, anchor_seconds=0.05)
    repo = c.repository(admin())
    repo._audit = trail  # the gate, writing through a trail with a short anchor period
    created = c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    repo.read("Basic", created.res_id)
    deadline = time.monotonic() + 5
    while not written and time.monotonic() < deadline:
        time.sleep(0.05)
    assert written
    assert written[-1].signature
    trail.close()

    def broken(_head: SignedHead) -> None:
        raise OSError("disk full")

    failing = AuditTrail(c.store, c.keyring, c.random, anchor=broken, anchor_seconds=0.05)
    failing.anchor_now()
    assert any("could not anchor" in r.getMessage() for r in caplog.records)
    failing.close()


def test_initialising_a_database_twice_is_refused(
    sqlite_instance: Instance, tmp_path: Path
) -> None:
    from hearth.crypto import LocalKek
    from hearth.storage import initialise_store

    with pytest.raises(HearthError) as exc:
        initialise_store(
            sqlite_instance.container.store,
            LocalKek(b"\x00" * 32),
            instance_id="again",
            clock=sqlite_instance.container.clock,
            random=sqlite_instance.container.random,
        )
    assert exc.value.code is errors.BAD_PARAMETER


def sql(instance: Instance, statement: str) -> None:
    with instance.container.db.write.begin() as conn:
        conn.execute(text(statement))


def test_a_missing_last_version_and_a_tombstone_with_a_body(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inst = Instance(home, init_instance(home), Container(load_settings(home)))
    try:
        records = inst.container.records(admin())
        first = records.create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
        records.delete("Basic", first.res_id)
        records.create("Basic", {"resourceType": "Basic", "code": {"text": "y"}})
        sql(inst, "UPDATE resource_version SET body = X'00', key_id = 1 WHERE seq = 2")
        sql(inst, "DELETE FROM resource_version WHERE seq = 3")
        report = verify_integrity(inst.container.system_repository("test"))
        problems = [str(f) for f in report.version_findings]
        assert any("seq 2" in p and "deletion carries a body" in p for p in problems), problems
        assert any("seq 3" in p and "row is missing" in p for p in problems), problems
    finally:
        inst.container.close()


def test_an_edited_detail_key_id_is_named(sqlite_instance: Instance) -> None:
    c = sqlite_instance.container
    c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    c.records(admin()).history(res_type="Basic", res_id=None, since=None, before_seq=None, count=5)
    with c.db.write.begin() as conn:
        seq = conn.execute(
            text("SELECT max(seq) FROM audit_entry WHERE detail_key_id IS NOT NULL")
        ).scalar_one()
        conn.execute(
            text("UPDATE audit_entry SET detail_key_id = detail_key_id + 50 WHERE seq = :s"),
            {"s": seq},
        )
    found = verify_audit(c.system_repository("test")).findings
    assert any(f.seq == seq and "detail_key_id" in f.message for f in found), found
