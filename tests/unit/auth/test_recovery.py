"""Recovery codes: generation, hashing, single use (NIST SP 800-63B-4 sec. 3.1.2)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hearth.auth.argon2id import RECOVERY_CODE_PARAMETERS, Argon2Parameters
from hearth.auth.hashed_secret import StoredHash
from hearth.auth.pepper import PepperRing
from hearth.auth.recovery import (
    CROCKFORD_ALPHABET,
    RecoveryCodeHasher,
    canonical_recovery_code,
    generate_recovery_codes,
    remove_used,
)
from hearth.domain.errors import INTEGRITY_FAILED, RECOVERY_CODE_INVALID, HearthError

FORMAT = re.compile(f"[{CROCKFORD_ALPHABET}]{{5}}-[{CROCKFORD_ALPHABET}]{{5}}")


def test_ten_codes_of_ten_characters(counting_random: Any) -> None:
    codes = generate_recovery_codes(counting_random())
    assert len(codes) == 10
    assert all(FORMAT.fullmatch(c) for c in codes)
    assert len(set(codes)) == 10
    assert codes == generate_recovery_codes(counting_random())
    assert codes != generate_recovery_codes(counting_random(b"other"))
    assert len(generate_recovery_codes(counting_random(), count=3)) == 3


def test_codes_use_exactly_50_random_bits(fixed_random: Any) -> None:
    assert generate_recovery_codes(fixed_random(0x00), count=1) == ["00000-00000"]
    assert generate_recovery_codes(fixed_random(0xFF), count=1) == ["ZZZZZ-ZZZZZ"]
    # 0x55 = 01010101...: the top 50 bits read as alternating 01010 / 10101 groups.
    assert generate_recovery_codes(fixed_random(0x55), count=1) == ["ANANA-NANAN"]


def test_every_character_of_the_alphabet_occurs(counting_random: Any) -> None:
    codes = generate_recovery_codes(counting_random(), count=200)
    assert set("".join(codes).replace("-", "")) == set(CROCKFORD_ALPHABET)


@pytest.mark.parametrize(
    ("entered", "expected"),
    [
        ("ABCDE-FGHJK", "ABCDEFGHJK"),
        ("abcde fghjk", "ABCDEFGHJK"),
        (" abcdefghjk ", "ABCDEFGHJK"),
        ("O0IL1-ABCDE", "00111ABCDE"),  # Crockford: O reads as 0, I and L as 1
        ("\uff21BCDE-FGHJK", "ABCDEFGHJK"),
        ("ABCDE-FGHJ", None),
        ("ABCDE-FGHJKM", None),
        ("ABCDE-FGHJU", None),  # U is not in the alphabet
        ("ABCDE_FGHJK", None),
        ("", None),
    ],
)
def test_canonical_form(entered: str, expected: str | None) -> None:
    assert canonical_recovery_code(entered) == expected


def stored_codes(cheap: Argon2Parameters, random: Any) -> tuple[list[str], list[str]]:
    hasher = RecoveryCodeHasher(cheap)
    codes = generate_recovery_codes(random, count=4)
    return codes, [hasher.hash(c, random=random) for c in codes]


def test_default_cost_is_the_recovery_cost(random: Any) -> None:
    stored = RecoveryCodeHasher().hash("ABCDE-FGHJK", random=random)
    assert StoredHash.parse(stored).parameters == RECOVERY_CODE_PARAMETERS


def test_find_returns_the_index_of_the_matching_hash(cheap: Argon2Parameters, random: Any) -> None:
    codes, hashes = stored_codes(cheap, random)
    hasher = RecoveryCodeHasher(cheap)
    for index, code in enumerate(codes):
        assert hasher.find(hashes, code) == index
    assert hasher.find(hashes, codes[2].lower().replace("-", " ")) == 2


def test_each_code_works_once(cheap: Argon2Parameters, random: Any) -> None:
    codes, hashes = stored_codes(cheap, random)
    hasher = RecoveryCodeHasher(cheap)
    index = hasher.find(hashes, codes[1])
    remaining = remove_used(hashes, index)
    assert len(remaining) == 3
    with pytest.raises(HearthError) as excinfo:
        hasher.find(remaining, codes[1])
    assert excinfo.value.code is RECOVERY_CODE_INVALID
    assert hasher.find(remaining, codes[3]) == 2


@pytest.mark.parametrize("entered", ["ZZZZZ-ZZZZZ", "not a code", ""])
def test_wrong_or_malformed_code_is_refused(
    cheap: Argon2Parameters, random: Any, entered: str
) -> None:
    _, hashes = stored_codes(cheap, random)
    with pytest.raises(HearthError) as excinfo:
        RecoveryCodeHasher(cheap).find(hashes, entered)
    assert excinfo.value.code is RECOVERY_CODE_INVALID
    assert excinfo.value.status == 401


def test_no_codes_left_is_refused_the_same_way(cheap: Argon2Parameters) -> None:
    with pytest.raises(HearthError) as excinfo:
        RecoveryCodeHasher(cheap).find([], "ABCDE-FGHJK")
    assert excinfo.value.code is RECOVERY_CODE_INVALID


def test_a_damaged_hash_is_not_hidden(cheap: Argon2Parameters, random: Any) -> None:
    codes, hashes = stored_codes(cheap, random)
    with pytest.raises(HearthError) as excinfo:
        RecoveryCodeHasher(cheap).find([*hashes, "damaged"], codes[0])
    assert excinfo.value.code is INTEGRITY_FAILED


def test_peppered_recovery_codes(cheap: Argon2Parameters, random: Any) -> None:
    hasher = RecoveryCodeHasher(cheap, PepperRing({"k1": bytes(32)}, "k1"))
    stored = hasher.hash("ABCDE-FGHJK", random=random)
    assert stored.startswith("$hearth-pepper-v1$k=k1$")
    assert hasher.find([stored], "abcde-fghjk") == 0


def test_remove_used_checks_the_index() -> None:
    assert remove_used(("a", "b", "c"), 0) == ("b", "c")
    with pytest.raises(IndexError):
        remove_used(("a",), 1)
    with pytest.raises(IndexError):
        remove_used(("a",), -1)
