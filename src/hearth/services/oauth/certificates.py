"""Client certificates mapped explicitly to users and clients (mutual TLS; RFC 8705).

``hearth serve --tls-client-ca`` asks TLS clients for a certificate and verifies its chain.
Every certificate a request presents is then checked here: it must be within its validity
period (by Hearth's clock), not on the CA's revocation list (``--tls-client-crl``, re-read when
the file changes), and **mapped** to exactly one user or client by an operator (``hearth cert
add``), the mapping not revoked. A refused certificate fails every request that authenticates
(FHIR and OAuth endpoints): a client that presents a bad certificate is not served, with or
without a token.

A mapped certificate then authenticates a client at the token endpoint (``tls_client_auth``,
RFC 8705 sec. 2.1) and binds the tokens issued over it (``cnf.x5t#S256``, sec. 3).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from hearth.auth.certificates import (
    RevocationList,
    certificate_info,
    check_validity,
    load_certificates,
    load_revocation_list,
    pem_to_der,
)
from hearth.domain import Clock, HearthError, Outcome, errors
from hearth.storage.oauth import AuditEvent, CertificateRow, OAuthStore

__all__ = ["CertificateService", "PresentedCertificate"]


@dataclass(frozen=True, slots=True)
class PresentedCertificate:
    """A checked, mapped certificate: who it names."""

    thumbprint: str
    subject_kind: str  # "user" or "client"
    subject: str


class CertificateService:
    def __init__(
        self,
        store: OAuthStore,
        clock: Clock,
        *,
        ca_file: Path | None = None,
        crl_file: Path | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._ca_file = ca_file
        self._crl_file = crl_file
        self._crl: tuple[float, RevocationList] | None = None
        self._lock = threading.Lock()

    def _revocations(self) -> RevocationList | None:
        if self._crl_file is None or self._ca_file is None:
            return None
        mtime = self._crl_file.stat().st_mtime
        with self._lock:
            cached = self._crl
        if cached is not None and cached[0] == mtime:
            return cached[1]
        crl = load_revocation_list(
            self._crl_file.read_bytes(), load_certificates(self._ca_file.read_bytes())
        )
        with self._lock:
            self._crl = (mtime, crl)
        return crl

    def check(self, der: bytes, *, source: str | None = None) -> PresentedCertificate:
        """Check a presented certificate; raise ``CERTIFICATE_REFUSED`` (audited) if it fails."""
        try:
            info = certificate_info(der)
            check_validity(info, self._clock.now())
            crl = self._revocations()
            if crl is not None:
                crl.check(info)
            mapping = self._store.certificate(info.thumbprint)
            if mapping is None or mapping.revoked_us is not None:
                raise HearthError(
                    errors.CERTIFICATE_REFUSED, "The client certificate is not mapped to anyone."
                )
        except HearthError as error:
            self._store.audit(
                AuditEvent(
                    "mtls.certificate",
                    Outcome.DENIED,
                    "anonymous",
                    "user",
                    source=source,
                    code=error.code.code,
                )
            )
            raise
        return PresentedCertificate(info.thumbprint, mapping.subject_kind, mapping.subject)

    # -- administration (``hearth cert``) -------------------------------------------------------
    def add(
        self, data: bytes, *, subject_kind: str, subject: str, label: str, by: str
    ) -> CertificateRow:
        """Map a certificate (PEM or DER) to a user or a client."""
        if subject_kind not in ("user", "client") or not 0 < len(subject) <= 128:
            raise HearthError(errors.BAD_PARAMETER, "Map a certificate to a user or a client.")
        info = certificate_info(pem_to_der(data))
        existing = self._store.certificate(info.thumbprint)
        if existing is not None:
            raise HearthError(errors.BAD_PARAMETER, "This certificate is already mapped.")
        row = CertificateRow(
            thumbprint=info.thumbprint,
            subject_kind=subject_kind,
            subject=subject,
            not_after_us=int(info.not_after.timestamp() * 1_000_000),
            label=label[:128],
            created_us=self._store.now_us(),
        )
        event = AuditEvent(
            "mtls.certificate.add", Outcome.SUCCESS, by, "user", session=f"{subject_kind}:{subject}"
        )
        self._store.add_certificate(row, event)
        return row

    def all(self) -> list[CertificateRow]:
        return self._store.certificates()

    def revoke(self, thumbprint: str, *, by: str) -> None:
        event = AuditEvent("mtls.certificate.revoke", Outcome.SUCCESS, by, "user")
        if not self._store.revoke_certificate(thumbprint, event):
            raise HearthError(errors.BAD_PARAMETER, "No such active certificate mapping.")
