"""Issuing, refreshing, verifying, introspecting and revoking OAuth tokens.

Every token belongs to a **grant** (one authorization of one client for one subject). Access
tokens are short JWTs naming their grant; refresh tokens are opaque, stored as digests, and
rotate on every use within their grant (the family). Presenting a used refresh token, or
redeeming a code twice, revokes the whole grant and raises an alarm (RFC 9700 sec. 4.14.2,
ASVS 10.4.5; RFC 6749 sec. 4.1.2). Revoking a grant ends its access tokens too: the resource
server checks the grant on every request, through a cache of a few seconds (a revocation is
seen at once in this process and within that time in others).

Break-the-glass (issue 5 item 6): a user's access token may carry one of their active
break-the-glass grants (claim ``hearth_break_glass``), asked for with the authorization request's
``hearth_break_glass`` parameter (carried in the approved request to the code exchange) or the
refresh request's. The grant is checked when the token is issued (``EmergencyCheck``: the user's
own, active; audited) and the token expires no later than the grant; the resource server checks
it again on every request, so a grant ended early stops the token at once.

Lifetimes (SMART-TK-02, BS-08): user-facing access tokens at most an hour, backend services'
at most five minutes, and no refresh token for them; refresh families end absolutely after
``offline_seconds`` (``offline_access``) or ``online_seconds`` (``online_access``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from hearth.auth.oauth.authorization import ApprovedRequest
from hearth.auth.oauth.discovery import Endpoints
from hearth.auth.oauth.pkce import verify_code_verifier
from hearth.auth.oauth.scopes import (
    ScopeRequest,
    grant_scopes,
    requested_all,
)
from hearth.auth.oauth.secrets import (
    AUTH_CODE,
    REFRESH_TOKEN,
    issue_secret,
    new_id,
    parse_secret,
    secret_matches,
)
from hearth.auth.oauth.tokens import (
    BREAK_GLASS_CLAIM,
    AccessClaims,
    TokenKeys,
    invalid_token,
    looks_like_jwt,
)
from hearth.domain import (
    Alarm,
    AlarmKind,
    AlarmRaiser,
    Clock,
    HearthError,
    Outcome,
    Principal,
    PrincipalKind,
    Random,
    Severity,
    SmartScope,
    errors,
)
from hearth.security.breakglass import invoking
from hearth.services.oauth.clients import Client, ClientRegistry
from hearth.settings import OAuthSettings
from hearth.storage.oauth import AuditEvent, CodeRow, GrantRow, OAuthStore, RefreshRow

__all__ = ["EmergencyCheck", "GrantState", "TokenService", "UserRights"]

_CACHE_SECONDS = 5.0
_KEY_CHECK_SECONDS = 60


@lru_cache(maxsize=4096)
def _parse_scopes(text: str) -> frozenset[SmartScope]:
    """Granted scopes as types; the same few strings recur on every request, so cache them."""
    return frozenset(
        SmartScope.parse(t) for t in text.split() if "/" in t and not t.startswith("launch")
    )


#: A user's current standing: (active, roles), or None for no such user. A user token is
#: judged on these, not on what held when it was issued: disabling a user or changing their
#: roles takes effect on their tokens within the grant cache's few seconds.
UserRights = Callable[[str], tuple[bool, frozenset[str]] | None]

#: Checks that a break-the-glass grant is the user's own and active, for a token of the client
#: that will carry it (audited; ``HRT-1105`` otherwise) and returns when the grant ends, in
#: microseconds: ``BreakGlassService.held`` in the wiring.
EmergencyCheck = Callable[[Principal, str, str], int]


@dataclass(frozen=True, slots=True)
class GrantState:
    """What the resource server re-checks on every request (cached briefly)."""

    client_id: str
    subject: str
    kind: str
    roles: frozenset[str]
    active: bool


class TokenService:
    def __init__(
        self,
        *,
        store: OAuthStore,
        clients: ClientRegistry,
        keys: Callable[[], TokenKeys],
        ensure_key: Callable[[], None],
        settings: OAuthSettings,
        clock: Clock,
        random: Random,
        alarms: AlarmRaiser,
        users: UserRights | None = None,
        break_glass: EmergencyCheck | None = None,
    ) -> None:
        self._store = store
        self._users = users
        self._break_glass = break_glass
        self._clients = clients
        self._keys = keys
        self._ensure_key = ensure_key
        self._settings = settings
        self._clock = clock
        self._random = random
        self._alarms = alarms
        self._grants: dict[str, tuple[float, GrantState | None]] = {}
        self._lock = threading.Lock()
        self._key_checked: int | None = None
        clients.on_grants_revoked(self._forget_all)

    # -- helpers ------------------------------------------------------------------------------
    def _now(self) -> int:
        return int(self._clock.now().timestamp())

    def _signing_keys(self) -> TokenKeys:
        """The keys, after making sure a fresh signing key exists (checked once a minute of
        Hearth's clock, so that rotation follows the injected time)."""
        now = self._now()
        keys = self._keys()
        last = self._key_checked
        if not keys.can_sign or last is None or now - last >= _KEY_CHECK_SECONDS:
            self._key_checked = now
            self._ensure_key()
            keys = self._keys()
        return keys

    def _access_token(
        self,
        grant: GrantRow,
        *,
        endpoints: Endpoints,
        lifetime: int,
        now: int,
        emergency: tuple[str, int] | None = None,
    ) -> tuple[str, int]:
        # Never outlive the grant (a backend grant lasts exactly one token's lifetime), nor the
        # break-the-glass grant the token carries.
        expires = min(now + lifetime, grant.expires_us // 1_000_000)
        if emergency is not None:
            expires = min(expires, emergency[1] // 1_000_000)
        claims = AccessClaims(
            issuer=endpoints.issuer,
            audience=endpoints.fhir_base,
            subject=grant.subject,
            client_id=grant.client_id,
            scope=grant.scope,
            grant_id=grant.grant_id,
            token_id=new_id(self._random),
            issued_at=now,
            expires_at=expires,
            patient=grant.patient,
            encounter=grant.encounter,
            fhir_user=grant.fhir_user,
            cnf_thumbprint=grant.cnf,
            break_glass=emergency[0] if emergency is not None else None,
        )
        return self._signing_keys().sign_access_token(claims), expires - now

    def _emergency(self, grant: GrantRow, grant_id: str, *, source: str | None) -> tuple[str, int]:
        """The break-the-glass grant a user's token will carry, with its end (checked and
        audited by ``EmergencyCheck``); never for a backend service."""
        principal = Principal(
            subject=grant.subject,
            kind=PrincipalKind.USER if grant.kind == "user" else PrincipalKind.CLIENT,
            roles=frozenset(grant.roles.split()),
            client_id=grant.client_id,
            source=source,
            session=f"grant:{grant.grant_id}",
        )
        try:
            if self._break_glass is None:
                raise HearthError(errors.BREAK_GLASS_NOT_ACTIVE)
            return grant_id, self._break_glass(principal, grant_id, grant.client_id)
        except HearthError as error:
            if error.code is not errors.BREAK_GLASS_NOT_ACTIVE:
                raise
            # The token endpoint answers in RFC 6749 sec. 5.2 terms (400 invalid_grant); the
            # refusal itself is audited with HRT-1105 by the check.
            raise HearthError(
                errors.INVALID_GRANT, "The break-the-glass grant is not the user's active one."
            ) from None

    def _event(
        self,
        action: str,
        outcome: Outcome,
        *,
        grant: GrantRow | None = None,
        actor: str | None = None,
        kind: str = "client",
        source: str | None,
        code: str | None = None,
    ) -> AuditEvent:
        return AuditEvent(
            action,
            outcome,
            actor if actor is not None else (grant.subject if grant is not None else "anonymous"),
            grant.kind if grant is not None else kind,
            session=f"grant:{grant.grant_id}" if grant is not None else None,
            patient=grant.patient if grant is not None else None,
            source=source,
            code=code,
        )

    def _refused(
        self, error: HearthError, client: Client, *, source: str | None, action: str
    ) -> HearthError:
        self._store.audit(
            self._event(
                action,
                Outcome.DENIED,
                actor=client.client_id,
                source=source,
                code=error.code.code,
            )
        )
        return error

    def _new_refresh(self, grant: GrantRow, now_us: int) -> tuple[RefreshRow, str]:
        issued = issue_secret(REFRESH_TOKEN, self._random)
        row = RefreshRow(issued.secret_id, grant.grant_id, issued.digest, now_us, grant.expires_us)
        return row, issued.value

    # -- client credentials (SMART backend services) --------------------------------------------
    def client_credentials(
        self,
        client: Client,
        scope: str | None,
        *,
        endpoints: Endpoints,
        certificate: str | None,
        source: str | None,
    ) -> dict[str, Any]:
        """``grant_type=client_credentials`` (RFC 6749 sec. 4.4; SMART-BS-01, BS-08)."""
        action = "oauth.token.issue"
        if "client_credentials" not in client.grant_types:
            raise self._refused(
                HearthError(errors.UNAUTHORIZED_CLIENT), client, source=source, action=action
            )
        try:
            requested = ScopeRequest.parse(scope)
            granted = grant_scopes(requested, client.allowed)
            if not granted.scopes or not requested_all(requested, granted):
                # SMART-BS-08: a request for data the client may not have fails up front.
                raise HearthError(errors.INVALID_SCOPE, "A requested scope is not allowed.")
        except HearthError as error:
            raise self._refused(error, client, source=source, action=action) from None
        now = self._now()
        lifetime = self._settings.backend_token_seconds
        grant = GrantRow(
            grant_id=new_id(self._random),
            client_id=client.client_id,
            subject=client.client_id,
            kind="client",
            roles=" ".join(sorted(client.roles)),
            scope=granted.text(),
            patient=None,
            encounter=None,
            fhir_user=None,
            cnf=certificate,
            created_us=now * 1_000_000,
            expires_us=(now + lifetime) * 1_000_000,
        )
        token, expires_in = self._access_token(
            grant, endpoints=endpoints, lifetime=lifetime, now=now
        )
        self._store.add_grant(
            grant, self._event(action, Outcome.SUCCESS, grant=grant, source=source)
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": granted.text(),
        }

    # -- authorization codes ------------------------------------------------------------------
    def issue_code(
        self, approved: ApprovedRequest, *, source: str | None, launch: str | None = None
    ) -> str:
        """Store an approved request under a fresh single-use code (ASVS 10.4.2, 10.4.3); with
        ``launch``, consume that EHR launch at the same time (single use, SMART-LC-01)."""
        issued = issue_secret(AUTH_CODE, self._random)
        now_us = self._now() * 1_000_000
        row = CodeRow(
            code_id=issued.secret_id,
            digest=issued.digest,
            client_id=approved.client_id,
            redirect_uri=approved.redirect_uri,
            challenge=approved.code_challenge,
            request=approved.to_json(),
            created_us=now_us,
            expires_us=now_us + self._settings.code_seconds * 1_000_000,
        )
        event = AuditEvent(
            "oauth.code.issue",
            Outcome.SUCCESS,
            approved.subject,
            "user",
            session=f"client:{approved.client_id}",
            patient=approved.patient,
            source=source,
        )
        if not self._store.add_code(row, event, launch_used=launch):
            raise HearthError(errors.OAUTH_INVALID_REQUEST, "This launch was already used.")
        return issued.value

    def exchange_code(
        self,
        client: Client,
        form: dict[str, str],
        *,
        endpoints: Endpoints,
        certificate: str | None,
        source: str | None,
    ) -> dict[str, Any]:
        """``grant_type=authorization_code`` with PKCE (RFC 6749 sec. 4.1.3; RFC 7636 sec. 4.6).

        A code has one attempt: a redemption that fails once the code is known (another
        client's, expired, another ``redirect_uri``, a wrong or missing PKCE verifier, a
        break-the-glass grant no longer active) uses it up, so a stolen code cannot be tried
        against guessed verifiers and then redeemed (RFC 6749 sec. 4.1.2: used once)."""
        action = "oauth.token.issue"
        now = self._now()
        try:
            if "authorization_code" not in client.grant_types:
                raise HearthError(errors.UNAUTHORIZED_CLIENT)
            parsed = parse_secret(AUTH_CODE, form.get("code", ""))
            row = self._store.code(parsed[0]) if parsed is not None else None
            if (
                parsed is None
                or row is None
                or not secret_matches(AUTH_CODE, parsed[1], row.digest)
            ):
                raise HearthError(errors.INVALID_GRANT)
            if row.used_us is not None and row.client_id == client.client_id:
                self._code_replayed(row, source=source)
                raise HearthError(errors.INVALID_GRANT, "The authorization code was already used.")
        except HearthError as error:
            raise self._refused(error, client, source=source, action=action) from None
        try:
            if row.used_us is not None or row.client_id != client.client_id:
                raise HearthError(errors.INVALID_GRANT)
            if row.expires_us <= now * 1_000_000:
                raise HearthError(errors.INVALID_GRANT, "The authorization code has expired.")
            if form.get("redirect_uri", row.redirect_uri) != row.redirect_uri:
                raise HearthError(errors.INVALID_GRANT, "redirect_uri does not match.")
            verify_code_verifier(form.get("code_verifier"), row.challenge)
            approved = ApprovedRequest.from_json(row.request)
            scope = ScopeRequest.parse(approved.scope)
            grant, refresh_row, refresh_value, emergency = self._grant_for_code(
                client, approved, scope, now=now, certificate=certificate, source=source
            )
        except HearthError as error:
            refusal = self._event(
                action, Outcome.DENIED, actor=client.client_id, source=source, code=error.code.code
            )
            self._store.spend_code(row.code_id, now * 1_000_000, refusal)
            raise error from None
        event = self._event(action, Outcome.SUCCESS, grant=grant, source=source)
        _, won = self._store.redeem_code(row.code_id, grant, refresh_row, event)
        if not won:  # redeemed concurrently: treat as a replay
            self._code_replayed(row, source=source)
            raise self._refused(
                HearthError(errors.INVALID_GRANT), client, source=source, action=action
            )
        return self._token_response(
            grant,
            scope,
            endpoints=endpoints,
            now=now,
            refresh=refresh_value,
            nonce=approved.nonce,
            emergency=emergency,
        )

    def _grant_for_code(
        self,
        client: Client,
        approved: ApprovedRequest,
        scope: ScopeRequest,
        *,
        now: int,
        certificate: str | None,
        source: str | None,
    ) -> tuple[GrantRow, RefreshRow | None, str | None, tuple[str, int] | None]:
        """The grant a code yields, its first refresh token (value too) when the scope asks
        for one, and the break-the-glass grant its tokens carry (checked and audited)."""
        if "offline_access" in scope.other:
            family = self._settings.offline_seconds
        elif "online_access" in scope.other:
            family = self._settings.online_seconds
        else:
            family = self._settings.access_token_seconds
        grant = GrantRow(
            grant_id=new_id(self._random),
            client_id=client.client_id,
            subject=approved.subject,
            kind="user",
            roles=" ".join(sorted(approved.roles)),
            scope=approved.scope,
            patient=approved.patient,
            encounter=approved.encounter,
            fhir_user=approved.fhir_user if "fhirUser" in scope.other else None,
            cnf=certificate,
            created_us=now * 1_000_000,
            expires_us=(now + family) * 1_000_000,
        )
        emergency = None
        if approved.break_glass is not None:
            emergency = self._emergency(grant, approved.break_glass, source=source)
        refresh_row, refresh_value = (None, None)
        if scope.other & {"offline_access", "online_access"}:
            refresh_row, refresh_value = self._new_refresh(grant, now * 1_000_000)
        return grant, refresh_row, refresh_value, emergency

    def _code_replayed(self, row: CodeRow, *, source: str | None) -> None:
        if row.grant_id is not None:
            self._revoke_family(row.grant_id, reason="code-reuse", source=source)

    def _token_response(
        self,
        grant: GrantRow,
        scope: ScopeRequest,
        *,
        endpoints: Endpoints,
        now: int,
        refresh: str | None,
        nonce: str | None,
        emergency: tuple[str, int] | None = None,
    ) -> dict[str, Any]:
        token, expires_in = self._access_token(
            grant,
            endpoints=endpoints,
            lifetime=self._settings.access_token_seconds,
            now=now,
            emergency=emergency,
        )
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": grant.scope,
        }
        if emergency is not None:
            body[BREAK_GLASS_CLAIM] = emergency[0]
        if refresh is not None:
            body["refresh_token"] = refresh
        if grant.patient is not None:
            body["patient"] = grant.patient
            body["need_patient_banner"] = True
        if grant.encounter is not None:
            body["encounter"] = grant.encounter
        if "openid" in scope.other:
            claims: dict[str, Any] = {
                "iss": endpoints.issuer,
                "sub": grant.subject,
                "aud": grant.client_id,
                "iat": now,
                "exp": now + expires_in,
            }
            if nonce is not None:
                claims["nonce"] = nonce
            if grant.fhir_user is not None:
                claims["fhirUser"] = grant.fhir_user
            body["id_token"] = self._signing_keys().sign(claims, typ="JWT")
        return body

    # -- refresh (RFC 6749 sec. 6) --------------------------------------------------------------
    def refresh(
        self,
        client: Client,
        form: dict[str, str],
        *,
        endpoints: Endpoints,
        certificate: str | None,
        source: str | None,
    ) -> dict[str, Any]:
        """Redeem a refresh token once, rotating it; a second use revokes the family."""
        action = "oauth.token.refresh"
        now = self._now()
        parsed = parse_secret(REFRESH_TOKEN, form.get("refresh_token", ""))
        stored = self._store.refresh_token(parsed[0]) if parsed is not None else None
        if (
            parsed is None
            or stored is None
            or not secret_matches(REFRESH_TOKEN, parsed[1], stored.digest)
        ):
            raise self._refused(
                HearthError(errors.INVALID_GRANT), client, source=source, action=action
            )
        grant = self._store.grant(stored.grant_id)
        if grant is None or grant.client_id != client.client_id:  # SMART-TK-03
            raise self._refused(
                HearthError(errors.INVALID_GRANT), client, source=source, action=action
            )
        if grant.cnf is not None and grant.cnf != certificate:  # RFC 8705 sec. 3.1
            raise self._refused(
                HearthError(errors.INVALID_GRANT, "The refresh token is bound to a certificate."),
                client,
                source=source,
                action=action,
            )
        # Everything the request asks for is checked before the refresh token rotates, so a
        # refused request leaves the family as it was and the app may retry with the same
        # token (RFC 6749 sec. 5.2: an error response does not redeem the token). A token
        # already used, or of a grant that has ended, skips them: rotating it is how a reuse
        # is detected (a replay must revoke the family whatever else it asks for) and an ended
        # grant answered.
        scope = ScopeRequest.parse(grant.scope)
        narrowed: str | None = None
        emergency: tuple[str, int] | None = None
        live = grant.revoked_us is None and grant.expires_us > now * 1_000_000
        if stored.used_us is None and live:
            narrowed = self._narrowed_scope(form.get("scope"), scope, client, source=source)
            # A new access token under a break-the-glass grant is asked for by naming it again.
            wanted = form.get(BREAK_GLASS_CLAIM)
            emergency = self._emergency(grant, wanted, source=source) if wanted else None
        new_row, new_value = self._new_refresh(grant, now * 1_000_000)
        event = self._event(action, Outcome.SUCCESS, grant=grant, source=source)
        row, grant, fresh = self._store.rotate_refresh(stored.token_id, new_row, event)
        if row is None or grant is None:
            raise self._refused(
                HearthError(errors.INVALID_GRANT), client, source=source, action=action
            )
        if not fresh:
            self._revoke_family(grant.grant_id, reason="refresh-reuse", source=source)
            raise self._refused(
                HearthError(errors.INVALID_GRANT, "The refresh token was already used."),
                client,
                source=source,
                action=action,
            )
        if grant.revoked_us is not None or grant.expires_us <= now * 1_000_000:
            raise self._refused(
                HearthError(errors.INVALID_GRANT, "The grant has ended."),
                client,
                source=source,
                action=action,
            )
        if narrowed is not None:
            grant = replace(grant, scope=narrowed)
        return self._token_response(
            grant,
            scope,
            endpoints=endpoints,
            now=now,
            refresh=new_value,
            nonce=None,
            emergency=emergency,
        )

    def _narrowed_scope(
        self, requested: str | None, granted: ScopeRequest, client: Client, *, source: str | None
    ) -> str | None:
        """The scope a refresh asks for (RFC 6749 sec. 6): None to keep the grant's, or a
        narrower one; wider or malformed is ``invalid_scope``, audited."""
        if not requested:
            return None
        try:
            request = ScopeRequest.parse(requested)
            narrower = grant_scopes(request, granted)
            if not requested_all(request, narrower):
                raise HearthError(errors.INVALID_SCOPE, "A requested scope was not granted.")
        except HearthError as error:
            raise self._refused(
                error, client, source=source, action="oauth.token.refresh"
            ) from None
        return narrower.text()

    # -- revocation ---------------------------------------------------------------------------
    def _revoke_family(self, grant_id: str, *, reason: str, source: str | None) -> None:
        grant = self._store.grant(grant_id)
        event = self._event(
            "oauth.token.revoke", Outcome.SUCCESS, grant=grant, source=source, code=None
        )
        self._store.revoke_grants(event, reason=reason, grant_id=grant_id)
        self._forget(grant_id)
        subject = grant.subject if grant is not None else "unknown"
        self._alarms.raise_alarm(
            Alarm(
                AlarmKind.AUTH_TOKEN_REUSE,
                # Named by grant: a family is revoked once, and each family is its own alarm.
                Severity.WARNING,
                f"grant:{grant_id}",
                "A used refresh token or authorization code was presented again; the grant "
                "and every token it issued were revoked.",
                {"reason": reason, "subject": subject},
            )
        )

    def _forget(self, grant_id: str) -> None:
        with self._lock:
            self._grants.pop(grant_id, None)

    def forget_subject(self, subject: str) -> None:
        """Drop the cached state of every grant of ``subject`` (their roles or status changed)."""
        with self._lock:
            self._grants = {
                k: v for k, v in self._grants.items() if v[1] is None or v[1].subject != subject
            }

    def _forget_all(self, grant_ids: list[str]) -> None:
        for grant_id in grant_ids:
            self._forget(grant_id)

    def revoke(self, client: Client, token: str, *, source: str | None) -> None:
        """Token revocation (RFC 7009 sec. 2): ends the token's whole grant, access and refresh
        tokens alike. Unknown tokens, and tokens of other clients, are ignored (sec. 2.2)."""
        grant_id: str | None = None
        parsed = parse_secret(REFRESH_TOKEN, token)
        if parsed is not None:
            row = self._store.refresh_token(parsed[0])
            if row is not None and secret_matches(REFRESH_TOKEN, parsed[1], row.digest):
                grant_id = row.grant_id
        elif looks_like_jwt(token):
            try:
                claims = AccessClaims.from_claims(self._keys().verify(token, typ="at+jwt"))
                grant_id = claims.grant_id
            except HearthError:
                grant_id = None
        grant = self._store.grant(grant_id) if grant_id is not None else None
        if grant is None or grant.client_id != client.client_id:
            return
        event = self._event(
            "oauth.token.revoke",
            Outcome.SUCCESS,
            grant=grant,
            actor=client.client_id,
            source=source,
        )
        self._store.revoke_grants(event, reason="revoked", grant_id=grant.grant_id)
        self._forget(grant.grant_id)

    def revoke_subject(self, subject: str, *, by: str, source: str | None = None) -> int:
        """End every grant of a user (account disabled) or of a client, at once."""
        event = AuditEvent("oauth.token.revoke", Outcome.SUCCESS, by, "user", source=source)
        ids = self._store.revoke_grants(event, reason="subject-revoked", subject=subject)
        for grant_id in ids:
            self._forget(grant_id)
        return len(ids)

    # -- the resource server ------------------------------------------------------------------
    def grant_state(self, grant_id: str) -> GrantState | None:
        now = time.monotonic()
        with self._lock:
            cached = self._grants.get(grant_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = self._store.grant(grant_id)
        state: GrantState | None = None
        if row is not None:
            client = self._clients.get(row.client_id)
            active = row.revoked_us is None and client is not None and not client.revoked
            roles = frozenset(row.roles.split())
            if row.kind == "user" and self._users is not None:
                rights = self._users(row.subject)
                active = active and rights is not None and rights[0]
                roles = rights[1] if rights is not None else frozenset()
            state = GrantState(
                client_id=row.client_id,
                subject=row.subject,
                kind=row.kind,
                roles=roles,
                active=active,
            )
        with self._lock:
            if len(self._grants) > 50_000:
                self._grants.clear()
            self._grants[grant_id] = (now + _CACHE_SECONDS, state)
        return state

    def verify(
        self,
        token: str,
        *,
        endpoints: Endpoints,
        certificate: str | None,
        source: str | None,
    ) -> Principal:
        """The principal for an access token (RFC 6750; RFC 9068 sec. 4; RFC 8705 sec. 3)."""
        claims = self._keys().verify_access_token(
            token, issuer=endpoints.issuer, audience=endpoints.fhir_base, now=self._now()
        )
        state = self.grant_state(claims.grant_id)
        if (
            state is None
            or not state.active
            or state.client_id != claims.client_id
            or state.subject != claims.subject
        ):
            raise invalid_token()
        if claims.cnf_thumbprint is not None and claims.cnf_thumbprint != certificate:
            raise invalid_token()  # a certificate-bound token without its certificate
        principal = Principal(
            subject=claims.subject,
            kind=PrincipalKind.USER if state.kind == "user" else PrincipalKind.CLIENT,
            roles=state.roles,
            scopes=_parse_scopes(claims.scope),
            patient=claims.patient,
            client_id=claims.client_id,
            source=source,
            session=f"grant:{claims.grant_id}",
        )
        # The claim invokes the grant as the header does; the gate checks it on every request.
        return invoking(principal, claims.break_glass)

    def introspect(
        self, token: str, *, endpoints: Endpoints, caller_client: str | None
    ) -> dict[str, Any]:
        """Token introspection (RFC 7662 sec. 2.2; SMART-IN-02). A client may introspect only
        its own tokens; an administrator any. Anything else is ``{"active": false}``."""
        inactive: dict[str, Any] = {"active": False}
        if not looks_like_jwt(token):
            return inactive
        try:
            claims = self._keys().verify_access_token(
                token, issuer=endpoints.issuer, audience=endpoints.fhir_base, now=self._now()
            )
        except HearthError:
            return inactive
        state = self.grant_state(claims.grant_id)
        if state is None or not state.active:
            return inactive
        if caller_client is not None and caller_client != claims.client_id:
            return inactive
        body: dict[str, Any] = {
            "active": True,
            "scope": claims.scope,
            "client_id": claims.client_id,
            "sub": claims.subject,
            "exp": claims.expires_at,
            "iat": claims.issued_at,
            "iss": claims.issuer,
            "aud": claims.audience,
            "token_type": "Bearer",
        }
        if claims.patient is not None:
            body["patient"] = claims.patient
        if claims.encounter is not None:
            body["encounter"] = claims.encounter
        if claims.fhir_user is not None:
            body["fhirUser"] = claims.fhir_user
        if claims.cnf_thumbprint is not None:
            body["cnf"] = {"x5t#S256": claims.cnf_thumbprint}
        if claims.break_glass is not None:
            body[BREAK_GLASS_CLAIM] = claims.break_glass
        return body
