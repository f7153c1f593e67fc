"""Targets configured in hearth.toml, reached through ``hearth backup targets --check``: a local
directory, a real SeaweedFS S3 server and a real OpenSSH sftp server; configuration mistakes
are a plain message and exit 1."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import SshServer
from tests.support import cli

BASE = 'instance_id = "i1"\n[keys]\nsource = "file"\n'


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "hearth.toml").write_text(BASE + text, "utf-8")


def configured_targets(home: Path, seaweedfs: SeaweedFS, bucket: str, sshd: SshServer) -> str:
    return f"""
[backup]
primary_region = "us-east"
allowed_regions = ["us-*"]

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

[[backup.targets]]
name = "dr-site"
kind = "sftp"
region = "us-central"
host = "127.0.0.1"
port = {sshd.port}
username = "{sshd.username}"
root = "{sshd.sftp_root / home.name}"
host_key = "{sshd.host_key_line}"
private_key_file = "{sshd.client_key_path}"
timeout_seconds = 10
"""


run = partial(cli, catch_exceptions=True)


def test_every_kind_is_reached_from_hearth_toml(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, sshd: SshServer
) -> None:
    home = tmp_path / "home"
    write_config(home, configured_targets(home, seaweedfs, s3_bucket, sshd))
    env = {"TEST_S3_SECRET": seaweedfs.secret_key}
    code, out = run(home, "backup", "targets", "--check", "--json", env=env)
    assert code == 0, out
    report = json.loads(out)
    assert report["ok"]
    rows = {row["name"]: row for row in report["targets"]}
    assert set(rows) == {"here", "cloud", "dr-site"}
    assert all(row["reachable"] and row["backups"] == 0 for row in rows.values())
    assert not rows["here"]["offsite"]
    assert rows["cloud"]["offsite"]
    assert rows["dr-site"]["region"] == "us-central"
    code, out = run(home, "backup", "targets", env=env)
    assert code == 0, out
    assert "cloud" in out
    assert "off-site" in out


def test_a_wrong_secret_or_host_key_is_reported_per_target(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, sshd: SshServer
) -> None:
    home = tmp_path / "home"
    text = configured_targets(home, seaweedfs, s3_bucket, sshd)
    other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    write_config(home, text.replace(sshd.host_key_line, other_key))
    code, out = run(
        home, "backup", "targets", "--check", "--json", env={"TEST_S3_SECRET": "wrong-secret"}
    )
    assert code == 1
    rows = {row["name"]: row for row in json.loads(out)["targets"]}
    assert rows["here"]["reachable"]
    assert not rows["cloud"]["reachable"]
    assert not rows["dr-site"]["reachable"]
    assert "HRT-0815" in rows["dr-site"]["error"]  # the host key is not the configured one
    assert "wrong-secret" not in out


def test_configuration_mistakes_are_a_plain_message(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_config(
        home,
        '[[backup.targets]]\nname = "cloud"\nkind = "s3"\nregion = "eu-west"\nbucket = "b"\n'
        'access_key = "a"\nsecret_key = "written-in-the-file"\n',
    )
    code, out = run(home, "backup", "targets")
    assert code == 1
    assert "do not write secret_key in hearth.toml" in out
    assert "HRT-0830" in out
    assert "Traceback" not in out
    assert "written-in-the-file" not in out
    # A target outside the allowed regions is listed and fails the command.
    write_config(
        home,
        '[backup]\nallowed_regions = ["us-*", "local"]\n'
        '[[backup.targets]]\nname = "here"\nkind = "local"\npath = "b"\n'
        '[[backup.targets]]\nname = "abroad"\nkind = "local"\npath = "c"\nregion = "eu-west"\n',
    )
    code, out = run(home, "backup", "targets")
    assert code == 1
    assert "REGION NOT ALLOWED" in out
    # Without targets, backups go to HOME/backups, named local: listed as such.
    write_config(home, "")
    code, out = run(home, "backup", "targets", "--check")
    assert code == 0
    assert f"backups go to {home / 'backups'}" in out
    assert out.splitlines()[-1].split()[:4] == ["local", "local", "local", "primary"]
