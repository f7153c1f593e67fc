"""The delay schedule and alarm thresholds (hearth.auth.throttle; NIST SP 800-63B-4 sec. 3.2.2)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hearth.auth.throttle import DEFAULT_THROTTLE, ThrottlePolicy


def test_account_delays_double_after_five_free_failures_up_to_fifteen_minutes() -> None:
    delays = [DEFAULT_THROTTLE.account_delay(n).total_seconds() for n in range(20)]
    assert delays[:5] == [0, 0, 0, 0, 0]
    assert delays[5:12] == [1, 2, 4, 8, 16, 32, 64]
    assert max(delays) == 900
    assert DEFAULT_THROTTLE.account_delay(10**6) == timedelta(minutes=15)  # no overflow


def test_address_delays_allow_a_shared_address_more_room() -> None:
    assert DEFAULT_THROTTLE.address_delay(19) == timedelta(0)
    assert DEFAULT_THROTTLE.address_delay(20) == timedelta(seconds=1)
    assert DEFAULT_THROTTLE.address_delay(21) == timedelta(seconds=2)


def test_lock_at_one_hundred_and_alarms_at_multiples() -> None:
    assert not DEFAULT_THROTTLE.locks(99)
    assert DEFAULT_THROTTLE.locks(100)
    assert [n for n in range(1, 31) if DEFAULT_THROTTLE.is_brute_force(n)] == [10, 20, 30]
    assert [n for n in range(25) if DEFAULT_THROTTLE.is_stuffing(n)] == [10, 20]


@pytest.mark.parametrize(
    "changes",
    [
        {"lock_after": 101},
        {"lock_after": 0},
        {"account_free": -1},
        {"brute_force_alarm": 0},
        {"stuffing_accounts": 1},
        {"account_wide_free": 101},
        {"account_wide_free": 4},
    ],
)
def test_looser_or_senseless_policies_are_refused(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=r"."):
        ThrottlePolicy(**changes)  # type: ignore[arg-type]


def test_anonymous_starts_have_a_bound() -> None:
    assert DEFAULT_THROTTLE.anonymous_starts == 30
    assert DEFAULT_THROTTLE.start_window == timedelta(minutes=5)


def test_the_account_wide_wait_starts_far_above_one_addresss_allowance() -> None:
    assert DEFAULT_THROTTLE.account_wide_free == 50
    assert DEFAULT_THROTTLE.account_wide_delay(49) == timedelta(0)
    assert DEFAULT_THROTTLE.account_wide_delay(50) == timedelta(seconds=1)
    assert DEFAULT_THROTTLE.account_wide_delay(99) == timedelta(minutes=15)
    assert DEFAULT_THROTTLE.known_address_memory == timedelta(days=30)
    assert DEFAULT_THROTTLE.code_memory > DEFAULT_THROTTLE.account_memory
