"""One contract for the session stores (database, Redis) and the throttle counters (memory,
Redis): what the sign-in services rely on, tested on each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from hearth.auth.sessions import new_secret, session_digest
from hearth.storage.redis import RedisCounters, RedisSessionStore
from hearth.storage.sessions import SessionRow, SessionSealer, SessionStore, SqlSessionStore
from hearth.storage.sql import tables as t
from hearth.storage.throttle import MemoryCounters, ThrottleCounters
from tests.integration.auth.conftest import REDIS_URL, Instance, SeededRandom, build

NOW_US = 1_900_000_000_000_000  # far enough ahead that Redis keeps what it is given


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[Instance]:
    inst = build(tmp_path)
    try:
        yield inst
    finally:
        inst.container.close()


@pytest.fixture(params=["database", "redis"])
def store(request: pytest.FixtureRequest, plain: Instance) -> Iterator[SessionStore]:
    c = plain.container
    sealer = SessionSealer(c.keyring, SeededRandom(b"store"))
    if request.param == "database":
        yield SqlSessionStore(c.store, sealer)
        return
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"contract-{new_secret(SeededRandom(request.node.name.encode()))}"
    try:
        yield RedisSessionStore(client, prefix, sealer)
    finally:
        for key in client.scan_iter(f"hearth:{prefix}:*"):
            client.delete(key)
        client.close()


def row(user: str | None = "usr_a", *, data: bytes | None = b'{"x":1}') -> SessionRow:
    digest = session_digest(new_secret(SeededRandom(str(user).encode() + (data or b""))))
    return SessionRow(
        id_digest=digest,
        user_id=user,
        state="active",
        created_us=NOW_US,
        last_seen_us=NOW_US,
        expires_us=NOW_US + 3_600_000_000,
        auth_us=NOW_US,
        step_up_us=None,
        amr="pwd otp mfa",
        csrf="c" * 22,
        pin_failures=0,
        data=data,
        source="127.0.0.1",
    )


def test_create_get_save_delete(store: SessionStore) -> None:
    r = row()
    assert store.get(r.id_digest) is None
    store.create(r)
    assert store.get(r.id_digest) == r
    locked = replace(r, state="locked", data=None, last_seen_us=NOW_US + 5)
    assert store.save(locked)
    assert store.get(r.id_digest) == locked
    store.touch(r.id_digest, NOW_US + 9)
    assert store.get(r.id_digest).last_seen_us == NOW_US + 9  # type: ignore[union-attr]
    assert store.delete(r.id_digest)
    assert store.get(r.id_digest) is None
    assert not store.save(locked)  # an ended session is not brought back


def test_rotate_replaces_the_old_id(store: SessionStore) -> None:
    old = row()
    store.create(old)
    new = replace(old, id_digest=session_digest("another id"), csrf="d" * 22)
    store.rotate(old.id_digest, new)
    assert store.get(old.id_digest) is None
    assert store.get(new.id_digest) == new
    assert [s.id_digest for s in store.user_sessions("usr_a")] == [new.id_digest]


def test_pin_failures_count_atomically(store: SessionStore) -> None:
    r = row()
    store.create(r)
    assert [store.add_pin_failure(r.id_digest) for _ in range(3)] == [1, 2, 3]
    store.delete(r.id_digest)
    assert store.add_pin_failure(r.id_digest) is None


def test_ending_every_session_of_a_user(store: SessionStore) -> None:
    mine = [row("usr_a", data=bytes([i])) for i in range(3)]
    theirs = row("usr_b")
    for r in [*mine, theirs]:
        store.create(r)
    assert store.delete_user("usr_a") == 3
    assert all(store.get(r.id_digest) is None for r in mine)
    assert store.get(theirs.id_digest) == theirs


def test_data_is_sealed_at_rest(plain: Instance) -> None:
    c = plain.container
    sql = SqlSessionStore(c.store, SessionSealer(c.keyring, SeededRandom()))
    r = row(data=b'{"totp":"JBSWY3DPEHPK3PXP"}')
    sql.create(r)
    with c.store.read() as conn:
        stored = conn.execute(t.web_session.select()).all()
    raw = b"".join(bytes(x.data) for x in stored if x.data is not None)
    assert b"JBSWY3DPEHPK3PXP" not in raw
    assert r.id_digest in {bytes(x.id_digest) for x in stored}
    # A sealed blob moved to another session does not open there: no session at all.
    other = row("usr_b")
    sql.create(other)
    with c.store.write() as conn:
        conn.execute(
            t.web_session.update()
            .where(t.web_session.c.id_digest == other.id_digest)
            .values(data=next(x.data for x in stored if bytes(x.id_digest) == r.id_digest))
        )
    assert sql.get(other.id_digest) is None


@pytest.fixture(params=["memory", "redis"])
def counters(request: pytest.FixtureRequest) -> Iterator[ThrottleCounters]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"contract-{new_secret(SeededRandom(request.node.name.encode()))}"
    try:
        yield RedisCounters(client, prefix)
    finally:
        for key in client.scan_iter(f"hearth:{prefix}:*"):
            client.delete(key)
        client.close()


def test_counters_count_and_clear(counters: ThrottleCounters) -> None:
    assert counters.failures("k", NOW_US).count == 0
    for n in range(1, 4):
        state = counters.add_failure("k", NOW_US + n, 60)
        assert (state.count, state.last_us) == (n, NOW_US + n)
    assert counters.failures("k", NOW_US + 10).count == 3
    assert counters.failures("other", NOW_US).count == 0
    counters.clear("k")
    assert counters.failures("k", NOW_US).count == 0


def test_members_are_distinct_within_the_window(counters: ThrottleCounters) -> None:
    second = 1_000_000
    assert counters.add_member("m", "a", NOW_US, 60) == 1
    assert counters.add_member("m", "a", NOW_US + second, 60) == 1
    assert counters.add_member("m", "b", NOW_US + 2 * second, 60) == 2
    # 61 s later "a" and "b" have left the window.
    assert counters.add_member("m", "c", NOW_US + 63 * second, 60) == 1


def test_memory_counters_forget_after_their_ttl() -> None:
    counters = MemoryCounters()
    counters.add_failure("k", NOW_US, 60)
    assert counters.failures("k", NOW_US + 59_000_000).count == 1
    assert counters.failures("k", NOW_US + 60_000_000).count == 0
    assert counters.add_failure("k", NOW_US + 61_000_000, 60).count == 1


def test_memory_counters_are_bounded() -> None:
    counters = MemoryCounters(max_entries=100)
    for i in range(1000):
        counters.add_failure(f"k{i}", NOW_US, 60)
    assert counters.failures("k0", NOW_US).count == 0
    assert counters.failures("k999", NOW_US).count == 1
