"""Which break-the-glass grant a request acts under: one function for the header and the token
claim (hearth.security.breakglass)."""

from __future__ import annotations

import pytest

from hearth.domain import HearthError, Principal, PrincipalKind, errors
from hearth.security import BREAK_GLASS_ATTRIBUTE
from hearth.security.breakglass import invoking

GRANT = "btg_" + "a" * 24
OTHER = "btg_" + "b" * 24
DOC = Principal(subject="u1", kind=PrincipalKind.USER, roles=frozenset({"physician"}))


def refused(principal: Principal, grant_id: str) -> None:
    with pytest.raises(HearthError) as error:
        invoking(principal, grant_id)
    assert error.value.code is errors.BREAK_GLASS_NOT_ACTIVE


def test_no_grant_leaves_the_principal_as_it_is() -> None:
    assert invoking(DOC, None) is DOC


def test_a_grant_becomes_the_attribute_the_gate_checks() -> None:
    assert invoking(DOC, GRANT).attributes[BREAK_GLASS_ATTRIBUTE] == GRANT


@pytest.mark.parametrize("bad", ["", "x", "btg_", GRANT.upper(), GRANT + "a", "btg_" + "1" * 24])
def test_a_malformed_id_is_refused(bad: str) -> None:
    refused(DOC, bad)


def test_the_header_may_repeat_the_tokens_grant_but_never_name_another() -> None:
    from_token = invoking(DOC, GRANT)
    assert invoking(from_token, GRANT) == from_token
    refused(from_token, OTHER)
