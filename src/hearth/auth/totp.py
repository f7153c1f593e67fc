"""Time-based one-time passwords (RFC 6238, over RFC 4226 HOTP, via ``pyotp``).

Enrolment: :func:`generate_secret` (160 random bits, RFC 4226 sec. 4 R6; NIST-OTP-01 asks for at
least 112), shown to the user as a QR code of :func:`provisioning_uri` (:func:`qr_svg`) and as
the same key typed by hand (:func:`manual_key`). Sign-in: :func:`verify`, which accepts the code
of the current time step or of one step either side (RFC 6238 sec. 5.2's recommended skew of one
step, 30 s each way; NIST-OTP-05) and refuses a step at or before the last one used, so that each
code is accepted only once (NIST-OTP-02). The caller stores the returned step as the new
``last_used_step`` in the same transaction that accepts the sign-in.

Codes are compared in constant time, and every candidate step is computed and compared whether or
not an earlier one matched, so the time taken does not say which step matched. Six digits carry
only about 20 bits, so the caller must rate-limit attempts (NIST-OTP-04).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pyotp
import segno

from hearth.auth.normalise import normalise
from hearth.domain.errors import TOTP_INVALID, TOTP_REPLAYED, TOTP_SECRET_INVALID, HearthError
from hearth.domain.types import Random

__all__ = [
    "DEFAULT_TOTP",
    "SECRET_BYTES",
    "WINDOW",
    "TotpParameters",
    "code_at",
    "generate_secret",
    "manual_key",
    "provisioning_uri",
    "qr_svg",
    "time_step",
    "verify",
]

#: 160 bits: the HMAC-SHA-1 block's natural key size (RFC 4226 sec. 4 R6 "SHOULD be 160 bits").
SECRET_BYTES = 20
#: Steps accepted either side of the current one (RFC 6238 sec. 5.2).
WINDOW = 1

_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
_SECRET_PATTERN = re.compile(r"[A-Z2-7]+")
_SPACES = re.compile(r"[\s-]+")


@dataclass(frozen=True, slots=True)
class TotpParameters:
    """RFC 6238 sec. 4 parameters: digits per code, the time step X in seconds, the HMAC hash.

    The defaults (6 digits, 30 s, SHA-1) are the ones every authenticator app supports; apps
    that see other values in the provisioning URI often ignore them and show wrong codes.
    """

    digits: int = 6
    period: int = 30
    algorithm: Literal["SHA1", "SHA256", "SHA512"] = "SHA1"

    def __post_init__(self) -> None:
        if not 6 <= self.digits <= 8:
            raise ValueError("TOTP codes have 6 to 8 digits")
        # NIST-OTP-01: the time nonce changes at least every 2 minutes.
        if not 1 <= self.period <= 120:
            raise ValueError("the TOTP time step must be 1 to 120 seconds")
        if self.algorithm not in _DIGESTS:
            raise ValueError("the TOTP algorithm must be SHA1, SHA256 or SHA512")


DEFAULT_TOTP = TotpParameters()


def generate_secret(random: Random, *, nbytes: int = SECRET_BYTES) -> str:
    """A new shared secret: ``nbytes`` random bytes in unpadded RFC 4648 base32."""
    if nbytes < SECRET_BYTES:
        raise ValueError("TOTP secrets have at least 160 bits")
    return base64.b32encode(random.token_bytes(nbytes)).decode("ascii").rstrip("=")


def manual_key(secret: str) -> str:
    """The secret in groups of four characters, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def time_step(now: datetime, parameters: TotpParameters = DEFAULT_TOTP) -> int:
    """RFC 6238 sec. 4.2: ``T = floor((unix time - T0) / X)`` with ``T0 = 0``.

    ``now`` must carry a time zone: a naive time would be read as local time and shift every
    code by the server's UTC offset.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("TOTP needs an aware datetime")
    return int(now.timestamp()) // parameters.period


def _otp(secret: str, parameters: TotpParameters) -> pyotp.TOTP:
    if not _SECRET_PATTERN.fullmatch(secret):
        raise HearthError(TOTP_SECRET_INVALID)
    try:
        return pyotp.TOTP(
            secret,
            digits=parameters.digits,
            digest=_DIGESTS[parameters.algorithm],
            interval=parameters.period,
        )
    except ValueError as exc:  # bad base32, or fewer than 112 bits (pyotp's NIST-OTP-01 check)
        raise HearthError(TOTP_SECRET_INVALID) from exc


def code_at(secret: str, step: int, parameters: TotpParameters = DEFAULT_TOTP) -> str:
    """The code for time step ``step`` (RFC 6238 sec. 4.2: HOTP with ``T`` as the counter)."""
    return _otp(secret, parameters).generate_otp(step)


def provisioning_uri(
    secret: str,
    *,
    account_name: str,
    issuer: str,
    parameters: TotpParameters = DEFAULT_TOTP,
) -> str:
    """The ``otpauth://totp/`` URI authenticator apps read from the QR code (Key Uri Format).

    It holds the secret: render it only on the enrolment page, over TLS, with ``Cache-Control:
    no-store``, and never log it.
    """
    return _otp(secret, parameters).provisioning_uri(name=account_name, issuer_name=issuer)


def qr_svg(uri: str, *, scale: int = 4) -> str:
    """The QR code of ``uri`` as an inline ``<svg>`` element (segno; no raster, no Pillow).

    The element has a ``<title>`` for screen readers; the page should also show
    :func:`manual_key` for people who cannot scan it.
    """
    qr = segno.make(uri, error="m", micro=False)
    return qr.svg_inline(
        scale=scale,
        border=4,
        title="QR code for setting up your authenticator app",
        svgclass="hearth-totp-qr",
    )


def verify(
    secret: str,
    code: str,
    *,
    now: datetime,
    last_used_step: int | None,
    parameters: TotpParameters = DEFAULT_TOTP,
) -> int:
    """Check ``code`` at ``now``; return the time step it matched (RFC 6238 sec. 5.2).

    Raises ``HearthError(TOTP_INVALID)`` when it matches none of the steps in the window and
    ``HearthError(TOTP_REPLAYED)`` when it matches only steps at or before ``last_used_step``
    (NIST-OTP-02). Spaces and hyphens in ``code`` are ignored and full-width digits normalised.
    """
    otp = _otp(secret, parameters)
    current = time_step(now, parameters)
    candidate = _SPACES.sub("", normalise(code))
    if len(candidate) != parameters.digits or not candidate.isascii() or not candidate.isdigit():
        raise HearthError(TOTP_INVALID)
    given = candidate.encode("ascii")
    matched: list[int] = []
    for step in range(current - WINDOW, current + WINDOW + 1):
        if step >= 0 and hmac.compare_digest(otp.generate_otp(step).encode("ascii"), given):
            matched.append(step)
    fresh = [step for step in matched if last_used_step is None or step > last_used_step]
    if fresh:
        return max(fresh)
    if matched:
        raise HearthError(TOTP_REPLAYED)
    raise HearthError(TOTP_INVALID)
