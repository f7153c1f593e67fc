"""The authorization endpoint's use cases: check a request, show what it asks, approve it; and
the EHR launch that precedes one (SMART App Launch 2.2; RFC 6749 sec. 4.1; RFC 9207).

The user is the one signed in to Hearth's console (``hearth.web.auth``). Their approval yields a
single-use code bound to the client, the exact redirect URI, the PKCE challenge and the launch
context; the grant it becomes acts with the user's own rights, narrowed by the granted scopes.

A launch patient, whether from an EHR launch or picked on the consent page of a standalone
launch, is read through the gate as the user first: an app never gets a patient context its
user could not open themselves (and the read is audited).

Break-the-glass: an authorization request may name one of the user's active emergency grants
(``hearth_break_glass``). The consent page says so; the grant's patient becomes the launch
patient when the app asks for one; the approved request carries the grant to the code exchange,
where it is checked again and put in the access token (``TokenService``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hearth.auth.oauth.authorization import (
    ApprovedRequest,
    AuthorizationRequest,
    validate_authorization_request,
    validate_redirect,
)
from hearth.auth.oauth.discovery import Endpoints
from hearth.auth.oauth.errors import oauth_error
from hearth.auth.oauth.scopes import ScopeRequest, describe, grant_scopes
from hearth.auth.oauth.secrets import new_id
from hearth.domain import ID_PATTERN, Clock, HearthError, Outcome, Principal, Random, errors
from hearth.security.breakglass import invoking
from hearth.services.oauth.clients import Client, ClientRegistry
from hearth.services.oauth.tokens import TokenService
from hearth.services.records import RecordService
from hearth.settings import OAuthSettings
from hearth.storage.oauth import AuditEvent, LaunchRow, OAuthStore

__all__ = [
    "AuthorizationService",
    "EmergencyAccess",
    "EmergencyGrant",
    "PendingAuthorization",
    "redirect_with",
]

#: Checks that a break-the-glass grant is the user's own and active for this client (a refusal
#: is audited, ``HRT-1105``); its patient id and end. ``BreakGlassService.held`` in the wiring.
EmergencyGrant = Callable[[Principal, str, str], tuple[str, datetime]]


@dataclass(frozen=True, slots=True)
class EmergencyAccess:
    """The break-the-glass grant an authorization request asks the token to carry."""

    grant_id: str
    patient: str
    expires: datetime


def redirect_with(uri: str, params: Mapping[str, str]) -> str:
    """``uri`` with ``params`` added to its query, keeping what it had (RFC 6749 sec. 3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


@dataclass(frozen=True, slots=True)
class PendingAuthorization:
    """A checked request, ready to show the user."""

    client: Client
    request: AuthorizationRequest
    granted: ScopeRequest  # what approval would grant: requested within registered
    patient: str | None  # the EHR launch's patient, if any
    encounter: str | None
    needs_patient: bool  # a standalone launch/patient: the user picks one
    emergency: EmergencyAccess | None = None

    def describe(self) -> list[str]:
        lines = describe(self.granted)
        if self.emergency is not None:
            lines.append(
                f"Use your emergency access to Patient/{self.emergency.patient} until "
                f"{self.emergency.expires.strftime('%H:%M UTC')}; everything it opens is "
                "recorded as emergency treatment."
            )
        return lines


class AuthorizationService:
    def __init__(
        self,
        *,
        clients: ClientRegistry,
        tokens: TokenService,
        store: OAuthStore,
        records: Callable[[Principal], RecordService],
        settings: OAuthSettings,
        clock: Clock,
        random: Random,
        break_glass: EmergencyGrant | None = None,
    ) -> None:
        self._break_glass = break_glass
        self._clients = clients
        self._tokens = tokens
        self._store = store
        self._records = records
        self._settings = settings
        self._clock = clock
        self._random = random

    def _now_us(self) -> int:
        return int(self._clock.now().timestamp() * 1_000_000)

    # -- the request --------------------------------------------------------------------------
    def redirect_target(self, params: Mapping[str, str]) -> tuple[Client, str]:
        """The client and the exact registered redirect URI, or ``INVALID_REDIRECT``: errors
        before this point are shown to the user, never sent to an unverified URI."""
        client_id = params.get("client_id", "")
        client = self._clients.get(client_id) if client_id else None
        usable = client is not None and not client.revoked and client.kind == "app"
        registered = client.redirect_uris if client is not None and usable else None
        redirect = validate_redirect(params, registered_redirects=registered)
        if client is None:  # pragma: no cover - validate_redirect refused it already
            raise HearthError(errors.INVALID_REDIRECT)
        return client, redirect

    def error_redirect(
        self, redirect: str, error: HearthError, params: Mapping[str, str], endpoints: Endpoints
    ) -> str:
        """Where to send the browser to report ``error`` to the app (RFC 6749 sec. 4.1.2.1)."""
        answer = {"error": oauth_error(error), "error_description": error.detail}
        if "state" in params:
            answer["state"] = params["state"]
        answer["iss"] = endpoints.issuer  # RFC 9207: which server answered
        return redirect_with(redirect, answer)

    def check(
        self,
        client: Client,
        redirect: str,
        params: Mapping[str, str],
        *,
        user: Principal,
        endpoints: Endpoints,
    ) -> PendingAuthorization:
        """Validate the rest of the request for this user (raises errors for the app)."""
        request = validate_authorization_request(
            params, redirect_uri=redirect, fhir_base=endpoints.fhir_base
        )
        granted = grant_scopes(request.scope, client.allowed)
        if not granted.scopes:
            raise HearthError(errors.INVALID_SCOPE, "None of the requested scopes is allowed.")
        emergency = None
        if request.break_glass is not None:
            if self._break_glass is None:
                raise HearthError(errors.BREAK_GLASS_NOT_ACTIVE)
            grant_patient, ends = self._break_glass(user, request.break_glass, client.client_id)
            emergency = EmergencyAccess(request.break_glass, grant_patient, ends)
        patient = encounter = None
        if request.launch is not None:
            launch = self._launch(request.launch, client, user)
            patient, encounter = launch.patient, launch.encounter
        elif emergency is not None and "launch/patient" in granted.other:
            patient = emergency.patient  # the emergency is about this one patient
        needs_patient = patient is None and "launch/patient" in granted.other
        return PendingAuthorization(
            client, request, granted, patient, encounter, needs_patient, emergency
        )

    def _launch(self, launch_id: str, client: Client, user: Principal) -> LaunchRow:
        """An EHR launch this user started for this client, unexpired and unused (LC-01)."""
        row = self._store.launch(launch_id) if 0 < len(launch_id) <= 32 else None
        if (
            row is None
            or row.client_id != client.client_id
            or row.subject != user.subject
            or row.used_us is not None
            or row.expires_us <= self._now_us()
        ):
            raise HearthError(errors.OAUTH_INVALID_REQUEST, "The launch is unknown or expired.")
        return row

    # -- the decision -------------------------------------------------------------------------
    def _check_patient(self, user: Principal, patient: str) -> None:
        """The user may open this Patient (read through the gate, audited) or it is refused."""
        if not ID_PATTERN.fullmatch(patient):
            raise HearthError(errors.BAD_PARAMETER, "That is not a patient id.")
        try:
            self._records(user).read("Patient", patient)
        except HearthError as error:
            if error.status in (403, 404, 410):
                raise HearthError(
                    errors.BAD_PARAMETER, "No patient with that id that you may open."
                ) from None
            raise

    def approve(
        self,
        pending: PendingAuthorization,
        *,
        user: Principal,
        picked_patient: str | None,
        endpoints: Endpoints,
    ) -> str:
        """The user approved: issue a code and return the redirect that carries it."""
        patient = pending.patient
        emergency = pending.emergency
        # The launch patient is read as the user would read it: under the grant, if one is named.
        reader = invoking(user, emergency.grant_id) if emergency is not None else user
        if pending.needs_patient:
            if not picked_patient:
                raise HearthError(errors.BAD_PARAMETER, "Choose a patient for this app.")
            self._check_patient(reader, picked_patient)
            patient = picked_patient
        elif patient is not None:
            self._check_patient(reader, patient)
        auth_time = user.attributes.get("auth_time")
        approved = ApprovedRequest(
            client_id=pending.client.client_id,
            redirect_uri=pending.request.redirect_uri,
            code_challenge=pending.request.code_challenge,
            subject=user.subject,
            roles=tuple(sorted(user.roles)),
            scope=pending.granted.text(),
            patient=patient,
            encounter=pending.encounter,
            nonce=pending.request.nonce,
            auth_time=int(auth_time) if auth_time and auth_time.isdigit() else None,
            break_glass=emergency.grant_id if emergency is not None else None,
        )
        code = self._tokens.issue_code(approved, source=user.source, launch=pending.request.launch)
        return redirect_with(
            pending.request.redirect_uri,
            {"code": code, "state": pending.request.state, "iss": endpoints.issuer},
        )

    def deny(self, pending: PendingAuthorization, *, user: Principal, endpoints: Endpoints) -> str:
        self._store.audit(
            AuditEvent(
                "oauth.authorize",
                Outcome.DENIED,
                user.subject,
                "user",
                session=f"client:{pending.client.client_id}",
                source=user.source,
                code=errors.ACCESS_DENIED.code,
            )
        )
        error = HearthError(errors.ACCESS_DENIED, "The user declined.")
        params = {"state": pending.request.state}
        return self.error_redirect(pending.request.redirect_uri, error, params, endpoints)

    # -- EHR launch (SMART-LC-01) -------------------------------------------------------------
    def start_launch(
        self,
        client_id: str,
        patient: str,
        *,
        user: Principal,
        endpoints: Endpoints,
    ) -> str:
        """Create a single-use, short-lived launch for this user, client and patient; return
        the app's launch URL with ``iss`` and ``launch``."""
        client = self._clients.get(client_id)
        if client is None or client.revoked or client.kind != "app" or not client.launch_uri:
            raise HearthError(errors.UNKNOWN_CLIENT, "No SMART app with a launch URL by that id.")
        self._check_patient(user, patient)
        now_us = self._now_us()
        row = LaunchRow(
            launch_id=new_id(self._random, 20),
            client_id=client.client_id,
            subject=user.subject,
            patient=patient,
            encounter=None,
            created_us=now_us,
            expires_us=now_us + self._settings.launch_seconds * 1_000_000,
        )
        self._store.add_launch(
            row,
            AuditEvent(
                "oauth.launch",
                Outcome.SUCCESS,
                user.subject,
                "user",
                session=f"client:{client.client_id}",
                patient=patient,
                source=user.source,
            ),
        )
        return redirect_with(
            client.launch_uri, {"iss": endpoints.fhir_base, "launch": row.launch_id}
        )
