"""The signed manifest: canonical form, id, signature, and strict parsing."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from tests.unit.backupfmt.helpers import FixedRandom, small_chain

from hearth.backupfmt import (
    BackupKind,
    canonical_bytes,
    open_manifest,
    parse_manifest,
    sign_manifest,
)
from hearth.backupfmt.manifest import SIGNATURE_CONTEXT, format_time
from hearth.crypto.backup import Ed25519ManifestSigner, Ed25519ManifestVerifier
from hearth.domain import HearthError, IntegrityError
from hearth.domain.errors import BACKUP_FORMAT

CHAIN = small_chain()
SIGNED = CHAIN.manifests[1]
STORED = SIGNED.to_bytes()
VERIFIER = CHAIN.keys.signer.verifier()


def test_stored_form_is_canonical_and_starts_with_the_format_marker() -> None:
    outer = json.loads(STORED)
    assert canonical_bytes(outer) == STORED
    body = outer["manifest"]
    assert (body["format"], body["version"]) == ("hearth-backup", 1)
    assert body["kind"] == "incremental"
    assert body["previous"]["manifest_id"] == CHAIN.manifests[0].manifest.manifest_id


def test_manifest_id_is_the_hash_of_the_canonical_body() -> None:
    body = json.loads(STORED)["manifest"]
    assert SIGNED.manifest.manifest_id == hashlib.sha256(canonical_bytes(body)).hexdigest()


def test_signature_covers_the_context_and_the_body() -> None:
    signature = base64.b64decode(json.loads(STORED)["signature"]["value"])
    message = SIGNATURE_CONTEXT + SIGNED.manifest.canonical()
    VERIFIER.verify(SIGNED.key_id, signature, message)
    with pytest.raises(IntegrityError):
        VERIFIER.verify(SIGNED.key_id, signature, SIGNED.manifest.canonical())


def test_round_trip() -> None:
    opened = open_manifest(STORED, VERIFIER)
    assert opened.manifest == SIGNED.manifest
    assert opened.to_bytes() == STORED


def test_every_flipped_bit_is_refused() -> None:
    """No single-bit change to a stored manifest opens: format, canonical form or signature."""
    for index in range(len(STORED)):
        for bit in range(8):
            damaged = bytearray(STORED)
            damaged[index] ^= 1 << bit
            with pytest.raises(HearthError):
                open_manifest(bytes(damaged), VERIFIER)


def test_unknown_signing_key_is_refused() -> None:
    stranger = Ed25519ManifestSigner.generate(FixedRandom(b"stranger"))
    with pytest.raises(IntegrityError):
        open_manifest(STORED, stranger.verifier())
    resigned = sign_manifest(SIGNED.manifest, stranger).to_bytes()
    with pytest.raises(IntegrityError):
        open_manifest(resigned, VERIFIER)
    both = Ed25519ManifestVerifier([stranger.public_key, CHAIN.keys.signer.public_key])
    assert open_manifest(resigned, both).key_id == stranger.key_id


def _mutated(change: Any) -> bytes:
    outer = json.loads(STORED)
    change(outer)
    return canonical_bytes(outer)


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o["manifest"].update(version=2),
        lambda o: o["manifest"].update(format="other"),
        lambda o: o["manifest"].update(extra=1),
        lambda o: o["manifest"].pop("engine"),
        lambda o: o["manifest"].update(kind="differential"),
        lambda o: o["manifest"].update(created="2026-01-02T03:04:05Z"),
        lambda o: o["manifest"]["sequence"].update({"from": 0}),
        lambda o: o["manifest"]["sequence"].update({"to": 1}),
        lambda o: o["manifest"].update(recipients=[]),
        lambda o: o["manifest"].update(recipients=["age1short"]),
        lambda o: o["manifest"]["segment_encoding"].update(compression="gzip"),
        lambda o: o["manifest"]["merkle"].update(construction="other"),
        lambda o: o["manifest"]["merkle"]["chain"].update(peaks="x"),
        lambda o: o["manifest"]["segments"][0].update(rows=-1),
        lambda o: o["manifest"]["segments"][0].update(sha256="AB" * 32),
        lambda o: o["manifest"]["segments"][0].pop("table"),
        lambda o: o["manifest"]["row_counts"].update({"bad name": 1}),
        lambda o: o["manifest"].update(previous={"backup_id": "x", "manifest_id": "y"}),
        lambda o: o["signature"].update(algorithm="rsa"),
        lambda o: o["signature"].update(value="!!"),
        lambda o: o["signature"].update(key_id="K"),
        lambda o: o.update(extra=True),
    ],
)
def test_parse_fails_closed(change: Any) -> None:
    with pytest.raises(HearthError) as info:
        parse_manifest(_mutated(change))
    assert info.value.code is BACKUP_FORMAT


def test_non_canonical_stored_bytes_are_refused() -> None:
    pretty = json.dumps(json.loads(STORED), indent=1).encode()
    with pytest.raises(HearthError):
        parse_manifest(pretty)


def test_non_canonical_base64_is_refused() -> None:
    outer = json.loads(STORED)
    value = outer["signature"]["value"]
    assert value.endswith("==")
    # The character before the padding carries 4 spare bits; flipping one keeps the bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alphabet[alphabet.index(value[-3]) ^ 1]
    outer["signature"]["value"] = value[:-3] + twin + "=="
    assert base64.b64decode(outer["signature"]["value"]) == base64.b64decode(value)
    with pytest.raises(HearthError):
        parse_manifest(canonical_bytes(outer))


def test_times_need_a_zone() -> None:
    naive = SIGNED.manifest.created.replace(tzinfo=None)
    with pytest.raises(HearthError):
        format_time(naive)


def test_kind_is_a_closed_set() -> None:
    assert {k.value for k in BackupKind} == {"full", "incremental"}
