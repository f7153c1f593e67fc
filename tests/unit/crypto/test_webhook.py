"""Webhook signatures: HMAC-SHA-256 over the timestamp and body, refused when stale or edited."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hearth.crypto.webhook import sign_webhook, verify_webhook
from hearth.domain import IntegrityError

SECRET = b"whsec-test-0123456789"
BODY = b'{"alarm":{"id":"a1"},"format":"hearth-alarm","version":1}'
TS = 1_768_469_400


def test_signature_is_hmac_sha256_over_prefix_timestamp_and_body() -> None:
    """Pinned so receivers in other languages can implement it from docs/design.md."""
    expected = hmac.new(
        SECRET, b"hearth-webhook-v1\x00" + str(TS).encode() + b"." + BODY, hashlib.sha256
    ).hexdigest()
    assert sign_webhook(SECRET, TS, BODY) == "v1=" + expected


def test_a_fresh_signature_verifies() -> None:
    signature = sign_webhook(SECRET, TS, BODY)
    verify_webhook(SECRET, signature=signature, timestamp=str(TS), body=BODY, now=TS + 299)


@pytest.mark.parametrize(
    ("signature_ts", "sent_ts", "body", "secret", "now"),
    [
        (TS, TS, BODY + b" ", SECRET, TS),  # edited body
        (TS, TS + 1, BODY, SECRET, TS),  # edited timestamp header
        (TS, TS, BODY, b"another-secret", TS),  # wrong secret
        (TS, TS, BODY, SECRET, TS + 301),  # replayed after the tolerance
        (TS, TS, BODY, SECRET, TS - 301),  # from the future
    ],
)
def test_anything_else_is_refused(
    signature_ts: int, sent_ts: int, body: bytes, secret: bytes, now: int
) -> None:
    signature = sign_webhook(SECRET, signature_ts, BODY)
    with pytest.raises(IntegrityError):
        verify_webhook(secret, signature=signature, timestamp=str(sent_ts), body=body, now=now)


@pytest.mark.parametrize(
    ("signature", "timestamp"),
    [("v2=00", str(TS)), ("v1=zz", str(TS)), ("", str(TS)), ("v1=00", "yesterday")],
)
def test_malformed_headers_are_refused(signature: str, timestamp: str) -> None:
    with pytest.raises(IntegrityError):
        verify_webhook(SECRET, signature=signature, timestamp=timestamp, body=BODY, now=TS)


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign_webhook(b"", TS, BODY)
