"""Normalisation of memorised secrets (NIST SP 800-63B-4 sec. 3.1.1.2, NIST-PW-03).

A password is normalised with Unicode NFKC before it is measured, compared or hashed, so that the
same characters typed on two keyboards (a full-width digit, a ligature, a composed or decomposed
accent) give the same secret. Each code point of the normalised form counts as one character.

Comparisons against lists (the blocklist, context words) also ``casefold()`` the result; hashing
never does, because case is part of the secret.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "MAX_INPUT_CHARACTERS",
    "has_forbidden_character",
    "normalise",
    "fold",
]

#: A guard applied before any work is done on untrusted input: NFKC of a few kilobytes is cheap,
#: but nothing bounds a request body here, and the policy's maximum (256) is checked on the
#: normalised form. Four times the maximum leaves room for inputs that NFKC shortens (decomposed
#: accents) without letting a megabyte through.
MAX_INPUT_CHARACTERS = 1024

# Control characters (Cc: tab, newline, NUL, ...), lone surrogates (Cs) and unassigned code points
# (Cn) are refused. Everything else is accepted, including spaces, emoji, private-use characters
# and format characters such as the zero-width joiner that emoji sequences need (NIST-PW-03
# asks for "all printing characters" and Unicode). Unassigned code points are refused because
# their NFKC form may change when a later Unicode version assigns them, which would lock the
# user out.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Cn"})


def normalise(secret: str) -> str:
    """Return the NFKC form of ``secret`` (NIST-PW-03: "SHOULD apply NFKC or NFKD")."""
    return unicodedata.normalize("NFKC", secret)


def fold(secret: str) -> str:
    """The form used to compare a secret against lists: NFKC, then Unicode case folding."""
    return normalise(secret).casefold()


def has_forbidden_character(secret: str) -> bool:
    """Whether ``secret`` holds a control character, lone surrogate or unassigned code point."""
    return any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in secret)
