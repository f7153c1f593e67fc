"""``hearth backup check-policy|copy|prune|verify --scheduled`` end to end: an instance with a
local target and a real SeaweedFS bucket with Object Lock, configured in hearth.toml."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from tests.servers.seaweedfs import SeaweedFS
from tests.support import cli

run = partial(cli, catch_exceptions=True)


def configure(home: Path, seaweedfs: SeaweedFS, bucket: str, **backup: str) -> None:
    extra = "".join(f"{k} = {v}\n" for k, v in backup.items())
    config = home / "hearth.toml"
    config.write_text(
        config.read_text()
        + f"""
[backup]
primary_region = "us-east"
allowed_regions = ["us-*"]
object_lock_days = 1
{extra}
[[backup.targets]]
name = "here"
kind = "local"
path = "backups"

[[backup.targets]]
name = "cloud"
kind = "s3"
region = "us-west"
bucket = "{bucket}"
endpoint_url = "{seaweedfs.endpoint}"
prefix = "hearth"
access_key = "{seaweedfs.access_key}"
secret_key_env = "TEST_S3_SECRET"
timeout_seconds = 10
"""
    )


def test_policy_copy_prune_and_scheduled_verify(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("TEST_S3_SECRET", seaweedfs.secret_key)
    assert run(home, "init", "--json")[0] == 0
    identity = tmp_path / "identity.key"
    code, out = run(home, "keys", "backup-recipient", "--identity-out", str(identity))
    assert code == 0, out
    configure(home, seaweedfs, s3_bucket, keep_daily="1", keep_weekly="0", keep_monthly="0")
    code, out = run(home, "demo", "load", "--patients", "3")
    assert code == 0, out
    code, out = run(home, "backup", "create", "--target", "here", "--json")
    assert code == 0, out
    first = json.loads(out)["backup_id"]

    # Only one copy, none off-site: named, alarmed, exit 1.
    code, out = run(home, "backup", "check-policy")
    assert code == 1
    assert f"copies             backup:{first}: 1 complete copy (here)" in out
    assert "copy it to cloud" in out
    code, out = run(home, "alarm", "list", "--json")
    assert [a["kind"] for a in json.loads(out)] == ["policy.offsite_missing"]

    code, out = run(home, "backup", "copy", "--from", "here", "--to", "cloud", "--all")
    assert code == 0, out
    assert "Copied 1 backup(s)" in out
    assert "retained until" in out
    code, out = run(home, "backup", "copy", "--from", "here", "--to", "cloud", "--all")
    assert "Copied 0 backup(s)" in out
    assert "1 already there" in out
    code, out = run(home, "backup", "check-policy", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["backups"][first]["offsite"] == ["cloud"]
    code, out = run(home, "alarm", "list", "--json")
    assert json.loads(out) == []  # resolved by the check

    # A second full backup on both targets: the first is no longer kept. On the local target
    # it is deleted; on the bucket it is held by Object Lock.
    code, out = run(home, "backup", "create", "--full", "--json")
    assert code == 0, out
    second = json.loads(out)["backup_id"]
    code, out = run(home, "backup", "prune", "--dry-run")
    assert code == 0, out
    assert f"keep    {second}  (newest, daily, yearly, newest restorable)" in out
    assert f"would delete {first}  on here" in out
    assert f"held    {first}  on cloud (Object Lock until" in out
    code, out = run(home, "backup", "prune", "--json")
    assert code == 0, out
    result = json.loads(out)["result"]
    assert [(d["target"], d["backup_id"]) for d in result["deleted"]] == [("here", first)]
    assert result["refused"] == []
    code, out = run(home, "backup", "list", "--target", "here", "--json")
    assert [b["backup_id"] for b in json.loads(out)] == [second]

    # Scheduled verification reads a slice and records progress; everything verifies.
    code, out = run(home, "backup", "verify", "--scheduled", "--json")
    assert code == 0, out
    scheduled = json.loads(out)
    assert scheduled["ok"]
    assert scheduled["copies_in_pass"] == 3  # second on both targets, first held on cloud
    assert scheduled["checked"]
    code, out = run(home, "backup", "verify", "--scheduled", "--deep")
    assert code == 1
    assert "--scheduled takes no" in out
