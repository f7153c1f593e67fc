"""Who is calling: bearer API tokens resolved to a ``Principal``.

An API token acts as its user with the user's **current** roles, as an OAuth grant does: the
roles stored with the token record what the user held when it was issued, and are not what it
acts with. The user's standing (enabled, roles) is read with the token and kept with it in a
small cache (a few seconds), which keeps token checks off the database on every request.
Revoking a token, disabling its user or changing the user's roles takes effect in this process
at once and in others within the cache lifetime.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

from hearth.auth.oauth.discovery import Endpoints
from hearth.auth.oauth.tokens import looks_like_jwt
from hearth.domain import HearthError, Principal, PrincipalKind, errors
from hearth.services.oauth.tokens import TokenService, UserRights
from hearth.storage import ApiTokenStore, TokenGrant

__all__ = ["MAX_API_TOKEN_TTL", "Authenticator"]

_CACHE_SECONDS = 5.0

#: The longest an operator's API token may live. A system that runs for longer registers as a
#: backend service (``hearth client add``) and gets five-minute tokens with ``private_key_jwt``.
MAX_API_TOKEN_TTL = timedelta(days=7)


class Authenticator:
    def __init__(
        self, tokens: ApiTokenStore, oauth: TokenService | None = None, *, users: UserRights
    ) -> None:
        self._tokens = tokens
        self._oauth = oauth
        self._users = users
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
        """The token's grant with its user's current roles; None for a token that is unknown,
        wrong, expired or revoked, or whose user is disabled or gone (fail closed)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        grant = self._tokens.verify(token)
        if grant is not None:
            rights = self._users(grant.subject)
            if rights is None or not rights[0]:
                return None
            grant = replace(grant, roles=rights[1])
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = (now + _CACHE_SECONDS, grant)
        return grant

    def issue_token(
        self, *, subject: str, roles: frozenset[str], label: str, ttl: timedelta, by: str
    ) -> str:
        """An API token acting as the user ``subject``; it lives ``ttl``, at most a week.

        ``roles`` are stored as what the user held at issue, for the record; the token acts
        with the user's roles at the time of each request."""
        if not timedelta(0) < ttl <= MAX_API_TOKEN_TTL:
            raise HearthError(
                errors.BAD_PARAMETER,
                "An API token lives at most 7 days. For a system that runs longer, register a "
                "backend service (hearth client add) that signs in with private_key_jwt.",
            )
        return self._tokens.issue(subject=subject, roles=roles, label=label, ttl=ttl, by=by)

    def forget_subject(self, subject: str) -> None:
        """Drop what this process remembers of ``subject``'s tokens and OAuth grants, so that a
        change to the user (roles, status) applies to their next request here at once; other
        processes see it within the caches' few seconds."""
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1].subject != subject}
        if self._oauth is not None:
            self._oauth.forget_subject(subject)

    def revoke_all(self, subject: str, *, by: str) -> int:
        self.forget_subject(subject)
        revoked = self._tokens.revoke_all(subject, by=by)
        if self._oauth is not None:  # and every OAuth grant: its access and refresh tokens
            revoked += self._oauth.revoke_subject(subject, by=by)
        return revoked
