"""Stored-hash format vectors, pinned in hashed-secrets.json.

Each vector is checked two ways: Hearth's hasher must produce exactly the stored string from the
secret and the salt, and an independent derivation (stdlib HMAC, argon2-cffi's low-level API and
the format described in hearth.auth.hashed_secret) must produce it too. So the JSON pins the
format, and the format is what the module docstring says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from pathlib import Path
from typing import Any

import argon2
import pytest
from argon2.low_level import Type, hash_secret

from hearth.auth.argon2id import Argon2Parameters
from hearth.auth.hashed_secret import SecretHasher
from hearth.auth.passwords import PasswordHasher
from hearth.auth.pepper import PepperRing
from hearth.auth.pin import PinHasher
from hearth.auth.recovery import RecoveryCodeHasher

DOC = json.loads((Path(__file__).parent / "hashed-secrets.json").read_text())
HASHERS: dict[str, type[PasswordHasher | PinHasher | RecoveryCodeHasher]] = {
    "password": PasswordHasher,
    "pin": PinHasher,
    "recovery-code": RecoveryCodeHasher,
}


class SaltFrom:
    def __init__(self, salt: bytes) -> None:
        self.salt = salt

    def token_bytes(self, n: int) -> bytes:
        assert n == len(self.salt)
        return self.salt


def hasher_for(vector: dict[str, Any]) -> SecretHasher:
    params = Argon2Parameters(**vector["parameters"])
    pepper = vector["pepper"]
    ring = None
    if pepper is not None:
        ring = PepperRing({pepper["key_id"]: bytes.fromhex(pepper["key_hex"])}, pepper["key_id"])
    return HASHERS[vector["kind"]](params, ring)


def canonical(kind: str, secret: str) -> str:
    text = unicodedata.normalize("NFKC", secret)
    if kind == "recovery-code":
        text = text.replace("-", "").upper()
    return text


def derive(vector: dict[str, Any]) -> str:
    """The stored form, computed without Hearth's hashing code."""
    material = canonical(vector["kind"], vector["secret"]).encode("utf-8")
    pepper = vector["pepper"]
    if pepper is not None:
        label = DOC["labels"][vector["kind"]].encode("ascii")
        key = bytes.fromhex(pepper["key_hex"])
        material = hmac.new(key, label + b"\x00" + material, hashlib.sha256).digest()
    p = vector["parameters"]
    phc = hash_secret(
        material,
        bytes.fromhex(vector["salt_hex"]),
        time_cost=p["time_cost"],
        memory_cost=p["memory_kib"],
        parallelism=p["parallelism"],
        hash_len=p["hash_len"],
        type=Type.ID,
    ).decode("ascii")
    return phc if pepper is None else f"$hearth-pepper-v1$k={pepper['key_id']}{phc}"


@pytest.mark.parametrize("vector", DOC["vectors"], ids=lambda v: v["note"][:40])
def test_hearth_produces_the_pinned_stored_form(vector: dict[str, Any]) -> None:
    hasher = hasher_for(vector)
    stored = hasher.hash(vector["secret"], random=SaltFrom(bytes.fromhex(vector["salt_hex"])))
    assert stored == vector["stored"]
    hasher.verify(vector["stored"], vector["secret"])
    assert not hasher.needs_rehash(vector["stored"])


@pytest.mark.parametrize("vector", DOC["vectors"], ids=lambda v: v["note"][:40])
def test_the_format_is_the_documented_one(vector: dict[str, Any]) -> None:
    assert derive(vector) == vector["stored"]


def test_plain_hashes_are_standard_phc_strings() -> None:
    for vector in DOC["vectors"]:
        if vector["pepper"] is None:
            secret = canonical(vector["kind"], vector["secret"])
            assert argon2.PasswordHasher().verify(vector["stored"], secret)


def test_peppered_values_differ_by_kind() -> None:
    peppered = [v for v in DOC["vectors"] if v["pepper"] is not None and v["secret"] == "583920"]
    assert {v["kind"] for v in peppered} == {"pin", "password"}
    assert len({v["stored"] for v in peppered}) == 2
