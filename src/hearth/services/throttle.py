"""Sign-in throttling, lockout and the alarms an attack raises (NIST SP 800-63B-4 sec. 3.2.2).

The numbers are ``hearth.auth.throttle.ThrottlePolicy``; this service keeps the counters (Redis
or in-process, ``hearth.storage.throttle``) and raises ``AUTH_BRUTE_FORCE`` (one account, many
failures), ``AUTH_CREDENTIAL_STUFFING`` (one address, many accounts) and ``AUTH_LOCKOUT``.

Accounts are counted by the *name typed*, through a keyed hash, whether or not a user has that
name: an attacker probing unknown names meets exactly the same delays and lock as one probing a
real user, so throttling reveals nothing about which names exist (issue 4 item 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from hearth.auth.throttle import ThrottlePolicy
from hearth.domain import Alarm, AlarmKind, AlarmRaiser, Clock, HearthError, Severity, errors
from hearth.storage import to_us
from hearth.storage.throttle import Failures, ThrottleCounters

__all__ = ["FailureOutcome", "SignInThrottle"]


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    account_failures: int
    locks: bool  # this failure reached the lock threshold


class SignInThrottle:
    def __init__(
        self,
        counters: ThrottleCounters,
        policy: ThrottlePolicy,
        alarms: AlarmRaiser,
        clock: Clock,
        keyed_hash: Callable[[str, str], str],
    ) -> None:
        """``keyed_hash(domain, value)`` names a counter without storing the value itself."""
        self._counters = counters
        self.policy = policy
        self._alarms = alarms
        self._clock = clock
        self._hash = keyed_hash

    def account_key(self, username: str) -> str:
        return "a:" + self._hash("hearth/throttle/account", username.strip().casefold())

    def address_key(self, address: str | None) -> str:
        return "ip:" + self._hash("hearth/throttle/address", address or "unknown")

    def check(self, account: str, address: str | None) -> None:
        """Refuse now, before any secret is checked, if either counter says wait or locked."""
        now_us = to_us(self._clock.now())
        mine = self._counters.failures(account, now_us)
        if self.policy.locks(mine.count):
            raise HearthError(errors.ACCOUNT_LOCKED)
        theirs = self._counters.failures(self.address_key(address), now_us)
        wait = max(
            self._remaining(mine, self.policy.account_delay(mine.count), now_us),
            self._remaining(theirs, self.policy.address_delay(theirs.count), now_us),
        )
        if wait > 0:
            seconds = math.ceil(wait / 1_000_000)
            raise HearthError(
                errors.SIGN_IN_THROTTLED,
                f"Too many failed attempts. Wait {seconds} seconds, then try again.",
                headers={"Retry-After": str(seconds)},
            )

    @staticmethod
    def _remaining(failures: Failures, delay: timedelta, now_us: int) -> int:
        if failures.last_us is None or not delay:
            return 0
        return max(0, failures.last_us + int(delay.total_seconds() * 1_000_000) - now_us)

    def failed(self, account: str, address: str | None, *, user_id: str | None) -> FailureOutcome:
        """Count a failure against the name and the address; raise the alarms it calls for."""
        now_us = to_us(self._clock.now())
        policy = self.policy
        memory = int(policy.account_memory.total_seconds())
        window = int(policy.address_window.total_seconds())
        mine = self._counters.add_failure(account, now_us, memory)
        self._counters.add_failure(self.address_key(address), now_us, window)
        distinct = self._counters.add_member(
            "names:" + self.address_key(address), account, now_us, window
        )
        subject = f"user:{user_id}" if user_id is not None else f"name:{account[2:18]}"
        if policy.is_brute_force(mine.count):
            self._alarms.raise_alarm(
                Alarm(
                    AlarmKind.AUTH_BRUTE_FORCE,
                    Severity.WARNING,
                    subject,
                    f"{mine.count} consecutive failed sign-ins on one account.",
                    {"failures": str(mine.count), "source": address or "unknown"},
                )
            )
        if policy.is_stuffing(distinct):
            self._alarms.raise_alarm(
                Alarm(
                    AlarmKind.AUTH_CREDENTIAL_STUFFING,
                    Severity.CRITICAL,
                    f"address:{address or 'unknown'}",
                    f"Failed sign-ins against {distinct} different accounts from one address.",
                    {"accounts": str(distinct), "window": str(policy.address_window)},
                )
            )
        locks = policy.locks(mine.count) and not policy.locks(mine.count - 1)
        if locks:
            self._alarms.raise_alarm(
                Alarm(
                    AlarmKind.AUTH_LOCKOUT,
                    Severity.WARNING,
                    subject,
                    f"Account locked after {mine.count} consecutive failed sign-ins.",
                    {"source": address or "unknown"},
                )
            )
        return FailureOutcome(mine.count, locks)

    def started(self, address: str | None) -> None:
        """Count a sign-in started before anyone is known (a passkey ceremony); refuse past
        ``anonymous_starts`` per address within ``start_window``."""
        now_us = to_us(self._clock.now())
        window = int(self.policy.start_window.total_seconds())
        # A fixed window named in the key: counted by this clock, whatever clock the counter
        # store expires keys by (Redis uses its own).
        bucket = now_us // (window * 1_000_000)
        key = f"start:{self.address_key(address)}:{bucket}"
        count = self._counters.add_failure(key, now_us, window)
        if count.count > self.policy.anonymous_starts:
            raise HearthError(
                errors.SIGN_IN_THROTTLED,
                f"Too many sign-ins started. Wait {window} seconds, then try again.",
                headers={"Retry-After": str(window)},
            )

    def succeeded(self, account: str) -> None:
        """A success forgets the name's earlier failures (NIST-RL-03); the address keeps its
        count, so one good password does not reset an attacker's budget."""
        self._counters.clear(account)

    def unlocked(self, username: str) -> None:
        self._counters.clear(self.account_key(username))
