"""Fetching a client's registered JWK Set by URL (SMART-BS-03, BS-07; ASVS 1.3.6, 12.3.2).

Only URLs an operator registered are ever fetched (the allowlist is the registration: a ``jku``
header must equal it), over HTTPS with certificate verification (HTTP only on loopback), no
redirects, a short timeout and a size cap. A set is cached no longer than its Cache-Control
``max-age`` allows (and at most an hour); without one it is not cached.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx
import orjson

from hearth.domain import HearthError, errors

__all__ = ["JwksFetcher"]

_MAX_BYTES = 64 * 1024
_MAX_CACHE = 3600.0
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)")


def _lifetime(cache_control: str | None) -> float:
    if not cache_control:
        return 0.0
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(lowered)
    return min(float(match.group(1)), _MAX_CACHE) if match else 0.0


class JwksFetcher:
    def __init__(self, *, timeout: float = 5.0) -> None:
        self._timeout = timeout
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, *, fresh: bool = False) -> dict[str, Any]:
        """The JWK Set at ``url``; ``fresh`` bypasses the cache (after a ``kid`` miss)."""
        now = time.monotonic()
        if not fresh:
            with self._lock:
                cached = self._cache.get(url)
            if cached is not None and cached[0] > now:
                return cached[1]
        refused = HearthError(errors.INVALID_CLIENT, "The client's JWK Set could not be fetched.")
        try:
            with (
                httpx.Client(timeout=self._timeout, follow_redirects=False) as http,
                http.stream("GET", url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise refused
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_BYTES:
                        raise refused
                lifetime = _lifetime(response.headers.get("cache-control"))
            jwks = orjson.loads(body)
        except (httpx.HTTPError, orjson.JSONDecodeError):
            raise refused from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise refused
        with self._lock:
            if lifetime > 0:
                self._cache[url] = (now + lifetime, jwks)
            else:
                self._cache.pop(url, None)
        return jwks
