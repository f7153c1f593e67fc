"""Key administration: create, rotate, re-seal, retire and re-wrap keys (docs/design.md, "Keys").

Like the system repository it acts without a principal, is built only by ``wiring``, audits
every operation under ``system:keys`` and returns counts and ids, never data.

Every change of the key set takes the version counter's row lock first (the lock every writer
holds while it seals), then the key counter's, and increments the key epoch in the same
transaction; see ``hearth.storage.keys`` for why that makes retirement safe against a server
that has not reloaded its keys yet. The order, version counter before key counter, is the same
everywhere, so two of these never deadlock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from hearth.audit import AuditRecord
from hearth.crypto import (
    SEALING_PURPOSES,
    KeyEncryptionKey,
    KeyPurpose,
    KeyState,
    WrappedKey,
    new_wrapped_key,
    rewrap,
    sealed_key_id,
)
from hearth.domain import (
    Clock,
    HearthError,
    IntegrityError,
    Outcome,
    Random,
    ResourceRef,
    errors,
)
from hearth.storage.access_admin import grant_aad
from hearth.storage.accounts import totp_aad
from hearth.storage.alarms import note_aad
from hearth.storage.audit import AuditTrail
from hearth.storage.keys import LiveKeys
from hearth.storage.repository import open_version, to_us
from hearth.storage.sql import access as access_sql
from hearth.storage.sql.accounts import SqlAccounts
from hearth.storage.sql.alarms import SqlAlarms
from hearth.storage.sql.store import KEY_SEQ, VERSION_SEQ, KeyRow, SqlStore

__all__ = ["KeyAdministration", "KeyInfo", "create_key", "ensure_key_purposes", "lock_keys"]

#: Purposes added after the first release: an instance created before them gets its keys the
#: first time a newer Hearth opens it (``ensure_key_purposes``).
_ADDED_LATER = (KeyPurpose.AUDIT_SEAL, KeyPurpose.SECRETS)
_BATCH = 500


@dataclass(frozen=True, slots=True)
class _Sealed:
    """One long-lived sealed value, with what re-sealing it needs."""

    blob: bytes
    aad: bytes
    #: stores the re-sealed blob unless the value changed meanwhile; True if it did store
    swap: Callable[[Connection, bytes], bool]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: int
    purpose: str
    state: str
    created_us: int
    #: stored rows that still need the key (None where rows do not name keys)
    in_use: int | None = None
    #: messages the key has sealed (AES-GCM keys only), as far as processes have reported
    seals: int | None = None


def lock_keys(store: SqlStore, conn: Connection) -> None:
    """Take the version counter's row lock (every writer's), then the key counter's."""
    store.next_seq(conn, VERSION_SEQ, 0)
    store.next_seq(conn, KEY_SEQ, 0)


def create_key(
    store: SqlStore,
    conn: Connection,
    kek: KeyEncryptionKey,
    purpose: KeyPurpose,
    *,
    now_us: int,
    random: Random,
) -> int:
    """Create the new active key of ``purpose`` (the caller demotes the old one)."""
    key_id = store.next_seq(conn, KEY_SEQ)
    wrapped = new_wrapped_key(kek, key_id=key_id, purpose=purpose, random=random)
    store.insert_key(
        conn,
        KeyRow(
            key_id,
            purpose.value,
            KeyState.ACTIVE.value,
            wrapped.wrapped,
            kek.kek_id,
            now_us,
            None,
            None,
        ),
    )
    if purpose in SEALING_PURPOSES:
        store.add_seal_counts(conn, {key_id: 0})
    return key_id


def ensure_key_purposes(
    store: SqlStore, kek: KeyEncryptionKey, *, clock: Clock, random: Random
) -> list[int]:
    """Create the first key of each purpose this instance lacks (an instance made by an
    earlier Hearth). Returns the new key ids; usually none, decided without a write."""

    def missing(rows: list[KeyRow]) -> list[KeyPurpose]:
        active = {r.purpose for r in rows if r.state == KeyState.ACTIVE.value}
        return [p for p in _ADDED_LATER if p.value not in active]

    with store.read() as conn:
        if not store.meta(conn) or not missing(store.keys(conn)):
            return []
    now_us = to_us(clock.now())
    created: list[int] = []
    with store.write() as conn:
        lock_keys(store, conn)
        rows = store.keys(conn)
        if {r.kek_id for r in rows if r.wrapped is not None} - {kek.kek_id}:
            return []  # a wrong KEK: loading the key ring says so
        for purpose in missing(rows):
            created.append(create_key(store, conn, kek, purpose, now_us=now_us, random=random))
        if created:
            store.bump_key_epoch(conn)
    return created


class KeyAdministration:
    """The operations behind ``hearth keys``, each audited under ``system:keys``."""

    def __init__(
        self,
        *,
        store: SqlStore,
        live_keys: LiveKeys,
        audit: AuditTrail,
        clock: Clock,
        random: Random,
        operator: str | None = None,
        token_grace_us: int = 3_600_000_000,
        secrets_grace_us: int = 25 * 3_600_000_000,
    ) -> None:
        """``token_grace_us``: how long after its rotation a token signing key may still
        verify unexpired tokens. ``secrets_grace_us``: how long after its rotation a secrets
        key may still open live sessions and page tokens (the longest session lifetime)."""
        self._store = store
        self._live = live_keys
        self._keys = live_keys.ring
        self._audit = audit
        self._clock = clock
        self._random = random
        self._operator = operator
        self._accounts = SqlAccounts()
        self._alarms = SqlAlarms()
        self._token_grace_us = token_grace_us
        self._secrets_grace_us = secrets_grace_us

    def _record(self, action: str) -> None:
        self._audit.record(
            AuditRecord(
                ts=self._clock.now(),
                actor="system:keys",
                actor_kind="system",
                action=action,
                outcome=Outcome.SUCCESS,
                session=self._operator,
            )
        )

    def record_created(self, key_ids: list[int]) -> None:
        """Audit the keys ``ensure_key_purposes`` created when this instance was opened."""
        if key_ids:
            self._record("keys.create")

    def _now_us(self) -> int:
        return to_us(self._clock.now())

    # -- what uses a key ----------------------------------------------------------------------
    def _secrets_using(self, conn: Connection, key_id: int) -> list[_Sealed]:
        """The long-lived things a ``secrets`` key seals (TOTP secrets, alarm notes, break-glass
        reasons and review notes) that ``key_id`` sealed. Sessions and page tokens are
        short-lived and not listed."""
        found: list[_Sealed] = []

        def add(blob: bytes, aad: bytes, swap: Callable[[Connection, bytes], bool]) -> None:
            try:
                if sealed_key_id(blob) == key_id:
                    found.append(_Sealed(blob, aad, swap))
            except IntegrityError:
                pass  # not a sealed blob: no key can open it, and none is needed

        accounts, alarms = self._accounts, self._alarms

        def totp(user_id: str, old: bytes) -> Callable[[Connection, bytes], bool]:
            return lambda c, new: accounts.replace_totp_secret(c, user_id, old=old, new=new)

        def note(alarm_id: str, step: str, old: bytes) -> Callable[[Connection, bytes], bool]:
            return lambda c, new: alarms.replace_note(c, alarm_id, step, old=old, new=new)

        for user in accounts.users(conn):
            if user.totp_secret is not None:
                add(
                    user.totp_secret,
                    totp_aad(user.user_id),
                    totp(user.user_id, user.totp_secret),
                )
        for alarm_id, step, old in alarms.sealed_notes(conn):
            add(old, note_aad(alarm_id, step), note(alarm_id, step, old))

        def grant(grant_id: str, part: str, old: bytes) -> Callable[[Connection, bytes], bool]:
            return lambda c, new: access_sql.replace_grant_part(c, grant_id, part, old=old, new=new)

        for grant_id, part, old in access_sql.sealed_grant_parts(conn):
            add(old, grant_aad(grant_id, part), grant(grant_id, part, old))
        return found

    def _in_use(self, conn: Connection, row: KeyRow) -> int | None:
        purpose = KeyPurpose(row.purpose)
        if purpose not in SEALING_PURPOSES and purpose is not KeyPurpose.MAC:
            return None
        use = self._store.key_use(conn, row.key_id)
        match purpose:
            case KeyPurpose.MAC:
                return use.versions_maced
            case KeyPurpose.AUDIT_SEAL:
                return use.audit_details
            case KeyPurpose.SECRETS:
                return len(self._secrets_using(conn, row.key_id))
            case _:  # data: bodies, and what it sealed before the other purposes existed
                secrets = len(self._secrets_using(conn, row.key_id))
                return use.versions_sealed + use.audit_details + secrets

    def list_keys(self) -> list[KeyInfo]:
        with self._store.snapshot() as conn:
            seals = self._store.seal_counts(conn)
            return [
                KeyInfo(
                    r.key_id,
                    r.purpose,
                    r.state,
                    r.created_us,
                    self._in_use(conn, r),
                    seals.get(r.key_id) if KeyPurpose(r.purpose) in SEALING_PURPOSES else None,
                )
                for r in self._store.keys(conn)
            ]

    # -- rotation -------------------------------------------------------------------------------
    def rotate(self, purposes: tuple[KeyPurpose, ...]) -> list[int]:
        """Make a new active key for each purpose; the old ones stay for reading (decrypt-only).

        Blind-index keys are not rotated here: every index row would have to be rebuilt.
        """
        if KeyPurpose.BLIND in purposes:
            raise HearthError(errors.BAD_PARAMETER, "Blind-index keys rotate by re-indexing.")
        if KeyPurpose.AUDIT_CHAIN in purposes:
            raise HearthError(
                errors.BAD_PARAMETER, "The audit chain key cannot rotate: it links every entry."
            )
        now_us = self._now_us()
        created: list[int] = []
        with self._store.write() as conn:
            lock_keys(self._store, conn)
            rows = self._store.keys(conn)
            kek = self._live.kek_for(rows)
            for row in rows:
                if KeyPurpose(row.purpose) in purposes and row.state == KeyState.ACTIVE.value:
                    self._store.update_key(
                        conn,
                        row.key_id,
                        state=KeyState.DECRYPT_ONLY.value,
                        wrapped=row.wrapped,
                        kek_id=row.kek_id,
                        rotated_us=now_us,
                    )
            for purpose in purposes:
                created.append(
                    create_key(self._store, conn, kek, purpose, now_us=now_us, random=self._random)
                )
            self._store.bump_key_epoch(conn)
        self._record("keys.rotate")
        return created

    def ensure_token_key(self, *, max_age_us: int, retire_after_us: int) -> int | None:
        """Keep one fresh token signing key: rotate when there is none or it is older than
        ``max_age_us``; retire rotated-out ones after ``retire_after_us`` (longer than any
        token they signed lives). Returns the new key's id, or None when nothing changed.

        Safe to call from several processes at once: the work runs under the key locks and
        re-reads the keys after taking them.
        """
        now_us = self._now_us()
        purpose = KeyPurpose.TOKEN_SIGN

        def stale(row: KeyRow) -> bool:
            return (
                row.state == KeyState.DECRYPT_ONLY.value
                and row.rotated_us is not None
                and row.rotated_us + retire_after_us <= now_us
            )

        def due(rows: list[KeyRow]) -> bool:
            active = [r for r in rows if r.state == KeyState.ACTIVE.value]
            expired = not active or active[0].created_us + max_age_us <= now_us
            return expired or any(stale(r) for r in rows)

        # Most calls find nothing to do: decide that in a read transaction, without the lock.
        with self._store.read() as conn:
            if not due([r for r in self._store.keys(conn) if r.purpose == purpose.value]):
                return None
        created: int | None = None
        retired: list[int] = []
        with self._store.write() as conn:
            lock_keys(self._store, conn)
            every = self._store.keys(conn)
            rows = [r for r in every if r.purpose == purpose.value]
            active = [r for r in rows if r.state == KeyState.ACTIVE.value]
            if not active or active[0].created_us + max_age_us <= now_us:
                for row in active:
                    self._store.update_key(
                        conn,
                        row.key_id,
                        state=KeyState.DECRYPT_ONLY.value,
                        wrapped=row.wrapped,
                        kek_id=row.kek_id,
                        rotated_us=now_us,
                    )
                kek = self._live.kek_for(every)
                created = create_key(
                    self._store, conn, kek, purpose, now_us=now_us, random=self._random
                )
            for row in rows:
                if stale(row):
                    self._retire_row(conn, row, now_us)
                    retired.append(row.key_id)
            if created is not None or retired:
                self._store.bump_key_epoch(conn)
        if created is not None:
            self._record("keys.rotate")
        if retired:
            self._record("keys.retire")
        return created

    # -- re-sealing -----------------------------------------------------------------------------
    def _rotated_out(self, key_id: int) -> KeyRow:
        with self._store.read() as conn:
            row = next((r for r in self._store.keys(conn) if r.key_id == key_id), None)
        if row is None:
            raise HearthError(errors.BAD_PARAMETER, f"No key {key_id}.")
        if row.state == KeyState.ACTIVE.value:
            raise HearthError(
                errors.BAD_PARAMETER, f"Key {key_id} is the active {row.purpose} key; rotate first."
            )
        if row.state != KeyState.DECRYPT_ONLY.value:
            raise HearthError(errors.BAD_PARAMETER, f"Key {key_id} is {row.state}.")
        return row

    def reseal(self, key_id: int, *, on_row: Callable[[int], None] | None = None) -> int:
        """Move what a rotated-out key protects to the active keys, so it can be retired.

        - a ``data`` key: every resource version it sealed is opened, MAC-checked and sealed
          under the active data key (and, from an instance made before ``secrets`` keys, every
          long-lived secret it sealed is re-sealed under the active secrets key);
        - a ``mac`` key: every version it MACed is opened, its MAC verified, and MACed again
          under the active MAC key (later backups carry the new MACs);
        - a ``secrets`` key: every TOTP secret, alarm note and break-glass reason or review
          note it sealed is re-sealed under the active one. Sessions and page tokens are not
          re-sealed: they expire.

        Audit-seal keys are never re-sealed: an audit detail's sealed bytes are part of its
        hash-chained entry. Returns the number of rows changed.
        """
        row = self._rotated_out(key_id)
        purpose = KeyPurpose(row.purpose)
        match purpose:
            case KeyPurpose.DATA:
                done = self._reseal_versions(key_id, purpose, on_row)
                done += self._reseal_secrets(key_id, on_row)
            case KeyPurpose.MAC:
                done = self._reseal_versions(key_id, purpose, on_row)
            case KeyPurpose.SECRETS:
                done = self._reseal_secrets(key_id, on_row)
            case KeyPurpose.AUDIT_SEAL:
                raise HearthError(
                    errors.BAD_PARAMETER,
                    "Audit details are never re-sealed: their sealed bytes are part of the "
                    "hash-chained entry. The key is kept while those entries are retained.",
                )
            case _:
                raise HearthError(
                    errors.BAD_PARAMETER,
                    f"{purpose.value} keys are not re-sealed; only data, mac and secrets keys.",
                )
        self._record("keys.reseal")
        return done

    def _current_keys(self, conn: Connection, purpose: KeyPurpose, old: int) -> None:
        """Under the writers' lock: reload if keys changed, and make sure the active key is
        not the one being emptied (a process that cannot load the current keys stops here)."""
        self._store.next_seq(conn, VERSION_SEQ, 0)
        self._live.ensure_current(conn)
        if self._keys.active_id(purpose) == old:
            raise HearthError(
                errors.KEY_UNAVAILABLE,
                "This process could not load the current keys; see the keys.reload_failed alarm.",
            )

    def _reseal_versions(
        self, key_id: int, purpose: KeyPurpose, on_row: Callable[[int], None] | None
    ) -> int:
        done = 0
        after = 0
        keys = self._keys
        while True:
            with self._store.write() as conn:
                self._current_keys(conn, purpose, key_id)
                rows = self._store.versions_using_key(conn, key_id, after_seq=after, limit=_BATCH)
                if not rows:
                    return done
                for row in rows:
                    aad = ResourceRef(row.res_type, row.res_id).aad(row.version)
                    body = open_version(keys, row)
                    sealed, sealed_id = row.body, row.key_id
                    if row.key_id == key_id and body is not None:
                        sealed = keys.seal_resource(body, aad=aad, random=self._random)
                        sealed_id = sealed_key_id(sealed)
                    mac_id, tag = row.mac_key_id, row.mac
                    if row.mac_key_id == key_id:
                        mac_id, tag = keys.mac(
                            seq=row.seq,
                            res_type=row.res_type,
                            res_id=row.res_id,
                            version=row.version,
                            deleted=row.deleted,
                            ts_us=row.ts_us,
                            body=body,
                        )
                    self._store.rekey_version(
                        conn, row.seq, key_id=sealed_id, body=sealed, mac_key_id=mac_id, mac=tag
                    )
                    done += 1
                    if on_row is not None:
                        on_row(row.seq)
                after = rows[-1].seq

    def _reseal_secrets(self, key_id: int, on_row: Callable[[int], None] | None) -> int:
        keys = self._keys
        with self._store.write() as conn:
            self._current_keys(conn, KeyPurpose.SECRETS, key_id)
            done = 0
            for item in self._secrets_using(conn, key_id):
                secret = keys.open_secret(item.blob, aad=item.aad)
                sealed = keys.seal_secret(secret, aad=item.aad, random=self._random)
                if item.swap(conn, sealed):
                    done += 1
                    if on_row is not None:
                        on_row(done)
        return done

    # -- retirement -----------------------------------------------------------------------------
    def retire(self, key_id: int) -> None:
        """Destroy a rotated-out key once nothing stored (or still live) needs it."""
        now_us = self._now_us()
        with self._store.write() as conn:
            lock_keys(self._store, conn)
            row = next((r for r in self._store.keys(conn) if r.key_id == key_id), None)
            if row is None:
                raise HearthError(errors.BAD_PARAMETER, f"No key {key_id}.")
            if row.state != KeyState.DECRYPT_ONLY.value:
                raise HearthError(
                    errors.BAD_PARAMETER,
                    f"Key {key_id} is {row.state}; only rotated-out keys retire.",
                )
            self._check_retirable(conn, row, now_us)
            self._retire_row(conn, row, now_us)
            self._store.bump_key_epoch(conn)
        self._record("keys.retire")

    def _check_retirable(self, conn: Connection, row: KeyRow, now_us: int) -> None:
        key_id = row.key_id
        purpose = KeyPurpose(row.purpose)

        def refuse(message: str) -> HearthError:
            return HearthError(errors.BAD_PARAMETER, message)

        def within(grace_us: int) -> bool:
            return row.rotated_us is None or row.rotated_us + grace_us > now_us

        match purpose:
            case KeyPurpose.AUDIT_SIGN | KeyPurpose.BLIND | KeyPurpose.AUDIT_CHAIN:
                raise refuse(
                    "Audit signing keys are kept so that old checkpoints stay verifiable."
                    if purpose is KeyPurpose.AUDIT_SIGN
                    else f"{purpose.value} keys are never retired."
                )
            case KeyPurpose.TOKEN_SIGN:
                if within(self._token_grace_us):
                    raise refuse(
                        f"Key {key_id} may still verify unexpired access tokens; retire it "
                        "once the longest token lifetime has passed since it was rotated out."
                    )
                return
            case KeyPurpose.AUDIT_SEAL:
                details = self._store.key_use(conn, key_id).audit_details
                if details:
                    raise refuse(
                        f"Key {key_id} sealed the details of {details} audit entries, which "
                        "are never re-sealed (the sealed bytes are part of the hash chain): it "
                        "is kept for as long as those entries are retained."
                    )
                return
            case KeyPurpose.SECRETS:
                if within(self._secrets_grace_us):
                    raise refuse(
                        f"Key {key_id} may still open live sessions and page tokens; retire it "
                        "once the longest session lifetime has passed since it was rotated out."
                    )
                secrets = len(self._secrets_using(conn, key_id))
                if secrets:
                    raise refuse(
                        f"Key {key_id} still seals {secrets} TOTP secrets, alarm notes or "
                        f"break-glass reasons: run `hearth keys reseal {key_id}` first."
                    )
                return
            case KeyPurpose.MAC:
                maced = self._store.key_use(conn, key_id).versions_maced
                if maced:
                    raise refuse(
                        f"Key {key_id} still MACs {maced} stored versions: run `hearth keys "
                        f"reseal {key_id}` first."
                    )
                return
            case KeyPurpose.DATA:
                use = self._store.key_use(conn, key_id)
                secrets = len(self._secrets_using(conn, key_id))
                if use.versions_sealed or secrets:
                    raise refuse(
                        f"Key {key_id} still seals {use.versions_sealed + secrets} stored rows: "
                        f"run `hearth keys reseal {key_id}` first."
                    )
                if use.audit_details:
                    raise refuse(
                        f"Key {key_id} sealed the details of {use.audit_details} audit entries "
                        "(written before audit-seal keys existed), which are never re-sealed: "
                        "it is kept for as long as those entries are retained."
                    )

    def _retire_row(self, conn: Connection, row: KeyRow, now_us: int) -> None:
        self._store.update_key(
            conn,
            row.key_id,
            state=KeyState.RETIRED.value,
            wrapped=None,
            kek_id=row.kek_id,
            retired_us=now_us,
        )

    # -- the key-encryption key -----------------------------------------------------------------
    def rewrap_all(self, new: KeyEncryptionKey) -> int:
        """Re-wrap every key under a new key-encryption key (KEK rotation)."""
        count = 0
        with self._store.write() as conn:
            lock_keys(self._store, conn)
            rows = self._store.keys(conn)
            old = self._live.kek_for(rows)
            for row in rows:
                key = WrappedKey(
                    row.key_id,
                    KeyPurpose(row.purpose),
                    KeyState(row.state),
                    row.wrapped,
                    row.kek_id,
                )
                fresh = rewrap(key, old, new, self._random)
                self._store.update_key(
                    conn, row.key_id, state=row.state, wrapped=fresh.wrapped, kek_id=new.kek_id
                )
                count += 1
            self._store.bump_key_epoch(conn)
        self._record("keys.rewrap")
        return count
