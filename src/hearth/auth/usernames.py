"""User names: what people type to sign in (issue 4 item 1).

A user name is compared in one canonical form (NFKC, lower case, surrounding spaces removed), so
``Alice`` and ``alice`` are the same account and no two accounts can look alike. The name is not
the user's identity: every account also has a random, immutable user id, which audit entries
carry (HIPAA 164.312(a)(2)(i)).
"""

from __future__ import annotations

import re

from hearth.auth.normalise import normalise
from hearth.domain import HearthError, errors

__all__ = ["USERNAME_PATTERN", "canonical_username", "check_username"]

USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._@-]{1,63}")


def canonical_username(typed: str) -> str:
    """The canonical form of a typed name (it may not be a valid name: compare, don't trust)."""
    return normalise(typed[:256]).strip().lower()


def check_username(typed: str) -> str:
    """The canonical form of a new user name; raise ``BAD_USERNAME`` if it is not allowed."""
    name = canonical_username(typed)
    if not USERNAME_PATTERN.fullmatch(name):
        raise HearthError(errors.BAD_USERNAME)
    return name
