"""``[backup]`` and ``[[backup.targets]]`` in hearth.toml: what is accepted and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.domain import HearthError, errors
from hearth.settings import BackupSettings, Settings, load_settings
from hearth.targets import LocalDirectoryTarget, OfflineMediaTarget, S3Target, build_target

BASE = 'instance_id = "i1"\n[keys]\nsource = "file"\n'

FULL = """
[backup]
primary_region = "us-east"
min_copies = 3
require_offsite = true
allowed_regions = ["us-*"]
recipients_file = "keys/backup-recipients.txt"
verify_period_days = 14
keep_daily = 10
keep_weekly = 5
keep_monthly = 6
keep_yearly = 7
object_lock_days = 30

[[backup.targets]]
name = "here"
kind = "local"
path = "backups"
object_lock_days = 0

[[backup.targets]]
name = "vault"
kind = "offline"
path = "/media/backup-disk"
media_id = "disk-1"
require_mount_point = true

[[backup.targets]]
name = "cloud"
kind = "s3"
region = "us-west"
bucket = "hearth-backups"
endpoint_url = "https://s3.us-west-2.amazonaws.com"
prefix = "prod"
region_name = "us-west-2"
access_key = "AKIAEXAMPLE"
secret_key_env = "S3_SECRET"

[[backup.targets]]
name = "dr-site"
kind = "sftp"
region = "us-central"
host = "backup.example.org"
port = 2222
username = "hearth"
root = "/srv/hearth"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
private_key_file = "keys/sftp_ed25519"
private_key_passphrase_file = "keys/sftp.pass"
timeout_seconds = 12.5
"""


def settings_with(tmp_path: Path, extra: str, env: dict[str, str] | None = None) -> Settings:
    (tmp_path / "hearth.toml").write_text(BASE + extra, "utf-8")
    return load_settings(tmp_path, env or {})


def test_defaults(tmp_path: Path) -> None:
    backup = settings_with(tmp_path, "").backup
    assert backup == BackupSettings()
    assert (backup.min_copies, backup.require_offsite, backup.primary_region) == (2, True, "local")
    assert (backup.keep_daily, backup.keep_weekly, backup.keep_monthly) == (7, 4, 12)
    assert backup.keep_yearly == 6
    assert backup.targets == ()
    assert backup.region_allowed("anywhere")


def test_every_setting_parses(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sftp.pass").write_text("key passphrase\n")
    backup = settings_with(tmp_path, FULL, {"S3_SECRET": "s3-secret-value"}).backup
    assert backup.min_copies == 3
    assert backup.allowed_regions == ("us-*",)
    assert backup.recipients_file == tmp_path / "keys" / "backup-recipients.txt"
    assert backup.verify_period_days == 14
    assert (backup.keep_daily, backup.keep_weekly, backup.keep_monthly) == (10, 5, 6)
    assert backup.keep_yearly == 7
    here, vault, cloud, dr = backup.targets
    assert (here.kind, here.region, here.path) == ("local", "us-east", tmp_path / "backups")
    assert backup.lock_days(here) == 0
    assert (vault.media_id, vault.require_mount_point, vault.region) == ("disk-1", True, "us-east")
    assert cloud.region == "us-west"
    assert cloud.secret_key is not None
    assert cloud.secret_key.reveal() == "s3-secret-value"
    assert cloud.access_key is not None
    assert cloud.access_key.reveal() == "AKIAEXAMPLE"
    assert backup.lock_days(cloud) == 30
    assert (dr.host, dr.port, dr.username, dr.root) == (
        "backup.example.org",
        2222,
        "hearth",
        "/srv/hearth",
    )
    assert dr.private_key_file == tmp_path / "keys" / "sftp_ed25519"
    assert dr.private_key_passphrase is not None
    assert dr.private_key_passphrase.reveal() == "key passphrase"
    assert dr.timeout_seconds == 12.5
    assert backup.target("cloud") is cloud
    # Secrets never print.
    text = repr(backup)
    assert "s3-secret-value" not in text
    assert "key passphrase" not in text
    assert "AKIAEXAMPLE" not in text
    assert backup.region_allowed("us-west")
    assert not backup.region_allowed("eu-central")


def test_targets_are_built_from_settings(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sftp.pass").write_text("key passphrase\n")
    backup = settings_with(tmp_path, FULL, {"S3_SECRET": "s3-secret-value"}).backup
    here = build_target(backup.target("here"))
    assert isinstance(here, LocalDirectoryTarget)
    assert (here.label, here.region, here.root) == ("here", "us-east", tmp_path / "backups")
    vault = build_target(backup.target("vault"))
    assert isinstance(vault, OfflineMediaTarget)
    assert vault.media_id == "disk-1"
    cloud = build_target(backup.target("cloud"))
    assert isinstance(cloud, S3Target)
    assert (cloud.bucket, cloud.prefix, cloud.region) == ("hearth-backups", "prod/", "us-west")
    # The SFTP key file does not exist: a configuration error naming the file, no traceback.
    with pytest.raises(HearthError) as refused:
        build_target(backup.target("dr-site"))
    assert refused.value.code is errors.BACKUP_CONFIG
    assert "sftp_ed25519 does not exist" in refused.value.detail
    (tmp_path / "keys" / "sftp_ed25519").write_text("not a key")
    with pytest.raises(HearthError, match="not a usable private key"):
        build_target(backup.target("dr-site"))


def test_an_unknown_target_name_lists_the_known_ones(tmp_path: Path) -> None:
    backup = settings_with(
        tmp_path, '[[backup.targets]]\nname = "here"\nkind = "local"\npath = "b"\n'
    ).backup
    with pytest.raises(HearthError) as refused:
        backup.target("there")
    assert refused.value.code is errors.BACKUP_CONFIG
    assert "'there'" in refused.value.detail
    assert "targets: here" in refused.value.detail


S3 = '[[backup.targets]]\nname = "c"\nkind = "s3"\nregion = "us-west"\nbucket = "b"\n'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[backup]\nmin_copies = 0\n", "min_copies must be a whole number of at least 1"),
        ("[backup]\nmin_copy = 2\n", "unknown setting(s): min_copy"),
        ("[backup]\nverify_period_days = 0\n", "verify_period_days must be a positive"),
        ("[backup]\nmonitor_minutes = -1\n", "monitor_minutes must be 0 (off)"),
        ("[backup]\nkeep_daily = -1\n", "keep_daily must be a whole number"),
        (
            "[backup]\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\nkeep_yearly = 0\n",
            "retention would keep nothing",
        ),
        ("[backup]\nallowed_regions = [1]\n", "allowed_regions is a list of patterns"),
        (
            '[backup]\nprimary_region = "eu-west"\nallowed_regions = ["us-*"]\n',
            "primary_region eu-west is not in allowed_regions",
        ),
        ('[[backup.targets]]\nkind = "local"\npath = "b"\n', "name is required"),
        ('[[backup.targets]]\nname = "../x"\nkind = "local"\n', "name is required"),
        ('[[backup.targets]]\nname = "a"\nkind = "tape"\n', "kind is one of local"),
        ('[[backup.targets]]\nname = "a"\nkind = "local"\n', "path is required"),
        (
            '[[backup.targets]]\nname = "a"\nkind = "local"\npath = "b"\nbucket = "x"\n',
            "unknown setting(s) for a local target: bucket",
        ),
        (
            '[[backup.targets]]\nname = "a"\nkind = "local"\npath = "b"\n'
            '[[backup.targets]]\nname = "a"\nkind = "local"\npath = "c"\n',
            "target names repeat: a",
        ),
        ('[[backup.targets]]\nname = "a"\nkind = "offline"\npath = "b"\n', "media_id is required"),
        (
            '[[backup.targets]]\nname = "c"\nkind = "s3"\nbucket = "b"\n',
            "region is required for s3 and sftp",
        ),
        (S3 + 'access_key = "a"\nsecret_key = "plain"\n', "do not write secret_key in"),
        (S3 + 'access_key = "a"\n', "secret_key_env or secret_key_file"),
        (S3 + 'access_key = "a"\nsecret_key_env = "NOPE"\n', "NOPE is not set"),
        (
            S3 + 'access_key = "a"\nsecret_key_env = "S"\nendpoint_url = "http://s3.example"\n',
            "must use https outside loopback",
        ),
        (
            S3 + 'access_key = "a"\nsecret_key_env = "S"\nobject_lock_days = -3\n',
            "object_lock_days must be a whole number",
        ),
        (
            '[[backup.targets]]\nname = "s"\nkind = "sftp"\nregion = "r"\nhost = "h"\n'
            'username = "u"\nroot = "/r"\nhost_key = "AAAA"\nprivate_key_file = "k"\n',
            "host_key is the server's public key line",
        ),
        (
            '[[backup.targets]]\nname = "s"\nkind = "sftp"\nregion = "r"\nhost = "h"\n'
            'username = "u"\nroot = "/r"\nhost_key = "ssh-ed25519 AAAA"\n'
            'private_key_file = "k"\nport = 0\n',
            "port must be 1 to 65535",
        ),
        (
            '[[backup.targets]]\nname = "s"\nkind = "sftp"\nregion = "r"\nhost = "h"\n'
            'username = "u"\nroot = "/r"\nhost_key = "ssh-ed25519 AAAA"\n'
            'private_key_file = "k"\npassword = "hunter2"\n',
            "unknown setting(s) for a sftp target: password",
        ),
    ],
)
def test_mistakes_are_refused_with_a_clear_message(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(HearthError) as refused:
        settings_with(tmp_path, extra, {"S": "x"})
    assert refused.value.code is errors.BACKUP_CONFIG
    assert message in refused.value.detail
    assert "hunter2" not in refused.value.detail
