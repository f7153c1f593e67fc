"""Argon2id parameters and the PHC string format (RFC 9106; NIST-PW-13).

Every hash Hearth stores is a PHC string, ``$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>``, so
the algorithm, its version and its cost travel with the hash (NIST-PW-13 "SHOULD store the
algorithm and work factor with each hash") and can be raised over time: a hash whose parameters
differ from the current ones is re-made at the next successful sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import ARGON2_VERSION, hash_secret, verify_secret

__all__ = [
    "Argon2Parameters",
    "DEFAULT_PARAMETERS",
    "RECOVERY_CODE_PARAMETERS",
    "hash_phc",
    "parameters_of",
    "verify_phc",
]

#: RFC 9106 sec. 3.1 bounds; Hearth adds a salt of at least 16 bytes (NIST-PW-13 asks for 32 bits;
#: RFC 9106 recommends 128) and a tag of at least 16 bytes.
_MIN_SALT = 16
_MIN_TAG = 16


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """The cost of one argon2id computation (RFC 9106 sec. 3.1).

    ``memory_kib`` is the memory size in KiB, ``time_cost`` the number of passes,
    ``parallelism`` the number of lanes.
    """

    time_cost: int
    memory_kib: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16

    def __post_init__(self) -> None:
        # RFC 9106 sec. 3.1: t >= 1, 1 <= p < 2**24, m >= 8 * p KiB.
        if self.time_cost < 1 or not 1 <= self.parallelism < 2**24:
            raise ValueError("argon2id needs time_cost >= 1 and 1 <= parallelism < 2**24")
        if self.memory_kib < 8 * self.parallelism:
            raise ValueError("argon2id needs memory_kib >= 8 * parallelism")
        if self.salt_len < _MIN_SALT or self.hash_len < _MIN_TAG:
            raise ValueError("Hearth requires a salt and a tag of at least 16 bytes")


#: The default cost for passwords and PINs: RFC 9106 sec. 4's second recommended option
#: (t=3, m=64 MiB) with one lane instead of four. The attacker's cost per guess (memory times
#: passes) does not depend on the lane count; a server answering concurrent sign-ins on a few
#: cores gains nothing from extra threads per hash. Measured on the 2-core development machine:
#: median 131 ms per hash (p=4: 111 ms while occupying both cores). docs/design.md records how.
DEFAULT_PARAMETERS = Argon2Parameters(time_cost=3, memory_kib=64 * 1024, parallelism=1)

#: Recovery codes carry 50 random bits, so a cheaper cost suffices (OWASP's argon2id minimum,
#: m=19 MiB, t=2, p=1; about 20 ms here): an offline search of 2**49 guesses would still take
#: hundreds of millions of core-years. Checking a code tries each of a user's ten hashes.
RECOVERY_CODE_PARAMETERS = Argon2Parameters(time_cost=2, memory_kib=19 * 1024, parallelism=1)


def hash_phc(secret: bytes, salt: bytes, parameters: Argon2Parameters) -> str:
    """Hash ``secret`` with argon2id under ``salt``; return the PHC string (RFC 9106)."""
    if len(salt) != parameters.salt_len:
        raise ValueError("the salt length does not match the parameters")
    encoded = hash_secret(
        secret,
        salt,
        time_cost=parameters.time_cost,
        memory_cost=parameters.memory_kib,
        parallelism=parameters.parallelism,
        hash_len=parameters.hash_len,
        type=Type.ID,
        version=ARGON2_VERSION,
    )
    return encoded.decode("ascii")


def parameters_of(phc: str) -> Argon2Parameters | None:
    """The parameters encoded in an argon2id PHC string, or ``None`` if it is not one.

    Only argon2id at version 19 (0x13) is recognised: Hearth never wrote anything else, so any
    other string is treated as damage rather than guessed at (fail closed).
    """
    if not phc.startswith("$argon2id$v=19$"):
        return None
    try:
        found = extract_parameters(phc)
        return Argon2Parameters(
            time_cost=found.time_cost,
            memory_kib=found.memory_cost,
            parallelism=found.parallelism,
            hash_len=found.hash_len,
            salt_len=found.salt_len,
        )
    except (InvalidHashError, ValueError):
        return None


def verify_phc(phc: str, secret: bytes) -> bool:
    """Whether ``secret`` matches the argon2id PHC string ``phc``.

    libargon2 compares the tags in constant time. A malformed string gives ``False``; callers
    check :func:`parameters_of` first when they need to tell damage from a wrong secret.
    """
    try:
        return verify_secret(phc.encode("ascii"), secret, Type.ID)
    except (VerificationError, InvalidHashError, UnicodeEncodeError):
        return False
