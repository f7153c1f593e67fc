"""The password policy: every rule and every refusal (NIST SP 800-63B-4 sec. 3.1.1.2)."""

from __future__ import annotations

import pytest

from hearth.auth.blocklist import Blocklist, encode_blocklist
from hearth.auth.passwords import PasswordPolicy
from hearth.domain.errors import (
    PASSWORD_BAD_CHARACTER,
    PASSWORD_BLOCKLISTED,
    PASSWORD_CONTEXT_WORD,
    PASSWORD_TOO_LONG,
    PASSWORD_TOO_SHORT,
    ErrorCode,
    HearthError,
)

POLICY = PasswordPolicy()
# Passphrases that are in no list: random words chosen for these tests.
GOOD_15 = "tulip orbit gxq"
GOOD_8 = "vqz orbt"


def refused(password: str, code: ErrorCode, **kwargs: object) -> HearthError:
    arguments: dict[str, object] = {"context_words": (), "has_second_factor": False}
    arguments.update(kwargs)
    with pytest.raises(HearthError) as excinfo:
        POLICY.check(password, **arguments)  # type: ignore[arg-type]
    assert excinfo.value.code is code
    # The reason is given (NIST-PW-08) and the password is never repeated in it.
    assert excinfo.value.detail
    assert password not in excinfo.value.detail
    return excinfo.value


def accepted(password: str, *, context_words: tuple[str, ...] = (), mfa: bool = False) -> None:
    POLICY.check(password, context_words=context_words, has_second_factor=mfa)


# -- length (NIST-PW-01, -02) -------------------------------------------------------------


def test_fifteen_characters_for_a_password_only_account() -> None:
    assert len(GOOD_15) == 15
    accepted(GOOD_15)
    error = refused(GOOD_15[:14], PASSWORD_TOO_SHORT)
    assert "15" in error.detail
    assert "8" in error.detail


def test_eight_characters_with_a_second_factor() -> None:
    assert len(GOOD_8) == 8
    accepted(GOOD_8, mfa=True)
    refused(GOOD_8, PASSWORD_TOO_SHORT)
    error = refused(GOOD_8[:7], PASSWORD_TOO_SHORT, has_second_factor=True)
    assert "8" in error.detail


def test_length_counts_code_points_of_the_nfkc_form() -> None:
    # Five "ffi" ligatures are five code points but fifteen after NFKC.
    accepted("\ufb03" * 5 + "\U0001f525z", mfa=True)
    # Combining accents compose: 16 code points typed, 8 after NFKC.
    refused("e\u0301" * 7 + "x", PASSWORD_TOO_SHORT)


def test_at_least_64_and_up_to_256_characters() -> None:
    words = "maple quartz river violet ember walnut copper meadow "
    sixty_four = (words * 2)[:64]
    accepted(sixty_four)
    long_one = (words * 6)[:256]
    accepted(long_one)
    error = refused(long_one + "x", PASSWORD_TOO_LONG)
    assert "256" in error.detail
    refused("y" * 5000, PASSWORD_TOO_LONG)


# -- characters (NIST-PW-03, -04) ---------------------------------------------------------


@pytest.mark.parametrize("char", ["\t", "\n", "\r", "\x00", "\x1b", "\ud800"])
def test_control_characters_are_refused(char: str) -> None:
    refused(f"tulip orbit{char}gxq zz", PASSWORD_BAD_CHARACTER)


@pytest.mark.parametrize(
    "password",
    [
        "all lowercase words are fine here",  # no composition rules (NIST-PW-04)
        "\u00e9t\u00e9 br\u00fblant \u00e0 mont\u00e9lima",
        "\u4e0a\u5c71\u6253\u8001\u864e\u4e0b\u6d77\u6349\u86df\u9f99\u6c34\u706b\u65e0\u60c5\u5929",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 family picnic in june",
        "  spaces  around  and  inside  ",
        "!@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    ],
)
def test_any_printable_unicode_is_accepted(password: str) -> None:
    accepted(password)


# -- blocklist (NIST-PW-08) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["password1234", "PASSWORD1234", "Password1234", "\uff50assword1234", "iloveyou123"]
)
def test_blocklisted_passwords_are_refused_whatever_their_case(password: str) -> None:
    error = refused(password, PASSWORD_BLOCKLISTED, has_second_factor=True)
    assert "list" in error.detail


def test_blocklist_compares_the_whole_password_not_substrings() -> None:
    accepted("password1234 is what tulip orbit gxq said", mfa=True)


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaaaaaaaaaa",
        "abcabcabcabcabcabc",
        "abababababababab",
        "abcdefghijklmnop",
        "zyxwvutsrqponmlkj",
        "1234567890",  # 10 digits: also a straight run
        "12341234",
    ],
)
def test_repeated_and_sequential_patterns_are_refused(password: str) -> None:
    refused(password, PASSWORD_BLOCKLISTED, has_second_factor=True)


def test_an_injected_blocklist_is_used() -> None:
    policy = PasswordPolicy(blocklist=Blocklist(encode_blocklist(["tulip orbit gxq"])))
    with pytest.raises(HearthError) as excinfo:
        policy.check("Tulip Orbit GXQ", context_words=(), has_second_factor=False)
    assert excinfo.value.code is PASSWORD_BLOCKLISTED
    policy.check("tulip orbit gxz", context_words=(), has_second_factor=False)


def test_random_passphrase_is_accepted() -> None:
    accepted("Kq7#mZ2vLp9!xR4wTn8s")


# -- context words (NIST-PW-08) -----------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "hearth 2024",
        "HEARTH2024",
        "hearth!!!!",
        "2024hearth",
        "!!Hearth-2024!!",
        "hearthhearth",
        "htraeh12",
        "h34rth2025",
        "fhir12345678",
        "hearth-fhir",
    ],
)
def test_service_name_and_obvious_variants_are_refused(password: str) -> None:
    refused(password, PASSWORD_CONTEXT_WORD, has_second_factor=True)


@pytest.mark.parametrize(
    "password",
    [
        "mary.jones",
        "MaryJones1984",
        "maryjones!!",
        "JONES12345",
        "mary@example.org",
        "marymarymary",
        "senojyram",
    ],
)
def test_user_name_its_parts_and_variants_are_refused(password: str) -> None:
    error = refused(
        password,
        PASSWORD_CONTEXT_WORD,
        context_words=("mary.jones", "mary@example.org"),
        has_second_factor=True,
    )
    assert "user name" in error.detail


def test_context_words_are_compared_whole_not_as_substrings() -> None:
    accepted("mary had a little lamb in jones street", context_words=("mary.jones",))
    accepted("the hearth fire burned all night long")


def test_very_short_context_words_are_ignored() -> None:
    accepted("al tulip orbit gxq 77", context_words=("al",))


def test_policy_refuses_settings_looser_than_nist() -> None:
    with pytest.raises(ValueError, match="15"):
        PasswordPolicy(min_length_single_factor=12)
    with pytest.raises(ValueError, match="8"):
        PasswordPolicy(min_length_with_second_factor=6)
    with pytest.raises(ValueError, match="64"):
        PasswordPolicy(max_length=32)
    with pytest.raises(ValueError, match="64"):
        PasswordPolicy(max_length=4096)
    with pytest.raises(ValueError, match="below the minimum"):
        PasswordPolicy(min_length_single_factor=100, max_length=64)


def test_stricter_settings_are_honoured() -> None:
    strict = PasswordPolicy(min_length_single_factor=20, base_context_words=("hearth", "acme"))
    with pytest.raises(HearthError) as excinfo:
        strict.check(GOOD_15, context_words=(), has_second_factor=False)
    assert "20" in excinfo.value.detail
    with pytest.raises(HearthError) as excinfo:
        strict.check("acme2024!", context_words=(), has_second_factor=True)
    assert excinfo.value.code is PASSWORD_CONTEXT_WORD
