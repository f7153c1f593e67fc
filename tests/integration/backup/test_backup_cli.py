"""``hearth backup`` and ``hearth keys backup-recipient`` as an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hearth.cli import main
from tests.support import cli

run = cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    code, out = run(home, "init", "--json")
    assert code == 0, out
    return home


def test_backup_commands_end_to_end(home: Path, tmp_path: Path) -> None:
    identity = tmp_path / "offline" / "id.key"
    code, out = run(home, "backup", "create")
    assert code == 1
    assert "hearth keys backup-recipient" in out
    code, out = run(home, "keys", "backup-recipient", "--identity-out", str(identity))
    assert code == 0, out
    assert oct(identity.stat().st_mode & 0o777) == "0o600"
    assert identity.read_text().count("AGE-SECRET-KEY-1") == 1
    assert "AGE-SECRET-KEY" not in (home / "backup-recipients.txt").read_text()
    code, out = run(home, "keys", "backup-recipient", "--identity-out", str(identity))
    assert code == 1
    assert "exists" in out
    code, out = run(home, "backup", "create", "--json")
    assert code == 0, out
    first = json.loads(out)
    assert first["kind"] == "full"
    code, out = run(home, "backup", "create", "--json")
    second = json.loads(out)
    assert second["kind"] == "incremental"
    code, out = run(home, "backup", "list", "--json")
    assert [b["backup_id"] for b in json.loads(out)] == [first["backup_id"], second["backup_id"]]
    code, out = run(home, "backup", "verify", "--json", "--identity", str(identity))
    assert code == 0, out
    assert json.loads(out)["ok"] is True
    code, out = run(home, "backup", "verify", "--deep", "--identity", str(identity))
    assert code == 0, out
    assert "all verified" in out
    restored = tmp_path / "restored.db"
    args = ["backup", "restore", second["backup_id"], "--into", f"sqlite:///{restored}"]
    code, out = run(home, *args)
    assert code == 1
    assert "--identity" in out
    code, out = run(home, *args, "--identity", str(identity), "--json")
    assert code == 0, out
    assert json.loads(out)["sequence"] == second["sequence"]["to"]
    code, out = run(home, *args, "--identity", str(identity))
    assert code == 1
    assert "not empty" in out
    code, out = run(home, *args, "--identity", str(identity), "--at", "yesterday")
    assert code == 1
    assert "--at is a version sequence number or a time" in out
    code, out = run(home, "backup", "restore", "nonsense", "--into", "sqlite:///x.db",
                    "--identity", str(identity))  # fmt: skip
    assert code == 1
    assert "Not a backup id" in out
    code, out = run(home, "backup", "drill", "--identity", str(identity), "--json")
    assert code == 0, out
    assert json.loads(out)["rto_seconds"] > 0
    code, out = run(home, "backup", "create", "--target", "nowhere")
    assert code == 1
    assert "No backup target named 'nowhere'" in out
    code, out = run(home, "audit", "verify", "--json")
    assert code == 0, out


def test_restore_works_when_the_instance_database_is_gone(home: Path, tmp_path: Path) -> None:
    """Disaster recovery: hearth.toml, the key files and the identity are enough."""
    identity = tmp_path / "id.key"
    assert run(home, "keys", "backup-recipient", "--identity-out", str(identity))[0] == 0
    code, out = run(home, "backup", "create", "--json")
    assert code == 0, out
    made = json.loads(out)
    (home / "data").rename(tmp_path / "lost-data")
    restored = tmp_path / "recovered.db"
    code, out = run(
        home, "backup", "restore", made["backup_id"], "--into", f"sqlite:///{restored}",
        "--identity", str(identity),
    )  # fmt: skip
    assert code == 0, out
    assert "not reachable" in out
    assert "Restored" in out
    # The backup commands that need the instance's database say so plainly.
    code, out = run(home, "backup", "create")
    assert code == 1
    assert "error:" in out


def test_a_relative_sqlite_restore_lands_in_the_home_as_a_private_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--into sqlite:///restored.db`` follows hearth.toml's rule (relative paths are inside
    the home, not the working directory), and the new database is the instance's own: its folder
    0700, its file 0600."""
    identity = tmp_path / "id.key"
    assert run(home, "keys", "backup-recipient", "--identity-out", str(identity))[0] == 0
    code, out = run(home, "backup", "create", "--json")
    assert code == 0, out
    made = json.loads(out)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out = run(
        home, "backup", "restore", made["backup_id"], "--into", "sqlite:///restored/db.sqlite",
        "--identity", str(identity),
    )  # fmt: skip
    assert code == 0, out
    restored = home / "restored" / "db.sqlite"
    assert restored.exists()
    assert not (elsewhere / "restored").exists()
    assert oct(restored.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(restored.stat().st_mode & 0o777) == "0o600"


def test_backup_recipient_output_streams(home: Path, tmp_path: Path) -> None:
    """With ``--print`` standard output is the identity file alone (to pipe it somewhere
    safe); with ``--identity-out`` the recipients and the signing key line are the output."""
    printed = CliRunner().invoke(
        main, ["--home", str(home), "keys", "backup-recipient", "--print"], catch_exceptions=False
    )
    assert printed.exit_code == 0
    lines = [line for line in printed.stdout.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    assert lines[0].startswith("AGE-SECRET-KEY-1")
    assert "Manifest signing key" in printed.stderr
    written = CliRunner().invoke(
        main,
        ["--home", str(home), "keys", "backup-recipient", "--add",
         "--identity-out", str(tmp_path / "second.key")],
        catch_exceptions=False,
    )  # fmt: skip
    assert written.exit_code == 0, written.output
    assert "Manifest signing key" in written.stdout
    assert "Recipients (2)" in written.stdout


def test_create_and_list_report_the_same_stored_bytes(home: Path, tmp_path: Path) -> None:
    """Both count what the backup put on the target: its segments and its manifest object."""
    code, out = run(home, "keys", "backup-recipient", "--identity-out", str(tmp_path / "id"))
    assert code == 0, out
    made = []
    for _ in range(2):
        code, out = run(home, "backup", "create", "--json")
        assert code == 0, out
        made.append(json.loads(out))
    code, out = run(home, "backup", "list", "--json")
    assert code == 0, out
    listed = {b["backup_id"]: b["stored_bytes"] for b in json.loads(out)}
    target = home / "backups"
    for backup in made:
        manifest = target / "manifests" / f"{backup['backup_id']}.json"
        segments = json.loads(manifest.read_bytes())["manifest"]["segments"]
        on_disk = manifest.stat().st_size + sum(
            (target / s["name"]).stat().st_size for s in segments
        )
        assert backup["stored_bytes"] == listed[backup["backup_id"]] == on_disk
