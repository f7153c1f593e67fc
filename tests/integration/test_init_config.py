"""What ``hearth init`` writes and prints: no secret in hearth.toml, a private file, a token that
expires, only the token with ``--quiet``, and no key file inside ``data/``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from hearth.domain import HearthError
from hearth.settings import load_settings, strip_password
from hearth.wiring import INIT_TOKEN_TTL, Container, init_instance
from tests.conftest import POSTGRES_ADMIN
from tests.support import FixedClock

HEARTH = [sys.executable, "-m", "hearth"]


def hearth(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HEARTH_DATABASE_URL"}
    return subprocess.run(
        [*HEARTH, "--home", str(home), *args],
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_quiet_prints_only_the_token_and_the_config_is_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = hearth(home, "init", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("hrt_")
    assert len(done.stdout.strip().splitlines()) == 1
    assert (home / "hearth.toml").stat().st_mode & 0o777 == 0o600


def test_a_url_from_the_environment_is_never_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'hearth.db'}"
    done = hearth(home, "init", "--quiet", env={"HEARTH_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("hrt_")
    assert "HEARTH_DATABASE_URL" in done.stderr
    config = (home / "hearth.toml").read_text()
    assert "elsewhere" not in config
    assert tomllib.loads(config)["database"]["from_environment"] is True
    # Without the variable the instance says what it needs instead of opening another database.
    missing = hearth(home, "audit", "verify")
    assert missing.returncode != 0
    assert "HEARTH_DATABASE_URL" in missing.stdout + missing.stderr
    assert hearth(home, "audit", "verify", env={"HEARTH_DATABASE_URL": url}).returncode == 0


@pytest.fixture
def postgres_database() -> Iterator[str]:
    name = f"hearth_t_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_password_in_database_is_stripped_and_said(
    tmp_path: Path, postgres_database: str
) -> None:
    home = tmp_path / "home"
    # The test server trusts loopback, so any password connects; what matters is where it goes.
    url = f"postgresql://postgres:Pl4nted-pw@127.0.0.1:5432/{postgres_database}"
    done = hearth(home, "init", "--quiet", "--database", url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("hrt_")
    assert "password was not written" in done.stderr
    config = (home / "hearth.toml").read_text()
    assert "Pl4nted-pw" not in config
    assert f"postgresql://postgres@127.0.0.1:5432/{postgres_database}" in config
    assert hearth(home, "audit", "verify").returncode == 0


def test_strip_password() -> None:
    assert strip_password("postgresql://u:p%40ss@db:5432/h") == ("postgresql://u@db:5432/h", True)
    assert strip_password("mariadb://root@127.0.0.1/h?charset=utf8mb4") == (
        "mariadb://root@127.0.0.1/h?charset=utf8mb4",
        False,
    )
    assert strip_password("postgresql://db/h?user=u&password=p") == (
        "postgresql://db/h?user=u",
        True,
    )
    assert strip_password("sqlite:///data/hearth.db") == ("sqlite:///data/hearth.db", False)


def test_the_init_token_expires(tmp_path: Path) -> None:
    clock = FixedClock()
    result = init_instance(tmp_path / "home", clock=clock)
    assert result.token_expires == clock.now() + INIT_TOKEN_TTL
    for hours, valid in ((23.9, True), (24.1, False)):
        later = FixedClock(clock.now() + timedelta(hours=hours))
        container = Container(load_settings(tmp_path / "home"), clock=later)
        try:
            if valid:
                assert container.authenticator.authenticate_bearer(
                    result.admin_token, source=None
                ).subject
            else:
                with pytest.raises(HearthError) as expired:
                    container.authenticator.authenticate_bearer(result.admin_token, source=None)
                assert expired.value.status == 401
        finally:
            container.close()
    assert timedelta(hours=24) == INIT_TOKEN_TTL


def test_a_key_file_inside_data_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = hearth(home, "init", "--key-file", str(home / "data" / "kek.key"))
    assert done.returncode == 1
    assert "inside" in done.stdout + done.stderr
    assert not (home / "hearth.toml").exists()
    assert not (home / "data" / "kek.key").exists()
