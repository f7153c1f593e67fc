"""PINs for unlocking a locked session: rules, hashing and the five-tries value type."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from hearth.auth.argon2id import DEFAULT_PARAMETERS, Argon2Parameters
from hearth.auth.hashed_secret import StoredHash
from hearth.auth.pepper import PepperRing
from hearth.auth.pin import (
    COMMON_PINS,
    MAX_PIN_FAILURES,
    PinAttempts,
    PinHasher,
    PinPolicy,
    canonical_pin,
)
from hearth.domain.errors import PIN_FORMAT, PIN_GUESSABLE, PIN_INVALID, HearthError

POLICY = PinPolicy()


def refused(pin: str, **kwargs: Any) -> HearthError:
    with pytest.raises(HearthError) as excinfo:
        POLICY.check(pin, **kwargs)
    return excinfo.value


@pytest.mark.parametrize("pin", ["583920", "2749163", "9081726354", "3816" + "270594" + "381627"])
def test_ordinary_pins_are_accepted(pin: str) -> None:
    POLICY.check(pin)


@pytest.mark.parametrize(
    "pin", ["", "58392", "5839", "12345678901234567", "58392a", "583 920", "-583920", "\u0665" * 6]
)
def test_format_is_6_to_16_ascii_digits(pin: str) -> None:
    error = refused(pin)
    assert error.code is PIN_FORMAT
    assert "6 to 16" in error.detail


def test_full_width_digits_are_normalised() -> None:
    assert canonical_pin("\uff15\uff18\uff13\uff19\uff12\uff10") == "583920"
    POLICY.check("\uff15\uff18\uff13\uff19\uff12\uff10")


@pytest.mark.parametrize(
    "pin",
    [
        "000000",
        "999999",
        "123456",
        "654321",
        "234567",
        "890123",  # wraps around
        "098765",
        "135791",  # a constant step of two
        "121212",
        "123123",
        "12341234",
        "112233",
        "111222",
        "998877",
        "123321",  # palindrome
        "100001",
        "147258",  # keypad column
        "159753",  # keypad cross
        "696969",
        "1234567890123456",
    ],
)
def test_guessable_pins_are_refused(pin: str) -> None:
    assert refused(pin).code is PIN_GUESSABLE


def test_common_pins_are_all_digits() -> None:
    assert all(p.isdigit() and len(p) >= 6 for p in COMMON_PINS)


def test_context_numbers_are_refused() -> None:
    assert refused("471193", context_numbers=["4711"]).code is PIN_GUESSABLE
    assert refused("580341", context_numbers=["580341"]).code is PIN_GUESSABLE
    POLICY.check("580341", context_numbers=["472"])  # too short to matter unless whole


@pytest.mark.parametrize("pin", ["140385", "031485", "850314", "14031985", "19850314", "198572"])
def test_birth_date_forms_and_year_are_refused(pin: str) -> None:
    assert refused(pin, birth_date=date(1985, 3, 14)).code is PIN_GUESSABLE


def test_birth_date_does_not_refuse_unrelated_pins() -> None:
    POLICY.check("583920", birth_date=date(1985, 3, 14))


def test_policy_lengths_can_only_be_raised() -> None:
    with pytest.raises(ValueError, match="6 digits"):
        PinPolicy(min_digits=4)
    with pytest.raises(ValueError, match="6 digits"):
        PinPolicy(min_digits=10, max_digits=8)
    strict = PinPolicy(min_digits=8)
    with pytest.raises(HearthError) as excinfo:
        strict.check("583920")
    assert "8 to 16" in excinfo.value.detail


def test_hash_and_verify(cheap: Argon2Parameters, random: Any) -> None:
    hasher = PinHasher(cheap)
    stored = hasher.hash("583920", random=random)
    hasher.verify(stored, "583920")
    hasher.verify(stored, "\uff15\uff18\uff13\uff19\uff12\uff10")
    for wrong in ["583921", "58392", "5839200", "abcdef", "9" * 100]:
        with pytest.raises(HearthError) as excinfo:
            hasher.verify(stored, wrong)
        assert excinfo.value.code is PIN_INVALID
    with pytest.raises(HearthError) as excinfo:
        hasher.dummy_verify("583920")
    assert excinfo.value.code is PIN_INVALID


def test_default_pin_cost_and_pepper(random: Any) -> None:
    hasher = PinHasher(peppers=PepperRing({"k1": bytes(32)}, "k1"))
    stored = hasher.hash("583920", random=random)
    parsed = StoredHash.parse(stored)
    assert parsed.parameters == DEFAULT_PARAMETERS
    assert parsed.pepper_key_id == "k1"


def test_non_digit_pin_cannot_be_hashed(cheap: Argon2Parameters, random: Any) -> None:
    with pytest.raises(ValueError, match="policy"):
        PinHasher(cheap).hash("abcdef", random=random)


def test_five_wrong_pins_then_logout() -> None:
    attempts = PinAttempts()
    assert MAX_PIN_FAILURES == 5
    assert (attempts.remaining, attempts.must_logout) == (5, False)
    seen = []
    for _ in range(5):
        attempts = attempts.record_failure()
        seen.append((attempts.remaining, attempts.must_logout))
    assert seen == [(4, False), (3, False), (2, False), (1, False), (0, True)]
    assert attempts.record_failure().remaining == 0
    assert attempts.record_failure().must_logout


def test_attempts_are_immutable_values() -> None:
    first = PinAttempts()
    second = first.record_failure()
    assert first.failures == 0
    assert second.failures == 1
    assert second == PinAttempts(failures=1)
    with pytest.raises(AttributeError):
        first.failures = 3  # type: ignore[misc]


def test_attempt_limit_is_validated() -> None:
    assert PinAttempts(limit=3).record_failure().record_failure().record_failure().must_logout
    with pytest.raises(ValueError, match="at least 1"):
        PinAttempts(limit=0)
    with pytest.raises(ValueError, match="at least 1"):
        PinAttempts(failures=-1)
