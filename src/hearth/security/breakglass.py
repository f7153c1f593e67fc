"""Which break-the-glass grant a request acts under (issue 5 item 6; HIPAA 164.312(a)(2)(ii)).

A request names a grant with the ``X-Hearth-Break-Glass`` header, or carries one in its OAuth
access token's ``hearth_break_glass`` claim. Both become the same principal attribute here, in
one function, and the repository gate checks that attribute's grant on every request (the
user's own, not ended, not expired; ``HRT-1105`` otherwise). Pure: nothing is looked up.
"""

from __future__ import annotations

import re
from dataclasses import replace

from hearth.domain import HearthError, Principal, errors
from hearth.security.access import BREAK_GLASS_ATTRIBUTE

__all__ = ["GRANT_ID", "invoking"]

#: What a grant id looks like: ``btg_`` and 24 base32 characters (120 random bits).
GRANT_ID = re.compile(r"btg_[a-z2-7]{24}")


def invoking(principal: Principal, grant_id: str | None) -> Principal:
    """``principal`` invoking the grant ``grant_id`` for this request (None: unchanged).

    The one way a request comes to act under a grant, whether the grant is named by the
    header or by the token's claim (the token service calls this when it verifies the token;
    the FHIR adapter calls it again with the header). A malformed id, or a header naming
    another grant than the token carries, is refused. The gate then checks the grant itself
    and refuses the request if it is not the principal's own and active: a stale grant never
    silently falls back to normal access."""
    if grant_id is None:
        return principal
    held = principal.attributes.get(BREAK_GLASS_ATTRIBUTE)
    if not GRANT_ID.fullmatch(grant_id) or (held is not None and held != grant_id):
        raise HearthError(errors.BREAK_GLASS_NOT_ACTIVE)
    return replace(principal, attributes={**principal.attributes, BREAK_GLASS_ATTRIBUTE: grant_id})
