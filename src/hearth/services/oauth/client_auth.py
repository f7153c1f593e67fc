"""Client authentication at the token, revocation and introspection endpoints (RFC 6749
sec. 2.3; RFC 7523 sec. 2.2; RFC 8705 sec. 2; SMART-TK-04, ASVS 10.4.10).

Exactly one method per request (RFC 6749 sec. 2.3): HTTP Basic or form ``client_secret``
(``client_secret_basic``/``_post``), a signed ``client_assertion`` (``private_key_jwt``), a
client certificate mapped to the client (``tls_client_auth``), or, for a public client, its
``client_id`` alone. The method must be the one the client registered. Every failure is
``invalid_client`` and is audited; the claimed client id appears in the audit only when it has
the shape of one of ours.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from hearth.auth.oauth.assertion import (
    ASSERTION_TYPE,
    assertion_issuer,
    validate_client_assertion,
)
from hearth.auth.oauth.secrets import CLIENT_SECRET, parse_secret, secret_matches
from hearth.domain import Clock, HearthError, Outcome, errors
from hearth.services.oauth.certificates import PresentedCertificate
from hearth.services.oauth.clients import Client, ClientRegistry
from hearth.services.oauth.jwks_fetch import JwksFetcher
from hearth.storage.oauth import AuditEvent, OAuthStore

__all__ = ["ClientAuthenticator", "ClientCredentials", "bound_thumbprint"]

_CLIENT_ID = re.compile(r"[a-z2-7]{1,64}")


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a request offers to authenticate its client."""

    authorization: str | None = None  # the Authorization header, if any
    client_id: str | None = None
    client_secret: str | None = None
    assertion_type: str | None = None
    assertion: str | None = None
    certificate: PresentedCertificate | None = None  # a checked, mapped client certificate

    @classmethod
    def from_form(
        cls,
        form: Mapping[str, str],
        *,
        authorization: str | None,
        certificate: PresentedCertificate | None,
    ) -> ClientCredentials:
        return cls(
            authorization=authorization,
            client_id=form.get("client_id"),
            client_secret=form.get("client_secret"),
            assertion_type=form.get("client_assertion_type"),
            assertion=form.get("client_assertion"),
            certificate=certificate,
        )


def _invalid(detail: str = "Client authentication failed.") -> HearthError:
    headers = {"WWW-Authenticate": 'Basic realm="hearth"'}
    return HearthError(errors.INVALID_CLIENT, detail, headers=headers)


class ClientAuthenticator:
    def __init__(
        self,
        registry: ClientRegistry,
        store: OAuthStore,
        fetcher: JwksFetcher,
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._store = store
        self._fetcher = fetcher
        self._clock = clock

    def authenticate(
        self, creds: ClientCredentials, *, token_url: str, source: str | None
    ) -> Client:
        try:
            return self._authenticate(creds, token_url)
        except HearthError as error:
            if error.code is errors.INVALID_CLIENT or error.code is errors.OAUTH_INVALID_REQUEST:
                actor = _claimed(creds)
                self._store.audit(
                    AuditEvent(
                        "oauth.client.auth",
                        Outcome.DENIED,
                        actor if _CLIENT_ID.fullmatch(actor) else "anonymous",
                        "client",
                        source=source,
                        code=error.code.code,
                    )
                )
            raise

    def _known(self, client_id: str | None) -> Client:
        client = self._registry.get(client_id) if client_id else None
        if client is None or client.revoked:
            raise _invalid()
        return client

    def _authenticate(self, creds: ClientCredentials, token_url: str) -> Client:
        basic = None
        if creds.authorization:
            scheme, _, value = creds.authorization.partition(" ")
            if scheme.lower() == "basic":
                basic = _parse_basic(value.strip())
        methods = [
            basic is not None,
            creds.client_secret is not None,
            creds.assertion is not None or creds.assertion_type is not None,
        ]
        if sum(methods) > 1:
            raise HearthError(
                errors.OAUTH_INVALID_REQUEST, "Use exactly one client authentication method."
            )
        if basic is not None:
            client = self._known(basic[0])
            if creds.client_id is not None and creds.client_id != basic[0]:
                raise _invalid()
            self._check_secret(client, basic[1])
            return client
        if creds.client_secret is not None:
            client = self._known(creds.client_id)
            self._check_secret(client, creds.client_secret)
            return client
        if creds.assertion is not None or creds.assertion_type is not None:
            return self._assertion(creds, token_url)
        client = self._known(creds.client_id)
        if client.auth_method == "tls_client_auth":
            self._check_certificate(client, creds.certificate)
            return client
        if not client.public:  # a confidential client must authenticate (ASVS 10.4.10)
            raise _invalid()
        return client

    def _check_secret(self, client: Client, secret: str) -> None:
        # Basic and post carry the same credential: either is accepted for a secret client.
        if client.auth_method not in ("client_secret_basic", "client_secret_post"):
            raise _invalid()
        parsed = parse_secret(CLIENT_SECRET, secret)
        digest = client.secret_digest
        if parsed is None or digest is None or not secret_matches(CLIENT_SECRET, parsed[1], digest):
            raise _invalid()

    def _check_certificate(self, client: Client, cert: PresentedCertificate | None) -> None:
        """``tls_client_auth`` (RFC 8705 sec. 2.1): the certificate is mapped to this client."""
        if cert is None or cert.subject_kind != "client" or cert.subject != client.client_id:
            raise _invalid()

    def _assertion(self, creds: ClientCredentials, token_url: str) -> Client:
        if creds.assertion_type != ASSERTION_TYPE or not creds.assertion:
            raise HearthError(
                errors.OAUTH_INVALID_REQUEST, "client_assertion_type is not supported."
            )
        issuer = assertion_issuer(creds.assertion)
        if creds.client_id is not None and creds.client_id != issuer:
            raise _invalid()
        client = self._known(issuer)
        if client.auth_method != "private_key_jwt":
            raise _invalid()
        now = int(self._clock.now().timestamp())
        jwks = client.jwks
        fetched = jwks is None
        if jwks is None and client.jwks_uri is not None:
            jwks = self._fetcher.get(client.jwks_uri)
        if jwks is None:
            raise _invalid()
        try:
            verified = validate_client_assertion(
                creds.assertion,
                client_id=client.client_id,
                jwks=jwks,
                token_url=token_url,
                now=now,
                registered_jku=client.jwks_uri,
            )
        except HearthError:
            if not fetched or client.jwks_uri is None:
                raise
            # The client may have rotated its keys since the set was cached: fetch once more.
            verified = validate_client_assertion(
                creds.assertion,
                client_id=client.client_id,
                jwks=self._fetcher.get(client.jwks_uri, fresh=True),
                token_url=token_url,
                now=now,
                registered_jku=client.jwks_uri,
            )
        if not self._store.remember_assertion(
            client.client_id, verified.jti, verified.expires_at * 1_000_000
        ):
            raise _invalid("The client assertion was already used.")  # SMART-BS-06
        return client


def _claimed(creds: ClientCredentials) -> str:
    """The client id a failed request claimed, for the audit: never trusted, only recorded."""
    if creds.client_id:
        return creds.client_id
    if creds.assertion:
        try:
            return assertion_issuer(creds.assertion)
        except HearthError:
            return ""
    if creds.authorization and creds.authorization.lower().startswith("basic "):
        try:
            parsed = _parse_basic(creds.authorization[6:].strip())
        except HearthError:
            return ""
        return parsed[0] if parsed is not None else ""
    return ""


def _parse_basic(value: str) -> tuple[str, str] | None:
    """``client_id:client_secret``, each form-urlencoded first (RFC 6749 sec. 2.3.1)."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid() from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _invalid()
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def bound_thumbprint(client: Client, cert: PresentedCertificate | None) -> str | None:
    """The certificate a client's new tokens are bound to (RFC 8705 sec. 3): the one it
    presented on the token request, when that certificate is mapped to it."""
    if cert is not None and cert.subject_kind == "client" and cert.subject == client.client_id:
        return cert.thumbprint
    return None
