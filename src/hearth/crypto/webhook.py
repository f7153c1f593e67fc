"""Signatures on alarm webhooks: HMAC-SHA-256 (RFC 2104) over a timestamp and the body.

A receiver checks that a notice came from this Hearth and was not replayed. Scheme, version 1
(docs/design.md, "Webhook sink")::

    X-Hearth-Timestamp: <unix seconds>
    X-Hearth-Signature: v1=<hex HMAC-SHA-256(secret, "hearth-webhook-v1" 0x00 timestamp "." body)>

The timestamp is inside the MAC, so it cannot be changed without the secret; the receiver
refuses a timestamp further than ``tolerance`` seconds from its own clock, which bounds how
long a captured request can be replayed (and the ``X-Hearth-Delivery`` id, unique per attempt's
notice, lets it drop a replay inside that window). The secret is the raw UTF-8 bytes of the
configured value.
"""

from __future__ import annotations

import hashlib
import hmac

from hearth.domain import IntegrityError

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_TOLERANCE_SECONDS",
    "sign_webhook",
    "verify_webhook",
]

TIMESTAMP_HEADER = "X-Hearth-Timestamp"
SIGNATURE_HEADER = "X-Hearth-Signature"
WEBHOOK_TOLERANCE_SECONDS = 300
_PREFIX = b"hearth-webhook-v1\x00"
_VERSION = "v1="


def _mac(secret: bytes, timestamp: int, body: bytes) -> bytes:
    message = _PREFIX + str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret, message, hashlib.sha256).digest()


def sign_webhook(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Hearth-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    if not secret:
        raise ValueError("a webhook secret must not be empty")
    return _VERSION + _mac(secret, timestamp, body).hex()


def verify_webhook(
    secret: bytes,
    *,
    signature: str,
    timestamp: str,
    body: bytes,
    now: int,
    tolerance: int = WEBHOOK_TOLERANCE_SECONDS,
) -> None:
    """Raise ``IntegrityError`` unless ``signature`` is right and ``timestamp`` is fresh.

    For receivers (and Hearth's own tests). ``now`` is the receiver's clock in unix seconds.
    Every failure raises the same error: a caller learns nothing about which check failed.
    """
    try:
        sent = int(timestamp)
    except ValueError:
        raise IntegrityError() from None
    if not signature.startswith(_VERSION) or abs(now - sent) > tolerance:
        raise IntegrityError()
    try:
        given = bytes.fromhex(signature[len(_VERSION) :])
    except ValueError:
        raise IntegrityError() from None
    if not hmac.compare_digest(_mac(secret, sent, body), given):
        raise IntegrityError()
