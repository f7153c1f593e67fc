"""Fixtures for backup tests: an instance with backup keys, a local target, restore databases."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from hearth.backupfmt import SegmentDecryptor
from hearth.domain import Secret
from hearth.services.backup import BackupService
from hearth.settings import Settings
from hearth.targets import LocalDirectoryTarget
from hearth.wiring import (
    Container,
    backup_decryptor,
    backup_service,
    create_backup_recipient,
)
from tests.conftest import _server_database
from tests.support import Instance, admin


@dataclasses.dataclass
class Backups:
    instance: Instance
    service: BackupService
    decryptor: SegmentDecryptor
    identity: Path
    target: LocalDirectoryTarget

    @property
    def settings(self) -> Settings:
        return self.instance.container.settings


@pytest.fixture
def backups(instance: Instance, tmp_path: Path) -> Backups:
    settings = instance.container.settings
    made = create_backup_recipient(settings)
    identity = tmp_path / "identity.txt"
    identity.write_text(made.identity_file.reveal())
    target = LocalDirectoryTarget(tmp_path / "target", label="t1")
    service = backup_service(settings, instance.container, targets=[target], operator="test")
    return Backups(instance, service, backup_decryptor(identity), identity, target)


@pytest.fixture
def restore_url(engine: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Hands out empty databases on the engine under test."""
    made: list[Iterator[str]] = []
    counter = [0]

    def make() -> str:
        counter[0] += 1
        if engine == "sqlite":
            return f"sqlite:///{tmp_path / f'restored{counter[0]}.db'}"
        gen = _server_database(engine)
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        for _ in gen:
            pass


def seed(instance: Instance, n: int = 5, *, tag: str = "A") -> list[str]:
    """Patients and observations, an update and a delete: every kind of version."""
    records = instance.container.records(admin())
    ids = []
    for i in range(n):
        patient = records.create(
            "Patient", {"resourceType": "Patient", "name": [{"family": f"{tag}{i}"}]}
        )
        ids.append(patient.res_id)
        records.create(
            "Observation",
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"obs {tag}{i}"},
                "subject": {"reference": f"Patient/{patient.res_id}"},
            },
        )
    records.update("Patient", ids[0], {"resourceType": "Patient", "id": ids[0], "active": True})
    records.delete("Patient", ids[-1])
    return ids


def rows(url: str, table: str, order: str) -> list[tuple[Any, ...]]:
    engine = create_engine(_driver(url))
    try:
        with engine.connect() as conn:
            found = conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}")).all()
    finally:
        engine.dispose()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in found]


def _driver(url: str) -> str:
    if url.startswith("postgresql://"):
        return url.replace("postgresql://", "postgresql+psycopg://", 1)
    if url.startswith("mariadb://"):
        return url.replace("mariadb://", "mysql+pymysql://", 1) + "?charset=utf8mb4"
    return url


def container_on(settings: Settings, url: str, home: Path | None = None) -> Container:
    """A container of the same instance (same keys) over another database; with ``home``, its
    own audit anchor file (a restored database's chain is not the source's)."""
    changed = dataclasses.replace(settings, database_url=Secret(url))
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        changed = dataclasses.replace(changed, home=home)
    return Container(changed, alarm_worker=False)


def resources(container: Container) -> dict[tuple[str, str, int], dict[str, Any] | None]:
    """Every version of every resource, opened and MAC-checked through the gate."""
    records = container.records(admin())
    url = container.settings.database_url.reveal()
    out: dict[tuple[str, str, int], dict[str, Any] | None] = {}
    for row in rows(url, "resource_version", "seq"):
        seq, res_type, res_id, version, _ts, deleted = row[:6]
        if deleted:
            out[(res_type, res_id, version)] = None
            continue
        stored = records.vread(res_type, res_id, str(version))
        assert stored.seq == seq
        out[(res_type, res_id, version)] = stored.resource
    return out
