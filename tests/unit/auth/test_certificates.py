"""Client certificates: thumbprints, validity by our clock, CRLs signed by the CA (RFC 5280)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from tests.oauth_support import Pki

from hearth.auth.certificates import (
    certificate_info,
    check_validity,
    load_certificates,
    load_revocation_list,
    pem_to_der,
    thumbprint,
)
from hearth.domain import HearthError, errors


def test_thumbprint_is_rfc8705_x5t_s256(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    path, _, cert = pki.issue("alice")
    der = cert.public_bytes(Encoding.DER)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert thumbprint(der) == expected
    assert pem_to_der(path.read_bytes()) == der
    assert pem_to_der(der) == der
    with pytest.raises(HearthError):
        pem_to_der(b"not a certificate")


def test_validity_by_the_given_clock(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    _, _, cert = pki.issue("alice")
    info = certificate_info(cert.public_bytes(Encoding.DER))
    check_validity(info, datetime.now(UTC))
    for when in (info.not_after + timedelta(seconds=1), info.not_before - timedelta(seconds=1)):
        with pytest.raises(HearthError) as refused:
            check_validity(info, when)
        assert refused.value.code is errors.CERTIFICATE_REFUSED


def test_crl_revokes_by_issuer_and_serial(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    _, _, revoked = pki.issue("mallory")
    _, _, fine = pki.issue("alice")
    crl = load_revocation_list(
        pki.crl([revoked]).read_bytes(), load_certificates(pki.ca_file.read_bytes())
    )
    crl.check(certificate_info(fine.public_bytes(Encoding.DER)))
    with pytest.raises(HearthError) as refused:
        crl.check(certificate_info(revoked.public_bytes(Encoding.DER)))
    assert refused.value.code is errors.CERTIFICATE_REFUSED


def test_crl_must_be_signed_by_a_configured_ca(tmp_path: Path) -> None:
    ours = Pki(tmp_path / "ours", "Ours")
    theirs = Pki(tmp_path / "theirs", "Theirs")
    _, _, cert = ours.issue("alice")
    forged = theirs.crl([cert])
    with pytest.raises(HearthError):
        load_revocation_list(forged.read_bytes(), load_certificates(ours.ca_file.read_bytes()))
    with pytest.raises(HearthError):
        load_revocation_list(b"", load_certificates(ours.ca_file.read_bytes()))


def test_malformed_der_is_refused() -> None:
    with pytest.raises(HearthError) as refused:
        certificate_info(b"\x30\x03\x02\x01\x01")
    assert refused.value.code is errors.CERTIFICATE_REFUSED
