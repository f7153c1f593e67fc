"""NFKC normalisation and the characters a secret may hold (NIST-PW-03)."""

from __future__ import annotations

import pytest

from hearth.auth.normalise import fold, has_forbidden_character, normalise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\ufb01nance", "finance"),  # the "fi" ligature
        ("\uff50\uff41\uff53\uff53", "pass"),  # full-width letters
        ("e\u0301", "\u00e9"),  # decomposed accent composes
        ("\u00a0space", " space"),  # no-break space becomes a space
        ("plain text", "plain text"),
    ],
)
def test_normalise_is_nfkc(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


def test_fold_is_nfkc_then_casefold() -> None:
    assert fold("Stra\u00dfe") == "strasse"
    assert fold("\uff30ASSWORD") == "password"


@pytest.mark.parametrize("char", ["\t", "\n", "\x00", "\x7f", "\ud800", "\U000e0080"])
def test_control_surrogate_and_unassigned_are_forbidden(char: str) -> None:
    assert has_forbidden_character(f"abc{char}def")


@pytest.mark.parametrize(
    "text",
    [
        "correct horse battery staple",
        "\u00e9\u00e8\u00ea \u4e2d\u6587 \u0440\u0443\u0441",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # an emoji sequence with zero-width joiners
        "\ue000 private use",
    ],
)
def test_printable_unicode_is_allowed(text: str) -> None:
    assert not has_forbidden_character(text)
