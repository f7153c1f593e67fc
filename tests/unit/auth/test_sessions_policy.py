"""Session ids, digests, CSRF comparison and timeouts (hearth.auth.sessions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.unit.auth.conftest import CountingRandom

from hearth.auth.sessions import (
    SessionState,
    Verdict,
    csrf_matches,
    evaluate,
    new_secret,
    session_digest,
    session_handle,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
IDLE = timedelta(minutes=15)


def test_ids_are_128_random_bits_and_only_digests_are_kept() -> None:
    random = CountingRandom()
    a, b = new_secret(random), new_secret(random)
    assert a != b
    assert len(a) == 22  # 16 bytes, base64url without padding
    assert len(session_digest(a)) == 32
    assert session_digest(a) != session_digest(b)
    assert a not in session_handle(session_digest(a))
    assert len(session_handle(session_digest(a))) == 16


def test_csrf_comparison() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches("abc", None)
    assert not csrf_matches("", "")
    assert not csrf_matches("abc", "é")


def verdict(state: SessionState, *, idle_for: timedelta, age: timedelta) -> Verdict:
    now = T0 + age
    return evaluate(
        state, last_seen=now - idle_for, expires=T0 + timedelta(hours=12), now=now, idle=IDLE
    )


def test_active_sessions_lock_after_the_idle_time() -> None:
    minute = timedelta(minutes=1)
    assert verdict(SessionState.ACTIVE, idle_for=IDLE - minute, age=minute * 30) is Verdict.OK
    assert verdict(SessionState.ACTIVE, idle_for=IDLE, age=minute * 30) is Verdict.LOCK


def test_every_state_ends_at_the_absolute_lifetime() -> None:
    for state in SessionState:
        assert verdict(state, idle_for=timedelta(0), age=timedelta(hours=12)) is Verdict.END
    assert verdict(SessionState.LOCKED, idle_for=timedelta(hours=3), age=timedelta(hours=4)) is (
        Verdict.LOCKED
    )
    assert verdict(SessionState.PENDING, idle_for=timedelta(hours=1), age=timedelta(hours=1)) is (
        Verdict.OK
    )
