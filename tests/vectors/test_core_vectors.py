"""The core formats, pinned: Hearth must reproduce these bytes, and an independent reading of
each format (straight from the primitives) must agree with Hearth's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearth.audit import (
    SignedHead,
    SignedPoint,
    StoredEntry,
    checkpoint_message,
    genesis_hash,
    head_message,
    verify_chain,
)
from hearth.crypto import envelope, mac
from hearth.crypto.blind import blind_index
from hearth.crypto.signing import signer_from_seed
from hearth.domain import IntegrityError, ResourceRef

VECTORS = Path(__file__).parent / "core"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


class FixedBytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def token_bytes(self, n: int) -> bytes:
        return self.data[:n]


def test_envelope_vector() -> None:
    v = load("envelope.json")
    key, nonce, blob = bytes.fromhex(v["key"]), bytes.fromhex(v["nonce"]), bytes.fromhex(v["blob"])
    aad = ResourceRef(v["res_type"], v["res_id"]).aad(v["version"])
    assert aad.hex() == v["aad"]
    assert blob == envelope.seal(
        v["plaintext"].encode(),
        key_id=v["key_id"],
        key=AESGCM(key),
        aad=aad,
        random=FixedBytes(nonce),
    )
    # Independent reading: header, nonce, then GCM over header || aad.
    assert blob[0] == 1
    assert struct.unpack(">I", blob[1:5])[0] == v["key_id"]
    assert blob[5:17] == nonce
    assert AESGCM(key).decrypt(nonce, blob[17:], blob[:5] + aad) == v["plaintext"].encode()
    assert envelope.open_sealed(blob, key=AESGCM(key), aad=aad) == v["plaintext"].encode()
    for tampered in (b"\x02" + blob[1:], blob[:-1] + bytes([blob[-1] ^ 1]), blob[:20]):
        with pytest.raises(IntegrityError):
            envelope.open_sealed(tampered, key=AESGCM(key), aad=aad)
    with pytest.raises(IntegrityError):
        envelope.open_sealed(blob, key=AESGCM(key), aad=ResourceRef("Patient", "x").aad(3))


def test_mac_vector() -> None:
    v = load("mac.json")
    key = bytes.fromhex(v["key"])
    f = v["fields"]
    body = v["plaintext"].encode()
    t, i = f["res_type"].encode(), f["res_id"].encode()
    message = (
        b"hearth/mac/v1\x00"
        + struct.pack(">QIBq", f["seq"], f["version"], int(f["deleted"]), f["ts_us"])
        + bytes([len(t)])
        + t
        + bytes([len(i)])
        + i
        + hashlib.sha256(body).digest()
    )
    assert hmac.new(key, message, hashlib.sha256).hexdigest() == v["mac"]
    assert mac.compute_mac(key, digest=mac.body_digest(body), **f).hex() == v["mac"]
    tomb = v["tombstone_fields"]
    assert mac.compute_mac(key, digest=mac.body_digest(None), **tomb).hex() == v["tombstone_mac"]


def test_blind_index_vector() -> None:
    v = load("blind.json")
    key = bytes.fromhex(v["key"])
    for case in v["cases"]:
        expected = hmac.new(
            key, case["domain"].encode() + b"\x00" + case["value"].encode(), hashlib.sha256
        ).digest()[:16]
        assert expected.hex() == case["index"]
        assert blind_index(key, case["domain"], case["value"]).hex() == case["index"]


def test_audit_chain_vector() -> None:
    v = load("audit_chain.json")
    assert genesis_hash(v["instance_id"]).hex() == v["genesis"]
    prev = bytes.fromhex(v["genesis"])
    key = bytes.fromhex(v["chain_key"])
    for entry in v["entries"]:
        body = entry["body"].encode()
        assert entry["prev_hash"] == prev.hex()
        digest = hmac.new(key, b"hearth/audit/v1\x00" + prev + body, hashlib.sha256).digest()
        assert mac.chain_link(key, prev, body) == digest
        assert digest.hex() == entry["hash"]
        parsed = json.loads(body)
        assert parsed["v"] == 1
        assert parsed["seq"] == entry["seq"]
        assert body == json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
        prev = digest
    sealed = base64.b64decode(json.loads(v["entries"][2]["body"])["sealed"])
    detail = envelope.open_sealed(
        sealed, key=AESGCM(bytes.fromhex(v["data_key"])), aad=b"hearth/audit-detail/v1\x003"
    )
    assert detail == b"name=Vector"

    cp = v["checkpoint"]
    message = (
        b"hearth/audit-checkpoint/v1\x00" + struct.pack(">Q", cp["seq"]) + bytes.fromhex(cp["hash"])
    )
    assert message.hex() == cp["message"]
    assert checkpoint_message(cp["seq"], bytes.fromhex(cp["hash"])) == message
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["public_key"])).verify(
        bytes.fromhex(cp["signature"]), message
    )
    h = v["head"]
    head = (
        b"hearth/audit-head/v1\x00"
        + struct.pack(">Q", h["seq"])
        + bytes.fromhex(h["hash"])
        + struct.pack(">Q", h["version_seq"])
    )
    assert head.hex() == h["message"]
    assert head_message(h["seq"], bytes.fromhex(h["hash"]), h["version_seq"]) == head
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["public_key"])).verify(
        bytes.fromhex(h["signature"]), head
    )
    signer = signer_from_seed(bytes.fromhex(v["signing_seed"]))
    assert signer.verifier.public_bytes.hex() == v["public_key"]


def test_verifier_accepts_the_vector_chain() -> None:
    v = load("audit_chain.json")
    public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(v["public_key"]))
    key = bytes.fromhex(v["chain_key"])

    def check(_key_id: int, signature: bytes, message: bytes) -> bool:
        public.verify(signature, message)
        return True

    entries = [
        StoredEntry(
            e["seq"],
            e["body"].encode(),
            bytes.fromhex(e["prev_hash"]),
            bytes.fromhex(e["hash"]),
            {},
        )
        for e in v["entries"]
    ]
    cp, h = v["checkpoint"], v["head"]
    checkpoint = SignedPoint(
        cp["seq"], bytes.fromhex(cp["hash"]), 1, bytes.fromhex(cp["signature"])
    )
    head = SignedHead(
        h["seq"], bytes.fromhex(h["hash"]), h["version_seq"], 1, bytes.fromhex(h["signature"])
    )
    findings = list(
        verify_chain(
            entries,
            genesis=bytes.fromhex(v["genesis"]),
            link=lambda p, b: mac.chain_link(key, p, b),
            head=head,
            checkpoints=[checkpoint],
            checkpoint_every=3,
            version_seq=h["version_seq"],
            check_signature=check,
        )
    )
    assert findings == []
