"""A software WebAuthn authenticator for protocol tests (W3C WebAuthn L2 sec. 6.1, 6.5.4, 8.7).

It makes the JSON a browser's ``PublicKeyCredential.toJSON()`` would send: ES256 keys, "none"
attestation, flags for user presence and verification, a sign counter the test controls. The
browser tests use Chromium's own virtual authenticator instead; this one lets protocol tests
build the responses a browser never would (no UV, an old counter, another user's key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    rp_id: str
    counter: int = 0


@dataclass
class SoftKey:
    origin: str = "https://localhost"
    uv: bool = True
    transport: str = "usb"
    counting: bool = True
    credentials: list[Credential] = field(default_factory=list)

    def _auth_data(self, rp_id: str, flags: int, counter: int, attested: bytes = b"") -> bytes:
        return (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([flags])
            + counter.to_bytes(4, "big")
            + attested
        )

    def _flags(self, *, attested: bool) -> int:
        return 0x01 | (0x04 if self.uv else 0) | (0x40 if attested else 0)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        ).encode()

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        """``navigator.credentials.create()``: a new ES256 credential for ``options``."""
        rp_id = options["rp"]["id"]
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()
        cose = cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        credential_id = os.urandom(16)
        attested = bytes(16) + len(credential_id).to_bytes(2, "big") + credential_id + cose
        counter = 1 if self.counting else 0
        auth_data = self._auth_data(rp_id, self._flags(attested=True), counter, attested)
        self.credentials.append(
            Credential(credential_id, key, unb64(options["user"]["id"]), rp_id, counter)
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"])
        return {
            "id": b64(credential_id),
            "rawId": b64(credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform"
            if self.transport == "internal"
            else "cross-platform",
            "response": {
                "clientDataJSON": b64(client_data),
                "attestationObject": b64(attestation),
                "transports": [self.transport],
            },
            "clientExtensionResults": {},
        }

    def get(self, options: dict[str, Any], credential: Credential | None = None) -> dict[str, Any]:
        """``navigator.credentials.get()``: an assertion by ``credential`` (default: the first
        one the options allow, or the first this key holds)."""
        if credential is None:
            allowed = {unb64(c["id"]) for c in options.get("allowCredentials", [])}
            matches = [c for c in self.credentials if not allowed or c.credential_id in allowed]
            credential = matches[0] if matches else self.credentials[0]
        if self.counting:
            credential.counter += 1
        auth_data = self._auth_data(
            credential.rp_id, self._flags(attested=False), credential.counter
        )
        client_data = self._client_data("webauthn.get", options["challenge"])
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64(credential.credential_id),
            "rawId": b64(credential.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": b64(credential.user_handle),
            },
            "clientExtensionResults": {},
        }
