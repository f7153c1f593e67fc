"""The composition root: the one place that builds storage, crypto and policy objects.

``Container`` is built from ``Settings`` once per process. Adapters ask it for services bound
to a principal; they never see the store, the key ring or SQL. ``system_repository`` is the loud
way to act without a principal, for initialisation, key management and scans.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from datetime import datetime, timedelta
from functools import cached_property
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.backupfmt import (
    ManifestSigner,
    ManifestVerifier,
    SegmentDecryptor,
    SegmentEncryptor,
    format_identity_file,
    format_recipients_file,
    parse_identity_file,
    parse_recipients,
)
from hearth.crypto import (
    FileKek,
    KeyEncryptionKey,
    KeyPurpose,
    PassphraseKek,
    create_key_file,
)
from hearth.crypto.backup import (
    AgeDecryptor,
    AgeEncryptor,
    Ed25519ManifestSigner,
    Ed25519ManifestVerifier,
    generate_backup_identity,
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
from hearth.notify import build_sinks
from hearth.services.alarms import AlarmService, DeliveryPolicy
from hearth.settings import (
    CONFIG_FILE,
    AlarmSettings,
    Settings,
    load_settings,
    render_config,
    set_key_file,
    strip_password,
    write_config,
)
from hearth.storage import (
    ApiTokenStore,
    AuditTrail,
    KeyAdministration,
    LiveKeys,
    RecordRepository,
    SearchBounds,
    SystemRepository,
    ensure_key_purposes,
    index_workers,
    initialise_store,
    to_us,
)
from hearth.storage.access import AccessControl, RoleStore
from hearth.storage.alarms import AlarmStore
from hearth.storage.anchor import AnchorFile
from hearth.storage.index_workers import IndexWorkers, default_processes
from hearth.storage.repository import SingleWrite, run_write_group
from hearth.storage.sql import SqlStore, check_reachable, normalise_url, open_database
from hearth.storage.sql.migrate import current_revision, head_revision, upgrade
from hearth.storage.system import CHECKPOINT_META, DEFAULT_CHECKPOINT_EVERY
from hearth.storage.write_groups import WriteGroups

__all__ = [
    "ADMIN_ROLE",
    "ADMIN_USERNAME",
    "INIT_TOKEN_TTL",
    "AdminCredential",
    "KEY_PURPOSES",
    "Container",
    "InitResult",
    "init_instance",
    "check_key_file_location",
    "issue_admin_credential",
    "migrate_database",
    "open_target",
    "open_targets",
    "rewrap_keys",
]

if TYPE_CHECKING:
    # Imported where they are built: a command such as ``hearth backup create`` builds the
    # container's core (database, keys, audit, alarms, access policy) and never the services
    # that answer requests and sign-ins (docs/design.md, "Start-up").
    from hearth.auth import Argon2Parameters, PepperRing
    from hearth.auth.oauth.tokens import TokenKeys
    from hearth.auth.throttle import ThrottlePolicy
    from hearth.notify import Sink
    from hearth.services.backup import BackupService
    from hearth.services.backup_monitor import BackupMonitor
    from hearth.services.backup_schedule import StateStore as BackupProgress
    from hearth.services.bundles import BundleService
    from hearth.services.importer import ImportService
    from hearth.services.records import RecordService
    from hearth.services.repair import BackupVersions, RepairReport
    from hearth.services.scanner import IntegrityScanner, ScannerThread
    from hearth.services.search import SearchService
    from hearth.services.users import SetUpLink
    from hearth.targets import BackupTarget

log = logging.getLogger("hearth")

ADMIN_ROLE = "bootstrap-admin"
ADMIN_SUBJECT = "admin"
#: The administrator account ``hearth init`` creates. It has no credentials until the operator
#: opens the one-time set-up link (``hearth serve --issue-admin-credential``, ``hearth user
#: link admin``), so it is not a default account with a default password (ASVS v5.0.0-6.3.2).
ADMIN_USERNAME = "admin"


def open_target(settings: Settings, name: str) -> BackupTarget:
    """The backup target ``[[backup.targets]]`` calls ``name`` (docs/operations.md)."""
    # Imported here: boto3 and paramiko cost a noticeable start-up time that most commands
    # never need.
    from hearth.targets.factory import open_target as build

    return build(settings, name)


def open_targets(settings: Settings) -> list[BackupTarget]:
    """Every configured backup target, in hearth.toml's order; none configured is an error."""
    from hearth.targets.factory import open_targets as build

    return build(settings)


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


def delivery_policy(settings: AlarmSettings) -> DeliveryPolicy:
    return DeliveryPolicy(
        renotify=timedelta(minutes=settings.renotify_minutes)
        if settings.renotify_minutes > 0
        else None,
        max_attempts=settings.max_attempts,
        retry_base=timedelta(seconds=settings.retry_base_seconds),
        retry_max=timedelta(seconds=settings.retry_max_seconds),
    )


class _LateAlarms:
    """Raises through ``container.alarms``, which exists only once the key ring does."""

    def __init__(self, container: Container) -> None:
        self._container = container

    def raise_alarm(self, alarm: Alarm) -> None:
        self._container.alarms.raise_alarm(alarm)


#: Blind-index tokens a bulk load's key ring remembers (about 200 bytes each; see KeyRing).
BULK_BLIND_MEMO = 200_000


#: What ``Container._build_services`` sets: built at the first use of any of them.
_SERVICES = frozenset(
    {
        "pages", "oauth_store", "clients", "certificates", "client_auth", "tokens",
        "authenticator", "authorization", "passwords", "accounts", "sessions", "throttle",
        "signin", "certificate_signin", "users", "access_store", "access", "monitor",
        "audit_views", "break_glass", "account",
    }
)  # fmt: skip


class Container:
    """Everything one Hearth process needs, built once from settings: the core (database,
    keys, audit trail, alarms, access policy) at once, the services that answer requests and
    sign-ins at their first use (``_SERVICES``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        random: Random | None = None,
        roles: RoleStore | None = None,
        policy: AccessControl | None = None,
        password_parameters: Argon2Parameters | None = None,
        throttle: ThrottlePolicy | None = None,
        alarms: AlarmRaiser | None = None,
        sinks: list[Sink] | None = None,
        alarm_worker: bool = True,
        bulk: bool = False,
    ) -> None:
        """``password_parameters`` and ``throttle`` exist for tests, which need cheap hashes
        and small limits; production uses the defaults of ``hearth.auth``. ``alarms`` replaces
        the raiser (tests capture alarms); ``sinks`` replaces the configured sinks and
        ``alarm_worker=False`` leaves delivery to explicit ``alarm_service.process()`` calls."""
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.random: Random = random or SystemRandom()
        self.db = open_database(settings.database_url.reveal())
        self.store = SqlStore(self.db)
        self._check_schema()
        kek = build_kek(settings)
        # An instance made by an earlier Hearth gets the keys of purposes added since.
        created = ensure_key_purposes(self.store, kek, clock=self.clock, random=self.random)
        self.live_keys = LiveKeys(
            self.store,
            kek,
            reload_kek=lambda: build_kek(load_settings(settings.home)),
            # The alarm service needs the key ring, so it is built later; this defers to it.
            alarms=_LateAlarms(self),
            # A bulk load (import, reindex) owns its process: its ring remembers recent blind
            # tokens, most of which repeat across a population. Never a server's ring.
            blind_memo=BULK_BLIND_MEMO if bulk else 0,
        )
        self.keyring = self.live_keys.ring
        with self.store.read() as conn:
            meta = self.store.meta(conn)
        self.anchor = AnchorFile(settings.home / "audit-anchor.json")
        self.audit = AuditTrail(
            self.store,
            self.keyring,
            self.random,
            checkpoint_every=int(meta.get(CHECKPOINT_META, DEFAULT_CHECKPOINT_EVERY)),
            anchor=self.anchor.write,
            anchored=self.anchor.read,
        )
        if created:
            self.key_admin(operator="upgrade").record_created(created)
        self.alarm_service = AlarmService(
            AlarmStore(self.store, self.audit, self.keyring, self.random),
            build_sinks(settings.alarms) if sinks is None else sinks,
            clock=self.clock,
            instance_id=settings.instance_id,
            policy=delivery_policy(settings.alarms),
            admin_roles=frozenset({ADMIN_ROLE}),
            background=alarm_worker,
        )
        self.alarms: AlarmRaiser = alarms or self.alarm_service
        # The one decision point (hearth.security.access) with the gate's fact gathering: roles
        # are data (defaults plus administrators' edits), granted SMART scopes narrow them.
        self.roles = roles or RoleStore(self.store)
        self.policy = policy or AccessControl(self.store, self.keyring, self.clock, self.roles)
        self.live_keys.check_budget()
        # Until the services are built, a check of the policy builds them (the monitor).
        self.policy.throttled = self._throttled
        self._redis: Any = None
        self._token_keys: tuple[int, TokenKeys] | None = None
        self._services_built = False
        # Worker threads may ask for a service at once: one builds them all, the others wait.
        self._services_lock = threading.RLock()
        self._password_parameters = password_parameters
        self._throttle_policy = throttle

    if not TYPE_CHECKING:
        # Hidden from mypy, which thus still checks every attribute name.

        def __getattr__(self, name: str) -> Any:
            """Only reached for an attribute not set yet: one of the services that answer
            requests and sign-ins, built (all together, in one order) at the first use."""
            lock = self.__dict__.get("_services_lock")
            if name in _SERVICES and lock is not None:
                with lock:
                    if not self._services_built:
                        try:
                            self._build_services()
                        except BaseException:
                            self._services_built = False  # the next use tries again
                            raise
                if name in self.__dict__:
                    return self.__dict__[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _throttled(self, principal: Principal) -> bool:
        return self.monitor.throttled(principal)

    def _build_services(self) -> None:
        """Paging, OAuth 2 / SMART, users, sessions, sign-in and access administration: what
        ``hearth serve`` and the commands that act for users need, and a backup does not."""
        from hearth.auth.throttle import DEFAULT_THROTTLE
        from hearth.services.identity import Authenticator
        from hearth.services.oauth import (
            AuthorizationService,
            CertificateService,
            ClientAuthenticator,
            ClientRegistry,
            JwksFetcher,
            TokenService,
        )
        from hearth.services.paging import PageTokens
        from hearth.storage.oauth import OAuthStore

        self._services_built = True
        settings = self.settings
        self.pages = PageTokens(self.keyring, self.clock, self.random)
        # OAuth 2 / SMART: clients, client authentication, tokens (docs/design.md).
        self.oauth_store = OAuthStore(self.store, self.audit, self.clock)
        self.clients = ClientRegistry(self.oauth_store, self.random)
        self.certificates = CertificateService(
            self.oauth_store,
            self.clock,
            ca_file=settings.tls_client_ca,
            crl_file=settings.tls_client_crl,
        )
        self.client_auth = ClientAuthenticator(
            self.clients, self.oauth_store, JwksFetcher(), self.clock
        )
        self.tokens = TokenService(
            store=self.oauth_store,
            clients=self.clients,
            keys=self.token_keys,
            ensure_key=self.ensure_token_key,
            settings=settings.oauth,
            clock=self.clock,
            random=self.random,
            alarms=self.alarms,
            users=self._user_rights,
            break_glass=self._emergency_token,
        )
        self.authenticator = Authenticator(
            ApiTokenStore(self.store, self.audit, self.clock, self.random),
            self.tokens,
            users=self._user_rights,
        )
        self.authorization = AuthorizationService(
            clients=self.clients,
            tokens=self.tokens,
            store=self.oauth_store,
            records=self.records,
            settings=settings.oauth,
            clock=self.clock,
            random=self.random,
            break_glass=self._emergency_consent,
        )
        self._build_auth(self._password_parameters, self._throttle_policy or DEFAULT_THROTTLE)

    def _build_auth(self, parameters: Argon2Parameters | None, throttle: ThrottlePolicy) -> None:
        """Users, sessions, throttling and sign-in (issue 4)."""
        from hearth.auth import (
            DEFAULT_PARAMETERS,
            RECOVERY_CODE_PARAMETERS,
            PasswordHasher,
            PasswordPolicy,
            PinHasher,
            PinPolicy,
            RecoveryCodeHasher,
        )
        from hearth.auth.sessions import SessionTimeouts
        from hearth.services.access import AccessAdmin
        from hearth.services.account import AccountService
        from hearth.services.audit_views import AuditViews
        from hearth.services.breakglass import BreakGlassService
        from hearth.services.certificate_signin import CertificateSignIn
        from hearth.services.monitor import AccessMonitor
        from hearth.services.sessions import SessionService
        from hearth.services.signin import SignInService
        from hearth.services.throttle import SignInThrottle
        from hearth.services.users import UserService
        from hearth.storage.access_admin import AccessStore
        from hearth.storage.accounts import AccountStore
        from hearth.storage.sessions import SessionSealer, SessionStore, SqlSessionStore
        from hearth.storage.throttle import MemoryCounters, ThrottleCounters

        settings = self.settings
        peppers = load_pepper(settings.auth.pepper_file)
        cost = parameters or DEFAULT_PARAMETERS
        self.passwords = PasswordHasher(cost, peppers)
        recovery = RecoveryCodeHasher(parameters or RECOVERY_CODE_PARAMETERS, peppers)
        pins = PinHasher(cost, peppers)
        self.accounts = AccountStore(self.store, self.audit, self.keyring, self.random)
        sealer = SessionSealer(self.keyring, self.random)
        session_store: SessionStore
        counters: ThrottleCounters
        if settings.redis_url is not None:
            from hearth.storage.redis import RedisCounters, RedisSessionStore, connect

            self._redis = connect(settings.redis_url.reveal())
            session_store = RedisSessionStore(self._redis, settings.instance_id, sealer)
            counters = RedisCounters(self._redis, settings.instance_id)
        else:
            session_store = SqlSessionStore(self.store, sealer)
            counters = MemoryCounters()
        s = settings.sessions
        self.sessions = SessionService(
            session_store,
            self.accounts,
            self.audit,
            SessionTimeouts(
                idle=timedelta(minutes=s.idle_minutes),
                absolute=timedelta(hours=s.absolute_hours),
                step_up=timedelta(minutes=s.step_up_minutes),
                sign_in=timedelta(minutes=s.sign_in_minutes),
            ),
            self.clock,
            self.random,
            self._keyed_hash,
        )
        self.throttle = SignInThrottle(
            counters, throttle, self.alarms, self.clock, self._keyed_hash
        )
        admin_roles = frozenset({ADMIN_ROLE})
        self.signin = SignInService(
            self.accounts,
            self.sessions,
            self.throttle,
            passwords=self.passwords,
            recovery_codes=recovery,
            pins=pins,
            admin_roles=admin_roles,
            clock=self.clock,
            random=self.random,
        )
        self.certificate_signin = CertificateSignIn(
            self.certificates, self.signin, self.accounts, self.audit, self.clock
        )
        self.users = UserService(
            self.accounts,
            self.sessions,
            self.authenticator,
            self.throttle,
            known_roles=lambda: self.roles.catalog().names,
            clock=self.clock,
            random=self.random,
        )
        self.access_store = AccessStore(self.store, self.audit, self.keyring, self.random)
        self.access = AccessAdmin(
            self.access_store,
            self.policy,
            self.roles,
            self.users,
            self.system_records,
            clock=self.clock,
            random=self.random,
        )
        self.monitor = AccessMonitor(
            counters,
            self.alarms,
            self.access_store,
            self.roles.catalog,
            settings.access,
            clock=self.clock,
            keyed_hash=self._keyed_hash,
        )
        self.policy.throttled = self.monitor.throttled
        self.audit_views = AuditViews(
            self.access_store, self.policy, clock=self.clock, site=settings.instance_id
        )
        self.break_glass = BreakGlassService(
            self.access_store,
            self.policy,
            self.alarms,
            clock=self.clock,
            random=self.random,
            minutes=settings.access.break_glass_minutes,
        )
        self.account = AccountService(
            self.accounts,
            self.sessions,
            passwords=self.passwords,
            password_policy=PasswordPolicy(),
            recovery_codes=recovery,
            pins=pins,
            pin_policy=PinPolicy(),
            admin_roles=admin_roles,
            clock=self.clock,
            random=self.random,
        )

    def _user_rights(self, user_id: str) -> tuple[bool, frozenset[str]] | None:
        """A user's current standing, for API tokens and the OAuth resource server (see
        ``UserRights``)."""
        user = self.accounts.user(user_id)
        if user is None:
            return None
        return user.status == "active", frozenset(user.roles.split())

    def _emergency_token(self, principal: Principal, grant_id: str, client_id: str) -> int:
        """A break-the-glass grant an access token will carry: checked, audited, and when it
        ends (see ``hearth.services.oauth.tokens.EmergencyCheck``)."""
        return to_us(self.break_glass.held(principal, grant_id, client_id=client_id)[1])

    def _emergency_consent(
        self, principal: Principal, grant_id: str, client_id: str
    ) -> tuple[str, datetime]:
        """The same check for the consent page (a refusal is audited; the token endpoint
        audits the grant's use when it issues the token)."""
        return self.break_glass.held(principal, grant_id, client_id=client_id, record=False)

    def _keyed_hash(self, domain: str, value: str) -> str:
        """HMAC under the instance's blind-index key, domain-separated from every index."""
        return self.keyring.blind(domain, value).hex()

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
        """Pick up keys rotated by another process; cheap, and at most every 30 seconds.
        Writers do not depend on it: they check the key epoch under their lock."""
        self.live_keys.refresh(force=force)

    def token_keys(self) -> TokenKeys:
        """The token signing keys, rebuilt only when the key ring was reloaded."""
        self.refresh_keys()
        from hearth.auth.oauth.tokens import TokenKeys

        cached = self._token_keys
        if cached is None or cached[0] != self.keyring.generation:
            cached = (
                self.keyring.generation,
                TokenKeys(self.keyring.token_signing_keys(), self.keyring.token_key_id),
            )
            self._token_keys = cached
        return cached[1]

    def ensure_token_key(self) -> None:
        """Rotate the token signing key when due; retire keys no unexpired token can need."""
        oauth = self.settings.oauth
        longest = max(oauth.access_token_seconds, oauth.backend_token_seconds)
        created = self.key_admin().ensure_token_key(
            max_age_us=oauth.signing_key_seconds * 1_000_000,
            retire_after_us=(longest + 300) * 1_000_000,
        )
        if created is not None:
            self.refresh_keys(force=True)

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
            keys_current=self.live_keys.ensure_current,
            request_id=request_id,
            on_integrity_failure=self._integrity_failure,
            on_disclosure=self.monitor.observe,
            on_self_link=self.monitor.self_link,
            bounds=SearchBounds(
                open=self.settings.limits.search_open_bound,
                include=self.settings.limits.search_include_bound,
            ),
            index_workers=self.index_workers,
            write_groups=self.write_groups,
        )

    def search(self, principal: Principal, *, request_id: str | None = None) -> SearchService:
        from hearth.services.search import SearchService

        return SearchService(
            self.repository(principal, request_id=request_id),
            pages=self.pages,
            limits=self.settings.limits,
            clock=self.clock,
        )

    def bundles(self, principal: Principal, *, request_id: str | None = None) -> BundleService:
        from hearth.services.bundles import BundleService
        from hearth.services.search import SearchService

        repo = self.repository(principal, request_id=request_id)
        search = SearchService(
            repo, pages=self.pages, limits=self.settings.limits, clock=self.clock
        )
        return BundleService(
            repo,
            search=search,
            max_entries=self.settings.limits.max_json_array,
            now=self.clock.now,
        )

    def importer(self, principal: Principal, *, chunk: int = 500) -> ImportService:
        from hearth.services.importer import ImportService

        return ImportService(self.repository(principal), self.bundles(principal), chunk=chunk)

    def refresh_statistics(self) -> None:
        """After a bulk load: the query planner's statistics (PostgreSQL, MariaDB)."""
        self.store.refresh_statistics()

    def records(self, principal: Principal, *, request_id: str | None = None) -> RecordService:
        from hearth.services.records import RecordService

        return RecordService(self.repository(principal, request_id=request_id))

    def system_records(self, purpose: str) -> RecordRepository:
        """A gate bound to Hearth itself (``system:<purpose>``, unrestricted, every use audited
        under that name): for the few services that write on an administrator's behalf without
        giving them clinical access (care-team assignment)."""
        return self.repository(self.system_principal(purpose))

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
            anchor=self.anchor,
            index_workers=self.index_workers,
        )

    def system_principal(self, purpose: str) -> Principal:
        return Principal(
            subject=f"system:{purpose}",
            kind=PrincipalKind.SYSTEM,
            roles=frozenset({ADMIN_ROLE}),
            purpose_of_use="HOPERAT",
        )

    def key_admin(self, *, operator: str | None = None) -> KeyAdministration:
        """Key rotation, re-sealing, retirement and KEK rotation, audited as ``system:keys``."""
        self.refresh_keys(force=True)
        oauth = self.settings.oauth
        longest_token = max(oauth.access_token_seconds, oauth.backend_token_seconds)
        # Secrets keys also seal sessions and page tokens, which are not re-sealed: a rotated
        # one stays until the longest of them has expired.
        longest_session = max(self.settings.sessions.absolute_hours * 3600, 3600)
        return KeyAdministration(
            store=self.store,
            live_keys=self.live_keys,
            audit=self.audit,
            clock=self.clock,
            random=self.random,
            operator=operator,
            token_grace_us=(longest_token + 300) * 1_000_000,
            secrets_grace_us=(longest_session + 300) * 1_000_000,
        )

    @property
    def kek(self) -> KeyEncryptionKey:
        return self.live_keys.kek

    @cached_property
    def index_workers(self) -> IndexWorkers | None:
        """The process's index workers as ``[search] index_workers`` says (docs/design.md,
        "Index workers"); started by the first large write batch. Looked up once: every
        request's repository is handed them."""
        return index_workers.shared(configured_workers(self.settings))

    @cached_property
    def write_groups(self) -> WriteGroups[SingleWrite]:
        """Group commit for this instance's single writes (docs/design.md, "Group commit for
        writes"): one queue per database, whoever writes through it."""
        return WriteGroups(run_write_group)

    def rotate_keys(self, purposes: tuple[str, ...], *, operator: str | None) -> list[int]:
        chosen = tuple(KeyPurpose(p) for p in purposes)
        created = self.key_admin(operator=operator).rotate(chosen)
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

    def integrity_scanner(self, *, operator: str | None = None) -> IntegrityScanner:
        """The integrity scanner (``hearth integrity scan``, and ``hearth serve``'s background
        scanner), audited as ``system:integrity-scan``."""
        from hearth.services.scanner import IntegrityScanner

        return IntegrityScanner(
            lambda: self.system_repository("integrity-scan", operator=operator),
            clock=self.clock,
            settings=self.settings.integrity,
            alarms=self.alarms,
            # Random, not the process id: processes on two hosts can share a pid.
            holder=int.from_bytes(self.random.token_bytes(6), "big"),
        )

    def integrity_repair(
        self, backup: BackupVersions, *, dry_run: bool, operator: str | None = None
    ) -> RepairReport:
        """Repair the scanner's findings from ``backup`` (``hearth integrity repair``),
        audited as ``system:integrity-repair``."""
        from hearth.services.repair import repair_from_backup

        return repair_from_backup(
            lambda: self.system_repository("integrity-repair", operator=operator),
            backup,
            clock=self.clock,
            dry_run=dry_run,
        )

    def start_scanner(self) -> ScannerThread | None:
        """Start the background scanner if ``[integrity] scan`` is on (the app's lifespan)."""
        if not self.settings.integrity.scan:
            return None
        from hearth.services.scanner import ScannerThread

        thread = ScannerThread(self.integrity_scanner())
        thread.start()
        return thread

    def backup_state(self) -> BackupProgress:
        """Small backup records kept in this instance's database (``instance_meta``): the chain
        head, the last drill, scheduled verification's progress."""
        from hearth.storage.backup import BackupState

        return BackupState(self.store)

    def start_backup_monitor(self) -> BackupMonitor | None:
        """Start ``hearth serve``'s backup watch (policy, RPO, scheduled verification every
        ``[backup] monitor_minutes``) when backup targets are configured (the app's lifespan)."""
        section = self.settings.backup
        if not section.targets or section.monitor_minutes <= 0:
            return None
        from hearth.services.backup_monitor import BackupMonitor

        settings = self.settings
        built: list[BackupTarget] = []

        def targets() -> list[BackupTarget]:
            # Built once and reused: an SFTP target keeps its connection between ticks.
            if not built:
                built.extend(default_backup_targets(settings))
            return built

        monitor = BackupMonitor(
            policy=section,
            rpo_hours=settings.alarms.backup_rpo_hours,
            targets=targets,
            verifier=lambda: load_backup_keys(settings).verifier,
            state=self.backup_state(),
            alarms=self.alarm_service,
            clock=self.clock,
        )
        monitor.start()
        return monitor

    def start_background(self) -> None:
        """Start what a long-running server runs beside requests (``hearth serve``): the alarm
        delivery worker, which also sends notices other processes left in the outbox; and the
        index workers, so that the first large bundle does not wait for them to start."""
        self.alarm_service.start()
        workers = self.index_workers
        if workers is not None:
            workers.start()

    def close(self) -> None:
        self.alarm_service.close()
        self.live_keys.flush_seal_counts()
        self.audit.close()
        self.db.dispose()
        if self._redis is not None:
            self._redis.close()


#: How long the administrator token ``hearth init`` prints stays valid (``hearth token issue``
#: and ``hearth serve --issue-admin-credential`` make more).
INIT_TOKEN_TTL = timedelta(hours=24)


class InitResult:
    def __init__(
        self,
        home: Path,
        base_url: str,
        admin_token: str,
        database: str,
        *,
        token_expires: datetime,
        password_stripped: bool = False,
        database_from_env: bool = False,
    ) -> None:
        self.home = home
        self.base_url = base_url
        self.admin_token = admin_token
        self.database = database
        self.token_expires = token_expires
        #: the password of ``--database`` was left out of hearth.toml
        self.password_stripped = password_stripped
        #: hearth.toml names no database URL: it comes from HEARTH_DATABASE_URL
        self.database_from_env = database_from_env


class _Made:
    """The files and folders ``init_instance`` creates, so that a failed init can remove them
    (and nothing that was there before it ran)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dirs: list[Path] = []
        self.files: list[Path] = []

    def mkdir(self, path: Path, mode: int = 0o777) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        self.dirs.extend(reversed(missing))

    def sqlite(self, url: str) -> None:
        """The SQLite file (with its WAL and journal files) and folder a new database makes."""
        parsed = normalise_url(url)
        name = parsed.database
        if parsed.get_backend_name() == "sqlite" and name and name != ":memory:":
            path = Path(name)
            if not path.exists():
                self.files += [Path(f"{path}{end}") for end in ("", "-wal", "-shm", "-journal")]
            self.mkdir(path.parent)

    def undo(self, config: Path) -> None:
        for path in (config, *self.files):
            path.unlink(missing_ok=True)
        for folder in reversed(self.dirs):
            with contextlib.suppress(OSError):  # not empty: something else is in it
                folder.rmdir()


def init_instance(
    home: Path,
    *,
    database_url: str | None = None,
    database_from_env: bool = False,
    key_source: str = "file",
    key_file: Path | None = None,
    passphrase: Secret | None = None,
    clock: Clock | None = None,
    random: Random | None = None,
    audit_checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> InitResult:
    """Create an instance: config, key-encryption key, schema, keys, audit genesis, admin token.

    ``database_url`` is the database to create it in. hearth.toml (mode 0600) gets it without
    its password; with ``database_from_env`` (the URL came from ``HEARTH_DATABASE_URL``) it
    gets no URL at all, so a URL from the environment is never persisted.
    """
    clock = clock or SystemClock()
    random = random or SystemRandom()
    config_path = home / CONFIG_FILE
    if config_path.exists():
        raise HearthError(errors.BAD_PARAMETER, f"{home} already holds a Hearth instance.")
    if database_from_env and database_url is None:
        raise HearthError(errors.BAD_PARAMETER, "HEARTH_DATABASE_URL is not set.")
    if key_file is not None:
        check_key_file_location(home, key_file)
    stored_url, password_stripped = (
        strip_password(database_url) if database_url is not None else (None, False)
    )
    made = _Made(home)
    try:
        made.mkdir(home)
        made.mkdir(home / "data", mode=0o700)
        instance_id = random.token_bytes(8).hex()
        salt_hex: str | None = None
        key_file_setting: str | None = None
        pepper_setting: str | None = None
        if key_source == "file":
            path = key_file or home / "keys" / "kek.key"
            if not path.exists():
                made.mkdir(path.parent)
                create_key_file(path, random)
                made.files.append(path)
            key_file_setting = str(path if key_file is not None else Path("keys/kek.key"))
            # The password pepper lives beside the key file, never in data/ (NIST-PW-14).
            pepper_path = path.parent / "pepper.key"
            if not pepper_path.exists():
                create_pepper_file(pepper_path, random)
                made.files.append(pepper_path)
            pepper_setting = str(pepper_path if key_file is not None else Path("keys/pepper.key"))
        elif key_source == "passphrase":
            if passphrase is None:
                raise HearthError(errors.KEY_UNAVAILABLE, "Set HEARTH_KEY_PASSPHRASE first.")
            salt_hex = random.token_bytes(16).hex()
        write_config(
            config_path,
            render_config(
                instance_id=instance_id,
                database_url=None if database_from_env else stored_url,
                database_from_env=database_from_env,
                key_source=key_source,
                key_file=key_file_setting,
                salt_hex=salt_hex,
                pepper_file=pepper_setting,
                host=host,
                port=port,
            ),
        )
        env = {"HEARTH_KEY_PASSPHRASE": passphrase.reveal()} if passphrase is not None else {}
        if database_url is not None and (database_from_env or password_stripped):
            env["HEARTH_DATABASE_URL"] = database_url  # this run connects with the full URL
        settings = load_settings(home, env)
        made.sqlite(settings.database_url.reveal())
        db = open_database(settings.database_url.reveal())
        try:
            check_reachable(db)
            upgrade(db)
            store = SqlStore(db)
            initialise_store(
                store,
                build_kek(settings),
                instance_id=instance_id,
                clock=clock,
                random=random,
                checkpoint_every=audit_checkpoint_every,
            )
        except BaseException:
            db.dispose()
            raise
    except BaseException:
        # A failed init leaves nothing behind that would make the next one refuse to start
        # ("already holds a Hearth instance"): the config, keys and folders it made go.
        made.undo(config_path)
        raise
    db.dispose()
    container = Container(settings, clock=clock, random=random)
    try:
        admin = ensure_admin_user(container)
        token = container.authenticator.issue_token(
            subject=admin,
            roles=frozenset({ADMIN_ROLE}),
            label="created by hearth init",
            ttl=INIT_TOKEN_TTL,
            by="system:init",
        )
    finally:
        container.close()
    return InitResult(
        home,
        f"http://{settings.host}:{settings.port}/fhir",
        token,
        settings.engine,
        token_expires=clock.now() + INIT_TOKEN_TTL,
        password_stripped=password_stripped,
        database_from_env=database_from_env,
    )


def ensure_admin_user(container: Container) -> str:
    """The administrator account's user id, creating the account (without credentials) if this
    instance has none yet."""
    users = container.users
    existing = container.accounts.user_by_name(ADMIN_USERNAME)
    if existing is not None:
        return existing.user_id
    info, _ = users.add(
        ADMIN_USERNAME,
        roles=frozenset({ADMIN_ROLE}),
        display_name="Administrator",
        by="system:init",
        link_ttl=None,
    )
    return info.user_id


class AdminCredential:
    """What ``hearth serve --issue-admin-credential`` prints: an API token for the FHIR API and,
    while the administrator has no way to sign in to the console yet, a one-time set-up link."""

    def __init__(self, token: str, set_up: SetUpLink | None) -> None:
        self.token = token
        self.set_up = set_up


def issue_admin_credential(
    container: Container, *, ttl: timedelta, link_ttl: timedelta = timedelta(hours=1)
) -> AdminCredential:
    """A fresh one-time-shown administrator token, and a set-up link if one is needed."""
    admin = ensure_admin_user(container)
    info = container.users.get(ADMIN_USERNAME)
    # The token acts with the administrator's roles at each request (an operator may have
    # taken bootstrap-admin away); the roles stored with it record what they were at issue.
    token = container.authenticator.issue_token(
        subject=admin,
        roles=frozenset(info.roles),
        label="issued at serve",
        ttl=ttl,
        by="system:serve",
    )
    can_sign_in = info.keys > 0 or (info.has_password and info.has_totp)
    link = None
    if not can_sign_in and info.status == "active":
        link = container.users.set_up_link(ADMIN_USERNAME, by="system:serve", ttl=link_ttl)
    return AdminCredential(token, link)


def load_pepper(path: Path | None) -> PepperRing | None:
    """The password pepper from ``[auth] pepper_file`` (64 hex digits), or None."""
    if path is None:
        return None
    try:
        key = bytes.fromhex(path.read_text("ascii").strip())
    except (OSError, ValueError):
        raise HearthError(
            errors.KEY_UNAVAILABLE, f"The password pepper file {path} is missing or damaged."
        ) from None
    from hearth.auth import PepperRing

    key_id = "f" + hashlib.sha256(b"hearth/pepper-id/v1\x00" + key).hexdigest()[:12]
    return PepperRing({key_id: key}, current=key_id)


def create_pepper_file(path: Path, random: Random) -> None:
    """32 random bytes as hex, mode 0600, in a directory of mode 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(random.token_bytes(32).hex() + "\n")


KEY_PURPOSES = tuple(
    p.value for p in KeyPurpose if p not in (KeyPurpose.BLIND, KeyPurpose.AUDIT_CHAIN)
)


def check_key_file_location(home: Path, key_file: Path) -> None:
    """Refuse a key file inside the instance's ``data/``: copying the data (a backup, a file
    copy) must never copy the key that opens it (BRIEF "Keys")."""
    data = (home / "data").resolve()
    if key_file.resolve().is_relative_to(data):
        raise HearthError(
            errors.BAD_PARAMETER,
            f"Refusing a key file inside {data}: keep keys apart from the data they protect "
            "(by default HOME/keys/, in production outside the instance).",
        )


def rewrap_keys(home: Path, new_key_file: Path) -> int:
    """KEK rotation: create ``new_key_file``, re-wrap every key under it, then point
    ``keys.file`` in hearth.toml at it (written atomically, mode 0600).

    Running servers keep the keys they hold (a re-wrap changes no key) and, when they next
    need a key created under the new KEK, read the new ``keys.file`` from hearth.toml.
    """
    new_key_file = new_key_file.expanduser().absolute()
    check_key_file_location(home, new_key_file)
    settings = load_settings(home)
    config_path = home / CONFIG_FILE
    config = config_path.read_text("utf-8")
    updated = set_key_file(config, new_key_file)  # fails before anything changes
    container = Container(settings)
    try:
        create_key_file(new_key_file, container.random)
        new = FileKek(new_key_file)
        count = container.key_admin(operator="cli").rewrap_all(new)
    finally:
        container.close()
    try:
        write_config(config_path, updated)
    except OSError as exc:
        raise HearthError(
            errors.KEY_UNAVAILABLE,
            f"The keys are re-wrapped under {new_key_file}, but {config_path} could not be "
            f'updated ({type(exc).__name__}): set keys.file = "{new_key_file}" in it now.',
        ) from None
    return count


def migrate_database(settings: Settings) -> tuple[str | None, str | None]:
    db = open_database(settings.database_url.reveal())
    try:
        before = current_revision(db)
        upgrade(db)
        return before, current_revision(db)
    finally:
        db.dispose()


# -- backups (docs/operations.md, "Backups") -----------------------------------------------------

#: The age recipients backups are encrypted to, one per line (public: kept in the instance home).
BACKUP_RECIPIENTS_FILE = "backup-recipients.txt"
#: Trusted manifest-signing public keys (hex, one per line): older keys stay after a rotation.
BACKUP_SIGNING_PUBLIC_FILE = "backup-signing.pub"
BACKUP_SIGNING_KEY_FILE = "backup-signing.key"


def backup_recipients_path(settings: Settings) -> Path:
    """``[backup] recipients_file``, by default ``HOME/backup-recipients.txt``."""
    return settings.backup.recipients_file or settings.home / BACKUP_RECIPIENTS_FILE


def backup_signing_key_path(settings: Settings) -> Path:
    """The manifest-signing key lives beside the key-encryption key file (never in data/)."""
    if settings.keys.kind == "file" and settings.keys.file is not None:
        return settings.keys.file.parent / BACKUP_SIGNING_KEY_FILE
    return settings.home / "keys" / BACKUP_SIGNING_KEY_FILE


class BackupKeys:
    """What backups need from the instance's key files."""

    def __init__(
        self,
        recipients: list[str],
        signer: ManifestSigner | None,
        public_keys: list[bytes],
    ) -> None:
        self.recipients = recipients
        self.signer = signer
        self.public_keys = public_keys

    @property
    def encryptor(self) -> SegmentEncryptor | None:
        return AgeEncryptor(self.recipients) if self.recipients else None

    @property
    def verifier(self) -> ManifestVerifier:
        return Ed25519ManifestVerifier(self.public_keys)


def _read_seed(path: Path) -> bytes:
    try:
        seed = bytes.fromhex(path.read_text("ascii").strip())
    except (OSError, ValueError):
        raise HearthError(
            errors.KEY_UNAVAILABLE, f"The backup signing key {path} is missing or damaged."
        ) from None
    if len(seed) != 32:
        raise HearthError(errors.KEY_UNAVAILABLE, f"The backup signing key {path} is damaged.")
    return seed


def load_backup_keys(settings: Settings) -> BackupKeys:
    home = settings.home
    recipients_path = backup_recipients_path(settings)
    recipients = (
        parse_recipients(recipients_path.read_text("utf-8")) if recipients_path.exists() else []
    )
    key_path = backup_signing_key_path(settings)
    signer = Ed25519ManifestSigner(_read_seed(key_path)) if key_path.exists() else None
    public: list[bytes] = []
    public_path = home / BACKUP_SIGNING_PUBLIC_FILE
    if public_path.exists():
        for raw in public_path.read_text("ascii").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                try:
                    public.append(bytes.fromhex(line))
                except ValueError:
                    raise HearthError(
                        errors.KEY_UNAVAILABLE, f"{public_path} holds a malformed key."
                    ) from None
    if signer is not None and signer.public_key not in public:
        public.append(signer.public_key)
    return BackupKeys(recipients, signer, public)


class NewBackupRecipient:
    def __init__(
        self, identity_file: Secret, recipient: str, recipients: list[str], signing_key_id: str,
        signing_public_hex: str, signing_created: bool,
    ) -> None:  # fmt: skip
        self.identity_file = identity_file
        self.recipient = recipient
        self.recipients = recipients
        self.signing_key_id = signing_key_id
        self.signing_public_hex = signing_public_hex
        self.signing_created = signing_created


def create_backup_recipient(
    settings: Settings,
    *,
    add: bool = False,
    clock: Clock | None = None,
    random: Random | None = None,
) -> NewBackupRecipient:
    """Generate an age identity for the operator to keep offline, record its recipient in
    ``HOME/backup-recipients.txt`` (replacing the list, or adding to it with ``add``), and make
    sure the manifest-signing key exists (created once, beside the key-encryption key, its
    public half listed in ``HOME/backup-signing.pub``). The identity is returned, never stored."""
    clock = clock or SystemClock()
    random = random or SystemRandom()
    home = settings.home
    identity, recipient = generate_backup_identity(random)
    recipients_path = backup_recipients_path(settings)
    existing = (
        parse_recipients(recipients_path.read_text("utf-8"))
        if add and recipients_path.exists()
        else []
    )
    recipients = [*existing, recipient]
    key_path = backup_signing_key_path(settings)
    created = False
    if not key_path.exists():
        check_key_file_location(home, key_path)
        key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(random.token_bytes(32).hex() + "\n")
        created = True
    signer = Ed25519ManifestSigner(_read_seed(key_path))
    public_path = home / BACKUP_SIGNING_PUBLIC_FILE
    known = public_path.read_text("ascii") if public_path.exists() else ""
    if signer.public_key.hex() not in known:
        write_config(public_path, known + signer.public_key.hex() + "\n")
    write_config(recipients_path, format_recipients_file(recipients))
    return NewBackupRecipient(
        format_identity_file(identity, recipient, clock.now()),
        recipient,
        recipients,
        signer.key_id,
        signer.public_key.hex(),
        created,
    )


def backup_decryptor(identity_file: Path) -> SegmentDecryptor:
    """The operator's identity file (``hearth keys backup-recipient`` wrote it)."""
    try:
        text = identity_file.read_text("utf-8")
    except OSError:
        raise HearthError(
            errors.BACKUP_ARGUMENT, f"The identity file {identity_file} cannot be read."
        ) from None
    return AgeDecryptor(parse_identity_file(text))


def default_backup_targets(settings: Settings) -> list[BackupTarget]:
    """Every ``[[backup.targets]]``; without any, one local directory: ``HOME/backups``
    (named ``local``, in the primary region)."""
    if settings.backup.targets:
        return open_targets(settings)
    from hearth.targets import LocalDirectoryTarget

    region = settings.backup.primary_region
    return [LocalDirectoryTarget(settings.home / "backups", label="local", region=region)]


def configured_workers(settings: Settings) -> int:
    """How many index workers ``[search] index_workers`` asks for (by default, one per spare
    core: ``index_workers.default_processes``)."""
    configured = settings.search.index_workers
    return default_processes() if configured is None else configured


class _LogAlarms:
    def raise_alarm(self, alarm: Alarm) -> None:
        log.error("alarm %s on %s: %s", alarm.kind.value, alarm.subject, alarm.summary)


def backup_service(
    settings: Settings,
    container: Container | None,
    *,
    targets: list[BackupTarget] | None = None,
    operator: str | None = None,
    clock: Clock | None = None,
    random: Random | None = None,
) -> BackupService:
    """The backup service. Without a container (the instance's database is gone: disaster
    recovery) only list, verify and restore work; their actions are logged, and a restore is
    audited in the restored database itself."""
    from hearth.services.backup import BackupService
    from hearth.storage.backup import BackupState, RestoreDatabase, open_snapshot

    keys = load_backup_keys(settings)
    chosen = targets or default_backup_targets(settings)
    lock_days = {t.name: settings.backup.lock_days(t) for t in settings.backup.targets}
    workers = index_workers.shared(configured_workers(settings))
    work = settings.home / ".backup"
    if container is None:
        return BackupService(
            targets=chosen,
            verifier=keys.verifier,
            encryptor=None,
            signer=None,
            snapshot=None,
            state=None,
            record=lambda action, outcome, code: log.info("%s: %s", action, outcome.value),
            restore_database=RestoreDatabase,
            kek=build_kek(settings),
            alarms=_LogAlarms(),
            clock=clock or SystemClock(),
            random=random or SystemRandom(),
            instance_id=settings.instance_id,
            work_dir=work,
            operator=operator,
            lock_days=lock_days,
            index_workers=workers,
        )
    system = container.system_repository("backup", operator=operator)
    store = container.store
    return BackupService(
        targets=chosen,
        verifier=keys.verifier,
        encryptor=keys.encryptor,
        signer=keys.signer,
        snapshot=lambda: open_snapshot(store),
        state=BackupState(store),
        record=lambda action, outcome, code: system.record(action, outcome, code=code),
        restore_database=RestoreDatabase,
        kek=container.kek,
        alarms=container.alarms,
        clock=clock or container.clock,
        random=random or container.random,
        instance_id=settings.instance_id,
        work_dir=work,
        operator=operator,
        lock_days=lock_days,
        index_workers=workers,
    )


def write_secret_file(path: Path, text: Secret) -> None:
    """A new file readable by its owner only (mode 0600); refuses to replace one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise HearthError(errors.BAD_PARAMETER, f"{path} exists; not overwriting it.") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text.reveal())
        handle.flush()
        os.fsync(handle.fileno())


def resolve_backup_targets(settings: Settings, names: tuple[str, ...] = ()) -> list[BackupTarget]:
    """The targets ``--target NAME`` names, or every configured one. Until targets are
    configured in hearth.toml there is one: ``local`` (HOME/backups)."""
    if not names:
        return default_backup_targets(settings)
    if settings.backup.targets:
        return [open_target(settings, name) for name in dict.fromkeys(names)]
    chosen = default_backup_targets(settings)
    unknown = [n for n in names if n != "local"]
    if unknown:
        raise HearthError(
            errors.BACKUP_CONFIG,
            f"No backup target named {unknown[0]!r}: none is configured in hearth.toml "
            "([[backup.targets]]), so backups go to HOME/backups ('local').",
        )
    return chosen
