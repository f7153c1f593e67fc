"""Opaque page tokens for history and search ``next`` links.

A token is the sealed JSON of where the next page starts, bound to the principal who asked
(associated data) and to an expiry time. It never carries search values in the clear, so a
logged URL discloses nothing, and another user cannot replay it.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import orjson

from hearth.crypto import KeyRing
from hearth.domain import Clock, HearthError, IntegrityError, Principal, Random, errors

__all__ = ["PageTokens"]


def _aad(principal: Principal) -> bytes:
    return b"hearth/page/v1\x00" + principal.subject.encode("utf-8")


class PageTokens:
    def __init__(
        self, keyring: KeyRing, clock: Clock, random: Random, ttl: timedelta = timedelta(hours=1)
    ) -> None:
        self._keys = keyring
        self._clock = clock
        self._random = random
        self._ttl = ttl

    def issue(self, principal: Principal, state: dict[str, Any]) -> str:
        expires = int((self._clock.now() + self._ttl).timestamp())
        plain = orjson.dumps({"exp": expires, "s": state})
        sealed = self._keys.seal_secret(plain, aad=_aad(principal), random=self._random)
        return base64.urlsafe_b64encode(sealed).decode("ascii").rstrip("=")

    def open(self, principal: Principal, token: str) -> dict[str, Any]:
        invalid = HearthError(errors.PAGE_LINK_INVALID, "The page link is invalid or has expired.")
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload = orjson.loads(self._keys.open_secret(sealed, aad=_aad(principal)))
        except (ValueError, IntegrityError, orjson.JSONDecodeError):
            raise invalid from None
        if not isinstance(payload, dict) or payload.get("exp", 0) < self._clock.now().timestamp():
            raise invalid
        state = payload.get("s")
        if not isinstance(state, dict):
            raise invalid
        return state
