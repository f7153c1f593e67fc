"""Leader/follower group commit (``hearth.storage.write_groups``), with a stand-in ``run``."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from hearth.storage.write_groups import GroupMember, WriteGroups

CALLER: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")


def doubled(members: list[GroupMember[int]]) -> None:
    for member in members:
        member.finish(member.work * 2)


def held_until(groups: WriteGroups[int], queued: int) -> None:
    """Hold the first group until ``queued`` more callers wait behind it."""
    deadline = time.monotonic() + 10
    while len(groups._queue) < queued and time.monotonic() < deadline:
        time.sleep(0.001)


def test_a_lone_caller_runs_its_own_write() -> None:
    sizes: list[int] = []

    def run(members: list[GroupMember[int]]) -> None:
        sizes.append(len(members))
        doubled(members)

    groups = WriteGroups(run)
    assert [groups.submit(n) for n in range(3)] == [0, 2, 4]
    assert sizes == [1, 1, 1]


def test_concurrent_callers_share_groups_and_each_gets_its_own_answer() -> None:
    callers = 12
    sizes: list[int] = []
    groups: WriteGroups[int]

    def run(members: list[GroupMember[int]]) -> None:
        if not sizes:
            held_until(groups, callers - 1)
        sizes.append(len(members))
        for member in members:
            # Each write runs in its caller's context, wherever the leader is.
            member.finish((member.work, member.run(CALLER.get)))

    groups = WriteGroups(run, max_group=8)
    answers: dict[int, object] = {}

    def caller(n: int) -> None:
        CALLER.set(f"caller-{n}")
        answers[n] = groups.submit(n)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert answers == {n: (n, f"caller-{n}") for n in range(callers)}
    assert sum(sizes) == callers
    assert max(sizes) == 8  # the queue behind the first group, up to max_group
    assert not groups._leading
    assert not groups._queue


def test_an_error_goes_to_its_member_only_and_after_runs_in_the_callers_thread() -> None:
    seen: list[str] = []

    def run(members: list[GroupMember[int]]) -> None:
        for member in members:
            if member.work < 0:
                member.finish(
                    error=ValueError("negative"),
                    after=lambda: seen.append(threading.current_thread().name),
                )
            else:
                member.finish(member.work)

    groups = WriteGroups(run)
    with pytest.raises(ValueError, match="negative"):
        groups.submit(-1)
    assert seen == [threading.current_thread().name]
    assert groups.submit(5) == 5


def test_a_run_that_breaks_answers_every_member_and_frees_the_queue() -> None:
    calls = 0

    def run(members: list[GroupMember[int]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk gone")
        if calls == 2:
            return  # answers nobody
        doubled(members)

    groups = WriteGroups(run)
    with pytest.raises(OSError, match="disk gone"):
        groups.submit(1)
    with pytest.raises(RuntimeError, match="unanswered"):
        groups.submit(1)
    assert groups.submit(21) == 42


def test_a_write_inside_a_group_cannot_wait_on_its_own_group() -> None:
    groups: WriteGroups[int]

    def run(members: list[GroupMember[int]]) -> None:
        for member in members:
            try:
                groups.submit(0)
            except RuntimeError as exc:
                member.finish(str(exc))

    groups = WriteGroups(run)
    assert groups.submit(1) == "a write group cannot submit to itself"


def test_a_run_that_breaks_with_followers_queued_answers_them_and_hands_over() -> None:
    callers = 6
    groups: WriteGroups[int]
    sizes: list[int] = []

    def run(members: list[GroupMember[int]]) -> None:
        if not sizes:
            held_until(groups, callers - 1)
        sizes.append(len(members))
        if len(members) > 1:
            raise OSError("disk gone")
        doubled(members)

    groups = WriteGroups(run)
    answers: dict[int, object] = {}

    def caller(n: int) -> None:
        try:
            answers[n] = groups.submit(n)
        except OSError as exc:
            answers[n] = str(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sizes == [1, callers - 1]
    failed = [n for n, answer in answers.items() if answer == "disk gone"]
    assert len(failed) == callers - 1
    (leader,) = set(range(callers)) - set(failed)
    assert answers[leader] == leader * 2
    assert groups.submit(4) == 8
    assert not groups._leading
