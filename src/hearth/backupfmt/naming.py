"""Names of stored backup objects and backup ids.

Segments are content-addressed: ``segments/<sha256 of the stored bytes, lower-case hex>``, so a
name can only ever hold one content and is written once. A manifest lives at
``manifests/<backup id>.json``; the id inside the signed body must match the name, so a
manifest copied over another one's name is caught. Backup ids sort by creation time:
``YYYYMMDDTHHMMSSZ-<16 hex digits of randomness>``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hearth.domain import HearthError, Random
from hearth.domain.errors import BACKUP_ARGUMENT

__all__ = [
    "BACKUP_ID_PATTERN",
    "MANIFEST_PREFIX",
    "SEGMENT_PREFIX",
    "SHA256_HEX_PATTERN",
    "backup_id_from_manifest_name",
    "manifest_object_name",
    "new_backup_id",
    "segment_object_name",
]

SEGMENT_PREFIX = "segments/"
MANIFEST_PREFIX = "manifests/"
BACKUP_ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{16}")
SHA256_HEX_PATTERN = re.compile(r"[0-9a-f]{64}")
_MANIFEST_NAME = re.compile(r"manifests/([0-9]{8}T[0-9]{6}Z-[0-9a-f]{16})\.json")


def new_backup_id(now: datetime, random: Random) -> str:
    if now.tzinfo is None:
        raise HearthError(BACKUP_ARGUMENT, "Backup times are timezone-aware.")
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{random.token_bytes(8).hex()}"


def segment_object_name(sha256_hex: str) -> str:
    if not SHA256_HEX_PATTERN.fullmatch(sha256_hex):
        raise HearthError(BACKUP_ARGUMENT, "A segment digest is 64 lower-case hex digits.")
    return SEGMENT_PREFIX + sha256_hex


def manifest_object_name(backup_id: str) -> str:
    if not BACKUP_ID_PATTERN.fullmatch(backup_id):
        raise HearthError(BACKUP_ARGUMENT, "Not a backup id.")
    return f"{MANIFEST_PREFIX}{backup_id}.json"


def backup_id_from_manifest_name(name: str) -> str | None:
    match = _MANIFEST_NAME.fullmatch(name)
    return match.group(1) if match else None
