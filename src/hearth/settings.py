"""Typed settings for one Hearth instance, read from ``HOME/hearth.toml`` and the environment.

An instance's home holds ``hearth.toml``, ``data/`` (the SQLite database, unless another engine
is configured) and, by default, ``keys/`` (the key-encryption key). Keys live apart from data so
that copying ``data/`` never copies the keys; in production point ``keys.file`` outside the
home, or use a passphrase from the environment, or an external KMS.

Environment overrides: ``HEARTH_DATABASE_URL``, ``HEARTH_KEY_PASSPHRASE``, ``HEARTH_REDIS_URL``.
Secrets are ``Secret`` values: ``repr(settings)`` never shows them.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hearth.domain import HearthError, Secret, Severity, errors

__all__ = [
    "CONFIG_FILE",
    "AccessSettings",
    "AlarmSettings",
    "AuthSettings",
    "BackupSettings",
    "BackupTargetSettings",
    "EmailSinkSettings",
    "IntegritySettings",
    "KeySource",
    "Limits",
    "OAuthSettings",
    "LogSinkSettings",
    "SearchSettings",
    "SessionSettings",
    "Settings",
    "SyslogSinkSettings",
    "WebhookSinkSettings",
    "load_settings",
    "render_config",
    "set_key_file",
    "strip_password",
    "write_config",
]

CONFIG_FILE = "hearth.toml"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one request may cost (ASVS 2.4.1, 5.2.1)."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64
    max_json_array: int = 10_000
    default_page_size: int = 50
    max_page_size: int = 1000
    #: resources a search may open to finish what its index cannot decide (sealed ranges,
    #: :contains, _sort on a sealed field); past it the search is refused (docs/design.md)
    search_open_bound: int = 1000
    #: resources _include, _revinclude and $everything may add to one page
    search_include_bound: int = 1000


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """``[search]``: how the search index is maintained."""

    #: Worker processes that find a large write batch's index entries beside it
    #: (hearth.storage.index_workers); None: one where the process may use two cores or more,
    #: none on one core; 0: every entry is found in the writing process.
    index_workers: int | None = None


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """Lifetimes of OAuth artefacts, in seconds (SMART-TK-02, BS-08; ASVS 10.4.3, 10.4.8).

    The bounds are enforced when settings load (``_OAUTH_BOUNDS``): a user-facing access token
    lives at most an hour, a backend service's at most five minutes, an authorization code at
    most ten; an ``offline_access`` refresh family at most a year, an ``online_access`` one at
    most a day; the signing key rotates every 1 to 90 days.
    """

    access_token_seconds: int = 3600
    backend_token_seconds: int = 300
    code_seconds: int = 300
    launch_seconds: int = 300
    offline_seconds: int = 90 * 86_400  # absolute end of an offline_access refresh family
    online_seconds: int = 12 * 3600  # online_access: the length of a signed-in session
    signing_key_seconds: int = 30 * 86_400  # rotate the token signing key this often


_DAY = 86_400

#: (least, most, why) for every ``[oauth]`` lifetime. A looser value fails at start-up, like the
#: ``[sessions]`` ceilings: each bound is a promise in docs/design.md.
_OAUTH_BOUNDS = {
    "access_token_seconds": (1, 3600, "SMART-TK-02: at most an hour"),
    "backend_token_seconds": (1, 300, "SMART-BS-08: at most five minutes"),
    "code_seconds": (1, 600, "RFC 6749 sec. 4.1.2: at most ten minutes"),
    "launch_seconds": (1, 3600, "an EHR launch is used at once"),
    "offline_seconds": (3600, 365 * _DAY, "a refresh family ends within a year"),
    "online_seconds": (300, _DAY, "no longer than a signed-in session may last, NIST AAL2"),
    "signing_key_seconds": (_DAY, 90 * _DAY, "rotate the token signing key every 1 to 90 days"),
}


def _oauth_settings(raw: dict[str, Any]) -> OAuthSettings:
    values = {k: int(v) for k, v in raw.items() if k in OAuthSettings.__dataclass_fields__}
    for name, (least, most, why) in _OAUTH_BOUNDS.items():
        if name in values and not least <= values[name] <= most:
            raise HearthError(
                errors.BAD_PARAMETER, f"oauth.{name} must be {least} to {most} ({why})."
            )
    return OAuthSettings(**values)


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where the key-encryption key comes from: ``file``, ``passphrase`` or ``kms:NAME``."""

    kind: str = "file"
    file: Path | None = None
    passphrase: Secret | None = None
    salt_hex: str | None = None
    kms: str | None = None  # entry point name in the ``hearth.kek`` group


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Console session timeouts (HIPAA 164.312(a)(2)(iii); NIST SP 800-63B-4 sec. 2.3.3, 5.2).

    ``[sessions]`` in hearth.toml. The defaults are NIST's AAL3 values (X-01): after
    ``idle_minutes`` without a request the session locks (PIN or security key unlocks it); after
    ``absolute_hours`` from sign-in it ends whatever happens. ``step_up_minutes`` is how recent a
    second factor must be before a sensitive action; ``sign_in_minutes`` is how long a started
    sign-in (password entered, code not yet) stays open. Settings may be stricter than NIST's
    AAL2 ceilings (1 h idle, 24 h overall), never looser: a looser value fails at start-up.
    """

    idle_minutes: int = 15
    absolute_hours: int = 12
    step_up_minutes: int = 5
    sign_in_minutes: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.idle_minutes <= 60:
            raise ValueError("sessions.idle_minutes must be 1 to 60 (NIST SP 800-63B-4 AAL2)")
        if not 1 <= self.absolute_hours <= 24:
            raise ValueError("sessions.absolute_hours must be 1 to 24 (NIST SP 800-63B-4 AAL2)")
        if not 1 <= self.step_up_minutes <= 60:
            raise ValueError("sessions.step_up_minutes must be 1 to 60")
        if not 1 <= self.sign_in_minutes <= 30:
            raise ValueError("sessions.sign_in_minutes must be 1 to 30")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Sign-in settings (``[auth]`` in hearth.toml).

    ``rp_id`` and ``origins`` are the WebAuthn relying party id and the origins allowed in
    ceremonies; unset, they follow ``server.public_base_url`` or, on loopback development, the
    request's own host. ``pepper_file`` holds the password pepper (NIST-PW-14), kept beside the
    key-encryption key and never in the database.
    """

    rp_id: str | None = None
    rp_name: str = "Hearth"
    origins: tuple[str, ...] = ()
    pepper_file: Path | None = None


@dataclass(frozen=True, slots=True)
class LogSinkSettings:
    """``[alarms.log]``: every notice as one JSON line on the ``hearth.alarm`` logger and, when
    ``path`` is set, appended to that file."""

    enabled: bool = True
    path: Path | None = None
    min_severity: Severity = Severity.INFO


@dataclass(frozen=True, slots=True)
class WebhookSinkSettings:
    """``[[alarms.webhook]]``: a JSON POST signed with HMAC-SHA-256 (docs/design.md)."""

    name: str
    url: str
    secret: Secret
    timeout_seconds: float = 5.0
    min_severity: Severity = Severity.WARNING
    cafile: Path | None = None


@dataclass(frozen=True, slots=True)
class EmailSinkSettings:
    """``[[alarms.email]]``: a plain-text message over SMTP (RFC 5321), STARTTLS by default."""

    name: str
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    security: str = "starttls"  # starttls | tls | none (none only to a loopback relay)
    username: str | None = None
    password: Secret | None = None
    timeout_seconds: float = 10.0
    min_severity: Severity = Severity.WARNING
    cafile: Path | None = None


@dataclass(frozen=True, slots=True)
class SyslogSinkSettings:
    """``[[alarms.syslog]]``: RFC 5424 messages over UDP, TCP (RFC 6587 octet counting) or the
    local socket."""

    name: str
    transport: str = "udp"  # udp | tcp | unix
    host: str = "127.0.0.1"
    port: int = 514
    socket: Path = Path("/dev/log")
    facility: int = 16  # local0 (RFC 5424 sec. 6.2.1)
    app_name: str = "hearth"
    min_severity: Severity = Severity.WARNING
    timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class AlarmSettings:
    """``[alarms]``: de-duplication, re-notification, delivery retries and the sinks.

    A repeat of an open alarm is counted, not re-sent, until ``renotify_minutes`` have passed
    since the last notice (0: never re-send). A failed delivery is retried after
    ``retry_base_seconds``, doubling up to ``retry_max_seconds``, at most ``max_attempts`` times.
    ``backup_rpo_hours``: raise ``backup.stale`` when no backup succeeded for this long.
    """

    renotify_minutes: int = 60
    max_attempts: int = 8
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 900.0
    backup_rpo_hours: float = 24.0
    log: LogSinkSettings = field(default_factory=LogSinkSettings)
    webhooks: tuple[WebhookSinkSettings, ...] = ()
    emails: tuple[EmailSinkSettings, ...] = ()
    syslogs: tuple[SyslogSinkSettings, ...] = ()


@dataclass(frozen=True, slots=True)
class IntegritySettings:
    """``[integrity]``: the background scanner inside ``hearth serve`` (docs/design.md).

    Every ``scan_interval_seconds`` it checks versions written since its last run and advances a
    rolling full pass so that everything stored is re-checked within ``full_pass_days``;
    ``max_versions_per_tick`` bounds one run's work when it has fallen behind. ``busy_share`` is
    the most of a run's time it spends checking: after each batch it waits, so that a run
    catching up with a large load leaves the rest of the server's time to its requests (1: it
    never waits).
    """

    scan: bool = True
    scan_interval_seconds: float = 60.0
    full_pass_days: float = 7.0
    max_versions_per_tick: int = 500_000
    busy_share: float = 0.25

    def __post_init__(self) -> None:
        if self.scan_interval_seconds < 1:
            raise ValueError("integrity.scan_interval_seconds must be at least 1")
        if self.full_pass_days <= 0:
            raise ValueError("integrity.full_pass_days must be positive")
        if self.max_versions_per_tick < 1:
            raise ValueError("integrity.max_versions_per_tick must be at least 1")
        if not 0.01 <= self.busy_share <= 1:
            raise ValueError("integrity.busy_share must be between 0.01 and 1")


@dataclass(frozen=True, slots=True)
class AccessSettings:
    """``[access]``: break-the-glass and snooping detection (docs/design.md, "Access control").

    ``break_glass_minutes``: how long an emergency grant lasts (at most 240). Snooping: a user who
    opens the records of more than ``snooping_hour`` distinct patients in an hour, or
    ``snooping_day`` in a day, raises ``access.snooping``; with ``snooping_throttle`` their
    access is also paused for the rest of that window (a privacy officer can lift it).
    ``same_surname`` flags a user opening a record with their own family name (or their own).
    """

    break_glass_minutes: int = 60
    snooping_hour: int = 100
    snooping_day: int = 300
    snooping_throttle: bool = False
    same_surname: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.break_glass_minutes <= 240:
            raise ValueError("access.break_glass_minutes must be 1 to 240")
        if self.snooping_hour < 1 or self.snooping_day < 1:
            raise ValueError("access.snooping_hour and snooping_day must be at least 1")


TARGET_KINDS = ("local", "offline", "s3", "sftp")


@dataclass(frozen=True, slots=True)
class BackupTargetSettings:
    """One ``[[backup.targets]]`` table: where backup objects go (docs/operations.md, "Backup
    targets"). Which fields apply depends on ``kind``; secrets are ``Secret`` values read from
    the environment or a file, never from hearth.toml itself.

    ``region`` is the policy's label for where the copy physically is (``us-east``,
    ``eu-central``, ``site-a``); it is compared with ``backup.primary_region`` and matched
    against ``backup.allowed_regions``. ``object_lock_days`` overrides the section's value for
    this target (0: no retention).
    """

    name: str
    kind: str  # local | offline | s3 | sftp
    region: str
    # local and offline: the directory (offline: the mount point of the medium)
    path: Path | None = None
    media_id: str | None = None
    require_mount_point: bool = False
    # s3
    bucket: str | None = None
    endpoint_url: str | None = None
    prefix: str = ""
    region_name: str = "us-east-1"
    access_key: Secret | None = None
    secret_key: Secret | None = None
    # sftp
    host: str | None = None
    port: int = 22
    username: str | None = None
    root: str | None = None
    host_key: str | None = None
    private_key_file: Path | None = None
    private_key_passphrase: Secret | None = None
    # every kind
    object_lock_days: int | None = None
    timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """``[backup]``: targets, the copy policy, retention and scheduled verification.

    The policy (``hearth backup check-policy``): every backup has at least ``min_copies``
    copies on distinct targets; with ``require_offsite`` at least one of them is on a target
    whose ``region`` differs from ``primary_region``; every target's region matches one of
    ``allowed_regions`` (shell-style patterns such as ``us-*``; empty: any region), which is
    how a US-only residency rule is written. Retention keeps the newest backup of each of the
    last ``keep_daily`` days, ``keep_weekly`` ISO weeks, ``keep_monthly`` months and
    ``keep_yearly`` years (grandfather-father-son). New objects on targets that support it
    are immutable for ``object_lock_days`` (S3 Object Lock, compliance mode). Scheduled
    verification re-reads every backup at least once in ``verify_period_days``.
    """

    primary_region: str = "local"
    min_copies: int = 2
    require_offsite: bool = True
    allowed_regions: tuple[str, ...] = ()
    recipients_file: Path | None = None
    verify_period_days: float = 7.0
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12
    keep_yearly: int = 6
    object_lock_days: int = 0
    #: ``hearth serve`` checks the policy and the RPO and verifies a slice this often (0: off).
    monitor_minutes: float = 60.0
    targets: tuple[BackupTargetSettings, ...] = ()

    def target(self, name: str) -> BackupTargetSettings:
        """The target called ``name``; an unknown name is a configuration error that lists the
        configured ones."""
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets) or "none configured"
        raise HearthError(
            errors.BACKUP_CONFIG,
            f"No backup target named {name!r} in {CONFIG_FILE} (targets: {known}).",
        )

    def region_allowed(self, region: str) -> bool:
        return not self.allowed_regions or any(
            fnmatch.fnmatchcase(region, pattern) for pattern in self.allowed_regions
        )

    def lock_days(self, target: BackupTargetSettings) -> int:
        """Days of retention new objects on ``target`` get (0: none)."""
        if target.object_lock_days is not None:
            return target.object_lock_days
        return self.object_lock_days


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    instance_id: str
    database_url: Secret
    keys: KeySource
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str | None = None
    #: ``[server] allowed_hosts``: host names clients use to reach the server (Host header);
    #: loopback names, the bound address and the host of ``public_base_url`` are added to them.
    allowed_hosts: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Client CAs for mutual TLS (``--tls-client-ca``), and their CRLs (``--tls-client-crl``).
    tls_client_ca: Path | None = None
    tls_client_crl: Path | None = None
    limits: Limits = field(default_factory=Limits)
    search: SearchSettings = field(default_factory=SearchSettings)
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: ``[redis] url``: sessions and sign-in throttling shared by several processes.
    redis_url: Secret | None = None
    alarms: AlarmSettings = field(default_factory=AlarmSettings)
    integrity: IntegritySettings = field(default_factory=IntegritySettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)

    @property
    def engine(self) -> str:
        return self.database_url.reveal().split(":", 1)[0].split("+", 1)[0]


def _resolve(home: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else home / path


def sqlite_url_in(home: Path, url: str) -> str:
    """``url`` with a relative SQLite path resolved against the instance home, not the working
    directory (the rule hearth.toml follows, for URLs given on the command line too)."""
    return _sqlite_url(home, url)


def _sqlite_url(home: Path, url: str) -> str:
    """Resolve a relative SQLite path against the instance home, not the working directory."""
    match = re.fullmatch(r"sqlite(\+pysqlite)?:///(?!/)(.+)", url)
    if match and not match.group(2).startswith(":memory:"):
        return f"sqlite:///{(home / match.group(2)).resolve()}"
    return url


def load_settings(home: Path, environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    config_path = home / CONFIG_FILE
    try:
        raw: dict[str, Any] = tomllib.loads(config_path.read_text("utf-8"))
    except FileNotFoundError:
        raise HearthError(
            errors.BAD_PARAMETER,
            f"No Hearth instance at {home}: run `hearth --home {home} init` first.",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise HearthError(errors.BAD_PARAMETER, f"{config_path} is not valid TOML: {exc}") from None
    database = raw.get("database", {})
    keys = raw.get("keys", {})
    server = raw.get("server", {})
    limits = raw.get("limits", {})
    url = env.get("HEARTH_DATABASE_URL") or database.get("url")
    if url is None:
        if database.get("from_environment"):
            raise HearthError(
                errors.BAD_PARAMETER,
                "This instance's database URL comes from HEARTH_DATABASE_URL (it is not stored "
                "in hearth.toml, because it holds a password): set it.",
            )
        url = "sqlite:///data/hearth.db"
    kind = str(keys.get("source", "file"))
    passphrase = env.get("HEARTH_KEY_PASSPHRASE")
    key_source = KeySource(
        kind="kms" if kind.startswith("kms:") else kind,
        file=_resolve(home, keys.get("file", "keys/kek.key")) if kind == "file" else None,
        passphrase=Secret(passphrase) if passphrase else None,
        salt_hex=keys.get("salt"),
        kms=kind.removeprefix("kms:") if kind.startswith("kms:") else None,
    )
    if key_source.kind not in ("file", "passphrase", "kms"):
        raise HearthError(errors.BAD_PARAMETER, "keys.source is file, passphrase or kms:NAME.")
    tls = server.get("tls", {})
    sessions = raw.get("sessions", {})
    auth = raw.get("auth", {})
    redis_url = env.get("HEARTH_REDIS_URL") or raw.get("redis", {}).get("url")
    try:
        session_settings = SessionSettings(
            **{k: int(v) for k, v in sessions.items() if k in SessionSettings.__dataclass_fields__}
        )
    except ValueError as exc:
        raise HearthError(errors.BAD_PARAMETER, f"{config_path}: {exc}") from None
    pepper = auth.get("pepper_file")
    auth_settings = AuthSettings(
        rp_id=auth.get("rp_id"),
        rp_name=str(auth.get("rp_name", "Hearth")),
        origins=tuple(str(o).rstrip("/") for o in auth.get("origins", ())),
        pepper_file=_resolve(home, pepper) if pepper else None,
    )
    scanner = raw.get("integrity", {})
    try:
        integrity = IntegritySettings(
            scan=bool(scanner.get("scan", True)),
            scan_interval_seconds=float(scanner.get("scan_interval_seconds", 60.0)),
            full_pass_days=float(scanner.get("full_pass_days", 7.0)),
            max_versions_per_tick=int(scanner.get("max_versions_per_tick", 500_000)),
            busy_share=float(scanner.get("busy_share", 0.25)),
        )
    except (TypeError, ValueError) as exc:
        raise HearthError(errors.BAD_PARAMETER, f"{config_path}: {exc}") from None
    return Settings(
        home=home,
        instance_id=str(raw.get("instance_id", "")),
        database_url=Secret(_sqlite_url(home, url)),
        keys=key_source,
        host=str(server.get("host", "127.0.0.1")),
        port=int(server.get("port", 8080)),
        public_base_url=_public_base_url(server.get("public_base_url"), config_path),
        allowed_hosts=_host_names(server.get("allowed_hosts", []), config_path),
        tls_cert=_resolve(home, tls["cert"]) if "cert" in tls else None,
        tls_key=_resolve(home, tls["key"]) if "key" in tls else None,
        tls_client_ca=_resolve(home, tls["client_ca"]) if "client_ca" in tls else None,
        tls_client_crl=_resolve(home, tls["client_crl"]) if "client_crl" in tls else None,
        limits=Limits(**{k: int(v) for k, v in limits.items() if k in Limits.__dataclass_fields__}),
        search=_search_settings(config_path, raw.get("search", {})),
        sessions=session_settings,
        auth=auth_settings,
        redis_url=Secret(redis_url) if redis_url else None,
        oauth=_oauth_settings(raw.get("oauth", {})),
        alarms=_alarm_settings(home, raw.get("alarms", {}), env),
        integrity=integrity,
        access=_access_settings(config_path, raw.get("access", {})),
        backup=_backup_settings(home, raw.get("backup", {}), env),
    )


def _search_settings(config_path: Path, raw: dict[str, Any]) -> SearchSettings:
    workers = raw.get("index_workers")
    if workers is None:
        return SearchSettings()
    if type(workers) is not int or workers < 0:
        raise HearthError(
            errors.BAD_PARAMETER,
            f"{config_path}: [search] index_workers is a whole number, 0 or more.",
        )
    return SearchSettings(index_workers=workers)


def _access_settings(config_path: Path, raw: dict[str, Any]) -> AccessSettings:
    try:
        return AccessSettings(
            break_glass_minutes=int(raw.get("break_glass_minutes", 60)),
            snooping_hour=int(raw.get("snooping_hour", 100)),
            snooping_day=int(raw.get("snooping_day", 300)),
            snooping_throttle=bool(raw.get("snooping_throttle", False)),
            same_surname=bool(raw.get("same_surname", True)),
        )
    except (TypeError, ValueError) as exc:
        raise HearthError(errors.BAD_PARAMETER, f"{config_path}: {exc}") from None


# -- [alarms] ---------------------------------------------------------------------------------


def _sink_error(where: str, message: str) -> HearthError:
    return HearthError(errors.ALARM_SINK_CONFIG, f"{CONFIG_FILE} [{where}]: {message}")


def _tables(value: Any, where: str) -> list[dict[str, Any]]:
    """A sink section may be one table (``[alarms.email]``) or several (``[[alarms.email]]``)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return list(value)
    raise _sink_error(where, "expected a table or an array of tables")


def _severity(value: Any, where: str, default: Severity) -> Severity:
    if value is None:
        return default
    try:
        return Severity(str(value))
    except ValueError:
        raise _sink_error(where, "min_severity is info, warning or critical") from None


def _secret(
    table: dict[str, Any],
    stem: str,
    home: Path,
    env: dict[str, str],
    where: str,
    error: Callable[[str, str], HearthError] = _sink_error,
) -> Secret | None:
    """A secret named by ``<stem>_env`` (an environment variable) or ``<stem>_file`` (a file,
    which should be mode 0600); never written in hearth.toml itself."""
    if stem in table:
        raise error(where, f"do not write {stem} in {CONFIG_FILE}: use {stem}_env or {stem}_file")
    if f"{stem}_env" in table:
        name = str(table[f"{stem}_env"])
        value = env.get(name)
        if not value:
            raise error(where, f"the environment variable {name} is not set")
        return Secret(value)
    if f"{stem}_file" in table:
        path = _resolve(home, str(table[f"{stem}_file"]))
        try:
            value = path.read_text("utf-8").strip()
        except OSError:
            raise error(where, f"cannot read {stem}_file {path}") from None
        if not value:
            raise error(where, f"{stem}_file {path} is empty")
        return Secret(value)
    return None


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _webhook(
    table: dict[str, Any], index: int, home: Path, env: dict[str, str]
) -> WebhookSinkSettings:
    name = str(table.get("name", f"webhook-{index + 1}"))
    where = f"alarms.webhook {name}"
    url = str(table.get("url", ""))
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _sink_error(where, "url must be an https:// URL")
    if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
        raise _sink_error(where, "url must use https outside loopback (the body names records)")
    secret = _secret(table, "secret", home, env, where)
    if secret is None:
        raise _sink_error(where, "set secret_env or secret_file: webhooks are always signed")
    cafile = table.get("cafile")
    return WebhookSinkSettings(
        name=name,
        url=url,
        secret=secret,
        timeout_seconds=float(table.get("timeout_seconds", 5.0)),
        min_severity=_severity(table.get("min_severity"), where, Severity.WARNING),
        cafile=_resolve(home, str(cafile)) if cafile else None,
    )


def _email(table: dict[str, Any], index: int, home: Path, env: dict[str, str]) -> EmailSinkSettings:
    name = str(table.get("name", f"email-{index + 1}"))
    where = f"alarms.email {name}"
    host = str(table.get("host", ""))
    sender = str(table.get("from", ""))
    to = table.get("to", [])
    recipients = tuple(str(r) for r in ([to] if isinstance(to, str) else to))
    if not host or not sender or not recipients:
        raise _sink_error(where, "host, from and to are required")
    security = str(table.get("security", "starttls"))
    if security not in ("starttls", "tls", "none"):
        raise _sink_error(where, "security is starttls, tls or none")
    if security == "none" and not _is_loopback_host(host):
        raise _sink_error(where, "security = none is only allowed to a relay on loopback")
    username = table.get("username")
    password = _secret(table, "password", home, env, where)
    if (username is None) != (password is None):
        raise _sink_error(where, "username and password_env/password_file go together")
    cafile = table.get("cafile")
    default_port = {"starttls": 587, "tls": 465, "none": 25}[security]
    return EmailSinkSettings(
        name=name,
        host=host,
        port=int(table.get("port", default_port)),
        sender=sender,
        recipients=recipients,
        security=security,
        username=str(username) if username is not None else None,
        password=password,
        timeout_seconds=float(table.get("timeout_seconds", 10.0)),
        min_severity=_severity(table.get("min_severity"), where, Severity.WARNING),
        cafile=_resolve(home, str(cafile)) if cafile else None,
    )


#: Syslog facility codes (RFC 5424 sec. 6.2.1, table 1) an operator may choose.
SYSLOG_FACILITIES = {
    "user": 1,
    "daemon": 3,
    "auth": 4,
    "authpriv": 10,
    **{f"local{n}": 16 + n for n in range(8)},
}


def _syslog(table: dict[str, Any], index: int, home: Path) -> SyslogSinkSettings:
    name = str(table.get("name", f"syslog-{index + 1}"))
    where = f"alarms.syslog {name}"
    transport = str(table.get("transport", "udp"))
    if transport not in ("udp", "tcp", "unix"):
        raise _sink_error(where, "transport is udp, tcp or unix")
    facility = str(table.get("facility", "local0"))
    if facility not in SYSLOG_FACILITIES:
        raise _sink_error(where, f"facility is one of {', '.join(sorted(SYSLOG_FACILITIES))}")
    app_name = str(table.get("app_name", "hearth"))
    if not app_name or len(app_name) > 48 or not app_name.isascii() or " " in app_name:
        raise _sink_error(where, "app_name is 1 to 48 printable ASCII characters (RFC 5424)")
    return SyslogSinkSettings(
        name=name,
        transport=transport,
        host=str(table.get("host", "127.0.0.1")),
        port=int(table.get("port", 514)),
        socket=_resolve(home, str(table.get("socket", "/dev/log"))),
        facility=SYSLOG_FACILITIES[facility],
        app_name=app_name,
        min_severity=_severity(table.get("min_severity"), where, Severity.WARNING),
        timeout_seconds=float(table.get("timeout_seconds", 5.0)),
    )


def _alarm_settings(home: Path, raw: dict[str, Any], env: dict[str, str]) -> AlarmSettings:
    if not isinstance(raw, dict):
        raise _sink_error("alarms", "expected a table")
    log_table = raw.get("log", {})
    if not isinstance(log_table, dict):
        raise _sink_error("alarms.log", "expected a table")
    log_path = log_table.get("path")
    webhooks = tuple(
        _webhook(t, i, home, env) for i, t in enumerate(_tables(raw.get("webhook", []), "webhook"))
    )
    emails = tuple(
        _email(t, i, home, env) for i, t in enumerate(_tables(raw.get("email", []), "email"))
    )
    syslogs = tuple(
        _syslog(t, i, home) for i, t in enumerate(_tables(raw.get("syslog", []), "syslog"))
    )
    names = ["log", *(w.name for w in webhooks), *(e.name for e in emails)]
    names += [s.name for s in syslogs]
    if len(set(names)) != len(names):
        raise _sink_error("alarms", "every sink needs a distinct name ('log' is taken)")
    try:
        return AlarmSettings(
            renotify_minutes=int(raw.get("renotify_minutes", 60)),
            max_attempts=max(1, int(raw.get("max_attempts", 8))),
            retry_base_seconds=float(raw.get("retry_base_seconds", 5.0)),
            retry_max_seconds=float(raw.get("retry_max_seconds", 900.0)),
            backup_rpo_hours=float(raw.get("backup_rpo_hours", 24.0)),
            log=LogSinkSettings(
                enabled=bool(log_table.get("enabled", True)),
                path=_resolve(home, str(log_path)) if log_path else None,
                min_severity=_severity(log_table.get("min_severity"), "alarms.log", Severity.INFO),
            ),
            webhooks=webhooks,
            emails=emails,
            syslogs=syslogs,
        )
    except (TypeError, ValueError) as exc:
        raise _sink_error("alarms", str(exc)) from None


# -- [backup] ---------------------------------------------------------------------------------


def _backup_error(where: str, message: str) -> HearthError:
    return HearthError(errors.BACKUP_CONFIG, f"{CONFIG_FILE} [{where}]: {message}")


_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
#: Keys each kind of target accepts; anything else is refused (a typo must not be ignored).
_COMMON_TARGET_KEYS = {"name", "kind", "region", "object_lock_days", "timeout_seconds"}
_TARGET_KEYS = {
    "local": {"path"},
    "offline": {"path", "media_id", "require_mount_point"},
    "s3": {
        "bucket", "endpoint_url", "prefix", "region_name", "access_key", "access_key_env",
        "access_key_file", "secret_key", "secret_key_env", "secret_key_file",
    },
    "sftp": {
        "host", "port", "username", "root", "host_key", "private_key_file",
        "private_key_passphrase", "private_key_passphrase_env", "private_key_passphrase_file",
    },
}  # fmt: skip
_BACKUP_KEYS = {
    "primary_region", "min_copies", "require_offsite", "allowed_regions", "recipients_file",
    "verify_period_days", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
    "object_lock_days", "monitor_minutes", "targets",
}  # fmt: skip


def _required(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _backup_error(where, f"{key} is required (a non-empty string)")
    return value.strip()


def _whole(value: Any, what: str, where: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum:
        raise _backup_error(where, f"{what} must be a whole number of at least {minimum}")
    return value


def _backup_target(
    table: dict[str, Any], index: int, home: Path, env: dict[str, str], primary: str
) -> BackupTargetSettings:
    if not isinstance(table, dict):
        raise _backup_error("backup.targets", "each target is a table ([[backup.targets]])")
    name = table.get("name")
    if not isinstance(name, str) or not _TARGET_NAME.fullmatch(name):
        raise _backup_error(
            f"backup.targets #{index + 1}",
            "name is required: 1-64 of A-Z a-z 0-9 . _ - (starting with a letter or digit)",
        )
    where = f"backup.targets {name}"
    kind = table.get("kind")
    if kind not in TARGET_KINDS:
        raise _backup_error(where, f"kind is one of {', '.join(TARGET_KINDS)}")
    unknown = set(table) - _COMMON_TARGET_KEYS - _TARGET_KEYS[kind]
    if unknown:
        raise _backup_error(
            where, f"unknown setting(s) for a {kind} target: {', '.join(sorted(unknown))}"
        )
    default_region = primary if kind in ("local", "offline") else None
    region = table.get("region", default_region)
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise _backup_error(
            where,
            "region is required for s3 and sftp targets (a label such as us-east or site-b: "
            "1-64 of A-Z a-z 0-9 . _ : -)",
        )
    lock = table.get("object_lock_days")
    timeout = table.get("timeout_seconds")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise _backup_error(where, "timeout_seconds must be a positive number")
    common: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "region": region,
        "object_lock_days": None if lock is None else _whole(lock, "object_lock_days", where),
        "timeout_seconds": None if timeout is None else float(timeout),
    }
    if kind in ("local", "offline"):
        common["path"] = _resolve(home, _required(table, "path", where))
        if kind == "offline":
            media_id = _required(table, "media_id", where)
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", media_id):
                raise _backup_error(where, "media_id is 1-64 of A-Z a-z 0-9 . _ -")
            common["media_id"] = media_id
            common["require_mount_point"] = bool(table.get("require_mount_point", False))
        return BackupTargetSettings(**common)
    if kind == "s3":
        endpoint = table.get("endpoint_url")
        if endpoint is not None:
            parts = urlsplit(str(endpoint))
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise _backup_error(where, "endpoint_url must be an https:// URL")
            if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
                raise _backup_error(where, "endpoint_url must use https outside loopback")
        access = (
            _secret(table, "access_key", home, env, where, _backup_error)
            if ("access_key" not in table)
            else Secret(str(table["access_key"]))
        )
        secret = _secret(table, "secret_key", home, env, where, _backup_error)
        if access is None or secret is None:
            raise _backup_error(
                where,
                "set access_key (or access_key_env/access_key_file) and secret_key_env or "
                "secret_key_file",
            )
        prefix = str(table.get("prefix", ""))
        if prefix.startswith("/") or ".." in prefix:
            raise _backup_error(where, "prefix is a relative key prefix such as hearth/prod")
        return BackupTargetSettings(
            **common,
            bucket=_required(table, "bucket", where),
            endpoint_url=None if endpoint is None else str(endpoint),
            prefix=prefix,
            region_name=str(table.get("region_name", "us-east-1")),
            access_key=access,
            secret_key=secret,
        )
    port = table.get("port", 22)
    if type(port) is not int or not 0 < port < 65536:
        raise _backup_error(where, "port must be 1 to 65535")
    host_key = _required(table, "host_key", where)
    if len(host_key.split()) < 2:
        raise _backup_error(
            where, "host_key is the server's public key line, e.g. 'ssh-ed25519 AAAA...'"
        )
    return BackupTargetSettings(
        **common,
        host=_required(table, "host", where),
        port=port,
        username=_required(table, "username", where),
        root=_required(table, "root", where),
        host_key=host_key,
        private_key_file=_resolve(home, _required(table, "private_key_file", where)),
        private_key_passphrase=_secret(
            table, "private_key_passphrase", home, env, where, _backup_error
        ),
    )


def _backup_settings(home: Path, raw: Any, env: dict[str, str]) -> BackupSettings:
    if not isinstance(raw, dict):
        raise _backup_error("backup", "expected a table")
    unknown = set(raw) - _BACKUP_KEYS
    if unknown:
        raise _backup_error("backup", f"unknown setting(s): {', '.join(sorted(unknown))}")
    primary = raw.get("primary_region", "local")
    if not isinstance(primary, str) or not _REGION.fullmatch(primary):
        raise _backup_error("backup", "primary_region is a region label such as us-east")
    allowed = raw.get("allowed_regions", [])
    if isinstance(allowed, str):
        allowed = [allowed]
    if not isinstance(allowed, list) or not all(isinstance(a, str) and a for a in allowed):
        raise _backup_error("backup", 'allowed_regions is a list of patterns such as ["us-*"]')
    tables = raw.get("targets", [])
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list):
        raise _backup_error("backup.targets", "expected [[backup.targets]] tables")
    targets = tuple(_backup_target(t, i, home, env, primary) for i, t in enumerate(tables))
    names = [t.name for t in targets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise _backup_error("backup.targets", f"target names repeat: {', '.join(duplicates)}")
    period = raw.get("verify_period_days", 7.0)
    if not isinstance(period, int | float) or isinstance(period, bool) or period <= 0:
        raise _backup_error("backup", "verify_period_days must be a positive number")
    monitor = raw.get("monitor_minutes", 60.0)
    if not isinstance(monitor, int | float) or isinstance(monitor, bool) or monitor < 0:
        raise _backup_error("backup", "monitor_minutes must be 0 (off) or a positive number")
    recipients = raw.get("recipients_file")
    keep = {
        key: _whole(raw.get(key, default), key, "backup")
        for key, default in (
            ("keep_daily", 7),
            ("keep_weekly", 4),
            ("keep_monthly", 12),
            ("keep_yearly", 6),
        )
    }
    if not any(keep.values()):
        raise _backup_error("backup", "retention would keep nothing: set a keep_* above 0")
    settings = BackupSettings(
        primary_region=primary,
        min_copies=_whole(raw.get("min_copies", 2), "min_copies", "backup", 1),
        require_offsite=bool(raw.get("require_offsite", True)),
        allowed_regions=tuple(allowed),
        recipients_file=_resolve(home, str(recipients)) if recipients else None,
        verify_period_days=float(period),
        object_lock_days=_whole(raw.get("object_lock_days", 0), "object_lock_days", "backup"),
        monitor_minutes=float(monitor),
        targets=targets,
        **keep,
    )
    if not settings.region_allowed(primary):
        raise _backup_error(
            "backup", f"primary_region {primary} is not in allowed_regions {list(allowed)}"
        )
    return settings


def _public_base_url(raw: object, config_path: Path) -> str | None:
    """``server.public_base_url``, refused here when its port is bad: found only when the app
    was built, ``hearth serve`` had already announced its URL and issued an admin token."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise HearthError(errors.BAD_PARAMETER, f"{config_path}: server.public_base_url is a URL.")
    try:
        port = urlsplit(raw).port
    except ValueError:
        port = 0
    if port == 0:
        raise HearthError(
            errors.BAD_PARAMETER,
            f"{config_path}: server.public_base_url has a bad port (1 to 65535, or none).",
        )
    return raw


def _host_names(raw: object, config_path: Path) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(h, str) and h.strip() for h in raw):
        raise HearthError(
            errors.BAD_PARAMETER, f"{config_path}: server.allowed_hosts is a list of host names."
        )
    return tuple(h.strip().lower() for h in raw)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(
    *,
    instance_id: str,
    database_url: str | None,
    database_from_env: bool = False,
    key_source: str,
    key_file: str | None,
    salt_hex: str | None,
    pepper_file: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> str:
    """The ``hearth.toml`` that ``hearth init`` writes. Never contains a secret: a database
    URL with a password must come from the environment (``database_from_env``)."""
    if database_url is not None and strip_password(database_url)[1]:
        raise HearthError(errors.BAD_PARAMETER, "A database password is never written to a file.")
    lines = [
        "# Hearth instance configuration. See docs/operations.md for every setting.",
        f"instance_id = {_toml_string(instance_id)}",
        "",
        "[database]",
        "# SQLite by default; relative paths are inside this instance's home.",
        "# HEARTH_DATABASE_URL overrides this (use it for credentials).",
    ]
    if database_from_env:
        lines += [
            "# The URL comes from HEARTH_DATABASE_URL; it is not stored here.",
            "from_environment = true",
        ]
    else:
        lines.append(f"url = {_toml_string(database_url or 'sqlite:///data/hearth.db')}")
    lines += [
        "",
        "[keys]",
        "# file: a 32-byte key file, mode 0600, never inside data/. In production keep it",
        "# outside this home. passphrase: HEARTH_KEY_PASSPHRASE. kms:NAME: an external KMS.",
        f"source = {_toml_string(key_source)}",
    ]
    if key_file is not None:
        lines.append(f"file = {_toml_string(key_file)}")
    if salt_hex is not None:
        lines.append(f"salt = {_toml_string(salt_hex)}")
    lines += [
        "",
        "[server]",
        f"host = {_toml_string(host)}",
        f"port = {int(port)}",
        "# Names clients use to reach the server, checked against the Host header (needed",
        "# when binding 0.0.0.0); the host of public_base_url is always allowed.",
        '# allowed_hosts = ["ehr.example.org"]',
        "",
        "[sessions]",
        "# Console sessions lock after idle_minutes without activity (a PIN or security key",
        "# unlocks them) and end absolute_hours after sign-in. See docs/operations.md.",
        "idle_minutes = 15",
        "absolute_hours = 12",
        "",
        "[auth]",
        "# The password pepper (NIST SP 800-63B-4 sec. 3.1.1.2): keep it with the key file,",
        "# never in data/. WebAuthn: rp_id and origins default to server.public_base_url.",
    ]
    if pepper_file is not None:
        lines.append(f"pepper_file = {_toml_string(pepper_file)}")
    lines += [
        "",
        "# [redis]",
        '# url = "redis://127.0.0.1:6379/0"  # share sessions and sign-in throttling',
        "",
    ]
    return "\n".join(lines)


def write_config(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, readable by its owner only (mode 0600).

    The text goes to a temporary file in the same directory, is fsynced and renamed over the
    old file, and the directory is fsynced: a crash leaves the old file or the new one, never
    half of either.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


_TABLE = re.compile(r"^\s*\[")


def set_key_file(text: str, key_file: Path) -> str:
    """``text`` (a hearth.toml) with ``[keys]`` naming ``key_file`` as the key source.

    Only the ``source`` and ``file`` lines of ``[keys]`` change; comments and every other
    setting stay as they were. The result is checked by parsing it again.
    """
    lines = text.splitlines()
    wanted = {"source": _toml_string("file"), "file": _toml_string(str(key_file))}
    start = next((i for i, line in enumerate(lines) if line.strip() == "[keys]"), None)
    if start is None:
        lines += ["", "[keys]", *(f"{k} = {v}" for k, v in wanted.items())]
    else:
        end = next((i for i in range(start + 1, len(lines)) if _TABLE.match(lines[i])), len(lines))
        seen: set[str] = set()
        for i in range(start + 1, end):
            key = lines[i].split("=", 1)[0].strip()
            if key in wanted and "=" in lines[i]:
                lines[i] = f"{key} = {wanted[key]}"
                seen.add(key)
        missing = [f"{k} = {v}" for k, v in wanted.items() if k not in seen]
        lines[start + 1 : start + 1] = missing
    result = "\n".join(lines) + "\n"
    parsed = tomllib.loads(result).get("keys", {})
    if parsed.get("source") != "file" or parsed.get("file") != str(key_file):
        raise HearthError(errors.BAD_PARAMETER, "Could not update [keys] in hearth.toml.")
    return result


def strip_password(url: str) -> tuple[str, bool]:
    """``url`` without a password (in its user information or a ``password`` query parameter),
    and whether it had one. What ``hearth init`` may write to hearth.toml."""
    parts = urlsplit(url)
    changed = False
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}@{hostport}"
        changed = True
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k.lower() != "password"]
    if len(kept) != len(query):
        changed = True
    if not changed:
        return url, False
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(kept))), True
