"""The audit anchor: the latest signed chain head, kept outside the database.

Someone who can edit the database, but not the instance's files, could restore an older, genuinely
signed state of the whole database (head, checkpoints, versions and all) and so erase everything
after it. The anchor defeats that: the audit writer copies the committed, signed head to a file
beside the instance at most every few seconds and whenever it stops, and verification requires
that the chain still contains the anchored entry. Format (JSON, version 1)::

    {"format": "hearth-audit-anchor", "version": 1, "seq": 1234, "hash": "<hex>",
     "version_seq": 567, "key_id": 4, "signature": "<hex>"}

The file holds no secret and no PHI; it is written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from hearth.audit import SignedHead

__all__ = ["AnchorFile"]

_FORMAT = "hearth-audit-anchor"


class AnchorFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, head: SignedHead) -> None:
        if head.signature is None:
            return
        body = json.dumps(
            {
                "format": _FORMAT,
                "version": 1,
                "seq": head.seq,
                "hash": head.hash.hex(),
                "version_seq": head.version_seq,
                "key_id": head.key_id,
                "signature": head.signature.hex(),
            },
            sort_keys=True,
        ).encode("ascii")
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)

    def read(self) -> SignedHead | None:
        """The anchored head, or None when there is none yet. A file that is not an anchor is
        reported as a forged anchor (a head whose signature cannot verify)."""
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return _unreadable()
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if raw["format"] == _FORMAT and raw["version"] == 1:
                return SignedHead(
                    int(raw["seq"]),
                    bytes.fromhex(raw["hash"]),
                    int(raw["version_seq"]),
                    int(raw["key_id"]),
                    bytes.fromhex(raw["signature"]),
                )
        return _unreadable()


def _unreadable() -> SignedHead:
    return SignedHead(0, b"", 0, 0, b"")
