"""Ed25519 signatures (RFC 8032) for audit checkpoints and other signed statements."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hearth.domain import IntegrityError

__all__ = ["Signer", "Verifier", "signer_from_seed"]


class Verifier:
    def __init__(self, public_key: bytes) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(public_key)
        self.public_bytes = public_key

    def verify(self, signature: bytes, message: bytes) -> None:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise IntegrityError() from None


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = Verifier(
            private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def signer_from_seed(seed: bytes) -> Signer:
    """An Ed25519 signer from its 32-byte private seed (as stored, wrapped, in the key ring)."""
    return Signer(Ed25519PrivateKey.from_private_bytes(seed))
