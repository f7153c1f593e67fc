"""The committed backup vectors re-verify: canonical form, signature, Merkle tree, records,
and a tiny complete backup chain decrypted with its TEST-ONLY identity."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from hearth.backupfmt import (
    MemoryObjects,
    MerkleBuilder,
    RecordDecoder,
    RecordEncoder,
    canonical_bytes,
    leaf_hash,
    open_manifest,
    read_segment,
    verify_chain,
)
from hearth.backupfmt.manifest import SIGNATURE_CONTEXT
from hearth.backupfmt.records import Row
from hearth.crypto.backup import AgeDecryptor, Ed25519ManifestSigner, Ed25519ManifestVerifier
from hearth.domain import Secret

HERE = Path(__file__).parent


def _load(name: str) -> Any:
    return json.loads((HERE / name).read_text())


def _unjson(row: list[Any]) -> Row:
    return tuple(bytes.fromhex(v["hex"]) if isinstance(v, dict) else v for v in row)


def test_manifest_canonical_form_id_and_signature() -> None:
    vec = _load("manifest.json")
    canonical = canonical_bytes(vec["body"])
    assert canonical.decode() == vec["canonical"]
    assert hashlib.sha256(canonical).hexdigest() == vec["manifest_id"]
    assert SIGNATURE_CONTEXT.hex() == vec["signature_context_hex"]
    signer = Ed25519ManifestSigner(bytes.fromhex(vec["signing_seed"]))
    # Ed25519 is deterministic (RFC 8032 section 5.1.6): re-signing gives the same bytes.
    signature = signer.sign(SIGNATURE_CONTEXT + canonical)
    assert base64.b64encode(signature).decode() == vec["signature"]["value"]
    assert signer.key_id == vec["signature"]["key_id"]
    opened = open_manifest(vec["stored"].encode(), signer.verifier())
    assert opened.manifest.body() == vec["body"]
    assert opened.to_bytes().decode() == vec["stored"]


def test_merkle_vectors() -> None:
    vec = _load("merkle.json")
    for leaf in vec["leaf_hashes"]:
        assert leaf_hash(leaf["seq"], bytes.fromhex(leaf["mac"])).hex() == leaf["leaf"]
    macs = {leaf["seq"]: bytes.fromhex(leaf["mac"]) for leaf in vec["leaf_hashes"]}
    for tree in vec["trees"]:
        builder = MerkleBuilder()
        builder.add_all((s, macs[s]) for s in range(1, tree["leaves"] + 1))
        assert builder.root().hex() == tree["root"]
        assert [p.hex() for p in builder.peaks] == tree["peaks"]


def test_records_vector() -> None:
    vec = _load("records.json")
    rows = [_unjson(r) for r in vec["rows"]]
    enc = RecordEncoder(vec["table"], vec["columns"])
    plaintext = enc.header() + b"".join(enc.row(r) for r in rows) + enc.trailer()
    assert plaintext.hex() == vec["plaintext_hex"]
    dec = RecordDecoder()
    assert dec.feed(plaintext) == rows
    dec.finish()


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return _load("tiny_backup.json")  # type: ignore[no-any-return]


def _objects(tiny: dict[str, Any]) -> MemoryObjects:
    return MemoryObjects({n: base64.b64decode(d) for n, d in tiny["objects"].items()})


def test_tiny_backup_verifies_deeply(tiny: dict[str, Any]) -> None:
    objects = _objects(tiny)
    verifier = Ed25519ManifestVerifier([bytes.fromhex(tiny["signing_public_key"])])
    decryptor = AgeDecryptor([Secret(tiny["identity"])])
    report = verify_chain(objects, verifier, decryptor=decryptor, expected_head=tiny["head"])
    assert report.head == tiny["head"]
    ids = {b.manifest.backup_id: b.manifest.manifest_id for b in report.backups if b.manifest}
    assert ids == tiny["manifest_ids"]
    head = next(
        b.manifest for b in report.backups if b.manifest and b.manifest.backup_id == tiny["head"]
    )
    assert head.merkle.chain_root == tiny["chain_root"]


def test_tiny_backup_decrypts_to_the_expected_rows(tiny: dict[str, Any]) -> None:
    objects = _objects(tiny)
    verifier = Ed25519ManifestVerifier([bytes.fromhex(tiny["signing_public_key"])])
    decryptor = AgeDecryptor([Secret(tiny["identity"])])
    got: dict[str, list[Row]] = {}
    for name in objects.list_names("manifests/"):
        manifest = open_manifest(objects.get_bytes(name), verifier).manifest
        for seg in manifest.segments:
            with objects.open_read(seg.name) as stream:
                read_segment(
                    stream, seg, decryptor, lambda t, c, rows: got.setdefault(t, []).extend(rows)
                )
    expected = {t: [_unjson(r) for r in rows] for t, rows in tiny["rows"].items()}
    assert got == expected
    # The chain root is the root of every version restored, in one comparison.
    builder = MerkleBuilder()
    builder.add_all((r[0], r[5]) for r in expected["resource_versions"])  # type: ignore[misc]
    assert builder.root().hex() == tiny["chain_root"]
