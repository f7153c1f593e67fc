"""Sign-in throttling, lockout and the alarms an attack raises (NIST SP 800-63B-4 sec. 3.2.2).

The numbers and the reasoning are ``hearth.auth.throttle``; this service keeps the counters
(Redis or in-process, ``hearth.storage.throttle``) and raises ``AUTH_BRUTE_FORCE`` (one account,
many failures), ``AUTH_CREDENTIAL_STUFFING`` (one address, many accounts) and ``AUTH_LOCKOUT``.

Accounts are counted by the *name typed*, through a keyed hash, whether or not a user has that
name: an attacker probing unknown names meets exactly the same delays and lock as one probing a
real user, so throttling reveals nothing about which names exist (issue 4 item 3). Counter keys
(all keyed hashes): ``a:`` / ``c:`` an account's consecutive password / one-time-code failures;
``pa:`` / ``pc:`` the same per (account, address); ``k:`` an address the account signed in from;
``ip:`` an address's failures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from hearth.auth.throttle import Guessable, ThrottlePolicy
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

    @staticmethod
    def _name_key(account: str, secret: Guessable) -> str:
        return secret.value + account[1:]

    def _pair_key(self, account: str, secret: Guessable, address: str | None) -> str:
        pair = f"{account}\x00{address or 'unknown'}"
        return f"p{secret.value}:" + self._hash("hearth/throttle/pair", pair)

    def _known_key(self, account: str, address: str | None) -> str:
        return "k:" + self._hash("hearth/throttle/known", f"{account}\x00{address or 'unknown'}")

    def check(
        self, account: str, address: str | None, secret: Guessable = Guessable.PASSWORD
    ) -> None:
        """Refuse now, before any secret is checked, if a counter says wait or locked."""
        now_us = to_us(self._clock.now())
        policy = self.policy
        everywhere = self._counters.failures(self._name_key(account, secret), now_us)
        if policy.locks(everywhere.count):
            raise HearthError(errors.ACCOUNT_LOCKED)
        here = self._counters.failures(self._pair_key(account, secret, address), now_us)
        waits = [
            self._remaining(here, policy.account_delay(here.count), now_us),
            self._address_wait(address, now_us),
        ]
        wide = policy.account_wide_delay(everywhere.count)
        if wide and not self._counters.failures(self._known_key(account, address), now_us).count:
            waits.append(self._remaining(everywhere, wide, now_us))
        self._refuse_early(max(waits))

    def check_address(self, address: str | None) -> None:
        """The check before a WebAuthn assertion: only the address's own failures count."""
        self._refuse_early(self._address_wait(address, to_us(self._clock.now())))

    def _address_wait(self, address: str | None, now_us: int) -> int:
        theirs = self._counters.failures(self.address_key(address), now_us)
        return self._remaining(theirs, self.policy.address_delay(theirs.count), now_us)

    @staticmethod
    def _refuse_early(wait_us: int) -> None:
        if wait_us > 0:
            seconds = math.ceil(wait_us / 1_000_000)
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

    def failed(
        self,
        account: str,
        address: str | None,
        *,
        user_id: str | None,
        secret: Guessable = Guessable.PASSWORD,
    ) -> FailureOutcome:
        """Count a wrong guess against the name, the (name, address) pair and the address;
        raise the alarms it calls for."""
        now_us = to_us(self._clock.now())
        policy = self.policy
        kept = policy.account_memory if secret is Guessable.PASSWORD else policy.code_memory
        memory = int(kept.total_seconds())
        window = int(policy.address_window.total_seconds())
        mine = self._counters.add_failure(self._name_key(account, secret), now_us, memory)
        self._counters.add_failure(self._pair_key(account, secret, address), now_us, memory)
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

    def failed_address(self, address: str | None) -> FailureOutcome:
        """Count a failure that guessed nothing (a WebAuthn assertion that did not verify)
        against the address only: it never moves an account towards its lock."""
        now_us = to_us(self._clock.now())
        window = int(self.policy.address_window.total_seconds())
        self._counters.add_failure(self.address_key(address), now_us, window)
        return FailureOutcome(0, False)

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

    def succeeded(self, account: str, address: str | None) -> None:
        """A full sign-in (or an unlock) forgets the name's earlier failures, everywhere and from
        this address (NIST-RL-03), and remembers the address as one this account signs in
        from. The address keeps its own count, so one good sign-in does not reset an
        attacker's budget."""
        now_us = to_us(self._clock.now())
        for secret in Guessable:
            self._counters.clear(self._name_key(account, secret))
            self._counters.clear(self._pair_key(account, secret, address))
        memory = int(self.policy.known_address_memory.total_seconds())
        self._counters.clear(self._known_key(account, address))
        self._counters.add_failure(self._known_key(account, address), now_us, memory)

    def unlocked(self, username: str) -> None:
        """An administrator unlocked the account: its account-wide counts start again (the
        per-address waits an attacker earned stay until they expire)."""
        account = self.account_key(username)
        for secret in Guessable:
            self._counters.clear(self._name_key(account, secret))
