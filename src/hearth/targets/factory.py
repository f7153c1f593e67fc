"""Backup targets built from ``[[backup.targets]]`` in hearth.toml.

The settings layer parses and validates the tables (``hearth.settings.BackupTargetSettings``);
this module turns one into a live target. Adapters reach it through ``hearth.wiring``
(``open_target``/``open_targets``), never directly, so that only ``hearth.targets`` touches
boto3 and paramiko.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_CONFIG
from hearth.settings import BackupSettings, BackupTargetSettings, Settings
from hearth.targets.base import BackupTarget
from hearth.targets.local import LocalDirectoryTarget
from hearth.targets.offline import OfflineMediaTarget
from hearth.targets.retry import RetryPolicy

if TYPE_CHECKING:
    from hearth.targets.sftp import SftpTarget

__all__ = ["build_target", "open_target", "open_targets"]

T = TypeVar("T")


def _config_error(target: BackupTargetSettings, message: str) -> HearthError:
    return HearthError(BACKUP_CONFIG, f"hearth.toml [backup.targets {target.name}]: {message}")


def _need(config: BackupTargetSettings, value: T | None, what: str) -> T:
    """A field settings validation requires; checked again for targets built in code."""
    if value is None or value == "":
        raise _config_error(config, f"{what} is required for a {config.kind} target")
    return value


def _sftp(config: BackupTargetSettings, retry: RetryPolicy | None) -> SftpTarget:
    # boto3 and paramiko are imported only for the targets that use them (start-up time).
    import paramiko

    from hearth.targets.sftp import SftpTarget, parse_host_key

    host = _need(config, config.host, "host")
    username = _need(config, config.username, "username")
    root = _need(config, config.root, "root")
    host_key = _need(config, config.host_key, "host_key")
    key_file = _need(config, config.private_key_file, "private_key_file")
    try:
        parse_host_key(host_key)
    except HearthError:
        raise _config_error(config, "host_key is not an OpenSSH public key line") from None
    passphrase = config.private_key_passphrase
    try:
        key = paramiko.PKey.from_path(key_file, None if passphrase is None else passphrase.reveal())
    except FileNotFoundError:
        raise _config_error(config, f"private_key_file {key_file} does not exist") from None
    except PermissionError:
        raise _config_error(config, f"private_key_file {key_file} is not readable") from None
    except (paramiko.SSHException, ValueError, TypeError, OSError) as exc:
        # The exception names only the kind of problem, never key material.
        raise _config_error(
            config,
            f"private_key_file {key_file} is not a usable private key "
            f"({type(exc).__name__}; an encrypted key needs private_key_passphrase_env or "
            "private_key_passphrase_file)",
        ) from None
    return SftpTarget(
        host=host,
        port=config.port,
        username=username,
        private_key=key,
        host_key=host_key,
        root=root,
        label=config.name,
        region=config.region,
        retry=retry,
        timeout=config.timeout_seconds or 30.0,
    )


def build_target(config: BackupTargetSettings, *, retry: RetryPolicy | None = None) -> BackupTarget:
    """A live target for one ``[[backup.targets]]`` table. Nothing is contacted yet: remote
    targets connect on first use, offline media are checked when read or written."""
    match config.kind:
        case "local":
            return LocalDirectoryTarget(
                _need(config, config.path, "path"),
                label=config.name,
                region=config.region,
                retry=retry,
            )
        case "offline":
            return OfflineMediaTarget(
                _need(config, config.path, "path"),
                media_id=_need(config, config.media_id, "media_id"),
                label=config.name,
                region=config.region,
                require_mount_point=config.require_mount_point,
                retry=retry,
            )
        case "s3":
            from hearth.targets.s3 import S3Target

            return S3Target(
                bucket=_need(config, config.bucket, "bucket"),
                access_key=_need(config, config.access_key, "access_key").reveal(),
                secret_key=_need(config, config.secret_key, "secret_key"),
                endpoint_url=config.endpoint_url,
                prefix=config.prefix,
                region_name=config.region_name,
                label=config.name,
                region=config.region,
                retry=retry,
                timeout=config.timeout_seconds or 60.0,
            )
        case "sftp":
            return _sftp(config, retry)
        case _:
            raise _config_error(config, f"unknown kind {config.kind!r}")


def _section(settings: Settings | BackupSettings) -> BackupSettings:
    return settings.backup if isinstance(settings, Settings) else settings


def open_target(
    settings: Settings | BackupSettings, name: str, *, retry: RetryPolicy | None = None
) -> BackupTarget:
    """The configured target called ``name`` (``BACKUP_CONFIG`` names the known ones if none
    is)."""
    return build_target(_section(settings).target(name), retry=retry)


def open_targets(
    settings: Settings | BackupSettings, *, retry: RetryPolicy | None = None
) -> list[BackupTarget]:
    """Every configured target, in the order of hearth.toml."""
    section = _section(settings)
    if not section.targets:
        raise HearthError(
            BACKUP_CONFIG,
            "No backup targets are configured: add [[backup.targets]] to hearth.toml "
            "(docs/operations.md, 'Backup targets').",
        )
    return [build_target(t, retry=retry) for t in section.targets]
