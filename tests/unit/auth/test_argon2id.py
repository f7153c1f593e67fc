"""argon2id parameters and the PHC string (RFC 9106; NIST-PW-13)."""

from __future__ import annotations

import re

import argon2
import pytest

from hearth.auth.argon2id import (
    DEFAULT_PARAMETERS,
    RECOVERY_CODE_PARAMETERS,
    Argon2Parameters,
    hash_phc,
    parameters_of,
    verify_phc,
)

PHC = re.compile(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


def test_defaults_are_the_documented_ones() -> None:
    assert Argon2Parameters(time_cost=3, memory_kib=65536, parallelism=1) == DEFAULT_PARAMETERS
    assert (
        Argon2Parameters(time_cost=2, memory_kib=19456, parallelism=1) == RECOVERY_CODE_PARAMETERS
    )
    assert DEFAULT_PARAMETERS.salt_len == 16
    assert DEFAULT_PARAMETERS.hash_len == 32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_cost": 0, "memory_kib": 64, "parallelism": 1},
        {"time_cost": 1, "memory_kib": 64, "parallelism": 0},
        {"time_cost": 1, "memory_kib": 15, "parallelism": 2},
        {"time_cost": 1, "memory_kib": 64, "parallelism": 1, "salt_len": 8},
        {"time_cost": 1, "memory_kib": 64, "parallelism": 1, "hash_len": 8},
    ],
)
def test_parameters_outside_rfc9106_or_hearths_floor_are_refused(
    kwargs: dict[str, int],
) -> None:
    with pytest.raises(ValueError, match=r"argon2id|Hearth"):
        Argon2Parameters(**kwargs)


def test_phc_string_carries_its_parameters(cheap: Argon2Parameters) -> None:
    phc = hash_phc(b"secret", b"0123456789abcdef", cheap)
    match = PHC.fullmatch(phc)
    assert match is not None
    assert match.groups() == ("64", "1", "1")
    assert parameters_of(phc) == cheap


def test_phc_is_standard_argon2_readable_by_argon2_cffi(cheap: Argon2Parameters) -> None:
    phc = hash_phc(b"secret", b"0123456789abcdef", cheap)
    assert argon2.PasswordHasher().verify(phc, b"secret")


def test_salt_must_match_parameters(cheap: Argon2Parameters) -> None:
    with pytest.raises(ValueError, match="salt"):
        hash_phc(b"secret", b"short", cheap)


def test_verify_phc(cheap: Argon2Parameters) -> None:
    phc = hash_phc(b"secret", b"0123456789abcdef", cheap)
    assert verify_phc(phc, b"secret")
    assert not verify_phc(phc, b"Secret")
    assert not verify_phc(phc, b"secret ")
    assert not verify_phc("$argon2id$v=19$m=64,t=1,p=1$bad", b"secret")
    assert not verify_phc("$argon2id$v=19$m=64,t=1,p=1$\u00e9$x", b"secret")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        "$argon2i$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=16$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=19$m=64,t=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=19$m=64,t=1,p=1$MDEy$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=19$m=1,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_parameters_of_refuses_anything_but_argon2id_v19(text: str) -> None:
    assert parameters_of(text) is None
