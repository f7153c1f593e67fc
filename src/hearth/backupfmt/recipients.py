"""Backup recipients and identities as text: the formats ``hearth keys backup-recipient`` writes.

An **identity** is an age X25519 secret key (``AGE-SECRET-KEY-1...``, Bech32, BIP 173) that the
operator keeps offline; its **recipient** (``age1...``) is the public half Hearth encrypts to.
The identity file has age-keygen's layout, so the ``age`` tool itself can decrypt a segment::

    # created: 2026-01-02T03:04:05Z
    # public key: age1...
    AGE-SECRET-KEY-1...

Keys are generated in ``hearth.crypto.backup``; this module only formats and parses text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from hearth.domain import HearthError, Secret
from hearth.domain.errors import BACKUP_ARGUMENT

__all__ = [
    "IDENTITY_PATTERN",
    "RECIPIENT_PATTERN",
    "format_identity_file",
    "format_recipients_file",
    "parse_identity_file",
    "parse_recipients",
]

# Bech32's data alphabet excludes 1, b, i and o (BIP 173).
RECIPIENT_PATTERN = re.compile(r"age1[02-9ac-hj-np-z]{58}")
IDENTITY_PATTERN = re.compile(r"AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}")


def format_identity_file(identity: Secret, recipient: str, created: datetime) -> Secret:
    """The identity file's text, as a :class:`Secret` so that it never lands in a log."""
    if not IDENTITY_PATTERN.fullmatch(identity.reveal()):
        raise HearthError(BACKUP_ARGUMENT, "Not an age X25519 identity.")
    if not RECIPIENT_PATTERN.fullmatch(recipient):
        raise HearthError(BACKUP_ARGUMENT, "Not an age X25519 recipient.")
    stamp = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Secret(f"# created: {stamp}\n# public key: {recipient}\n{identity.reveal()}\n")


def format_recipients_file(recipients: Iterable[str]) -> str:
    """One recipient per line, the form ``age -R`` reads and Hearth's settings accept."""
    items = list(recipients)
    if not items:
        raise HearthError(BACKUP_ARGUMENT, "Backups need at least one recipient.")
    for item in items:
        if not RECIPIENT_PATTERN.fullmatch(item):
            raise HearthError(BACKUP_ARGUMENT, "Not an age X25519 recipient.")
    return "".join(f"{item}\n" for item in items)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def parse_identity_file(text: str) -> list[Secret]:
    """The identities in an identity file; comments and blank lines are skipped."""
    found = _lines(text)
    if not found or not all(IDENTITY_PATTERN.fullmatch(line) for line in found):
        raise HearthError(BACKUP_ARGUMENT, "The identity file holds no valid age identity.")
    return [Secret(line) for line in found]


def parse_recipients(text: str) -> list[str]:
    found = _lines(text)
    if not found or not all(RECIPIENT_PATTERN.fullmatch(line) for line in found):
        raise HearthError(BACKUP_ARGUMENT, "The recipients file holds no valid age recipient.")
    return found
