"""The composition root: the one place that builds storage, crypto and policy objects.

``Container`` is built from ``Settings`` once per process. Adapters ask it for services bound
to a principal; they never see the store, the key ring or SQL. ``system_repository`` is the loud
way to act without a principal, for initialisation, key management and scans.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path

from hearth.crypto import (
    FileKek,
    KeyEncryptionKey,
    KeyPurpose,
    KeyRing,
    PassphraseKek,
    create_key_file,
)
from hearth.domain import (
    Alarm,
    AlarmKind,
    AlarmRaiser,
    Clock,
    HearthError,
    Principal,
    PrincipalKind,
    Random,
    Secret,
    Severity,
    SystemClock,
    SystemRandom,
    errors,
)
from hearth.security import AccessPolicy, RolePolicy, ScopedPolicy, bootstrap_roles
from hearth.services.identity import Authenticator
from hearth.services.paging import PageTokens
from hearth.services.records import RecordService
from hearth.settings import CONFIG_FILE, Settings, load_settings, render_config
from hearth.storage import (
    ApiTokenStore,
    AuditTrail,
    RecordRepository,
    SystemRepository,
    initialise_store,
    load_wrapped_keys,
)
from hearth.storage.sql import SqlStore, open_database
from hearth.storage.sql.migrate import current_revision, head_revision, upgrade

__all__ = [
    "ADMIN_ROLE",
    "KEY_PURPOSES",
    "Container",
    "InitResult",
    "init_instance",
    "issue_admin_credential",
    "migrate_database",
    "rewrap_keys",
]

log = logging.getLogger("hearth")

ADMIN_ROLE = "bootstrap-admin"
ADMIN_SUBJECT = "admin"
_KEY_REFRESH_SECONDS = 30.0


def build_kek(settings: Settings) -> KeyEncryptionKey:
    source = settings.keys
    if source.kind == "file" and source.file is not None:
        return FileKek(source.file)
    if source.kind == "passphrase":
        if source.passphrase is None or source.salt_hex is None:
            raise HearthError(
                errors.KEY_UNAVAILABLE, "Set HEARTH_KEY_PASSPHRASE to open this instance's keys."
            )
        return PassphraseKek(source.passphrase, bytes.fromhex(source.salt_hex))
    found = entry_points(group="hearth.kek", name=source.kms or "")
    if not found:
        raise HearthError(errors.KEY_UNAVAILABLE, f"No KMS plugin named {source.kms!r}.")
    factory = next(iter(found)).load()
    kek: KeyEncryptionKey = factory(settings)
    return kek


class LogAlarms:
    """Alarms written to the ``hearth.alarm`` log (the durable alarm store replaces this)."""

    def raise_alarm(self, alarm: Alarm) -> None:
        log.getChild("alarm").error(
            "%s %s %s: %s", alarm.severity.value, alarm.kind.value, alarm.subject, alarm.summary
        )


class Container:
    """Everything one Hearth process needs, built once from settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        random: Random | None = None,
        policy: AccessPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.random: Random = random or SystemRandom()
        self.db = open_database(settings.database_url.reveal())
        self.store = SqlStore(self.db)
        self._check_schema()
        self._kek = build_kek(settings)
        self.keyring = KeyRing(load_wrapped_keys(self.store), self._kek)
        self._keys_checked = time.monotonic()
        self._keys_lock = threading.Lock()
        self.audit = AuditTrail(
            self.store,
            self.keyring,
            self.random,
            checkpoint_every=settings.audit_checkpoint_every,
        )
        # Roles decide what a principal may do; granted SMART scopes narrow it further.
        self.policy: AccessPolicy = policy or ScopedPolicy(RolePolicy(bootstrap_roles()))
        self.alarms: AlarmRaiser = LogAlarms()
        self.pages = PageTokens(self.keyring, self.clock, self.random)
        self.authenticator = Authenticator(
            ApiTokenStore(self.store, self.audit, self.clock, self.random)
        )

    def _check_schema(self) -> None:
        current, head = current_revision(self.db), head_revision()
        if current != head:
            raise HearthError(
                errors.STORAGE_UNAVAILABLE,
                f"The database schema is at {current or 'nothing'}, this Hearth expects {head}: "
                "run `hearth migrate`."
                if current
                else "The database has no Hearth schema: run `hearth init`.",
            )

    def refresh_keys(self, *, force: bool = False) -> None:
        """Pick up keys rotated by another process; cheap, and at most every 30 seconds."""
        now = time.monotonic()
        if not force and now - self._keys_checked < _KEY_REFRESH_SECONDS:
            return
        with self._keys_lock:
            self._keys_checked = now
            self.keyring.reload(load_wrapped_keys(self.store), self._kek)

    # -- what adapters ask for --------------------------------------------------------------
    def repository(
        self, principal: Principal, *, request_id: str | None = None
    ) -> RecordRepository:
        self.refresh_keys()
        return RecordRepository(
            principal=principal,
            policy=self.policy,
            store=self.store,
            keyring=self.keyring,
            audit=self.audit,
            clock=self.clock,
            random=self.random,
            request_id=request_id,
            on_integrity_failure=self._integrity_failure,
        )

    def records(self, principal: Principal, *, request_id: str | None = None) -> RecordService:
        return RecordService(self.repository(principal, request_id=request_id))

    def system_repository(self, purpose: str, *, operator: str | None = None) -> SystemRepository:
        """Unrestricted access for one stated purpose. Every use is audited as ``system:``."""
        self.refresh_keys(force=True)
        return SystemRepository(
            purpose=purpose,
            store=self.store,
            keyring=self.keyring,
            audit=self.audit,
            clock=self.clock,
            random=self.random,
            operator=operator,
        )

    def system_principal(self, purpose: str) -> Principal:
        return Principal(
            subject=f"system:{purpose}",
            kind=PrincipalKind.SYSTEM,
            roles=frozenset({ADMIN_ROLE}),
            purpose_of_use="HOPERAT",
        )

    @property
    def kek(self) -> KeyEncryptionKey:
        return self._kek

    def rotate_keys(self, purposes: tuple[str, ...], *, operator: str | None) -> list[int]:
        chosen = tuple(KeyPurpose(p) for p in purposes)
        if KeyPurpose.BLIND in chosen:
            raise HearthError(errors.BAD_PARAMETER, "Blind-index keys rotate by re-indexing.")
        created = self.system_repository("keys", operator=operator).rotate(self._kek, chosen)
        self.refresh_keys(force=True)
        return created

    def _integrity_failure(self, res_type: str, res_id: str, version: int, seq: int) -> None:
        # Names the row, never its content.
        self.alarms.raise_alarm(
            Alarm(
                AlarmKind.INTEGRITY_MISMATCH,
                Severity.CRITICAL,
                f"{res_type}/{res_id}",
                "A stored version failed its integrity check when it was read.",
                {"version": str(version), "seq": str(seq)},
            )
        )

    def close(self) -> None:
        self.audit.close()
        self.db.dispose()


class InitResult:
    def __init__(self, home: Path, base_url: str, admin_token: str, database: str) -> None:
        self.home = home
        self.base_url = base_url
        self.admin_token = admin_token
        self.database = database


def init_instance(
    home: Path,
    *,
    database_url: str | None = None,
    key_source: str = "file",
    key_file: Path | None = None,
    passphrase: Secret | None = None,
    clock: Clock | None = None,
    random: Random | None = None,
) -> InitResult:
    """Create an instance: config, key-encryption key, schema, keys, audit genesis, admin token."""
    clock = clock or SystemClock()
    random = random or SystemRandom()
    config_path = home / CONFIG_FILE
    if config_path.exists():
        raise HearthError(errors.BAD_PARAMETER, f"{home} already holds a Hearth instance.")
    home.mkdir(parents=True, exist_ok=True)
    (home / "data").mkdir(mode=0o700, exist_ok=True)
    instance_id = random.token_bytes(8).hex()
    salt_hex: str | None = None
    key_file_setting: str | None = None
    if key_source == "file":
        path = key_file or home / "keys" / "kek.key"
        if not path.exists():
            create_key_file(path, random)
        key_file_setting = str(path if key_file is not None else Path("keys/kek.key"))
    elif key_source == "passphrase":
        if passphrase is None:
            raise HearthError(errors.KEY_UNAVAILABLE, "Set HEARTH_KEY_PASSPHRASE first.")
        salt_hex = random.token_bytes(16).hex()
    config_path.write_text(
        render_config(
            instance_id=instance_id,
            database_url=database_url,
            key_source=key_source,
            key_file=key_file_setting,
            salt_hex=salt_hex,
        ),
        "utf-8",
    )
    env = {"HEARTH_KEY_PASSPHRASE": passphrase.reveal()} if passphrase is not None else {}
    settings = load_settings(home, env)
    db = open_database(settings.database_url.reveal())
    try:
        upgrade(db)
        store = SqlStore(db)
        initialise_store(
            store, build_kek(settings), instance_id=instance_id, clock=clock, random=random
        )
    except Exception:
        db.dispose()
        config_path.unlink(missing_ok=True)
        raise
    db.dispose()
    container = Container(settings, clock=clock, random=random)
    try:
        token = container.authenticator.issue_token(
            subject=ADMIN_SUBJECT,
            roles=frozenset({ADMIN_ROLE}),
            label="created by hearth init",
            ttl=None,
            by="system:init",
        )
    finally:
        container.close()
    return InitResult(
        home,
        f"http://{settings.host}:{settings.port}/fhir",
        token,
        settings.engine,
    )


def issue_admin_credential(container: Container, *, ttl: timedelta | None) -> str:
    """A fresh one-time-shown administrator token (``hearth serve --issue-admin-credential``)."""
    return container.authenticator.issue_token(
        subject=ADMIN_SUBJECT,
        roles=frozenset({ADMIN_ROLE}),
        label="issued at serve",
        ttl=ttl,
        by="system:serve",
    )


KEY_PURPOSES = tuple(p.value for p in KeyPurpose if p is not KeyPurpose.BLIND)


def rewrap_keys(home: Path, new_key_file: Path) -> int:
    """KEK rotation: create ``new_key_file`` and re-wrap every key under it."""
    settings = load_settings(home)
    container = Container(settings)
    try:
        create_key_file(new_key_file, container.random)
        new = FileKek(new_key_file)
        return container.system_repository("keys", operator="cli").rewrap_all(container.kek, new)
    finally:
        container.close()


def migrate_database(settings: Settings) -> tuple[str | None, str | None]:
    db = open_database(settings.database_url.reveal())
    try:
        before = current_revision(db)
        upgrade(db)
        return before, current_revision(db)
    finally:
        db.dispose()
