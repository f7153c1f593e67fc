"""Client certificates for mutual TLS (RFC 8705; ASVS 12.1.3): thumbprints, validity at a given
time, and revocation by a CRL that the issuing CA signed (RFC 5280 sec. 5).

The TLS layer has already verified the chain to a configured client CA; these checks run again
in the application with the injected clock, so an expired certificate is refused even if the
TLS library's clock and ours disagree, and a CRL can be replaced without a restart. PIV and CAC
smart cards present ordinary X.509 client certificates and are handled the same way.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from hearth.domain import HearthError, errors

__all__ = [
    "CertificateInfo",
    "RevocationList",
    "certificate_info",
    "check_validity",
    "load_certificates",
    "load_revocation_list",
    "pem_to_der",
    "thumbprint",
]


def thumbprint(der: bytes) -> str:
    """``x5t#S256``: base64url SHA-256 of the DER certificate (RFC 8705 sec. 3.1)."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def _refused(detail: str | None = None) -> HearthError:
    return HearthError(errors.CERTIFICATE_REFUSED, detail)


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    thumbprint: str
    serial: int
    not_before: datetime
    not_after: datetime
    issuer: bytes  # DER of the issuer name, to match a CRL
    der: bytes


def certificate_info(der: bytes) -> CertificateInfo:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise _refused("The client certificate is malformed.") from None
    return CertificateInfo(
        thumbprint=thumbprint(der),
        serial=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issuer=cert.issuer.public_bytes(),
        der=der,
    )


def pem_to_der(data: bytes) -> bytes:
    """One certificate, PEM or DER, as DER."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError:
        raise HearthError(errors.BAD_PARAMETER, "Not an X.509 certificate (PEM or DER).") from None


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise HearthError(errors.BAD_PARAMETER, "The CA file holds no PEM certificate.") from None


def check_validity(info: CertificateInfo, now: datetime) -> None:
    """Refuse a certificate outside its validity period (RFC 5280 sec. 4.1.2.5)."""
    if not info.not_before <= now <= info.not_after:
        raise _refused("The client certificate has expired or is not yet valid.")


@dataclass(frozen=True, slots=True)
class RevocationList:
    """The revoked serials per issuer, from CRLs whose signatures verified."""

    revoked: frozenset[tuple[bytes, int]]
    next_update: datetime | None

    def check(self, info: CertificateInfo) -> None:
        if (info.issuer, info.serial) in self.revoked:
            raise _refused("The client certificate has been revoked.")


def load_revocation_list(crl_pem: bytes, cas: list[x509.Certificate]) -> RevocationList:
    """Parse one or more PEM CRLs, each verified against the CA that issued it."""
    revoked: set[tuple[bytes, int]] = set()
    next_update: datetime | None = None
    blocks = [b for b in crl_pem.split(b"-----END X509 CRL-----") if b.strip()]
    if not blocks:
        raise HearthError(errors.BAD_PARAMETER, "The CRL file holds no PEM CRL.")
    for block in blocks:
        try:
            crl = x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n")
        except ValueError:
            raise HearthError(errors.BAD_PARAMETER, "A CRL in the CRL file is malformed.") from None
        issuer = next((ca for ca in cas if ca.subject == crl.issuer), None)
        if issuer is None or not _signed_by(crl, issuer):
            raise HearthError(
                errors.BAD_PARAMETER, "A CRL is not signed by a configured client CA."
            )
        name = crl.issuer.public_bytes()
        revoked.update((name, entry.serial_number) for entry in crl)
        update = crl.next_update_utc
        if update is not None and (next_update is None or update < next_update):
            next_update = update
    return RevocationList(frozenset(revoked), next_update)


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (InvalidSignature, TypeError, ValueError):  # pragma: no cover - a CA key type
        return False  # that cannot sign CRLs (X25519): not a signature we can accept
