"""Write the JSON vectors that pin Hearth's core formats (tests/vectors/core/).

Run once when a format version is introduced; the tests then recompute every value from the
inputs and compare. Changing a format means a new version byte or number and new vectors, never
edited ones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearth.audit import (
    AuditRecord,
    checkpoint_message,
    genesis_hash,
    head_message,
    sealed_aad,
    sequence,
)
from hearth.crypto import envelope, mac
from hearth.crypto.blind import blind_index
from hearth.crypto.signing import signer_from_seed
from hearth.domain import Outcome, ResourceRef

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "core"


class FixedBytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def token_bytes(self, n: int) -> bytes:
        return self.data[:n]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data_key = bytes(range(32))
    nonce = bytes.fromhex("000102030405060708090a0b")
    ref = ResourceRef("Patient", "0b7c6d2e-5f3a-4e1b-9c8d-7a6b5c4d3e2f")
    body = b'{"resourceType":"Patient","name":[{"family":"Vector"}]}'
    aad = ref.aad(3)
    blob = envelope.seal(body, key_id=7, key=AESGCM(data_key), aad=aad, random=FixedBytes(nonce))
    (OUT / "envelope.json").write_text(
        json.dumps(
            {
                "description": "Envelope v1: 0x01 | key id u32 | nonce | AES-256-GCM(ct||tag)",
                "key": data_key.hex(),
                "key_id": 7,
                "nonce": nonce.hex(),
                "res_type": ref.type,
                "res_id": ref.id,
                "version": 3,
                "aad": aad.hex(),
                "plaintext": body.decode(),
                "blob": blob.hex(),
            },
            indent=2,
        )
        + "\n"
    )

    mac_key = bytes(range(100, 132))
    fields = {
        "seq": 42,
        "res_type": ref.type,
        "res_id": ref.id,
        "version": 3,
        "deleted": False,
        "ts_us": 1_768_469_400_000_000,
    }
    tag = mac.compute_mac(mac_key, digest=mac.body_digest(body), **fields)  # type: ignore[arg-type]
    tomb = mac.compute_mac(
        mac_key,
        digest=mac.body_digest(None),
        **{**fields, "deleted": True, "version": 4},  # type: ignore[arg-type]
    )
    (OUT / "mac.json").write_text(
        json.dumps(
            {
                "description": "Per-version MAC v1 over identity and SHA-256 of the plaintext",
                "key": mac_key.hex(),
                "fields": fields,
                "plaintext": body.decode(),
                "mac": tag.hex(),
                "tombstone_fields": {**fields, "deleted": True, "version": 4},
                "tombstone_mac": tomb.hex(),
            },
            indent=2,
        )
        + "\n"
    )

    blind_key = bytes(range(200, 232))
    (OUT / "blind.json").write_text(
        json.dumps(
            {
                "description": "Blind index: HMAC-SHA-256(key, domain 0x00 value)[:16]",
                "key": blind_key.hex(),
                "cases": [
                    {"domain": d, "value": v, "index": blind_index(blind_key, d, v).hex()}
                    for d, v in (
                        ("Patient.name", "smith"),
                        ("Patient.name", "smit"),
                        ("Patient.identifier", "urn:oid:1.2|mrn0001"),
                    )
                ],
            },
            indent=2,
        )
        + "\n"
    )

    instance_id = "00aa11bb22cc33dd"
    chain_key = bytes(range(150, 182))
    seed = bytes(range(50, 82))
    signer = signer_from_seed(seed)
    prev = genesis_hash(instance_id)
    entries = []
    records = [
        AuditRecord(
            datetime(2026, 1, 15, 9, 30, tzinfo=UTC),
            "admin",
            "user",
            "create",
            Outcome.SUCCESS,
            "Patient",
            ref.id,
            1,
            ref.id,
            "TREAT",
            "127.0.0.1",
            "token:abc",
            "req-1",
        ),
        AuditRecord(
            datetime(2026, 1, 15, 9, 31, 5, 123456, tzinfo=UTC),
            "mallory",
            "user",
            "read",
            Outcome.DENIED,
            "Patient",
            ref.id,
            None,
            None,
            "TREAT",
            "10.0.0.9",
            None,
            "req-2",
            "HRT-0402",
        ),
    ]
    sealed_detail = envelope.seal(
        b"name=Vector",
        key_id=7,
        key=AESGCM(data_key),
        aad=sealed_aad(3),
        random=FixedBytes(nonce),
    )
    records.append(
        AuditRecord(
            datetime(2026, 1, 15, 9, 32, tzinfo=UTC),
            "admin",
            "user",
            "search",
            Outcome.SUCCESS,
            "Patient",
            None,
            None,
            None,
            "TREAT",
            "127.0.0.1",
        )
    )
    for i, record in enumerate(records, start=1):
        entry = sequence(
            record,
            seq=i,
            prev_hash=prev,
            sealed=sealed_detail if i == 3 else None,
            link=lambda p, b: mac.chain_link(chain_key, p, b),
        )
        entries.append(
            {
                "seq": i,
                "body": entry.body.decode(),
                "prev_hash": entry.prev_hash.hex(),
                "hash": entry.hash.hex(),
            }
        )
        prev = entry.hash
    message = checkpoint_message(3, prev)
    head = head_message(3, prev, 42)
    (OUT / "audit_chain.json").write_text(
        json.dumps(
            {
                "description": "Audit entries v1, HMAC-SHA-256 chain, Ed25519-signed head and "
                "checkpoint",
                "instance_id": instance_id,
                "genesis": genesis_hash(instance_id).hex(),
                "chain_key": chain_key.hex(),
                "data_key": data_key.hex(),
                "entries": entries,
                "signing_seed": seed.hex(),
                "public_key": signer.verifier.public_bytes.hex(),
                "checkpoint": {
                    "seq": 3,
                    "hash": prev.hex(),
                    "message": message.hex(),
                    "signature": signer.sign(message).hex(),
                },
                "head": {
                    "seq": 3,
                    "hash": prev.hex(),
                    "version_seq": 42,
                    "message": head.hex(),
                    "signature": signer.sign(head).hex(),
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote vectors to {OUT}")


if __name__ == "__main__":
    main()
