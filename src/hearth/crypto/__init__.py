"""The only package that imports ``cryptography``: sealing, MACs, blind indexes, signing, keys.

Everything here is a safe recipe over the hazardous layer; callers never see a raw primitive.
Verification raises ``hearth.domain.IntegrityError`` and never returns False.
"""

from hearth.crypto import tokens
from hearth.crypto.envelope import sealed_key_id
from hearth.crypto.kek import (
    KEY_BYTES,
    FileKek,
    KeyEncryptionKey,
    LocalKek,
    PassphraseKek,
    create_key_file,
)
from hearth.crypto.keyring import KeyPurpose, KeyRing, KeyState, WrappedKey, new_wrapped_key, rewrap
from hearth.crypto.signing import Signer, Verifier

__all__ = [
    "KEY_BYTES",
    "FileKek",
    "KeyEncryptionKey",
    "KeyPurpose",
    "KeyRing",
    "KeyState",
    "LocalKek",
    "PassphraseKek",
    "Signer",
    "Verifier",
    "WrappedKey",
    "create_key_file",
    "new_wrapped_key",
    "rewrap",
    "sealed_key_id",
    "tokens",
]
