"""The storage contract: every engine must behave the same through the repository gate."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from hearth.domain import HearthError, errors
from hearth.fhir.search import Context, parse_search
from hearth.settings import load_settings
from hearth.wiring import Container
from tests.support import Instance, admin, nobody

pytestmark = pytest.mark.engines


def patient(family: str = "Contract") -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": family}], "active": True}


def raw(instance: Instance, sql: str, **params: object) -> list[tuple[object, ...]]:
    with instance.container.db.write.begin() as conn:
        result = conn.execute(text(sql), params)
        return [tuple(r) for r in result] if result.returns_rows else []


def test_create_read_update_delete_history(instance: Instance) -> None:
    records = instance.container.records(admin())
    created = records.create("Patient", patient())
    assert created.version == 1
    assert created.resource is not None
    assert created.resource["meta"]["versionId"] == "1"
    read = records.read("Patient", created.res_id)
    assert read.resource == created.resource

    body = {**patient("Second"), "id": created.res_id}
    updated, was_created = records.update("Patient", created.res_id, body, if_match=1)
    assert (updated.version, was_created) == (2, False)

    with pytest.raises(HearthError) as stale:
        records.update("Patient", created.res_id, body, if_match=1)
    assert stale.value.code is errors.VERSION_CONFLICT

    assert records.vread("Patient", created.res_id, "1").resource == created.resource
    deleted = records.delete("Patient", created.res_id)
    assert deleted is not None
    assert deleted.version == 3
    with pytest.raises(HearthError) as gone:
        records.read("Patient", created.res_id)
    assert gone.value.code is errors.GONE
    assert records.delete("Patient", created.res_id) is None  # idempotent

    page = records.history(
        res_type="Patient", res_id=created.res_id, since=None, before_seq=None, count=10
    )
    assert [e.version for e in page.entries] == [3, 2, 1]
    assert [e.method for e in page.entries] == ["DELETE", "PUT", "POST"]
    assert page.total == 3


def test_update_as_create_with_client_id(instance: Instance) -> None:
    records = instance.container.records(admin())
    stored, created = records.update(
        "Patient", "client-chosen-1", {**patient(), "id": "client-chosen-1"}
    )
    assert created
    assert stored.res_id == "client-chosen-1"
    # The interaction was an update (R4 http.html#update): audited and shown in history as one.
    page = records.history(
        res_type="Patient", res_id="client-chosen-1", since=None, before_seq=None, count=10
    )
    assert [(e.version, e.method) for e in page.entries] == [(1, "PUT")]
    assert raw(
        instance,
        "SELECT action, version FROM audit_entry "
        "WHERE res_id = 'client-chosen-1' AND outcome = 'success' AND action <> 'history'",
    ) == [("update", 1)]
    with pytest.raises(HearthError) as exc:
        records.update("Patient", "other-id", {**patient(), "id": "client-chosen-1"})
    assert exc.value.code is errors.ID_MISMATCH


def test_ids_that_differ_only_in_case_are_different_resources(instance: Instance) -> None:
    """FHIR ids are case-sensitive; MariaDB's default collation compared them without regard
    to case, so Patient/ABC read and overwrote Patient/abc (migration 0010)."""
    records = instance.container.records(admin())
    records.update("Patient", "abc", {**patient("Lower"), "id": "abc"})
    with pytest.raises(HearthError) as missing:
        records.read("Patient", "ABC")
    assert missing.value.code is errors.NOT_FOUND
    upper, created = records.update("Patient", "ABC", {**patient("Upper"), "id": "ABC"})
    assert (upper.res_id, upper.version, created) == ("ABC", 1, True)
    assert records.read("Patient", "abc").resource["name"] == [{"family": "Lower"}]
    assert records.read("Patient", "ABC").resource["name"] == [{"family": "Upper"}]
    # Search and compartments compare ids the same way.
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/ABC"},
    }
    records.create("Observation", observation)
    for subject, total in (("Patient/abc", 0), ("Patient/ABC", 1)):
        request = parse_search(
            "Observation",
            [("subject", subject)],
            ctx=Context(now_us=0),
            default_count=10,
            max_count=10,
        )
        assert instance.container.repository(admin()).search(request).total == total


def test_every_table_compares_text_as_written_on_mariadb(instance: Instance) -> None:
    if instance.container.db.dialect not in ("mysql", "mariadb"):
        pytest.skip("SQLite and PostgreSQL compare text byte for byte")
    rows = raw(
        instance,
        "SELECT table_name, table_collation FROM information_schema.tables "
        "WHERE table_schema = DATABASE()",
    )
    assert rows
    assert {collation for _name, collation in rows} == {"utf8mb4_bin"}, rows


def test_threads_that_first_ask_for_a_service_at_once_all_get_it(instance: Instance) -> None:
    """The services that answer requests are built at their first use: a server's worker
    threads reach that together, and every one must get them (none an AttributeError)."""
    container = Container(load_settings(instance.home))
    start = threading.Barrier(8)
    seen: list[object] = []

    def first_request() -> None:
        start.wait()
        try:
            seen.append(container.records(admin()).read("Patient", "missing"))
        except HearthError as exc:
            seen.append(exc.code)
        except Exception as exc:  # noqa: BLE001 - what the test is looking for
            seen.append(exc)

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        container.close()
    assert seen == [errors.NOT_FOUND] * 8


def test_json_patch(instance: Instance) -> None:
    records = instance.container.records(admin())
    created = records.create("Patient", patient())
    patched = records.patch(
        "Patient", created.res_id, [{"op": "replace", "path": "/active", "value": False}]
    )
    assert patched.version == 2
    assert patched.resource is not None
    assert patched.resource["active"] is False
    with pytest.raises(HearthError) as exc:
        records.patch("Patient", created.res_id, [{"op": "test", "path": "/active", "value": True}])
    assert exc.value.code is errors.PATCH_FAILED


def test_sequence_is_gap_free_across_rollbacks(instance: Instance) -> None:
    repo = instance.container.repository(admin())
    repo.create(patient())
    with pytest.raises(RuntimeError), repo.batch() as batch:
        batch.create(patient())
        raise RuntimeError("abort the transaction")
    repo.create(patient())
    seqs = [r[0] for r in raw(instance, "SELECT seq FROM resource_version ORDER BY seq")]
    assert seqs == [1, 2]


def test_batch_is_atomic(instance: Instance) -> None:
    repo = instance.container.repository(admin())
    with pytest.raises(HearthError), repo.batch() as batch:
        for n in range(10):
            batch.create(patient(f"Batch{n}"))
        batch.update("Patient", "missing", {**patient(), "id": "missing"}, if_match=4)
    assert raw(instance, "SELECT count(*) FROM resource_version") == [(0,)]


def test_a_batch_reads_searches_and_updates_its_own_new_resources(instance: Instance) -> None:
    """A batch holds back its new resources' first versions and writes them together; every read
    inside the batch must still see them: a read, an update (version 2, not a second version
    1), a create with a taken client id (refused), a search, and the stored sequence order."""
    repo = instance.container.repository(admin())
    with repo.batch() as batch:
        batch.expect([("Patient", "fresh"), ("Patient", "other")])
        first, created = batch.update("Patient", "fresh", {**patient("Fresh"), "id": "fresh"})
        assert (first.version, created) == (1, True)
        assert batch.read("Patient", "fresh").version == 1
        second, created = batch.update("Patient", "fresh", {**patient("Later"), "id": "fresh"})
        assert (second.version, created) == (2, False)
        batch.create(patient("Other"), res_id="other")
        with pytest.raises(HearthError) as exc:
            batch.create(patient("Again"), res_id="other")
        assert exc.value.code is errors.CONFLICT
        request = parse_search(
            "Patient",
            [("family", "Other")],
            ctx=Context(now_us=0),
            default_count=10,
            max_count=10,
        )
        assert [m.res_id for m in batch.search(request).matches] == ["other"]
    rows = raw(instance, "SELECT seq, res_id, version FROM resource_version ORDER BY seq")
    assert rows == [(1, "fresh", 1), (2, "fresh", 2), (3, "other", 1)]
    current = raw(instance, "SELECT res_id, version, seq FROM resource_current ORDER BY res_id")
    assert current == [("fresh", 2, 2), ("other", 1, 3)]
    assert repo.read("Patient", "fresh").resource["name"] == [{"family": "Later"}]  # type: ignore[index]


def test_concurrent_writers_keep_the_sequence_dense(instance: Instance) -> None:
    errors_seen: list[BaseException] = []

    def writer() -> None:
        repo = instance.container.repository(admin())
        try:
            for _ in range(10):
                repo.create(patient())
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors_seen.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors_seen
    seqs = [r[0] for r in raw(instance, "SELECT seq FROM resource_version ORDER BY seq")]
    assert seqs == list(range(1, 41))


def test_batches_number_versions_densely_and_store_the_counter(instance: Instance) -> None:
    """A batch takes the version counter once and writes it back before it commits: batches of
    several writes racing each other, one rolled back, leave a dense sequence, a counter equal
    to the last version and the audit head recording it."""
    errors_seen: list[BaseException] = []

    def writer(fail: bool) -> None:
        repo = instance.container.repository(admin())
        try:
            for _ in range(3):
                with repo.batch() as batch:
                    for _ in range(4):
                        batch.create(patient())
                    batch.update("Patient", "up", {**patient(), "id": "up"})
                    if fail:
                        raise RuntimeError("roll back the batch")
        except RuntimeError:
            pass
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors_seen.append(exc)

    threads = [threading.Thread(target=writer, args=(n == 0,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors_seen
    seqs = [r[0] for r in raw(instance, "SELECT seq FROM resource_version ORDER BY seq")]
    assert seqs == list(range(1, 2 * 3 * 5 + 1))
    assert raw(instance, "SELECT value FROM counter WHERE name = 'version'") == [(len(seqs),)]
    assert raw(instance, "SELECT version_seq FROM audit_head") == [(len(seqs),)]
    versions = raw(instance, "SELECT version FROM resource_version WHERE res_id = 'up'")
    assert sorted(v for (v,) in versions) == list(range(1, 7))


def test_every_call_is_audited_success_and_failure(instance: Instance) -> None:
    c = instance.container
    before = raw(instance, "SELECT count(*) FROM audit_entry")[0][0]
    created = c.records(admin()).create("Patient", patient())
    c.records(admin()).read("Patient", created.res_id)
    with pytest.raises(HearthError):
        c.records(admin()).read("Patient", "no-such-id")
    with pytest.raises(HearthError) as denied:
        c.records(nobody()).read("Patient", created.res_id)
    assert denied.value.code is errors.FORBIDDEN
    rows = raw(
        instance,
        "SELECT actor, action, outcome, res_id FROM audit_entry WHERE seq > :n ORDER BY seq",
        n=before,
    )
    assert rows == [
        ("admin", "create", "success", created.res_id),
        ("admin", "read", "success", created.res_id),
        ("admin", "read", "not-found", "no-such-id"),
        ("mallory", "read", "denied", created.res_id),
    ]


def test_denied_write_stores_nothing_and_is_audited(instance: Instance) -> None:
    with pytest.raises(HearthError) as exc:
        instance.container.records(nobody()).create("Patient", patient())
    assert exc.value.code is errors.FORBIDDEN
    assert raw(instance, "SELECT count(*) FROM resource_version") == [(0,)]
    assert ("create", "denied") in raw(instance, "SELECT action, outcome FROM audit_entry")


def test_a_failed_audit_write_fails_the_request(instance: Instance) -> None:
    """Fail closed: with the audit table unwritable, neither reads nor writes succeed."""
    c = instance.container
    created = c.records(admin()).create("Patient", patient())
    raw(instance, "DROP TABLE audit_checkpoint")  # harmless: only every 1000th entry needs it
    raw(instance, "ALTER TABLE audit_entry RENAME TO audit_entry_gone")
    try:
        with pytest.raises(HearthError) as read_error:
            c.records(admin()).read("Patient", created.res_id)
        assert read_error.value.code is errors.AUDIT_FAILED
        with pytest.raises(HearthError) as write_error:
            c.records(admin()).create("Patient", patient("NotStored"))
        assert write_error.value.code is errors.AUDIT_FAILED
    finally:
        raw(instance, "ALTER TABLE audit_entry_gone RENAME TO audit_entry")
    assert raw(instance, "SELECT count(*) FROM resource_version") == [(1,)]


def test_bodies_and_indexes_hold_no_plaintext(instance: Instance) -> None:
    marker = "Zyxwvumarker"
    instance.container.records(admin()).create("Patient", patient(marker))
    for table, column in (("resource_version", "body"), ("audit_entry", "body")):
        for (value,) in raw(instance, f"SELECT {column} FROM {table}"):
            assert marker.encode() not in bytes(value)  # type: ignore[arg-type]


def test_racing_writers_of_one_resource_get_a_version_each(instance: Instance) -> None:
    """Concurrent updates of one resource: each gets its own version, none a server error."""
    records = instance.container.records(admin())
    created = records.create("Patient", patient())
    outcomes: list[object] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        body = {**patient(f"Racer{n}"), "id": created.res_id}
        try:
            stored, _ = instance.container.records(admin()).update("Patient", created.res_id, body)
            result: object = stored.version
        except HearthError as exc:
            result = exc.code.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == list(range(2, 10))  # type: ignore[type-var]


def test_racing_if_match_updates_have_one_winner(instance: Instance) -> None:
    records = instance.container.records(admin())
    created = records.create("Patient", patient())
    outcomes: list[object] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        body = {**patient(f"Racer{n}"), "id": created.res_id}
        try:
            instance.container.records(admin()).update("Patient", created.res_id, body, if_match=1)
            result: object = "won"
        except HearthError as exc:
            result = exc.code.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, outcomes)) == ["HRT-0303"] * 5 + ["won"]


def test_racing_creates_with_one_client_id(instance: Instance) -> None:
    outcomes: list[object] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        body = {**patient(f"Racer{n}"), "id": "shared-id"}
        try:
            _stored, made = instance.container.records(admin()).update("Patient", "shared-id", body)
            result: object = "created" if made else "updated"
        except HearthError as exc:
            result = exc.code.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, outcomes)) == ["created"] + ["updated"] * 5


def test_refusals_before_the_gate_are_audited(instance: Instance) -> None:
    records = instance.container.records(admin())
    for call in (
        lambda: records.create("Patient", {"resourceType": "Patient", "bogus": 1}),
        lambda: records.create("Observation", patient()),
        lambda: records.read("NotAType", "x"),
        lambda: records.read("Patient", "bad$id"),
    ):
        with pytest.raises(HearthError):
            call()
    rows = raw(
        instance,
        "SELECT action, outcome, res_type, res_id FROM audit_entry "
        "WHERE actor = 'admin' ORDER BY seq",
    )
    assert rows[-4:] == [
        ("create", "invalid", "Patient", None),
        ("create", "invalid", "Observation", None),
        ("read", "invalid", None, "x"),  # an unknown type from the URL is never recorded
        ("read", "invalid", "Patient", None),
    ]
