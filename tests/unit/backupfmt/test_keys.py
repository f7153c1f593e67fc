"""Backup keys: age identities from injected randomness, identity files, Ed25519 key ids."""

from __future__ import annotations

import hashlib
import io

import pyrage
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tests.unit.backupfmt.helpers import T0, FixedRandom

from hearth.backupfmt import (
    format_identity_file,
    format_recipients_file,
    parse_identity_file,
    parse_recipients,
)
from hearth.crypto.backup import (
    AgeDecryptor,
    AgeEncryptor,
    Ed25519ManifestSigner,
    Ed25519ManifestVerifier,
    backup_key_id,
    generate_backup_identity,
    recipient_of,
)
from hearth.crypto.backup import _bech32_encode as bech32_encode
from hearth.domain import HearthError, IntegrityError, Secret


def test_identity_is_derived_from_the_injected_randomness() -> None:
    a = generate_backup_identity(FixedRandom(b"k"))
    b = generate_backup_identity(FixedRandom(b"k"))
    c = generate_backup_identity(FixedRandom(b"other"))
    assert a == b
    assert a != c
    identity, recipient = a
    assert identity.reveal().startswith("AGE-SECRET-KEY-1")
    assert recipient.startswith("age1")
    assert "AGE" not in repr(identity)


def test_recipient_is_the_x25519_public_key_of_the_scalar() -> None:
    """Cross-check the Bech32 encoding against an independent X25519 derivation."""
    scalar = FixedRandom(b"k").token_bytes(32)
    identity, recipient = generate_backup_identity(FixedRandom(b"k"))
    public = X25519PrivateKey.from_private_bytes(scalar).public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert recipient == bech32_encode("age", raw)
    assert recipient_of(identity) == recipient


def test_bech32_matches_bip173_checksum() -> None:
    # BIP 173's valid test string "a12uel5l": hrp "a", empty data.
    assert bech32_encode("a", b"") == "a12uel5l"


def test_identity_file_round_trips_and_the_age_library_reads_it() -> None:
    identity, recipient = generate_backup_identity(FixedRandom(b"file"))
    text = format_identity_file(identity, recipient, T0)
    assert text.reveal().splitlines()[:2] == [
        "# created: 2026-01-02T03:04:05Z",
        f"# public key: {recipient}",
    ]
    assert parse_identity_file(text.reveal()) == [identity]
    # An independent age implementation decrypts what AgeEncryptor wrote.
    sink = io.BytesIO()
    AgeEncryptor([recipient]).encrypt_stream(io.BytesIO(b"hello"), sink)
    parsed = pyrage.x25519.Identity.from_str(parse_identity_file(text.reveal())[0].reveal())
    assert pyrage.decrypt(sink.getvalue(), [parsed]) == b"hello"


def test_recipients_file_round_trips() -> None:
    recipients = [generate_backup_identity(FixedRandom(bytes([i])))[1] for i in range(3)]
    assert parse_recipients(format_recipients_file(recipients)) == recipients


@pytest.mark.parametrize("text", ["", "# only a comment\n", "AGE-SECRET-KEY-1XYZ\n"])
def test_bad_identity_files_are_refused(text: str) -> None:
    with pytest.raises(HearthError):
        parse_identity_file(text)


@pytest.mark.parametrize("text", ["", "age1abc\n", "ssh-ed25519 AAAA\n"])
def test_bad_recipient_lists_are_refused(text: str) -> None:
    with pytest.raises(HearthError):
        parse_recipients(text)
    with pytest.raises(HearthError):
        format_recipients_file(text.split())


def test_format_identity_refuses_non_keys() -> None:
    _, recipient = generate_backup_identity(FixedRandom(b"x"))
    with pytest.raises(HearthError):
        format_identity_file(Secret("not a key"), recipient, T0)
    with pytest.raises(HearthError):
        format_identity_file(generate_backup_identity(FixedRandom(b"y"))[0], "age1bad", T0)


def test_age_constructors_refuse_bad_keys_without_echoing_them() -> None:
    with pytest.raises(HearthError) as info:
        AgeEncryptor(["age1notakey"])
    assert "notakey" not in str(info.value)
    with pytest.raises(HearthError):
        AgeEncryptor([])
    with pytest.raises(HearthError) as info2:
        AgeDecryptor([Secret("AGE-SECRET-KEY-1SECRETSTUFF")])
    assert "SECRETSTUFF" not in str(info2.value)
    with pytest.raises(HearthError):
        AgeDecryptor([])


def test_any_one_of_several_recipients_decrypts() -> None:
    keys = [generate_backup_identity(FixedRandom(bytes([i]))) for i in range(3)]
    sink = io.BytesIO()
    AgeEncryptor([r for _, r in keys]).encrypt_stream(io.BytesIO(b"payload"), sink)
    for identity, _ in keys:
        out = io.BytesIO()
        AgeDecryptor([identity]).decrypt_stream(io.BytesIO(sink.getvalue()), out)
        assert out.getvalue() == b"payload"


def test_ed25519_key_id_and_verification() -> None:
    signer = Ed25519ManifestSigner.generate(FixedRandom(b"sig"))
    assert signer.key_id == hashlib.sha256(signer.public_key).digest()[:16].hex()
    assert backup_key_id(signer.public_key) == signer.key_id
    sig = signer.sign(b"message")
    signer.verifier().verify(signer.key_id, sig, b"message")
    with pytest.raises(IntegrityError):
        signer.verifier().verify(signer.key_id, sig, b"messagf")
    with pytest.raises(IntegrityError):
        signer.verifier().verify("0" * 32, sig, b"message")
    with pytest.raises(HearthError):
        Ed25519ManifestSigner(b"short")
    with pytest.raises(HearthError):
        Ed25519ManifestVerifier([b"short"])
