"""The 06xx block of stable error codes (authentication)."""

from __future__ import annotations

from hearth.domain import errors

AUTH_CODES = [c for c in errors.ALL_CODES if c.code.startswith("HRT-06")]


def test_block_is_populated_and_unique() -> None:
    codes = [c.code for c in AUTH_CODES]
    assert len(codes) >= 13
    assert len(set(codes)) == len(codes)
    assert all(errors.by_code(c) is next(e for e in AUTH_CODES if e.code == c) for c in codes)


def test_sign_in_failures_are_401_and_policy_refusals_422() -> None:
    for code in AUTH_CODES:
        if code.issue == "login":
            assert code.status == 401
        elif code.issue == "business-rule":
            assert code.status == 422


def test_titles_say_what_to_do() -> None:
    for code in AUTH_CODES:
        assert code.title.endswith(".")
        assert any(
            verb in code.title
            for verb in ("Choose", "Remove", "Check", "Enter", "Wait", "Reset", "Try")
        ), code
