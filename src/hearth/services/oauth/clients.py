"""Registered OAuth clients: SMART apps and backend services (``hearth client add|list|revoke``).

A registration fixes, up front, everything the authorization server later checks exactly:
redirect URIs (SMART-PK-02, ASVS 10.4.1), the grant types (ASVS 10.4.4), the scopes it may be
granted (ASVS 10.4.11), how it authenticates (SMART-TK-04) and, for ``private_key_jwt``, its
JWK Set by value or by URL (SMART-BS-03). Revoking a client ends every grant it holds at once.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import orjson

from hearth.auth.oauth.assertion import validate_jwks
from hearth.auth.oauth.scopes import ScopeRequest
from hearth.auth.oauth.secrets import CLIENT_SECRET, issue_secret, new_id
from hearth.domain import HearthError, Outcome, Random, ScopeContext, errors
from hearth.storage.oauth import AuditEvent, ClientRow, OAuthStore

__all__ = [
    "AUTH_METHODS",
    "BACKEND_ROLE",
    "Client",
    "ClientRegistry",
    "ClientSpec",
    "is_loopback_url",
]

AUTH_METHODS = frozenset(
    {"none", "private_key_jwt", "client_secret_basic", "client_secret_post", "tls_client_auth"}
)
#: The role a backend service acts with unless registered with others: its rights are then
#: exactly the scopes it is granted (security.policy, "backend-service").
BACKEND_ROLE = "backend-service"
_CACHE_SECONDS = 5.0


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, what: str, *, allow_custom_scheme: bool = False) -> str:
    """Absolute, no fragment; HTTPS, or HTTP only on loopback (RFC 6749 sec. 3.1.2, RFC 8252)."""
    parts = urlsplit(url)
    if parts.fragment or not parts.scheme or len(url) > 512:
        raise HearthError(errors.INVALID_CLIENT_METADATA, f"{what} must be absolute, without #.")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_url(url):
        return url
    if allow_custom_scheme and parts.scheme not in ("http", "https", "javascript", "data"):
        return url  # a native app's private-use scheme (RFC 8252 sec. 7.1)
    raise HearthError(
        errors.INVALID_CLIENT_METADATA, f"{what} must use https (http only on loopback)."
    )


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What an operator registers. ``kind`` is ``app`` (SMART app) or ``backend``."""

    name: str
    kind: str
    auth_method: str
    scope: str
    redirect_uris: tuple[str, ...] = ()
    launch_uri: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    kind: str
    auth_method: str
    allowed: ScopeRequest
    grant_types: frozenset[str]
    redirect_uris: tuple[str, ...]
    launch_uri: str | None
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    roles: frozenset[str]
    created_us: int
    revoked: bool
    secret_digest: bytes | None = field(default=None, repr=False)

    @property
    def public(self) -> bool:
        return self.auth_method == "none"


def _metadata(spec: ClientSpec, grant_types: list[str]) -> str:
    body: dict[str, Any] = {
        "kind": spec.kind,
        "grant_types": grant_types,
        "scope": spec.scope,
        "redirect_uris": list(spec.redirect_uris),
        "roles": sorted(spec.roles),
    }
    if spec.launch_uri is not None:
        body["launch_uri"] = spec.launch_uri
    if spec.jwks is not None:
        body["jwks"] = spec.jwks
    if spec.jwks_uri is not None:
        body["jwks_uri"] = spec.jwks_uri
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def _client(row: ClientRow) -> Client:
    meta = orjson.loads(row.metadata)
    return Client(
        client_id=row.client_id,
        name=row.name,
        kind=meta["kind"],
        auth_method=row.auth_method,
        allowed=ScopeRequest.parse(meta["scope"]),
        grant_types=frozenset(meta["grant_types"]),
        redirect_uris=tuple(meta["redirect_uris"]),
        launch_uri=meta.get("launch_uri"),
        jwks=meta.get("jwks"),
        jwks_uri=meta.get("jwks_uri"),
        roles=frozenset(meta["roles"]),
        created_us=row.created_us,
        revoked=row.revoked_us is not None,
        secret_digest=row.secret_digest,
    )


class ClientRegistry:
    def __init__(self, store: OAuthStore, random: Random) -> None:
        self._store = store
        self._random = random
        self._cache: dict[str, tuple[float, Client | None]] = {}
        self._lock = threading.Lock()
        self._on_revoke: list[Callable[[list[str]], None]] = []
        self._origins: tuple[float, frozenset[str]] | None = None

    def on_grants_revoked(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener`` with the grant ids a client revocation ends (to drop caches)."""
        self._on_revoke.append(listener)

    def _validate(self, spec: ClientSpec) -> list[str]:
        if not spec.name.strip() or len(spec.name) > 128:
            raise HearthError(errors.INVALID_CLIENT_METADATA, "A client needs a name (128 max).")
        if spec.auth_method not in AUTH_METHODS:
            raise HearthError(errors.INVALID_CLIENT_METADATA, "Unknown authentication method.")
        allowed = ScopeRequest.parse(spec.scope)
        contexts = {s.context for s in allowed.scopes}
        if spec.kind == "backend":
            if spec.auth_method in ("none",):
                raise HearthError(
                    errors.INVALID_CLIENT_METADATA, "A backend service must authenticate."
                )
            if contexts - {ScopeContext.SYSTEM} or allowed.other or not allowed.scopes:
                raise HearthError(
                    errors.INVALID_CLIENT_METADATA, "Backend services get system/ scopes only."
                )
            if spec.redirect_uris:
                raise HearthError(
                    errors.INVALID_CLIENT_METADATA, "Backend services have no redirect URIs."
                )
            grant_types = ["client_credentials"]
        elif spec.kind == "app":
            if ScopeContext.SYSTEM in contexts:
                raise HearthError(
                    errors.INVALID_CLIENT_METADATA, "SMART apps get patient/ and user/ scopes."
                )
            if not spec.redirect_uris:
                raise HearthError(
                    errors.INVALID_CLIENT_METADATA, "A SMART app needs a redirect URI."
                )
            for uri in spec.redirect_uris:
                _check_url(uri, "A redirect URI", allow_custom_scheme=True)
            grant_types = ["authorization_code", "refresh_token"]
        else:
            raise HearthError(errors.INVALID_CLIENT_METADATA, "kind is app or backend.")
        if spec.launch_uri is not None:
            _check_url(spec.launch_uri, "The launch URI")
        if spec.auth_method == "private_key_jwt":
            if (spec.jwks is None) == (spec.jwks_uri is None):
                raise HearthError(
                    errors.INVALID_CLIENT_METADATA, "private_key_jwt needs a JWK Set or its URL."
                )
            if spec.jwks is not None:
                validate_jwks(spec.jwks)
            if spec.jwks_uri is not None:
                _check_url(spec.jwks_uri, "The JWKS URL")
        elif spec.jwks is not None or spec.jwks_uri is not None:
            raise HearthError(
                errors.INVALID_CLIENT_METADATA, "A JWK Set is only used with private_key_jwt."
            )
        return grant_types

    def register(self, spec: ClientSpec, *, by: str) -> tuple[Client, str | None]:
        """Register a client; returns it and, for a secret-based client, the secret (once)."""
        grant_types = self._validate(spec)
        client_id = new_id(self._random)
        secret = None
        digest = None
        if spec.auth_method in ("client_secret_basic", "client_secret_post"):
            issued = issue_secret(CLIENT_SECRET, self._random)
            secret, digest = issued.value, issued.digest
        roles = spec.roles or ((BACKEND_ROLE,) if spec.kind == "backend" else ())
        spec = replace(spec, roles=roles)
        row = ClientRow(
            client_id=client_id,
            name=spec.name,
            auth_method=spec.auth_method,
            metadata=_metadata(spec, grant_types),
            secret_digest=digest,
            created_us=self._store.now_us(),
            revoked_us=None,
            created_by=by,
        )
        self._store.add_client(
            row, AuditEvent("oauth.client.add", Outcome.SUCCESS, by, "user", session=client_id)
        )
        self._origins = None
        return _client(row), secret

    def get(self, client_id: str) -> Client | None:
        """The client, from a cache of a few seconds (revocation here is seen at once)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(client_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = self._store.client(client_id) if 0 < len(client_id) <= 64 else None
        client = _client(row) if row is not None else None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[client_id] = (now + _CACHE_SECONDS, client)
        return client

    def registered_origins(self) -> frozenset[str]:
        """The web origins of every unrevoked SMART app's redirect URIs (for CORS, SMART-PK-06);
        cached a few seconds like the clients themselves."""
        now = time.monotonic()
        cached = self._origins
        if cached is not None and cached[0] > now:
            return cached[1]
        origins = frozenset(
            f"{parts.scheme}://{parts.netloc}"
            for client in self.all()
            if client.kind == "app" and not client.revoked
            for parts in map(urlsplit, client.redirect_uris)
            if parts.scheme in ("http", "https") and parts.netloc
        )
        self._origins = (now + _CACHE_SECONDS, origins)
        return origins

    def all(self) -> list[Client]:
        return [_client(r) for r in self._store.clients()]

    def revoke(self, client_id: str, *, by: str) -> list[str]:
        """Revoke a client and end every grant it holds; returns the grants ended."""
        event = AuditEvent("oauth.client.revoke", Outcome.SUCCESS, by, "user", session=client_id)
        done, grants = self._store.revoke_client(client_id, event)
        with self._lock:
            self._cache.pop(client_id, None)
        self._origins = None
        for listener in self._on_revoke:
            listener(grants)
        if not done and self._store.client(client_id) is None:
            raise HearthError(errors.UNKNOWN_CLIENT)
        return grants
