from __future__ import annotations

import pytest

from hearth.auth.usernames import canonical_username, check_username
from hearth.domain import HearthError


def test_names_compare_in_one_canonical_form() -> None:
    assert canonical_username("  Alice ") == "alice"
    assert canonical_username("\uff21\uff2c\uff29\uff23\uff25") == "alice"  # full-width, NFKC
    assert check_username("Dr.Who@clinic") == "dr.who@clinic"


@pytest.mark.parametrize("bad", ["a", "-alice", "al ice", "alice!", "a" * 65, "", "名前"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(HearthError) as refused:
        check_username(bad)
    assert refused.value.code.code == "HRT-0714"
