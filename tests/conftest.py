"""Shared fixtures: deterministic time and randomness, and real database engines.

``HEARTH_TEST_ENGINES`` (default ``sqlite,postgresql,mariadb``) names the engines the contract
suite runs on. An engine that was asked for but cannot be reached FAILS the run: CI must never
pass by skipping a database. Each test that needs a server database gets its own, created with a
unique name and dropped afterwards, so several runs can share one server.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import create_engine, text

from tests.support import FixedClock, Instance, make_instance

# Property tests judge results, never speed: on a shared, loaded machine under coverage an
# example may take longer than hypothesis's default 200 ms deadline without anything being wrong.
settings.register_profile("hearth", deadline=None)
settings.load_profile("hearth")

POSTGRES_ADMIN = os.environ.get(
    "HEARTH_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN = os.environ.get("HEARTH_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/")
ALL_ENGINES = ("sqlite", "postgresql", "mariadb")


def requested_engines() -> list[str]:
    raw = os.environ.get("HEARTH_TEST_ENGINES", ",".join(ALL_ENGINES))
    engines = [e.strip() for e in raw.split(",") if e.strip()]
    unknown = set(engines) - set(ALL_ENGINES)
    if unknown:
        raise pytest.UsageError(f"HEARTH_TEST_ENGINES names unknown engines: {sorted(unknown)}")
    return engines


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def _server_database(engine: str) -> Iterator[str]:
    name = f"hearth_t_{secrets.token_hex(6)}"
    admin_url = POSTGRES_ADMIN if engine == "postgresql" else MARIADB_ADMIN
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if engine == "postgresql":
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine fails the test
        pytest.fail(f"{engine} was requested (HEARTH_TEST_ENGINES) but is not reachable: {exc}")
    try:
        if engine == "postgresql":
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        else:
            yield f"mariadb://root@127.0.0.1:3306/{name}"
    finally:
        with admin.connect() as conn:
            if engine == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(params=requested_engines())
def engine(request: pytest.FixtureRequest) -> str:
    """Each contract test runs once per requested engine."""
    return str(request.param)


@pytest.fixture
def database_url(engine: str, tmp_path: Path) -> Iterator[str | None]:
    """A fresh, empty database on ``engine``; None means the instance's own SQLite file."""
    if engine == "sqlite":
        yield None
        return
    yield from _server_database(engine)


@pytest.fixture
def instance(tmp_path: Path, database_url: str | None) -> Iterator[Instance]:
    """An initialised instance on the engine under test (real clock and randomness)."""
    inst = make_instance(tmp_path / "home", database_url)
    try:
        yield inst
    finally:
        inst.container.close()


@pytest.fixture
def sqlite_instance(tmp_path: Path) -> Iterator[Instance]:
    """An initialised SQLite instance, for tests that are not about the engine."""
    inst = make_instance(tmp_path / "home", None)
    try:
        yield inst
    finally:
        inst.container.close()
