"""Recovery codes: single-use look-up secrets for when the second factor is lost
(NIST SP 800-63B-4 sec. 3.1.2, "look-up secrets").

:func:`generate_recovery_codes` makes ten codes of ten Crockford base32 characters, 50 random
bits each (NIST asks for at least 20 bits, and for rate limiting below 64, which the caller
applies as for every other authenticator). They are shown once as ``XXXXX-XXXXX`` and stored only
as hashes (:meth:`RecoveryCodeHasher.hash`).

Why argon2id rather than SHA-256: 50 bits is small enough that a stolen table of SHA-256 hashes
could be searched on commodity GPUs (2**49 guesses per code is hours to days). Under argon2id at
m=19 MiB, t=2 (about 20 ms a guess here) the same search takes hundreds of millions of
core-years; with a pepper configured it cannot start without the key. The price is that checking
a code tries each stored hash in turn, about 0.2 s for ten, which the caller's rate limit bounds.

:func:`verify_recovery_code` returns the index of the matching hash; the caller deletes it (or
replaces the list with :func:`remove_used`) in the same transaction that accepts the sign-in, so
each code works once (NIST sec. 3.1.2.2 "SHALL be used successfully only once").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hearth.auth.argon2id import RECOVERY_CODE_PARAMETERS, Argon2Parameters
from hearth.auth.hashed_secret import SecretHasher
from hearth.auth.normalise import normalise
from hearth.auth.pepper import PepperRing
from hearth.domain.errors import RECOVERY_CODE_INVALID, HearthError
from hearth.domain.types import Random

__all__ = [
    "CODE_COUNT",
    "CODE_LENGTH",
    "CROCKFORD_ALPHABET",
    "RecoveryCodeHasher",
    "canonical_recovery_code",
    "generate_recovery_codes",
    "remove_used",
]

CODE_COUNT = 10
CODE_LENGTH = 10
#: Crockford's base32: no I, L, O or U, so nothing reads as another character; when reading a
#: code back, I and L are taken as 1 and O as 0.
CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SEPARATORS = re.compile(r"[\s-]+")
_CANONICAL = re.compile(f"[{CROCKFORD_ALPHABET}]{{{CODE_LENGTH}}}")


def generate_recovery_codes(random: Random, *, count: int = CODE_COUNT) -> list[str]:
    """``count`` new codes for display, each ``XXXXX-XXXXX`` (50 random bits)."""
    codes = []
    for _ in range(count):
        # 7 random bytes give 56 bits; the top 50 pick ten characters of a 32-letter alphabet
        # exactly (a power of two, so no character is more likely than another).
        value = int.from_bytes(random.token_bytes(7), "big") >> 6
        chars = "".join(
            CROCKFORD_ALPHABET[(value >> (5 * (CODE_LENGTH - 1 - i))) & 31]
            for i in range(CODE_LENGTH)
        )
        codes.append(f"{chars[:5]}-{chars[5:]}")
    return codes


def canonical_recovery_code(code: str) -> str | None:
    """The ten characters of ``code`` as stored, or ``None`` if it cannot be a recovery code.

    Case, spaces and hyphens are ignored; I and L read as 1, O as 0 (Crockford).
    """
    candidate = _SEPARATORS.sub("", normalise(code)).upper().translate(_READ_AS)
    return candidate if _CANONICAL.fullmatch(candidate) else None


class RecoveryCodeHasher(SecretHasher):
    """Hash and check recovery codes; every failure raises ``RECOVERY_CODE_INVALID``."""

    label = b"hearth/recovery-code/v1"

    def __init__(
        self,
        parameters: Argon2Parameters = RECOVERY_CODE_PARAMETERS,
        peppers: PepperRing | None = None,
    ) -> None:
        super().__init__(failure=RECOVERY_CODE_INVALID, parameters=parameters, peppers=peppers)

    def prepare(self, secret: str) -> str | None:
        return canonical_recovery_code(secret)

    def find(self, stored: Sequence[str], code: str) -> int:
        """The index in ``stored`` of the hash ``code`` matches; raise ``RECOVERY_CODE_INVALID``.

        Every stored hash is tried, even after a match, so the time taken does not depend on
        which code was entered. With no stored hashes left the work of one check is still done.
        """
        found: int | None = None
        for index, entry in enumerate(stored):
            try:
                self.verify(entry, code)
            except HearthError as error:
                if error.code is not RECOVERY_CODE_INVALID:
                    raise
            else:
                found = index if found is None else found
        if found is None:
            if not stored:
                self.dummy_verify(code)
            raise HearthError(RECOVERY_CODE_INVALID)
        return found


def remove_used(stored: Sequence[str], index: int) -> tuple[str, ...]:
    """``stored`` without the hash at ``index``: what to store after a successful use."""
    if not 0 <= index < len(stored):
        raise IndexError("no recovery code hash at that index")
    return tuple(entry for i, entry in enumerate(stored) if i != index)
