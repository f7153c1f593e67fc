"""Hashing and verifying a memorised secret: the machinery that passwords, PINs and recovery
codes share (NIST SP 800-63B-4 sec. 3.1.1.2, NIST-PW-07, -13, -14).

Stored form, one ASCII string per secret::

    $argon2id$v=19$m=65536,t=3,p=1$<salt>$<tag>                       no pepper configured
    $hearth-pepper-v1$k=<key id>$argon2id$v=19$m=65536,t=3,p=1$...     peppered

The first is a plain PHC string that any argon2 library verifies against the NFKC form of the
secret. The second wraps it: the argon2id input is ``HMAC-SHA256(pepper[key id], label || 0x00 ||
NFKC(secret))`` (see :mod:`hearth.auth.pepper`); ``v1`` names that construction, so a different
one later gets a new marker rather than a silent change.

Verification raises one opaque error for every mismatch (pyca/cryptography's model): a wrong
secret and a secret too long to be anyone's look the same to the caller. A damaged stored string
is an :class:`~hearth.domain.errors.IntegrityError`, and a hash made under a pepper key that is
not configured is ``KEY_UNAVAILABLE``: both are the operator's problem, never the user's.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import NoReturn

from hearth.auth.argon2id import Argon2Parameters, hash_phc, parameters_of, verify_phc
from hearth.auth.pepper import KEY_ID_PATTERN, PepperRing
from hearth.domain.errors import KEY_UNAVAILABLE, ErrorCode, HearthError, IntegrityError
from hearth.domain.types import Random

__all__ = ["PEPPER_MARKER", "SecretHasher", "StoredHash"]

#: The prefix of a peppered hash; the ``v1`` is the format version of the construction.
PEPPER_MARKER = "$hearth-pepper-v1$k="


@dataclass(frozen=True, slots=True)
class StoredHash:
    """A parsed stored hash: the argon2id PHC string, its parameters and the pepper key id."""

    phc: str
    parameters: Argon2Parameters
    pepper_key_id: str | None

    @classmethod
    def parse(cls, stored: str) -> StoredHash:
        """Parse the stored form; raise :class:`IntegrityError` if it is damaged."""
        pepper_key_id: str | None = None
        phc = stored
        if stored.startswith(PEPPER_MARKER):
            key_id, sep, rest = stored[len(PEPPER_MARKER) :].partition("$")
            if not sep or not KEY_ID_PATTERN.fullmatch(key_id):
                raise IntegrityError("A stored credential hash is damaged.")
            pepper_key_id, phc = key_id, "$" + rest
        parameters = parameters_of(phc)
        if parameters is None:
            raise IntegrityError("A stored credential hash is damaged.")
        return cls(phc=phc, parameters=parameters, pepper_key_id=pepper_key_id)

    def encode(self) -> str:
        """The stored form (module docstring)."""
        if self.pepper_key_id is None:
            return self.phc
        return f"{PEPPER_MARKER}{self.pepper_key_id}{self.phc}"


class SecretHasher:
    """Hash, verify and re-hash one kind of memorised secret.

    Subclasses set ``label`` (domain separation under the pepper), ``failure`` (the one error
    every mismatch raises) and :meth:`prepare` (normalisation). Time and randomness come in as
    parameters: :meth:`hash` takes the salt's source.
    """

    label: bytes = b"hearth/secret/v1"

    def __init__(
        self,
        *,
        failure: ErrorCode,
        parameters: Argon2Parameters,
        peppers: PepperRing | None = None,
    ) -> None:
        self.failure = failure
        self.parameters = parameters
        self.peppers = peppers
        self._dummy = _dummy_phc(parameters)

    def prepare(self, secret: str) -> str | None:
        """The canonical form of ``secret``, or ``None`` if it cannot be anyone's secret."""
        return secret

    def hash(self, secret: str, *, random: Random) -> str:
        """Hash ``secret`` under the current parameters and pepper key; return the stored form.

        Check the secret against its policy first: this only refuses what cannot be hashed.
        """
        prepared = self.prepare(secret)
        if prepared is None:
            raise ValueError("the secret cannot be hashed; check it against its policy first")
        key_id = None if self.peppers is None else self.peppers.current
        material = self._material(prepared, key_id)
        salt = random.token_bytes(self.parameters.salt_len)
        phc = hash_phc(material, salt, self.parameters)
        return StoredHash(phc=phc, parameters=self.parameters, pepper_key_id=key_id).encode()

    def verify(self, stored: str, secret: str) -> None:
        """Return if ``secret`` matches ``stored``; raise ``HearthError(failure)`` otherwise.

        NIST-PW-07: the whole secret is verified, never a prefix. The comparison of tags is
        constant-time inside libargon2.
        """
        parsed = StoredHash.parse(stored)
        prepared = self.prepare(secret)
        if prepared is None:
            raise HearthError(self.failure)
        material = self._material(prepared, parsed.pepper_key_id)
        if not verify_phc(parsed.phc, material):
            raise HearthError(self.failure)

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` should be re-made after a successful verification.

        True when its argon2id parameters differ from the current ones (in either direction: the
        configured cost is the policy) or it was made under another pepper key, or none.
        """
        parsed = StoredHash.parse(stored)
        current_key = None if self.peppers is None else self.peppers.current
        return parsed.parameters != self.parameters or parsed.pepper_key_id != current_key

    def dummy_verify(self, secret: str) -> NoReturn:
        """Do the work of a failed verification, then raise the same error.

        Call it when there is no stored hash (an unknown user, a user without this kind of
        secret) so that the answer and its timing match a wrong secret for a real user (no user
        enumeration, issue 4 item 3). It verifies against a fixed hash with the current
        parameters and pepper, whose tag no secret produces.
        """
        prepared = self.prepare(secret)
        if prepared is not None:
            key_id = None if self.peppers is None else self.peppers.current
            verify_phc(self._dummy, self._material(prepared, key_id))
        raise HearthError(self.failure)

    def _material(self, prepared: str, key_id: str | None) -> bytes:
        encoded = prepared.encode("utf-8")
        if key_id is None:
            return encoded
        if self.peppers is None or key_id not in self.peppers:
            raise HearthError(
                KEY_UNAVAILABLE,
                "A credential was hashed under a pepper key that is not configured; "
                "configure that key or reset the credential.",
            )
        return self.peppers.mac(key_id, self.label, encoded)


def _dummy_phc(parameters: Argon2Parameters) -> str:
    """A well-formed PHC string with the given parameters and an all-zero tag.

    Verifying against it costs exactly one argon2id computation with those parameters; a tag of
    zeros is never produced in practice (a 2**-256 chance), so it matches nothing.
    """

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii").rstrip("=")

    salt = hashlib.shake_256(b"hearth/dummy-salt").digest(parameters.salt_len)
    return (
        f"$argon2id$v=19$m={parameters.memory_kib},t={parameters.time_cost},"
        f"p={parameters.parallelism}${b64(salt)}${b64(bytes(parameters.hash_len))}"
    )
