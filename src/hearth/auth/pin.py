"""PINs for unlocking a locked session on a shared workstation (issue 4 item 6; NIST-RA-02).

A PIN is never a sign-in on its own: it only unlocks a session that a full sign-in opened, for
the same user on the same browser, within the session's absolute lifetime, and five wrong PINs
end the session (:class:`PinAttempts`). NIST SP 800-63B-4 sec. 2.2.3 allows reauthentication
after an inactivity timeout with a memorised secret plus the session secret; the PIN is that
memorised secret, and the five-tries rule is what makes six digits enough: an attacker at the
keyboard gets five guesses out of about a million.

Rules (:class:`PinPolicy`): 6 to 16 ASCII digits (full-width digits are normalised), and none of
the patterns people pick first: one digit repeated (``000000``), a constant step (``123456``,
``135791``, ``987654``, wrapping ``890123``), a repeated block (``121212``, ``123123``), each
digit of such a run doubled or tripled (``112233``, ``111222``), palindromes (``123321``), the
keypad shapes and other frequent choices in :data:`COMMON_PINS`, and any of the user's own
numbers the caller passes (birth date, staff number, extension), whole or as a birth year.

PINs are hashed with argon2id like passwords (:class:`PinHasher`). With about 20 bits of
entropy that protects little against someone holding the database and hours of time; the
protection is the pepper when one is configured (the search cannot start without the key) and,
always, that a PIN alone opens nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from hearth.auth.argon2id import DEFAULT_PARAMETERS, Argon2Parameters
from hearth.auth.hashed_secret import SecretHasher
from hearth.auth.normalise import normalise
from hearth.auth.pepper import PepperRing
from hearth.domain.errors import PIN_FORMAT, PIN_GUESSABLE, PIN_INVALID, HearthError

__all__ = [
    "COMMON_PINS",
    "MAX_PIN_DIGITS",
    "MAX_PIN_FAILURES",
    "MIN_PIN_DIGITS",
    "PinAttempts",
    "PinHasher",
    "PinPolicy",
    "canonical_pin",
]

MIN_PIN_DIGITS = 6
MAX_PIN_DIGITS = 16
MAX_PIN_FAILURES = 5

#: Frequent six-digit choices that the structural rules do not already catch: keypad lines and
#: crosses (147258, 159753, 741852...), and favourites seen at the top of published PIN and
#: password frequency lists (696969, 520520, 102030...).
COMMON_PINS = frozenset(
    {
        "102030", "112358", "123654", "123789", "147258", "147369", "147852", "147896",
        "159357", "159753", "159951", "258369", "258456", "321654", "357159", "369258",
        "369852", "456123", "456789", "520520", "520131", "5201314", "696969", "741852",
        "741963", "753159", "753951", "789123", "789456", "789654", "852456", "951753",
        "963852", "963741", "131313", "142536", "100200", "110120",
    }
)  # fmt: skip


def canonical_pin(pin: str) -> str | None:
    """The PIN as ASCII digits after NFKC (full-width digits become ASCII), or ``None``."""
    normalised = normalise(pin)
    if normalised.isascii() and normalised.isdigit():
        return normalised
    return None


def _constant_step(digits: str) -> bool:
    """``d0, d0+k, d0+2k, ...`` modulo 10 for one k: 111111, 123456, 135791, 987654, 890123."""
    step = (int(digits[1]) - int(digits[0])) % 10
    return all((int(b) - int(a)) % 10 == step for a, b in itertools.pairwise(digits))


def _repeated_block(digits: str) -> bool:
    """One block repeated at least twice: 121212, 123123, 12341234."""
    length = len(digits)
    return any(
        length % size == 0 and digits == digits[:size] * (length // size)
        for size in range(1, length // 2 + 1)
    )


def _doubled_run(digits: str) -> bool:
    """Each digit of a constant-step run repeated the same number of times: 112233, 111222."""
    runs: list[tuple[str, int]] = []
    for d in digits:
        if runs and runs[-1][0] == d:
            runs[-1] = (d, runs[-1][1] + 1)
        else:
            runs.append((d, 1))
    sizes = {size for _, size in runs}
    if len(runs) < 2 or len(sizes) != 1 or sizes.pop() < 2:
        return False
    return _constant_step("".join(d for d, _ in runs))


def _birth_date_forms(born: date) -> set[str]:
    yyyy, yy = f"{born.year:04d}", f"{born.year % 100:02d}"
    mm, dd = f"{born.month:02d}", f"{born.day:02d}"
    return {
        dd + mm + yy, mm + dd + yy, yy + mm + dd,
        dd + mm + yyyy, mm + dd + yyyy, yyyy + mm + dd,
        yyyy + mm, mm + yyyy, yyyy + dd + mm,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class PinPolicy:
    """The PIN rules of the module docstring. Lengths may be raised, never lowered below 6."""

    min_digits: int = MIN_PIN_DIGITS
    max_digits: int = MAX_PIN_DIGITS

    def __post_init__(self) -> None:
        if not MIN_PIN_DIGITS <= self.min_digits <= self.max_digits <= 64:
            raise ValueError("PINs have at least 6 digits (issue 4 item 6)")

    def check(
        self,
        pin: str,
        *,
        context_numbers: Iterable[str] = (),
        birth_date: date | None = None,
    ) -> None:
        """Return if ``pin`` may be chosen; raise ``PIN_FORMAT`` or ``PIN_GUESSABLE``.

        ``context_numbers`` are digit strings tied to the user (staff number, phone extension);
        a PIN equal to one, or containing one of four or more digits, is refused. A
        ``birth_date`` refuses the PIN in the usual date orders and any PIN holding the birth
        year.
        """
        digits = canonical_pin(pin)
        if digits is None or not self.min_digits <= len(digits) <= self.max_digits:
            raise HearthError(
                PIN_FORMAT,
                f"Choose a PIN of {self.min_digits} to {self.max_digits} digits, "
                "with nothing but digits.",
            )
        if (
            digits in COMMON_PINS
            or _constant_step(digits)
            or _repeated_block(digits)
            or _doubled_run(digits)
            or digits == digits[::-1]
            or self._is_personal(digits, context_numbers, birth_date)
        ):
            raise HearthError(PIN_GUESSABLE)

    @staticmethod
    def _is_personal(digits: str, context: Iterable[str], birth_date: date | None) -> bool:
        numbers = {c for c in (canonical_pin(n) for n in context) if c}
        if birth_date is not None:
            numbers |= _birth_date_forms(birth_date)
            if f"{birth_date.year:04d}" in digits:
                return True
        return any(n == digits or (len(n) >= 4 and n in digits) for n in numbers)


class PinHasher(SecretHasher):
    """argon2id PIN hashing; every mismatch raises ``HearthError(PIN_INVALID)``."""

    label = b"hearth/pin/v1"

    def __init__(
        self,
        parameters: Argon2Parameters = DEFAULT_PARAMETERS,
        peppers: PepperRing | None = None,
    ) -> None:
        super().__init__(failure=PIN_INVALID, parameters=parameters, peppers=peppers)

    def prepare(self, secret: str) -> str | None:
        digits = canonical_pin(secret)
        return digits if digits is not None and len(digits) <= 64 else None


@dataclass(frozen=True, slots=True)
class PinAttempts:
    """Consecutive wrong PINs in one locked session: after ``limit`` the session must end.

    An immutable value the session service keeps with the session::

        attempts = attempts.record_failure()
        if attempts.must_logout: end the session (full sign-in needed)
        else: show f"{attempts.remaining} tries left"

    A correct PIN unlocks the session and the service starts again from ``PinAttempts()``.
    """

    failures: int = 0
    limit: int = MAX_PIN_FAILURES

    def __post_init__(self) -> None:
        if self.limit < 1 or self.failures < 0:
            raise ValueError("a PIN attempt limit is at least 1")

    def record_failure(self) -> PinAttempts:
        """The state after one more wrong PIN."""
        return PinAttempts(failures=self.failures + 1, limit=self.limit)

    @property
    def remaining(self) -> int:
        """Wrong PINs still allowed before the session ends."""
        return max(self.limit - self.failures, 0)

    @property
    def must_logout(self) -> bool:
        """Whether the session must end now (five wrong PINs by default)."""
        return self.failures >= self.limit
