"""Who is calling: bearer API tokens resolved to a ``Principal``.

A small cache (a few seconds) keeps token checks off the database on every request; revoking a
token takes effect in this process at once and in others within the cache lifetime.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from hearth.auth.oauth.discovery import Endpoints
from hearth.auth.oauth.tokens import looks_like_jwt
from hearth.domain import HearthError, Principal, PrincipalKind, errors
from hearth.services.oauth.tokens import TokenService
from hearth.storage import ApiTokenStore, TokenGrant

__all__ = ["MAX_API_TOKEN_TTL", "Authenticator"]

_CACHE_SECONDS = 5.0

#: The longest an operator's API token may live. A system that runs for longer registers as a
#: backend service (``hearth client add``) and gets five-minute tokens with ``private_key_jwt``.
MAX_API_TOKEN_TTL = timedelta(days=7)


class Authenticator:
    def __init__(self, tokens: ApiTokenStore, oauth: TokenService | None = None) -> None:
        self._tokens = tokens
        self._oauth = oauth
        self._cache: dict[str, tuple[float, TokenGrant]] = {}
        self._lock = threading.Lock()

    def authenticate_bearer(
        self,
        token: str | None,
        *,
        source: str | None,
        session: str | None = None,
        endpoints: Endpoints | None = None,
        certificate: str | None = None,
    ) -> Principal:
        """The principal for an ``Authorization: Bearer`` token; raises 401 otherwise.

        A JWT is an OAuth access token (verified against ``endpoints``, and against the
        connection's client ``certificate`` when the token is bound to one, RFC 8705); anything
        else is looked up as a bootstrap API token.
        """
        if not token:
            # Audited too: repeated anonymous calls to PHI routes are what log-in monitoring
            # (HIPAA 164.308(a)(5)(ii)(C)) looks for.
            self._tokens.record_failure(source, errors.UNAUTHENTICATED.code)
            raise HearthError(errors.UNAUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
        if self._oauth is not None and endpoints is not None and looks_like_jwt(token):
            try:
                return self._oauth.verify(
                    token, endpoints=endpoints, certificate=certificate, source=source
                )
            except HearthError as error:
                self._tokens.record_failure(source, error.code.code)
                raise
        grant = self._lookup(token)
        if grant is None:
            self._tokens.record_failure(source, errors.UNAUTHENTICATED.code, token)
            raise HearthError(
                errors.UNAUTHENTICATED,
                "The access token is not valid.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return Principal(
            subject=grant.subject,
            kind=PrincipalKind.USER,
            roles=grant.roles,
            source=source,
            session=session or f"token:{grant.token_id}",
        )

    def _lookup(self, token: str) -> TokenGrant | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        grant = self._tokens.verify(token)
        if grant is not None:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = (now + _CACHE_SECONDS, grant)
        return grant

    def issue_token(
        self, *, subject: str, roles: frozenset[str], label: str, ttl: timedelta, by: str
    ) -> str:
        """An API token acting as ``subject``; it lives ``ttl``, at most a week."""
        if not timedelta(0) < ttl <= MAX_API_TOKEN_TTL:
            raise HearthError(
                errors.BAD_PARAMETER,
                "An API token lives at most 7 days. For a system that runs longer, register a "
                "backend service (hearth client add) that signs in with private_key_jwt.",
            )
        return self._tokens.issue(subject=subject, roles=roles, label=label, ttl=ttl, by=by)

    def revoke_all(self, subject: str, *, by: str) -> int:
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1].subject != subject}
        revoked = self._tokens.revoke_all(subject, by=by)
        if self._oauth is not None:  # and every OAuth grant: its access and refresh tokens
            revoked += self._oauth.revoke_subject(subject, by=by)
        return revoked
