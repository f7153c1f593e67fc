"""Password hashing and verification (NIST SP 800-63B-4 sec. 3.1.1.2; RFC 9106).

Use::

    hasher = PasswordHasher(peppers=ring)              # parameters default to DEFAULT_PARAMETERS
    policy.check(password, context_words=[user_name], has_second_factor=False)
    stored = hasher.hash(password, random=random)       # store this string
    ...
    hasher.verify(stored, attempt)                      # raises HearthError(AUTHENTICATION_FAILED)
    if hasher.needs_rehash(stored):                     # cost raised or pepper rotated
        stored = hasher.hash(attempt, random=random)
    ...
    hasher.dummy_verify(attempt)                        # no such user: same work, same error

The password is normalised with NFKC (NIST-PW-03), never truncated (NIST-PW-07), hashed with
argon2id under a random 128-bit salt with its parameters in the stored string (NIST-PW-13), and,
when a pepper is configured, first keyed with HMAC-SHA256 under a secret held outside the
database (NIST-PW-14). The stored format is described in :mod:`hearth.auth.hashed_secret`.
"""

from __future__ import annotations

from hearth.auth.argon2id import DEFAULT_PARAMETERS, Argon2Parameters
from hearth.auth.hashed_secret import SecretHasher
from hearth.auth.normalise import MAX_INPUT_CHARACTERS, normalise
from hearth.auth.password_policy import PasswordPolicy
from hearth.auth.pepper import PepperRing
from hearth.domain.errors import AUTHENTICATION_FAILED

__all__ = ["PasswordHasher", "PasswordPolicy"]


class PasswordHasher(SecretHasher):
    """argon2id password hashing with an optional pepper; every mismatch raises
    ``HearthError(AUTHENTICATION_FAILED)``, the same error an unknown user gets."""

    label = b"hearth/password/v1"

    def __init__(
        self,
        parameters: Argon2Parameters = DEFAULT_PARAMETERS,
        peppers: PepperRing | None = None,
    ) -> None:
        super().__init__(failure=AUTHENTICATION_FAILED, parameters=parameters, peppers=peppers)

    def prepare(self, secret: str) -> str | None:
        """NFKC (NIST-PW-03); ``None`` past the input guard, which no policy-checked password
        reaches, so an over-long attempt fails without hashing megabytes."""
        if len(secret) > MAX_INPUT_CHARACTERS:
            return None
        return normalise(secret)
