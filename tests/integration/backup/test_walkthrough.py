"""Issue 6's "done when", as a new user would do it, through the command line only.

Configure a local, an S3 (SeaweedFS) and an SFTP (OpenSSH) target and alarm e-mail and webhook;
back up; corrupt the database by hand; the scan finds the damage and the alarm arrives by
e-mail and webhook; repair the record from the backup; restore the whole database into
PostgreSQL and prove that nothing changed: every stored version the same bytes, every MAC and
the audit chain verified there with the instance's keys.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.alarm_support import WebhookReceiver
from tests.conftest import _server_database, requested_engines
from tests.integration.targets.test_configured_targets import configured_targets
from tests.servers.fixtures import s3_bucket, seaweedfs, smtp_server, sshd
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.smtp import SmtpServer
from tests.servers.sshd import SshServer
from tests.support import cli

__all__ = ["s3_bucket", "seaweedfs", "smtp_server", "sshd"]

SECRETS = {"WALK_WEBHOOK_SECRET": "walkthrough-webhook-secret"}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    if "postgresql" not in requested_engines():
        pytest.skip("PostgreSQL is not among HEARTH_TEST_ENGINES")
    yield from _server_database("postgresql")


run = partial(cli, catch_exceptions=True)


def configure(
    home: Path,
    seaweedfs: SeaweedFS,
    bucket: str,
    sshd: SshServer,
    smtp: SmtpServer,
    receiver: WebhookReceiver,
) -> None:
    alarms = f"""
[[alarms.webhook]]
name = "oncall"
url = "{receiver.url}"
secret_env = "WALK_WEBHOOK_SECRET"

[alarms.email]
name = "mail"
host = "127.0.0.1"
port = {smtp.port}
security = "none"
from = "hearth@clinic.example"
to = "oncall@clinic.example"
"""
    with (home / "hearth.toml").open("a", encoding="utf-8") as f:
        f.write(configured_targets(home, seaweedfs, bucket, sshd) + alarms)


def versions(url: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT seq, res_type, res_id, version, deleted, ts_us, key_id, body, "
                    "mac_key_id, mac FROM resource_version ORDER BY seq"
                )
            ).all()
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
    finally:
        engine.dispose()


def test_back_up_to_three_targets_corrupt_alarm_repair_and_restore_into_postgresql(
    tmp_path: Path,
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    sshd: SshServer,
    smtp_server: SmtpServer,
    receiver: WebhookReceiver,
    postgres_database: str,
) -> None:
    home = tmp_path / "clinic"
    env = {**SECRETS, "TEST_S3_SECRET": seaweedfs.secret_key}
    assert run(home, "init", "--json", env=env)[0] == 0
    assert run(home, "demo", "load", "--patients", "4", env=env)[0] == 0
    configure(home, seaweedfs, s3_bucket, sshd, smtp_server, receiver)
    identity = tmp_path / "offline-media" / "backup-identity.txt"
    identity.parent.mkdir()
    code, out = run(home, "keys", "backup-recipient", "--identity-out", str(identity), env=env)
    assert code == 0, out

    # Back up to all three targets.
    code, out = run(home, "backup", "create", "--json", env=env)
    assert code == 0, out
    made = json.loads(out)
    assert sorted(made["targets"]) == ["cloud", "dr-site", "here"]
    backup_id = made["backup_id"]
    code, out = run(home, "backup", "verify", backup_id, "--identity", str(identity), env=env)
    assert code == 0, out
    # Three copies, two of them off-site in other US regions: the copy policy is met.
    code, out = run(home, "backup", "check-policy", env=env)
    assert code == 0, out
    database = home / "data" / "hearth.db"
    source_url = f"sqlite:///{database}"
    original = versions(source_url)

    # Corrupt one stored version by hand.
    seq = len(original) // 2
    with sqlite3.connect(database) as db:
        (body,) = db.execute("SELECT body FROM resource_version WHERE seq = ?", (seq,)).fetchone()
        flipped = body[:40] + bytes([body[40] ^ 0x01]) + body[41:]
        db.execute("UPDATE resource_version SET body = ? WHERE seq = ?", (flipped, seq))

    # The scan finds it, names the row, and the alarm goes out by e-mail and webhook.
    code, out = run(home, "integrity", "scan", "--full", env=env)
    assert code == 1, out
    assert f"version seq {seq} " in out, out
    [request] = receiver.wait_for(1)
    [mail] = smtp_server.wait_for(1)
    assert json.loads(request.body)["alarm"]["kind"] == "integrity.mismatch"
    assert mail.message["X-Hearth-Alarm"] == request.headers["X-Hearth-Alarm"]

    # Repair exactly that record from the backup (read from the S3 copy).
    code, out = run(
        home,
        "integrity",
        "repair",
        "--from-backup",
        backup_id,
        "--identity",
        str(identity),
        "--target",
        "cloud",
        env=env,
    )
    assert code == 0, out
    assert "restored 1 row" in out
    assert versions(source_url) == original  # the exact bytes are back
    code, out = run(home, "integrity", "scan", "--full", env=env)
    assert code == 0, out

    # Restore the whole database into PostgreSQL (from the SFTP copy), with proof.
    code, out = run(
        home,
        "backup",
        "restore",
        backup_id,
        "--into",
        postgres_database,
        "--identity",
        str(identity),
        "--target",
        "dr-site",
        "--json",
        env=env,
    )
    assert code == 0, out
    restored = json.loads(out)
    # The restore recomputed the Merkle root over every (seq, MAC) and found the manifest's.
    assert restored["versions"] == len(original)
    assert restored["sequence"] == made["sequence"]["to"]
    assert {k: v for k, v in restored["rows"].items() if v} == {
        k: v for k, v in made["rows"].items() if v
    }
    assert versions(postgres_database) == original  # resource by resource, byte for byte
    # ... and it verifies under the instance's keys: every version's MAC and the audit chain as
    # it stood at the backup. The recovery instance has the configuration and the keys, not the
    # old instance's audit anchor (which names entries written after the backup).
    recovery = tmp_path / "recovery"
    shutil.copytree(
        home, recovery, ignore=shutil.ignore_patterns("data", "backups", "audit-anchor.json")
    )
    pg_env = {**env, "HEARTH_DATABASE_URL": postgres_database}
    code, out = run(recovery, "integrity", "verify", env=pg_env)
    assert code == 0, out
    # On the old instance's home, the restored (older) chain is a rollback until an operator
    # accepts it, audited.
    code, out = run(home, "audit", "verify", env=pg_env)
    assert code == 1, out
    assert "rolled back" in out
    code, out = run(
        home, "audit", "anchor-reset", "--reason", "restored after disk loss", env=pg_env
    )
    assert code == 0, out
    assert run(home, "audit", "verify", env=pg_env)[0] == 0
