"""Retry with backoff: time and sleep are injected, so no test waits."""

from __future__ import annotations

import pytest

from hearth.domain import HearthError
from hearth.domain.errors import TARGET_UNAVAILABLE
from hearth.targets import RetryPolicy, Transient, check_name


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    t = FakeTime()
    calls = []
    seen: list[tuple[int, float, str]] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise Transient("connection reset")
        return "done"

    policy = RetryPolicy(
        attempts=5, base_delay=1, max_delay=3, sleep=t.sleep, clock=t.clock,
        on_retry=lambda a, d, r: seen.append((a, d, r)),
    )  # fmt: skip
    assert policy.run(flaky, "put") == "done"
    assert t.slept == [1, 2, 3]
    assert [s[0] for s in seen] == [1, 2, 3]
    assert seen[0][2] == "connection reset"


def test_giving_up_raises_target_unavailable() -> None:
    t = FakeTime()

    def down() -> None:
        raise Transient("refused")

    with pytest.raises(HearthError) as info:
        RetryPolicy(attempts=3, base_delay=1, sleep=t.sleep, clock=t.clock).run(down, "list")
    assert info.value.code is TARGET_UNAVAILABLE
    assert "3 attempts" in info.value.detail
    assert t.slept == [1, 2]


def test_the_deadline_stops_retries_early() -> None:
    t = FakeTime()

    def down() -> None:
        raise Transient("slow")

    with pytest.raises(HearthError):
        RetryPolicy(attempts=10, base_delay=10, deadline=15, sleep=t.sleep, clock=t.clock).run(
            down, "get"
        )
    assert t.slept == [10, 20]


def test_other_errors_are_not_retried() -> None:
    t = FakeTime()
    calls = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        RetryPolicy(sleep=t.sleep, clock=t.clock).run(broken, "put")
    assert calls == [1]
    assert t.slept == []


@pytest.mark.parametrize("name", ["segments/ab", "manifests/2026.json", "a", "x/y/z-1_2.3"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "/abs", "../up", "a/../b", "a//b", ".hidden", "a/.tmp", "a b", "a\\b", "é", "a/"],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(HearthError):
        check_name(name)
