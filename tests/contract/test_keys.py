"""Key rotation, re-sealing and retirement while other processes keep working, on every engine.

Two containers on one database stand for a running server and an operator's ``hearth keys``
command: the server has loaded its keys and does not look again for 30 seconds, so only the
key epoch, checked under the writers' lock, can keep it from sealing under a retired key.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from hearth.audit import AuditRecord
from hearth.crypto import KeyPurpose, sealed_key_id
from hearth.domain import Alarm, AlarmKind, HearthError, Outcome, Severity
from hearth.settings import load_settings
from hearth.storage.access_admin import BreakGlassRow
from hearth.storage.accounts import totp_aad
from hearth.storage.keys import LiveKeys
from hearth.storage.sql import tables as t
from hearth.wiring import Container, build_kek, rewrap_keys
from tests.support import FixedClock, Instance, admin

pytestmark = pytest.mark.engines

TOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


class RecordedAlarms:
    def __init__(self) -> None:
        self.raised: list[Alarm] = []

    def raise_alarm(self, alarm: Alarm) -> None:
        self.raised.append(alarm)


@pytest.fixture
def operator(instance: Instance) -> Iterator[Container]:
    """A second process on the same database, with its own clock: ``hearth keys ...``."""
    container = Container(load_settings(instance.home), clock=FixedClock())
    try:
        yield container
    finally:
        container.close()


def key_ids(c: Container, purpose: str, state: str) -> list[int]:
    return [k.key_id for k in c.key_admin().list_keys() if (k.purpose, k.state) == (purpose, state)]


def patient(name: str) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": name}]}


def assert_all_versions_sound(c: Container) -> None:
    system = c.system_repository("integrity")
    assert list(system.scan_versions()) == []


def test_a_server_that_has_not_reloaded_never_seals_under_a_retired_key(
    instance: Instance, operator: Container
) -> None:
    server = instance.container
    repo = server.repository(admin())
    first = repo.create(patient("Before"))
    old_data = key_ids(operator, "data", "active")
    old_mac = key_ids(operator, "mac", "active")
    operator.rotate_keys(("data", "mac"), operator="test")
    admin_keys = operator.key_admin(operator="test")
    for key_id in (*old_data, *old_mac):
        admin_keys.reseal(key_id)
        admin_keys.retire(key_id)
    # The server still holds the retired keys in memory and would not look for 30 seconds.
    assert server.keyring.data_key_id == old_data[0]
    second = repo.create(patient("After"))
    assert server.keyring.data_key_id not in old_data
    # Everything the server wrote is readable by a process that holds only the current keys.
    fresh = operator.repository(admin())
    assert fresh.read("Patient", second.res_id).resource == second.resource
    assert fresh.read("Patient", first.res_id).version == 1
    assert_all_versions_sound(operator)


def test_a_read_that_meets_an_unknown_key_reloads_once(
    instance: Instance, operator: Container
) -> None:
    server = instance.container
    operator.rotate_keys(("data", "mac"), operator="test")
    written = operator.repository(admin()).create(patient("New"))
    generation = server.keyring.generation
    stored = server.repository(admin()).read("Patient", written.res_id)
    assert stored.resource == written.resource
    assert server.keyring.generation == generation + 1


def test_concurrent_writes_during_rotation_resealing_and_retirement(
    instance: Instance, operator: Container
) -> None:
    server = instance.container
    stop = threading.Event()
    failures: list[BaseException] = []
    written: list[str] = []

    def writer() -> None:
        repo = server.repository(admin())
        while not stop.is_set():
            try:
                written.append(repo.create(patient("Busy")).res_id)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                failures.append(exc)
                return

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3):
            old = key_ids(operator, "data", "active") + key_ids(operator, "mac", "active")
            operator.rotate_keys(("data", "mac"), operator="test")
            for key_id in old:
                admin_keys = operator.key_admin(operator="test")
                admin_keys.reseal(key_id)
                admin_keys.retire(key_id)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert failures == []
    assert written
    assert_all_versions_sound(operator)
    reader = operator.repository(admin())
    for res_id in written[-5:]:
        assert reader.read("Patient", res_id).res_id == res_id


def test_each_kind_of_sealed_data_has_its_own_key(instance: Instance) -> None:
    c = instance.container
    keys = c.keyring
    info, _ = c.users.add("carol", roles=frozenset(), by="test")
    c.accounts.set_totp(info.user_id, TOTP, used_step=1, now_us=1, recovery_hashes=None, records=[])
    user = c.accounts.user(info.user_id)
    assert user is not None
    assert user.totp_secret is not None
    assert sealed_key_id(user.totp_secret) == keys.active_id(KeyPurpose.SECRETS)
    token = c.pages.issue(admin(), {"after": 1})
    assert c.pages.open(admin(), token) == {"after": 1}
    c.audit.record(
        AuditRecord(
            ts=c.clock.now(),
            actor="t",
            actor_kind="system",
            action="t",
            outcome=Outcome.SUCCESS,
            detail=b"name=Smith",
        )
    )
    with c.store.read() as conn:
        details = {r.detail_key_id for r in c.store.iter_audit(conn) if r.detail_key_id}
    assert details == {keys.active_id(KeyPurpose.AUDIT_SEAL)}
    ids = {keys.active_id(p) for p in (KeyPurpose.DATA, KeyPurpose.AUDIT_SEAL, KeyPurpose.SECRETS)}
    assert len(ids) == 3


def test_secrets_mac_and_data_keys_retire_audit_seal_keys_refuse(
    instance: Instance, operator: Container
) -> None:
    c = instance.container
    info, _ = c.users.add("dave", roles=frozenset(), by="test")
    c.accounts.set_totp(info.user_id, TOTP, used_step=1, now_us=1, recovery_hashes=None, records=[])
    created = c.repository(admin()).create(patient("Kept"))
    c.audit.record(
        AuditRecord(
            ts=c.clock.now(),
            actor="t",
            actor_kind="system",
            action="t",
            outcome=Outcome.SUCCESS,
            detail=b"q",
        )
    )
    c.alarm_service.raise_alarm(
        Alarm(AlarmKind.INTEGRITY_MISMATCH, Severity.CRITICAL, "Patient/x", "test")
    )
    c.alarm_service.process()  # record it now rather than on the worker's next round
    (raised,) = c.alarm_service.list_alarms()
    c.alarm_service.acknowledge(raised.alarm_id, by="test", note="looked at Mr Smith's record")
    grant = BreakGlassRow("g1", info.user_id, created.res_id, "ETREAT", b"", 1, 2)
    c.access_store.create_grant(grant, "unconscious in A&E", records=[])
    old = {p: key_ids(operator, p, "active")[0] for p in ("data", "mac", "secrets", "audit-seal")}
    operator.rotate_keys(tuple(old), operator="test")
    admin_keys = operator.key_admin(operator="test")
    # Nothing moved yet: each refuses, saying why.
    with pytest.raises(HearthError, match="reseal"):
        admin_keys.retire(old["data"])
    with pytest.raises(HearthError, match="reseal"):
        admin_keys.retire(old["mac"])
    with pytest.raises(HearthError, match="live sessions"):
        admin_keys.retire(old["secrets"])
    with pytest.raises(HearthError, match="retained"):
        admin_keys.retire(old["audit-seal"])
    with pytest.raises(HearthError, match="never re-sealed"):
        admin_keys.reseal(old["audit-seal"])
    assert admin_keys.reseal(old["data"]) >= 1
    assert admin_keys.reseal(old["mac"]) >= 1
    # The TOTP secret, the alarm note and the break-glass reason.
    assert admin_keys.reseal(old["secrets"]) == 3
    admin_keys.retire(old["data"])
    admin_keys.retire(old["mac"])
    with pytest.raises(HearthError, match="live sessions"):
        admin_keys.retire(old["secrets"])  # sessions and page tokens may still need it
    operator.clock.advance(hours=12, minutes=6)  # type: ignore[attr-defined]
    operator.key_admin(operator="test").retire(old["secrets"])
    with pytest.raises(HearthError, match="retained"):
        operator.key_admin(operator="test").retire(old["audit-seal"])
    # The server, which has reloaded nothing, still opens everything.
    user = c.accounts.user(info.user_id)
    assert user is not None
    assert c.accounts.totp_secret(user) == TOTP
    assert c.alarm_service.get(raised.alarm_id).acknowledge_note == "looked at Mr Smith's record"
    stored_grant = c.access_store.grant("g1")
    assert stored_grant is not None
    assert c.access_store.reason(stored_grant) == "unconscious in A&E"
    assert c.repository(admin()).read("Patient", created.res_id).version == 1
    assert_all_versions_sound(operator)
    states = {k.key_id: k.state for k in operator.key_admin().list_keys()}
    assert [states[old[p]] for p in ("data", "mac", "secrets")] == ["retired"] * 3


def test_an_older_instance_gets_its_new_keys_and_its_data_key_secrets_move(
    instance: Instance,
) -> None:
    c = instance.container
    info, _ = c.users.add("erin", roles=frozenset(), by="test")
    # As an instance made before the secrets and audit-seal purposes: no such keys, and the
    # TOTP secret sealed under the data key.
    legacy = c.keyring.seal_resource(TOTP.encode(), aad=totp_aad(info.user_id), random=c.random)
    with c.store.write() as conn:
        conn.execute(
            delete(t.crypto_key).where(t.crypto_key.c.purpose.in_(("secrets", "audit-seal")))
        )
        conn.execute(
            t.user_account.update()
            .where(t.user_account.c.user_id == info.user_id)
            .values(totp_secret=legacy)
        )
    upgraded = Container(load_settings(instance.home), clock=FixedClock())
    try:
        assert key_ids(upgraded, "secrets", "active")
        assert key_ids(upgraded, "audit-seal", "active")
        user = upgraded.accounts.user(info.user_id)
        assert user is not None
        assert upgraded.accounts.totp_secret(user) == TOTP  # a data key still opens it
        old_data = key_ids(upgraded, "data", "active")[0]
        upgraded.rotate_keys(("data",), operator="test")
        admin_keys = upgraded.key_admin(operator="test")
        with pytest.raises(HearthError, match="reseal"):
            admin_keys.retire(old_data)
        admin_keys.reseal(old_data)
        admin_keys.retire(old_data)
        user = upgraded.accounts.user(info.user_id)
        assert user is not None
        assert user.totp_secret is not None
        assert sealed_key_id(user.totp_secret) == upgraded.keyring.active_id(KeyPurpose.SECRETS)
        assert upgraded.accounts.totp_secret(user) == TOTP
    finally:
        upgraded.close()


def test_the_nonce_budget_is_counted_and_alarmed(instance: Instance) -> None:
    c = instance.container
    alarms = RecordedAlarms()
    live = LiveKeys(
        c.store,
        c.kek,
        reload_kek=lambda: build_kek(load_settings(instance.home)),
        alarms=alarms,
        nonce_warn_at=3,
        nonce_alarm_at=5,
    )
    ring = live.ring
    for _ in range(3):
        ring.seal_secret(b"x", aad=b"a", random=c.random)
    live.flush_seal_counts()
    assert [(a.kind, a.severity) for a in alarms.raised] == [
        (AlarmKind.KEY_NONCE_BUDGET, Severity.WARNING)
    ]
    for _ in range(2):
        ring.seal_secret(b"x", aad=b"a", random=c.random)
    live.flush_seal_counts()
    live.flush_seal_counts()  # nothing pending, nothing new
    assert [a.severity for a in alarms.raised] == [Severity.WARNING, Severity.CRITICAL]
    secrets = ring.active_id(KeyPurpose.SECRETS)
    assert alarms.raised[-1].subject == f"key:{secrets}"
    listed = {k.key_id: k.seals for k in c.key_admin().list_keys()}
    assert listed[secrets] is not None
    assert listed[secrets] >= 5
    assert listed[ring.mac_key_id] is None  # a MAC key spends no nonces


def test_rewrap_points_the_config_at_the_new_kek_and_servers_follow(
    instance: Instance, tmp_path: Path
) -> None:
    alarms = RecordedAlarms()
    server = Container(load_settings(instance.home), alarms=alarms)
    try:
        repo = server.repository(admin())
        before = repo.create(patient("Before"))
        new_key = tmp_path / "offsite" / "kek-2.key"
        rewrap_keys(instance.home, new_key)
        config = instance.home / "hearth.toml"
        assert load_settings(instance.home).keys.file == new_key.absolute()
        assert config.stat().st_mode & 0o777 == 0o600
        # A rotation under the new KEK, by another process: the server's old KEK cannot open
        # the new keys, so it reads the KEK now configured, and keeps serving.
        operator = Container(load_settings(instance.home))
        try:
            operator.rotate_keys(("data", "mac"), operator="test")
        finally:
            operator.close()
        after = repo.create(patient("After"))
        assert repo.read("Patient", before.res_id).version == 1
        assert repo.read("Patient", after.res_id).version == 1
        assert server.kek.kek_id == build_kek(load_settings(instance.home)).kek_id
        assert alarms.raised == []
        # A server that started before the rewrap wraps a new key under the KEK in use.
        server.rotate_keys(("secrets",), operator="test")
        reopened = Container(load_settings(instance.home))
        reopened.close()
    finally:
        server.close()


def test_a_failed_reload_keeps_the_old_keys_and_raises_an_alarm(
    instance: Instance, tmp_path: Path
) -> None:
    alarms = RecordedAlarms()
    server = Container(load_settings(instance.home), alarms=alarms)
    try:
        repo = server.repository(admin())
        before = repo.create(patient("Before"))
        old_data = key_ids(server, "data", "active")
        rewrap_keys(instance.home, tmp_path / "kek-2.key")
        operator = Container(load_settings(instance.home))
        try:
            operator.rotate_keys(("data", "mac"), operator="test")
            # The configuration now names a key file that opens nothing.
            wrong = tmp_path / "wrong.key"
            wrong.write_text("11" * 32)
            wrong.chmod(0o600)
            config = instance.home / "hearth.toml"
            config.write_text(config.read_text().replace(str(tmp_path / "kek-2.key"), str(wrong)))
            after = repo.create(patient("After"))  # sealed under the old, rotated-out key
            assert [(a.kind, a.severity) for a in alarms.raised] == [
                (AlarmKind.KEY_RELOAD_FAILED, Severity.CRITICAL)
            ]
            assert repo.read("Patient", before.res_id).version == 1
            assert repo.create(patient("Again")).version == 1
            assert len(alarms.raised) == 1  # one alarm, not one per request
            # The key it still uses cannot be retired from under it.
            with pytest.raises(HearthError, match="reseal"):
                operator.key_admin(operator="test").retire(old_data[0])
            assert operator.repository(admin()).read("Patient", after.res_id).version == 1
        finally:
            operator.close()
    finally:
        server.close()
