"""Signing in to the console with a client certificate: a PIV/CAC smart card or another
certificate presented over mutual TLS (``hearth serve --tls-client-ca``; RFC 8705).

The certificate must pass every check of ``CertificateService.check`` (validity by Hearth's
clock, the CA's revocation list, an unrevoked mapping to exactly one **user**, ``hearth cert add
--user``). It then stands in for the password: the first factor. The second factor the user
enrolled (authenticator app, security key or recovery code) is still asked, through the same
pages as after a password, because Hearth cannot tell from a certificate whether its key needs a
PIN (a smart card) or sits in a browser's store (software).

Wrong passwords, and the lock they lead to, do not refuse a certificate sign-in: see
``hearth.auth.throttle``.
"""

from __future__ import annotations

from hearth.domain import Clock, HearthError, Outcome, errors
from hearth.services.authevents import AuthEvent, auth_record
from hearth.services.oauth.certificates import CertificateService
from hearth.services.sessions import Session
from hearth.services.signin import SignInResult, SignInService, safe_next
from hearth.storage.accounts import AccountStore
from hearth.storage.audit import AuditTrail

__all__ = ["CertificateSignIn"]


class CertificateSignIn:
    def __init__(
        self,
        certificates: CertificateService,
        signin: SignInService,
        accounts: AccountStore,
        audit: AuditTrail,
        clock: Clock,
    ) -> None:
        self._certificates = certificates
        self._signin = signin
        self._accounts = accounts
        self._audit = audit
        self._clock = clock

    def _refuse(self, actor: str | None, source: str | None, code: str) -> None:
        self._audit.record(
            auth_record(
                AuthEvent.SIGN_IN,
                Outcome.DENIED,
                now=self._clock.now(),
                actor=actor,
                source=source,
                code=code,
            )
        )

    def start(
        self,
        previous: Session | None,
        der: bytes | None,
        *,
        source: str | None,
        next_url: str | None,
    ) -> SignInResult:
        """Check the connection's certificate and open a pending sign-in for its user."""
        if der is None:
            raise HearthError(
                errors.CERTIFICATE_REFUSED, "Your browser presented no client certificate."
            )
        cert = self._certificates.check(der, source=source)  # audits its own refusals
        if cert.subject_kind != "user":
            self._refuse(None, source, errors.CERTIFICATE_REFUSED.code)
            raise HearthError(
                errors.CERTIFICATE_REFUSED, "This certificate belongs to a client, not a person."
            )
        user = self._accounts.user(cert.subject)
        # A lock from wrong passwords does not stop a certificate: it cannot be guessed, and a
        # person whose password is under attack must still be able to sign in (ASVS
        # v5.0.0-6.1.1). The one-time code asked next has its own count and lock.
        if user is None or user.status != "active":
            self._refuse(cert.subject, source, errors.AUTHENTICATION_FAILED.code)
            raise HearthError(errors.AUTHENTICATION_FAILED)
        methods = self._signin.methods(user)
        if not methods:  # every account has a second factor (ASVS v5.0.0-6.3.3)
            self._refuse(user.user_id, source, errors.FORBIDDEN.code)
            raise HearthError(
                errors.FORBIDDEN,
                "This account has no second factor. Ask an administrator for a set-up link.",
            )
        sessions = self._signin.sessions
        if previous is not None:
            sessions.end(previous, reason="new-sign-in")
        signed = sessions.begin(
            source=source,
            data={
                "flow": "sign-in",
                "user": user.user_id,
                "next": safe_next(next_url),
                "first": "certificate",
            },
        )
        return SignInResult(signed, False, safe_next(next_url), methods)
