"""A restore rebuilds the search indexes as a bulk load (``hearth.storage.sql.index_load``): the
rows it leaves are exactly those the write path leaves, the engine's indexes are all there
afterwards, and a failure anywhere in the load, or a tampered version, commits nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, inspect, text

from hearth.domain import HearthError, IntegrityError, errors
from hearth.storage.backup import RestoreDatabase
from hearth.storage.sql.index_load import INDEX_TABLES, IndexBulkLoad
from tests.integration.backup.conftest import Backups, _driver, rows, seed
from tests.support import admin

pytestmark = pytest.mark.engines

#: Each index table and an order that covers its whole key.
ORDER = {
    "search_resource": "seq",
    "search_hash": "seq, hash",
    "search_reference": "seq, param, target_type, target_id",
    "search_compartment": "seq, patient_id",
    "search_care_link": "seq, patient_id, actor_type, actor_id",
}


def populate(backups: Backups) -> None:
    """Every kind of index row: keys, references, compartments and care links; updated and
    deleted resources, whose old versions must not be indexed."""
    seed(backups.instance, 4)
    records = backups.instance.container.records(admin())
    doctor = records.create(
        "Practitioner", {"resourceType": "Practitioner", "name": [{"family": "Oak"}]}
    )
    records.create(
        "Patient",
        {
            "resourceType": "Patient",
            "name": [{"family": "Elm", "given": ["Ada"]}],
            "birthDate": "1950-02-03",
            "generalPractitioner": [{"reference": f"Practitioner/{doctor.res_id}"}],
        },
    )


def index_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    return {table: rows(url, table, order) for table, order in ORDER.items()}


def index_names(url: str) -> dict[str, tuple[list[str], set[str]]]:
    """Per index table: its primary key's columns and its other indexes' names."""
    engine = create_engine(_driver(url))
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            return {
                t.name: (
                    found.get_pk_constraint(t.name)["constrained_columns"],
                    {str(i["name"]) for i in found.get_indexes(t.name)},
                )
                for t in INDEX_TABLES
            }
    finally:
        engine.dispose()


def empty(url: str) -> bool:
    db = RestoreDatabase(url)
    try:
        return db.is_empty()
    finally:
        db.close()


def test_restored_index_is_the_write_paths_index(
    backups: Backups, restore_url: Callable[[], str]
) -> None:
    populate(backups)
    made = backups.service.create()
    url = restore_url()
    restored = backups.service.restore(made.backup_id, into=url, decryptor=backups.decryptor)
    source = backups.instance.settings_url
    expected = index_rows(source)
    assert all(expected[table] for table in ORDER), "every index table holds rows"
    assert index_rows(url) == expected
    assert restored.indexed == len(expected["search_resource"])
    # The primary keys and secondary indexes dropped for the load were built again.
    assert index_names(url) == index_names(source)


def test_a_failure_at_the_end_of_the_index_load_commits_nothing(
    backups: Backups, restore_url: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load fails after every index row was written and the indexes rebuilt (a server
    gone at that moment): the target is left empty, with its indexes, and takes a restore."""
    populate(backups)
    made = backups.service.create()
    url = restore_url()
    finish = IndexBulkLoad.finish

    def finish_then_fail(self: IndexBulkLoad) -> None:
        finish(self)
        raise HearthError(errors.STORAGE_UNAVAILABLE, "the server went away")

    monkeypatch.setattr(IndexBulkLoad, "finish", finish_then_fail)
    with pytest.raises(HearthError):
        backups.service.restore(made.backup_id, into=url, decryptor=backups.decryptor)
    assert empty(url)
    if not url.startswith("mariadb"):
        # The indexes dropped inside the transaction came back with its rollback.
        assert index_names(url) == index_names(backups.instance.settings_url)
    monkeypatch.undo()
    backups.service.restore(made.backup_id, into=url, decryptor=backups.decryptor)
    assert index_rows(url) == index_rows(backups.instance.settings_url)


def tamper_with_version_2(backups: Backups) -> None:
    """Edit version seq 2 in the source database behind the gate: its MAC no longer matches."""
    source = create_engine(_driver(backups.instance.settings_url))
    try:
        with source.begin() as conn:
            conn.execute(text("UPDATE resource_version SET ts_us = ts_us + 1 WHERE seq = 2"))
    finally:
        source.dispose()


def test_a_tampered_version_is_refused_and_nothing_is_restored(
    backups: Backups, restore_url: Callable[[], str]
) -> None:
    """A version edited in the source database before the backup (the backup carries it as
    stored, its Merkle leaf included) fails its MAC check during the restore."""
    populate(backups)
    tamper_with_version_2(backups)
    made = backups.service.create()
    url = restore_url()
    with pytest.raises(IntegrityError, match="seq 2"):
        backups.service.restore(made.backup_id, into=url, decryptor=backups.decryptor)
    assert empty(url)


def test_deep_verify_finds_a_version_stored_with_a_bad_mac(backups: Backups) -> None:
    """The same edit is what ``verify --deep`` is for: the segments, AEAD tags and Merkle roots
    all check out (the backup holds the version as stored), and only opening every version and
    checking its MAC, which the deep verify does without rebuilding the search index, finds it."""
    populate(backups)
    tamper_with_version_2(backups)
    backups.service.create()
    assert backups.service.verify(decryptor=backups.decryptor).ok
    deep = backups.service.verify(decryptor=backups.decryptor, deep=True)
    assert not deep.ok
    assert deep.deep is not None
    assert not deep.deep["ok"]
    assert "seq 2" in deep.deep["error"]
