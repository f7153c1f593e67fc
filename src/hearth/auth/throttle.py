"""How failed sign-ins slow an attacker down (NIST SP 800-63B-4 sec. 3.2.2; ASVS v5.0.0-6.1.1,
6.3.1) without letting anyone lock a person out from afar.

Only **guessable secrets** are counted against an account: the password, and one-time codes
(TOTP and recovery codes), each kind on its own counter. A WebAuthn assertion or a client
certificate cannot be guessed, so their failures never count against an account; they count
against the address only, and those sign-ins are never refused because of password failures.

For every failed guess three counters move, and all are checked before the next attempt:

- **per account and address** (the name typed, whether or not such a user exists, so that
  throttling says nothing about which names are real; and the network address): the first few
  failures are free, then each doubles the wait before that address's next attempt on that
  name is even considered, up to a ceiling (NIST-RL-02's "increasing delays"). The person
  signing in from their own address does not inherit the waits an attacker earns elsewhere;
- **per account**, from every address: consecutive failures, forgotten after a success
  (NIST-RL-03). They raise the brute-force alarm, and at ``lock_after`` (at most 100,
  NIST-RL-01) that kind of secret locks until an administrator unlocks it. Past
  ``account_wide_free`` failures (far above the per-address allowance, so that only an attack
  from many addresses gets there) the same doubling applies to every address **except** those
  the account signed in from successfully within ``known_address_memory`` (NIST-RL-02's prior
  address allowlist): a distributed attack is slowed, the person at their usual desk is not;
- **per address**: failures within a window, whatever names they try. The allowance is larger
  (a clinic's staff share one address behind NAT), then the same doubling applies. When one
  address fails against ``stuffing_accounts`` distinct names within the window, that is
  credential stuffing and raises an alarm.

This module only computes; the service that keeps the counters (in Redis or in memory) and
raises the alarms is ``hearth.services.throttle``. Waiting is not done by sleeping: an attempt
that comes too early is refused at once with the time left, so an attacker cannot tie up server
threads, and a refused attempt checks no password.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["DEFAULT_THROTTLE", "Guessable", "ThrottlePolicy"]


class Guessable(enum.StrEnum):
    """The kinds of secret an attacker can guess, each counted (and locked) on its own, so that
    a flood of wrong passwords does not also lock the one-time codes a person needs after a
    smart-card sign-in. The value prefixes the counter keys."""

    PASSWORD = "a"  # noqa: S105 - a counter-key prefix, not a password
    CODE = "c"  # TOTP and recovery codes


def _doubling(failures: int, free: int, ceiling: timedelta) -> timedelta:
    """0 for the first ``free`` failures, then 1 s, 2 s, 4 s, ... up to ``ceiling``."""
    if failures < free:
        return timedelta(0)
    exponent = min(failures - free, 40)
    return min(timedelta(seconds=2**exponent), ceiling)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The numbers of the module docstring; stricter values are allowed, looser ones are not."""

    #: Free failures per (account, address) before the waits start.
    account_free: int = 5
    account_ceiling: timedelta = timedelta(minutes=15)
    #: Failures per account from all addresses before unknown addresses wait too.
    account_wide_free: int = 50
    lock_after: int = 100
    address_free: int = 20
    address_ceiling: timedelta = timedelta(minutes=15)
    address_window: timedelta = timedelta(hours=1)
    #: Consecutive failures on one account that raise a brute-force alarm.
    brute_force_alarm: int = 10
    #: Distinct account names failed from one address within the window: credential stuffing.
    stuffing_accounts: int = 10
    #: How long a name's password-failure count is kept after its last failure (the lock
    #: itself is kept on the account row until an administrator unlocks it).
    account_memory: timedelta = timedelta(days=1)
    #: How long a user's one-time-code failure count is kept: longer, because someone guessing
    #: codes already holds a first factor, and after a smart-card sign-in the count is the lock.
    code_memory: timedelta = timedelta(days=30)
    #: How long an address an account signed in from stays exempt from the account-wide wait.
    known_address_memory: timedelta = timedelta(days=30)
    #: Passkey sign-ins one address may start (each opens a short-lived pending session, before
    #: anyone is known) within ``start_window``: bounds what an anonymous client can make the
    #: server store.
    anonymous_starts: int = 30
    start_window: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if not 1 <= self.lock_after <= 100:
            raise ValueError("NIST-RL-01: lock after at most 100 consecutive failures")
        if self.account_free < 0 or self.address_free < 0:
            raise ValueError("free attempts cannot be negative")
        if not self.account_free <= self.account_wide_free <= self.lock_after:
            raise ValueError("account_wide_free lies between account_free and lock_after")
        if self.brute_force_alarm < 1 or self.stuffing_accounts < 2:
            raise ValueError("alarm thresholds must be positive")

    def account_delay(self, failures: int) -> timedelta:
        """How long after its last failure on an account one address may try it again."""
        return _doubling(failures, self.account_free, self.account_ceiling)

    def account_wide_delay(self, failures: int) -> timedelta:
        """How long after the account's last failure from anywhere an address it has not
        signed in from may try it again."""
        return _doubling(failures, self.account_wide_free, self.account_ceiling)

    def address_delay(self, failures: int) -> timedelta:
        """How long after the last failure the address may try again."""
        return _doubling(failures, self.address_free, self.address_ceiling)

    def locks(self, failures: int) -> bool:
        """Whether ``failures`` consecutive failures lock the account."""
        return failures >= self.lock_after

    def is_brute_force(self, failures: int) -> bool:
        """True exactly when the count reaches the alarm threshold and at each multiple of it,
        so a long attack raises a few alarms, not one per attempt."""
        return failures > 0 and failures % self.brute_force_alarm == 0

    def is_stuffing(self, distinct_accounts: int) -> bool:
        """True when one address has now failed against the threshold's number of names, and at
        each multiple of it."""
        return distinct_accounts > 0 and distinct_accounts % self.stuffing_accounts == 0


DEFAULT_THROTTLE = ThrottlePolicy()
