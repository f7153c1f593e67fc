"""The audit trail writer: checkpoints, tickets, fail-closed paths; and the gate's error paths."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from hearth.audit import FindingKind
from hearth.domain import HearthError, IntegrityError, Secret, StoredResource, errors
from hearth.services.disclosure import DisclosurePool
from hearth.services.integrity import verify_audit
from hearth.settings import load_settings
from hearth.storage import deferred_durability, wait_tickets, wait_tickets_async
from hearth.web.fhir import FhirApi, reads_here
from hearth.wiring import Container, init_instance
from tests.support import Instance, admin


@pytest.fixture
def small_checkpoints(tmp_path: Path) -> Instance:
    home = tmp_path / "home"
    result = init_instance(home, audit_checkpoint_every=3)
    return Instance(home, result, Container(load_settings(home)))


def sql(instance: Instance, statement: str) -> list[tuple[object, ...]]:
    with instance.container.db.write.begin() as conn:
        result = conn.execute(text(statement))
        return [tuple(r) for r in result] if result.returns_rows else []


def test_checkpoints_are_signed_every_n_entries(small_checkpoints: Instance) -> None:
    c = small_checkpoints.container
    try:
        for _ in range(4):
            c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
        checkpoints = [r[0] for r in sql(small_checkpoints, "SELECT seq FROM audit_checkpoint")]
        head = sql(small_checkpoints, "SELECT seq FROM audit_head")[0][0]
        assert checkpoints == list(range(3, int(head) + 1, 3))  # type: ignore[call-overload]
        assert checkpoints
        assert verify_audit(c.system_repository("test")).ok
        sql(
            small_checkpoints,
            "UPDATE audit_checkpoint SET hash = prev_hash FROM audit_entry "
            "WHERE audit_entry.seq = audit_checkpoint.seq",
        )
        kinds = {f.kind for f in verify_audit(c.system_repository("test")).findings}
        assert FindingKind.CHECKPOINT_MISMATCH in kinds or FindingKind.BAD_SIGNATURE in kinds
    finally:
        c.close()


def test_deferred_tickets_are_waited_for_sync_and_async(sqlite_instance: Instance) -> None:
    c = sqlite_instance.container
    created = c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    with deferred_durability() as tickets:
        c.records(admin()).read("Basic", created.res_id)
    assert len(tickets) == 1
    wait_tickets(tickets)
    with deferred_durability() as tickets:
        c.records(admin()).read("Basic", created.res_id)
    asyncio.run(wait_tickets_async(tickets))
    asyncio.run(wait_tickets_async(tickets))  # already durable: returns at once


def test_a_failed_group_commit_fails_every_ticket(sqlite_instance: Instance) -> None:
    c = sqlite_instance.container
    created = c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    sql(sqlite_instance, "ALTER TABLE audit_entry RENAME TO audit_entry_gone")
    try:
        with deferred_durability() as tickets:
            c.records(admin()).read("Basic", created.res_id)
        with pytest.raises(HearthError) as exc:
            asyncio.run(wait_tickets_async(tickets))
        assert exc.value.code is errors.AUDIT_FAILED
        with pytest.raises(HearthError):
            wait_tickets(tickets)
    finally:
        sql(sqlite_instance, "ALTER TABLE audit_entry_gone RENAME TO audit_entry")


@pytest.mark.parametrize("here", [False, True], ids=["worker", "loop"])
def test_the_disclosure_pool_releases_only_durable_reads(
    sqlite_instance: Instance, here: bool
) -> None:
    """``DisclosurePool`` wakes a request once, for its work and its audit entry together: the
    value comes back only once the entry is committed; a failed group commit fails the request
    (fail closed), and so does an entry still not durable ``timeout`` seconds after the work
    returned, while work that itself takes longer than that is not cut short. The same holds
    for work run on the loop's own thread (``run_here``, reads by id on SQLite)."""
    c = sqlite_instance.container
    created = c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    pool = DisclosurePool(threads=2, timeout=0.5)

    def read() -> StoredResource:
        return c.records(admin()).read("Basic", created.res_id)

    def head() -> int:
        return int(str(sql(sqlite_instance, "SELECT seq FROM audit_head")[0][0]))

    async def run(work: Callable[[], StoredResource]) -> tuple[StoredResource, int]:
        stored = await (pool.run_here(work) if here else pool.run(work))
        return stored, head()  # what is committed when the value is released

    before = head()
    stored, committed = asyncio.run(run(read))
    assert stored.res_id == created.res_id
    assert committed == before + 1  # the read's entry was durable before the value came back

    def slow() -> StoredResource:
        time.sleep(0.8)  # longer than the pool's timeout: only the wait for the audit is bounded
        return read()

    assert asyncio.run(run(slow))[0].res_id == created.res_id

    sql(sqlite_instance, "ALTER TABLE audit_entry RENAME TO audit_entry_gone")
    try:
        with pytest.raises(HearthError) as failed:
            asyncio.run(run(read))
        assert failed.value.code is errors.AUDIT_FAILED
    finally:
        sql(sqlite_instance, "ALTER TABLE audit_entry_gone RENAME TO audit_entry")

    # Another writer holds the database: the group commit waits and the request gives up.
    blocker = sqlite3.connect(str(c.db.write.url.database), timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(HearthError) as stuck:
            asyncio.run(run(read))
        assert stuck.value.code is errors.AUDIT_FAILED
    finally:
        blocker.rollback()
        blocker.close()
    assert asyncio.run(run(read))[0].res_id == created.res_id


def test_an_uninitialised_chain_refuses_entries(sqlite_instance: Instance) -> None:
    sql(sqlite_instance, "DELETE FROM audit_head")
    with pytest.raises(HearthError) as exc:
        sqlite_instance.container.records(admin()).create(
            "Basic", {"resourceType": "Basic", "code": {"text": "x"}}
        )
    assert exc.value.code is errors.AUDIT_FAILED


def test_the_writer_restarts_after_close(sqlite_instance: Instance) -> None:
    c = sqlite_instance.container
    created = c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    c.records(admin()).read("Basic", created.res_id)
    c.audit.close()
    c.records(admin()).read("Basic", created.res_id)  # a new writer thread takes over


def test_reading_a_tampered_version_raises_and_alarms(sqlite_instance: Instance) -> None:
    c = sqlite_instance.container
    raised = []
    c.alarms = type("Capture", (), {"raise_alarm": lambda self, a: raised.append(a)})()
    created = c.records(admin()).create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    sql(sqlite_instance, "UPDATE resource_version SET mac = zeroblob(32)")
    with pytest.raises(IntegrityError):
        c.records(admin()).read("Basic", created.res_id)
    with pytest.raises(IntegrityError):
        c.records(admin()).patch(
            "Basic",
            created.res_id,
            [{"op": "add", "path": "/id", "value": "x"}][:0] or [{"op": "remove", "path": "/code"}],
        )
    assert raised
    assert raised[0].subject == f"Basic/{created.res_id}"
    assert "x" not in raised[0].summary.split()  # names the row, never its content
    failures = sql(sqlite_instance, "SELECT action, body FROM audit_entry WHERE outcome = 'error'")
    assert {action for action, _body in failures} == {"read", "patch"}
    assert all(b'"code":"HRT-0503"' in bytes(body) for _a, body in failures)  # type: ignore[arg-type]


def test_patch_and_vread_refusals(sqlite_instance: Instance) -> None:
    records = sqlite_instance.container.records(admin())
    created = records.create("Basic", {"resourceType": "Basic", "code": {"text": "x"}})
    remove = [{"op": "remove", "path": "/code"}]
    with pytest.raises(HearthError) as missing:
        records.patch("Basic", "nope", remove)
    assert missing.value.code is errors.NOT_FOUND
    with pytest.raises(HearthError) as stale:
        records.patch("Basic", created.res_id, remove, if_match=7)
    assert stale.value.code is errors.VERSION_CONFLICT
    with pytest.raises(HearthError) as invalid:
        records.patch("Basic", created.res_id, remove)  # Basic.code is required
    assert invalid.value.status == 400
    records.delete("Basic", created.res_id)
    with pytest.raises(HearthError) as gone:
        records.patch("Basic", created.res_id, [{"op": "add", "path": "/code/text", "value": "y"}])
    assert gone.value.code is errors.GONE
    with pytest.raises(HearthError) as no_version:
        records.vread("Basic", created.res_id, "9")
    assert no_version.value.code is errors.VERSION_NOT_FOUND
    with pytest.raises(HearthError) as bad_version:
        records.vread("Basic", created.res_id, "0")
    assert bad_version.value.code is errors.BAD_VERSION_ID
    repo = sqlite_instance.container.repository(admin())
    with pytest.raises(RuntimeError), repo.batch(), repo.batch():
        pass


@pytest.mark.engines
def test_reads_by_id_run_on_the_loop_only_where_nothing_is_across_a_network(
    instance: Instance,
) -> None:
    """``FhirApi.reads_here``: a read by id runs on the event loop's thread on SQLite with
    counters in memory and local keys; on a database server, with Redis or with a KMS a read
    may wait on round trips, so it keeps its worker thread. And even on SQLite it goes to a
    worker while the key ring's look at the database is due or every read connection is
    taken (``FhirApi._loop_would_wait``)."""
    c = instance.container
    api = FhirApi(c)
    sqlite = c.db.dialect == "sqlite"
    assert api.reads_here == sqlite
    settings = c.settings
    assert not reads_here("sqlite", replace(settings, redis_url=Secret("redis://127.0.0.1")))
    assert not reads_here("sqlite", replace(settings, keys=replace(settings.keys, kind="kms")))
    assert reads_here("sqlite", settings)
    assert not reads_here("postgresql", settings)
    c.refresh_keys(force=True)
    assert not api._loop_would_wait()
    api._others = 1  # a write or a search in a worker thread
    assert api._loop_would_wait()
    api._others = 0
    held = [c.db.read.connect() for _ in range(c.db.read.pool.size())]  # type: ignore[attr-defined]
    try:
        assert api._loop_would_wait()
    finally:
        for conn in held:
            conn.close()
    assert not api._loop_would_wait()
