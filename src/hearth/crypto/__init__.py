"""The only package that imports ``cryptography``: sealing, MACs, blind indexes, signing, keys.

Everything here is a safe recipe over the hazardous layer; callers never see a raw primitive.
Verification raises ``hearth.domain.IntegrityError`` and never returns False.
"""

from hearth.crypto import tokens, webhook
from hearth.crypto.envelope import sealed_key_id
from hearth.crypto.kek import (
    KEY_BYTES,
    FileKek,
    KeyEncryptionKey,
    LocalKek,
    PassphraseKek,
    create_key_file,
)
from hearth.crypto.keyring import (
    SEALING_PURPOSES,
    KeyPurpose,
    KeyRing,
    KeyState,
    WrappedKey,
    new_wrapped_key,
    rewrap,
)
from hearth.crypto.signing import Signer, Verifier
from hearth.crypto.token_keys import TOKEN_KEY_ALG, p256_jwk_from_seed

__all__ = [
    "KEY_BYTES",
    "FileKek",
    "KeyEncryptionKey",
    "KeyPurpose",
    "KeyRing",
    "KeyState",
    "LocalKek",
    "PassphraseKek",
    "SEALING_PURPOSES",
    "Signer",
    "TOKEN_KEY_ALG",
    "Verifier",
    "WrappedKey",
    "create_key_file",
    "new_wrapped_key",
    "p256_jwk_from_seed",
    "rewrap",
    "sealed_key_id",
    "tokens",
    "webhook",
]
