"""Helpers for OAuth, SMART and mutual TLS tests: client keys and assertions, a test PKI.

Test code may use ``cryptography`` and ``joserfc`` directly: these stand in for the other side
of the protocol (a SMART backend service, a CA issuing smart-card certificates).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

__all__ = [
    "ASSERTION_TYPE",
    "ClientKey",
    "Pki",
    "assertion",
    "authorize_on_console",
    "exchange_code",
    "pkce_pair",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class ClientKey:
    """A backend service's signing key: private for signing, public JWK for registration."""

    alg: str
    key: ECKey | RSAKey
    kid: str = field(default_factory=lambda: secrets.token_hex(8))

    @classmethod
    def generate(cls, alg: str) -> ClientKey:
        if alg.startswith("ES"):
            return cls(alg, ECKey.generate_key("P-384" if alg == "ES384" else "P-256"))
        return cls(alg, RSAKey.generate_key(2048))

    def public_jwk(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": self.alg}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}


def assertion(
    key: ClientKey,
    *,
    client_id: str,
    token_url: str,
    now: int | None = None,
    lifetime: int = 240,
    jti: str | None = None,
    claims: dict[str, Any] | None = None,
    header: dict[str, Any] | None = None,
) -> str:
    """A client assertion (RFC 7523 sec. 3; SMART backend services)."""
    issued = int(time.time()) if now is None else now
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": issued + lifetime,
        "jti": jti or secrets.token_urlsafe(16),
        **(claims or {}),
    }
    head = {"alg": key.alg, "kid": key.kid, "typ": "JWT", **(header or {})}
    return jwt.encode(head, body, key.key, algorithms=[key.alg])


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def authorize_on_console(
    browser: Any,
    app: str,
    scope: str,
    *,
    redirect: str,
    aud: str,
    choose: dict[str, str] | None = None,
    **extra: str,
) -> tuple[Any, str, str]:
    """A SMART authorization request (PKCE) from a signed-in console ``browser``, approved on
    the consent page with ``choose`` added (a launch patient); returns the last response (the
    redirect to the app, or the consent page's refusal), the PKCE verifier and the page."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": app,
        "redirect_uri": redirect,
        "scope": scope,
        "state": "st-" + verifier[:24],
        "aud": aud,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    consent = browser.get(f"/oauth/authorize?{urlencode(params)}")
    if consent.status_code != 200:
        return consent, verifier, ""
    shown: str = browser.page
    hidden = {k: unescape(v) for k, v in _HIDDEN.findall(shown) if k != "csrf"}
    decision = {**hidden, "decision": "approve", **(choose or {})}
    return browser.post("/oauth/authorize/decision", decision), verifier, shown


def exchange_code(
    browser: Any, app: str, answer: Any, verifier: str, *, redirect: str
) -> dict[str, Any]:
    """Exchange the code in ``answer``'s redirect at the token endpoint; the token response."""
    assert answer.status_code == 303, answer.text[:300]
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    exchanged = browser.client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": app,
            "code_verifier": verifier,
            "redirect_uri": redirect,
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    body: dict[str, Any] = exchanged.json()
    return body


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def part(segment: str) -> dict[str, Any]:
        padded = segment + "=" * (-len(segment) % 4)
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
        return value

    head, body, _ = token.split(".")
    return part(head), part(body)


# ------------------------------------------------------------------------------ a test PKI
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class Pki:
    """A throwaway CA that issues server and client certificates and CRLs, written to files."""

    def __init__(self, directory: Path, name: str = "Hearth Test CA") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = self.dir / f"{name.replace(' ', '_')}.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        common_name: str,
        *,
        server: bool = False,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> tuple[Path, Path, x509.Certificate]:
        """A certificate and key (PEM files) for a server (localhost) or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(hours=1))
            .not_valid_after(not_after or now + timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = self.dir / common_name.replace(" ", "_")
        cert_path = stem.with_suffix(".crt")
        key_path = stem.with_suffix(".key")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path, cert

    def crl(self, revoked: list[x509.Certificate], path: Path | None = None) -> Path:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - timedelta(minutes=1))
            .next_update(now + timedelta(days=1))
        )
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now - timedelta(minutes=1))
                .build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        target = path or self.dir / "clients.crl.pem"
        target.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return target
