"""Authenticators: the protocol logic of passwords, TOTP, recovery codes and PINs.

Pure: no I/O but reading the shipped password blocklist from the package; time and randomness
come in as parameters. Users, sessions, throttling and storage live in the layers above, which
call these functions (issue 4). Modules:

- :mod:`~hearth.auth.passwords`: :class:`PasswordHasher` (argon2id, optional pepper) and
  :class:`PasswordPolicy` (NIST SP 800-63B-4 sec. 3.1.1.2);
- :mod:`~hearth.auth.blocklist`: the shipped list of common and breached passwords;
- :mod:`~hearth.auth.totp`: RFC 6238 codes, enrolment URI and QR code;
- :mod:`~hearth.auth.recovery`: single-use recovery codes;
- :mod:`~hearth.auth.pin`: PINs that unlock a locked session;
- :mod:`~hearth.auth.argon2id`, :mod:`~hearth.auth.pepper`, :mod:`~hearth.auth.hashed_secret`,
  :mod:`~hearth.auth.normalise`: what those share.
"""

from hearth.auth import totp
from hearth.auth.argon2id import DEFAULT_PARAMETERS, RECOVERY_CODE_PARAMETERS, Argon2Parameters
from hearth.auth.blocklist import Blocklist, shipped_blocklist
from hearth.auth.hashed_secret import StoredHash
from hearth.auth.passwords import PasswordHasher, PasswordPolicy
from hearth.auth.pepper import PepperRing
from hearth.auth.pin import PinAttempts, PinHasher, PinPolicy
from hearth.auth.recovery import RecoveryCodeHasher, generate_recovery_codes, remove_used
from hearth.auth.totp import TotpParameters

__all__ = [
    "Argon2Parameters",
    "DEFAULT_PARAMETERS",
    "RECOVERY_CODE_PARAMETERS",
    "PepperRing",
    "StoredHash",
    "PasswordHasher",
    "PasswordPolicy",
    "Blocklist",
    "shipped_blocklist",
    "totp",
    "TotpParameters",
    "RecoveryCodeHasher",
    "generate_recovery_codes",
    "remove_used",
    "PinAttempts",
    "PinHasher",
    "PinPolicy",
]
