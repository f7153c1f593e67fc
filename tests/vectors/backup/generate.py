"""Regenerate the backup-format vectors: ``python tests/vectors/backup/generate.py``.

Everything here is deterministic except age encryption (its file keys and ephemeral shares
come from the OS inside the age library), so ``tiny_backup.json`` is regenerated only when the
format changes on purpose; the tests re-verify the committed bytes, never regenerate them.
The keys below are TEST-ONLY keys, published on purpose; never use them for real data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hearth.backupfmt import (
    BackupKind,
    BackupWriter,
    MemoryObjects,
    MemorySpool,
    MerkleBuilder,
    RecordEncoder,
    SequenceRange,
    canonical_bytes,
    leaf_hash,
    manifest_object_name,
)
from hearth.backupfmt.manifest import SIGNATURE_CONTEXT
from hearth.crypto.backup import AgeEncryptor, Ed25519ManifestSigner, recipient_of
from hearth.domain import Secret

HERE = Path(__file__).parent
SIGNING_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
IDENTITY = Secret("AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX")
T_FULL = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
T_INCR = datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC)
ID_FULL = "20260102T030405Z-00112233aabbccdd"
ID_INCR = "20260102T040405Z-4455667788990011"
COLUMNS = ("seq", "res_type", "res_id", "version", "deleted", "mac", "body")


def mac(seq: int) -> bytes:
    return hashlib.sha256(b"vector-mac-%d" % seq).digest()


def versions(first: int, last: int) -> list[tuple[Any, ...]]:
    return [
        (s, "Patient", f"pat-{s % 3}", s // 3 + 1, s % 5 == 0, mac(s), b"\x01sealed-%d" % s)
        for s in range(first, last + 1)
    ]


def jsonable(row: tuple[Any, ...]) -> list[Any]:
    return [{"hex": v.hex()} if isinstance(v, bytes) else v for v in row]


def merkle_vector() -> dict[str, Any]:
    leaves = [
        {"seq": s, "mac": mac(s).hex(), "leaf": leaf_hash(s, mac(s)).hex()} for s in range(1, 12)
    ]
    trees = []
    for n in (0, 1, 2, 3, 4, 5, 7, 8, 11):
        b = MerkleBuilder()
        b.add_all((s, mac(s)) for s in range(1, n + 1))
        trees.append({"leaves": n, "root": b.root().hex(), "peaks": [p.hex() for p in b.peaks]})
    return {
        "description": "RFC 6962 tree over (sequence, MAC) leaves; see docs/design.md",
        "leaf": "SHA-256(0x00 || 'hearth.backup.leaf.v1' || u64be(seq) || u8(len(mac)) || mac)",
        "node": "SHA-256(0x01 || left || right)",
        "leaf_hashes": leaves,
        "trees": trees,
    }


def records_vector() -> dict[str, Any]:
    rows = [
        (1, None, True, False, -5, 2.5, "Zoë", b"\x00\xff"),
        (2, None, False, True, 0, -0.0, "", b""),
    ]
    cols = ("a", "b", "c", "d", "e", "f", "g", "h")
    enc = RecordEncoder("t", cols)
    plaintext = enc.header() + b"".join(enc.row(r) for r in rows) + enc.trailer()
    return {
        "table": "t",
        "columns": list(cols),
        "rows": [jsonable(r) for r in rows],
        "plaintext_hex": plaintext.hex(),
    }


def tiny_backup() -> dict[str, Any]:
    signer = Ed25519ManifestSigner(SIGNING_SEED)
    recipient = recipient_of(IDENTITY)
    objects = MemoryObjects()
    manifests = []
    previous = None
    for kind, bid, when, first, last in (
        (BackupKind.FULL, ID_FULL, T_FULL, 1, 9),
        (BackupKind.INCREMENTAL, ID_INCR, T_INCR, 10, 13),
    ):
        writer = BackupWriter(
            backup_id=bid, instance_id="vector-instance", created=when, kind=kind,
            engine="sqlite", schema_version="0001", sequence=SequenceRange(first, last),
            previous=previous, encryptor=AgeEncryptor([recipient]), spool=MemorySpool(objects),
            merkle_table="resource_versions", max_segment_plaintext=400,
        )  # fmt: skip
        writer.add_table("resource_versions", COLUMNS, versions(first, last))
        writer.add_table("users", ("id", "display"), [("u-1", "Admin")] if first == 1 else [])
        signed = writer.finish(signer)
        objects.put_bytes(manifest_object_name(bid), signed.to_bytes())
        manifests.append(signed)
        previous = signed.manifest
    return {
        "description": "A full and an incremental backup; TEST-ONLY keys",
        "signing_public_key": signer.public_key.hex(),
        "identity": IDENTITY.reveal(),
        "recipient": recipient,
        "head": ID_INCR,
        "manifest_ids": {m.manifest.backup_id: m.manifest.manifest_id for m in manifests},
        "chain_root": manifests[-1].manifest.merkle.chain_root,
        "rows": {
            "resource_versions": [jsonable(r) for r in versions(1, 13)],
            "users": [["u-1", "Admin"]],
        },
        "objects": {n: base64.b64encode(d).decode() for n, d in sorted(objects.objects.items())},
    }


def manifest_vector(tiny: dict[str, Any]) -> dict[str, Any]:
    stored = base64.b64decode(tiny["objects"][manifest_object_name(ID_INCR)])
    outer = json.loads(stored)
    return {
        "description": "Canonical form, id and Ed25519 signature of a manifest; TEST-ONLY key",
        "signing_seed": SIGNING_SEED.hex(),
        "signature_context_hex": SIGNATURE_CONTEXT.hex(),
        "body": outer["manifest"],
        "canonical": canonical_bytes(outer["manifest"]).decode("utf-8"),
        "manifest_id": tiny["manifest_ids"][ID_INCR],
        "signature": outer["signature"],
        "stored": stored.decode(),
    }


def main() -> int:
    targets = {"merkle.json": merkle_vector(), "records.json": records_vector()}
    if "--with-backup" in sys.argv or not (HERE / "tiny_backup.json").exists():
        targets["tiny_backup.json"] = tiny_backup()
        tiny = targets["tiny_backup.json"]
    else:
        tiny = json.loads((HERE / "tiny_backup.json").read_text())
    targets["manifest.json"] = manifest_vector(tiny)
    for name, value in targets.items():
        (HERE / name).write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")
        print("wrote", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
