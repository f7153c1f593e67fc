"""Direct edits to the database are found and named: integrity verify and audit verify."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from hearth.audit import FindingKind
from hearth.domain import HearthError, errors
from hearth.services.integrity import verify_audit, verify_integrity
from hearth.settings import load_settings
from hearth.wiring import Container, init_instance
from tests.support import Instance, admin

pytestmark = pytest.mark.engines


def sql(instance: Instance, statement: str, **params: object) -> None:
    with instance.container.db.write.begin() as conn:
        conn.execute(text(statement), params)


def seed(instance: Instance, n: int = 6) -> list[str]:
    records = instance.container.records(admin())
    ids = []
    for i in range(n):
        stored = records.create(
            "Patient", {"resourceType": "Patient", "name": [{"family": f"T{i}"}]}
        )
        ids.append(stored.res_id)
    records.update("Patient", ids[0], {"resourceType": "Patient", "id": ids[0], "active": True})
    return ids


def integrity(instance: Instance) -> list[str]:
    report = verify_integrity(instance.container.system_repository("test"))
    return [str(f) for f in report.version_findings]


def test_clean_instance_verifies(instance: Instance) -> None:
    seed(instance)
    report = verify_integrity(instance.container.system_repository("test"))
    assert report.ok, report


def test_edited_body_is_found(instance: Instance) -> None:
    ids = seed(instance)
    with instance.container.db.write.begin() as conn:
        body = bytes(
            conn.execute(text("SELECT body FROM resource_version WHERE seq = 3")).scalar_one()
        )
        flipped = body[:-1] + bytes([body[-1] ^ 0x01])
        conn.execute(text("UPDATE resource_version SET body = :b WHERE seq = 3"), {"b": flipped})
    findings = integrity(instance)
    assert len(findings) == 1
    assert f"seq 3 Patient/{ids[2]}/_history/1: sealed body does not open" in findings[0]


def test_edited_mac_is_found(instance: Instance) -> None:
    ids = seed(instance)
    sql(instance, "UPDATE resource_version SET mac = :m WHERE seq = 2", m=b"\x00" * 32)
    findings = integrity(instance)
    assert len(findings) == 1
    assert f"seq 2 Patient/{ids[1]}/_history/1: MAC does not match" in findings[0]


def test_edited_version_number_is_found(instance: Instance) -> None:
    ids = seed(instance)
    sql(instance, "UPDATE resource_version SET version = 5 WHERE seq = 7")
    sql(instance, "UPDATE resource_current SET version = 5 WHERE seq = 7")
    findings = integrity(instance)
    assert any(f"seq 7 Patient/{ids[0]}/_history/5" in f for f in findings), findings


def test_deleted_row_is_found(instance: Instance) -> None:
    seed(instance)
    sql(instance, "DELETE FROM resource_version WHERE seq = 4")
    findings = integrity(instance)
    assert "version seq 4 (unknown resource): row is missing" in findings
    assert any("current pointer names no stored version" in f for f in findings)


def test_rows_swapped_between_resources_are_found(instance: Instance) -> None:
    """A body copied onto another row fails to open: the AAD binds type, id and version."""
    seed(instance)
    with instance.container.db.write.begin() as conn:
        body = conn.execute(text("SELECT body FROM resource_version WHERE seq = 2")).scalar_one()
        conn.execute(text("UPDATE resource_version SET body = :b WHERE seq = 3"), {"b": body})
    assert any("seq 3" in f and "does not open" in f for f in integrity(instance))


def audit_findings(instance: Instance) -> list[tuple[int, FindingKind]]:
    report = verify_audit(instance.container.system_repository("test"))
    return [(f.seq, f.kind) for f in report.findings]


def test_audit_chain_verifies(instance: Instance) -> None:
    seed(instance)
    assert audit_findings(instance) == []


def test_edited_audit_entry_is_named(instance: Instance) -> None:
    seed(instance)
    with instance.container.db.write.begin() as conn:
        body = bytes(conn.execute(text("SELECT body FROM audit_entry WHERE seq = 4")).scalar_one())
        edited = body.replace(b'"outcome":"success"', b'"outcome":"denied!"')
        conn.execute(text("UPDATE audit_entry SET body = :b WHERE seq = 4"), {"b": edited})
    assert (4, FindingKind.EDITED) in audit_findings(instance)


def test_edited_audit_column_is_named(instance: Instance) -> None:
    seed(instance)
    sql(instance, "UPDATE audit_entry SET actor = 'someone-else' WHERE seq = 3")
    assert audit_findings(instance) == [(3, FindingKind.EDITED)]


def test_deleted_audit_entry_is_named(instance: Instance) -> None:
    seed(instance)
    sql(instance, "DELETE FROM audit_entry WHERE seq = 5")
    assert (5, FindingKind.DELETED) in audit_findings(instance)


def test_truncated_audit_tail_is_named(instance: Instance) -> None:
    seed(instance)
    head = instance.container.system_repository("test").audit_length()
    sql(instance, "DELETE FROM audit_entry WHERE seq >= :s", s=head - 1)
    assert (head - 1, FindingKind.TRUNCATED) in audit_findings(instance)


def test_reordered_audit_entries_are_named(instance: Instance) -> None:
    seed(instance)
    sql(instance, "UPDATE audit_entry SET seq = 1000 WHERE seq = 3")
    sql(instance, "UPDATE audit_entry SET seq = 3 WHERE seq = 4")
    sql(instance, "UPDATE audit_entry SET seq = 4 WHERE seq = 1000")
    found = audit_findings(instance)
    assert (3, FindingKind.INSERTED_OR_REORDERED) in found
    assert (4, FindingKind.INSERTED_OR_REORDERED) in found


def test_inserted_audit_entry_is_named(instance: Instance) -> None:
    seed(instance)
    with instance.container.db.write.begin() as conn:
        row = conn.execute(text("SELECT * FROM audit_entry WHERE seq = 2")).mappings().one()
        conn.execute(text("UPDATE audit_entry SET seq = seq + 1000 WHERE seq >= 3"))
        conn.execute(text("UPDATE audit_entry SET seq = seq - 999 WHERE seq >= 1003"))
        values = dict(row)
        values["seq"] = 3
        columns = ", ".join(values)
        conn.execute(
            text(
                f"INSERT INTO audit_entry ({columns}) VALUES ({', '.join(':' + k for k in values)})"
            ),
            values,
        )
    found = audit_findings(instance)
    assert (3, FindingKind.INSERTED_OR_REORDERED) in found


MARKER = "Qwertzmarkerxq"


def test_marker_is_nowhere_in_the_raw_database(instance: Instance, tmp_path: Path) -> None:
    """No plaintext PHI in the database file, its WAL, or a dump of the server database."""
    c = instance.container
    records = c.records(admin())
    stored = records.create(
        "Patient",
        {"resourceType": "Patient", "name": [{"family": MARKER, "given": [MARKER + "given"]}]},
    )
    records.read("Patient", stored.res_id)
    url = c.db.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = Path(str(url.database))
        files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
        assert any(p.name.endswith("-wal") for p in files)  # the WAL really holds data
        for path in files:
            assert MARKER.encode() not in path.read_bytes(), path.name
        return
    dump_file = tmp_path / "dump.sql"
    if backend == "postgresql":
        tool = shutil.which("pg_dump")
        assert tool, "pg_dump is required for this test"
        command = [
            tool,
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-f",
            str(dump_file),
            str(url.database),
        ]
    else:
        tool = shutil.which("mariadb-dump") or shutil.which("mysqldump")
        assert tool, "mariadb-dump is required for this test"
        command = [
            tool,
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            "--hex-blob",
            f"--result-file={dump_file}",
            str(url.database),
        ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    dump = dump_file.read_bytes()
    assert b"resource_version" in dump
    assert MARKER.encode() not in dump
    assert MARKER.encode().hex().encode() not in dump.lower()


def test_wiping_the_whole_audit_trail_is_found(instance: Instance) -> None:
    seed(instance)
    sql(instance, "DELETE FROM audit_checkpoint")
    sql(instance, "DELETE FROM audit_entry")
    sql(instance, "UPDATE audit_head SET seq = 0, signature = NULL")
    found = audit_findings(instance)
    assert (0, FindingKind.BAD_SIGNATURE) in found
    assert FindingKind.DELETED in {kind for _seq, kind in found}  # versions nobody audited


def test_cutting_the_tail_back_to_a_checkpoint_is_found(tmp_path: Path) -> None:
    """The head's signed statement differs from a checkpoint's: one cannot replace the other."""
    home = tmp_path / "home"
    result = init_instance(home, audit_checkpoint_every=4)
    inst = Instance(home, result, Container(load_settings(home)))
    try:
        seed(inst)
        with inst.container.db.write.begin() as conn:
            cp = conn.execute(
                text("SELECT seq, hash, key_id, signature FROM audit_checkpoint ORDER BY seq")
            ).first()
            assert cp is not None
            conn.execute(text("DELETE FROM audit_entry WHERE seq > :s"), {"s": cp.seq})
            conn.execute(
                text("UPDATE audit_head SET seq = :s, hash = :h, key_id = :k, signature = :g"),
                {"s": cp.seq, "h": cp.hash, "k": cp.key_id, "g": cp.signature},
            )
        found = audit_findings(inst)
        assert (cp.seq, FindingKind.BAD_SIGNATURE) in found
    finally:
        inst.container.close()


def test_removing_the_newest_versions_consistently_is_found(instance: Instance) -> None:
    seed(instance)
    with instance.container.db.write.begin() as conn:
        top = conn.execute(text("SELECT max(seq) FROM resource_version")).scalar_one()
        conn.execute(text("DELETE FROM resource_version WHERE seq = :s"), {"s": top})
        conn.execute(text("DELETE FROM resource_current WHERE seq = :s"), {"s": top})
        conn.execute(text("UPDATE counter SET value = value - 1 WHERE name = 'version'"))
    kinds = {kind for _seq, kind in audit_findings(instance)}
    assert FindingKind.VERSIONS_MISMATCH in kinds


def test_edited_query_columns_are_found(instance: Instance) -> None:
    seed(instance)
    sql(instance, "UPDATE audit_entry SET ts_us = ts_us + 1 WHERE seq = 3")
    sql(instance, "UPDATE audit_entry SET version = 9 WHERE seq = 4")
    found = audit_findings(instance)
    assert (3, FindingKind.EDITED) in found
    assert (4, FindingKind.EDITED) in found


def test_an_edited_key_id_column_is_found(instance: Instance) -> None:
    seed(instance)
    sql(instance, "UPDATE resource_version SET key_id = key_id + 100 WHERE seq = 2")
    assert any("seq 2" in f and "key_id" in f for f in integrity(instance))


def test_a_rollback_of_the_whole_database_is_caught_by_the_anchor(tmp_path: Path) -> None:
    """Restoring an older, genuinely signed copy of the database file (SQLite)."""
    home = tmp_path / "home"
    init_instance(home)
    container = Container(load_settings(home))
    records = container.records(admin())
    records.create("Patient", {"resourceType": "Patient", "active": True})
    container.close()  # writes the anchor and checkpoints the WAL
    database = home / "data" / "hearth.db"
    old = database.read_bytes()
    container = Container(load_settings(home))
    for _ in range(3):
        container.records(admin()).create("Patient", {"resourceType": "Patient"})
    container.close()
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    database.write_bytes(old)
    container = Container(load_settings(home))
    try:
        report = verify_audit(container.system_repository("test"))
        assert FindingKind.TRUNCATED in {f.kind for f in report.findings}
        # New writes on the rolled-back database do not move the anchor back to it ...
        container.records(admin()).create("Patient", {"resourceType": "Patient"})
    finally:
        container.close()  # ... nor does closing, which anchors the newest head
    container = Container(load_settings(home))
    try:
        report = verify_audit(container.system_repository("test"))
        assert FindingKind.TRUNCATED in {f.kind for f in report.findings}
        # After a deliberate restore, an operator accepts the database's head, audited.
        previous, new = container.system_repository("test").reset_anchor("restored on purpose")
        assert previous is not None
        assert (new.seq, new.hash) != (previous.seq, previous.hash)
        assert verify_audit(container.system_repository("test")).ok
        with container.db.read.connect() as conn:
            actions = conn.execute(text("SELECT action FROM audit_entry ORDER BY seq")).scalars()
            assert "audit.anchor_reset" in list(actions)
    finally:
        container.close()
    container = Container(load_settings(home))
    try:
        assert verify_audit(container.system_repository("test")).ok
    finally:
        container.close()


def test_the_anchor_is_reset_only_over_a_chain_that_verifies(instance: Instance) -> None:
    seed(instance)
    system = instance.container.system_repository("test")
    with pytest.raises(HearthError) as blank:
        system.reset_anchor("  ")
    assert blank.value.code is errors.BAD_PARAMETER
    sql(instance, "DELETE FROM audit_entry WHERE seq = 2")
    with pytest.raises(HearthError) as refused:
        system.reset_anchor("restored on purpose")
    assert refused.value.code is errors.AUDIT_CHAIN_BROKEN
    with instance.container.db.read.connect() as conn:
        outcomes = conn.execute(
            text("SELECT outcome FROM audit_entry WHERE action = 'audit.anchor_reset'")
        ).scalars()
        assert list(outcomes) == ["denied"]


def test_hostile_values_are_reported_not_fatal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inst = Instance(home, init_instance(home), Container(load_settings(home)))
    container = inst.container
    try:
        seed(inst)
        sql(inst, "UPDATE resource_version SET body = 'not a blob' WHERE seq = 2")
        sql(inst, "UPDATE resource_version SET res_id = 'Zoë' WHERE seq = 3")
        found = integrity(inst)
        assert any("seq 2" in f for f in found), found
        assert any("seq 3" in f for f in found), found
    finally:
        container.close()
