from __future__ import annotations

import re

from hearth.domain import HearthError, Secret, errors


def test_error_codes_are_unique_and_well_formed() -> None:
    codes = [c.code for c in errors.ALL_CODES]
    assert len(codes) == len(set(codes))
    for code in errors.ALL_CODES:
        assert re.fullmatch(r"HRT-\d{4}", code.code)
        assert 400 <= code.status <= 599
        assert code.title.endswith(".")
        assert errors.by_code(code.code) is code


def test_error_carries_detail_status_and_headers() -> None:
    error = HearthError(errors.UNAUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
    assert error.status == 401
    assert error.detail == errors.UNAUTHENTICATED.title
    assert "HRT-0401" in str(error)


def test_secret_never_prints() -> None:
    secret = Secret("hunter2-hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret!r} {secret}"
    assert secret.reveal() == "hunter2-hunter2"
    assert secret == Secret("hunter2-hunter2")
    assert not Secret("")
