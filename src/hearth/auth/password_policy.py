"""What a new or changed password must satisfy (NIST SP 800-63B-4 sec. 3.1.1.2).

The rules, each with its requirement:

- at least 15 characters for an account that signs in with the password alone, at least 8 when
  the password is one factor of two (NIST-PW-01); characters are code points of the NFKC form
  (NIST-PW-03);
- at most 256 characters (NIST-PW-02 asks that at least 64 be allowed). argon2id's own cost does
  not grow with the password, which only enters its first BLAKE2b block; the bound caps the work
  done before hashing (NFKC, folding, the context-word variants) and the size of what a sign-in
  form has to carry, while leaving room for a passphrase of some forty words;
- any printable Unicode: control characters, lone surrogates and unassigned code points are the
  only characters refused (NIST-PW-03);
- not in the blocklist, nor a repeated or sequential pattern (NIST-PW-08), compared whole;
- not a context word (the user name, its parts, "hearth") nor an obvious variant of one: the
  word with digits or symbols around it, repeated, reversed, or in simple letter-for-digit
  substitution (NIST-PW-08 "context-specific words, such as the name of the service, the
  username, and derivatives thereof");
- no composition rules (NIST-PW-04) and no expiry (NIST-PW-05): there is deliberately no rule
  for either.

Each refusal raises a :class:`~hearth.domain.errors.HearthError` whose code and message say what
was wrong and what to do (NIST-PW-08 "SHALL provide the reason"). Messages never repeat the
password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from hearth.auth.blocklist import Blocklist, is_trivial_pattern, shipped_blocklist
from hearth.auth.normalise import MAX_INPUT_CHARACTERS, fold, has_forbidden_character, normalise
from hearth.domain.errors import (
    PASSWORD_BAD_CHARACTER,
    PASSWORD_BLOCKLISTED,
    PASSWORD_CONTEXT_WORD,
    PASSWORD_TOO_LONG,
    PASSWORD_TOO_SHORT,
    HearthError,
)

__all__ = [
    "MAX_LENGTH",
    "MIN_LENGTH_SINGLE_FACTOR",
    "MIN_LENGTH_WITH_SECOND_FACTOR",
    "PasswordPolicy",
]

MIN_LENGTH_SINGLE_FACTOR = 15
MIN_LENGTH_WITH_SECOND_FACTOR = 8
MAX_LENGTH = 256

#: Context words shorter than this are ignored: a two-letter user name would otherwise refuse
#: every password that starts or ends with those letters and some digits.
_MIN_CONTEXT_WORD = 3
_SEPARATORS = re.compile(r"[^\w]+|_+")
#: Common letter-for-digit substitutions ("h34rth"), applied to the core of a password before it
#: is compared with the context words.
_DELEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a"})


def _core(folded: str) -> str:
    """``folded`` without the non-letters around it: ``"!!hearth2024"`` gives ``"hearth"``."""
    start, end = 0, len(folded)
    while start < end and not folded[start].isalpha():
        start += 1
    while end > start and not folded[end - 1].isalpha():
        end -= 1
    return folded[start:end]


def _context_variants(words: Iterable[str]) -> frozenset[str]:
    """Each context word folded, its core, its parts (``mary.jones`` gives ``mary``, ``jones``)
    and its parts joined (``maryjones``)."""
    variants: set[str] = set()
    for word in words:
        folded = fold(word)
        parts = [p for p in _SEPARATORS.split(folded) if p]
        for candidate in (folded, _core(folded), "".join(parts), *parts):
            if len(candidate) >= _MIN_CONTEXT_WORD:
                variants.add(candidate)
    return frozenset(variants)


def _is_context_variant(folded: str, variants: frozenset[str]) -> bool:
    if folded in variants:
        return True
    core = _core(folded)
    for candidate in {core, core.translate(_DELEET)}:
        if not candidate:
            continue
        if candidate in variants or candidate[::-1] in variants:
            return True
        for word in variants:
            repeats, rest = divmod(len(candidate), len(word))
            if repeats >= 2 and not rest and candidate == word * repeats:
                return True
    return False


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """The rules of the module docstring, with NIST's numbers as defaults.

    The numbers may be made stricter, never looser: a policy below NIST-PW-01/02 fails at
    construction (fail closed on a bad setting). ``context_words`` always include
    ``base_context_words`` (the service's own names; a deployment may add the clinic's).
    ``blocklist`` is the shipped list, read on first use.
    """

    min_length_single_factor: int = MIN_LENGTH_SINGLE_FACTOR
    min_length_with_second_factor: int = MIN_LENGTH_WITH_SECOND_FACTOR
    max_length: int = MAX_LENGTH
    base_context_words: tuple[str, ...] = ("hearth", "hearth-fhir")
    blocklist: Blocklist | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.min_length_single_factor < MIN_LENGTH_SINGLE_FACTOR:
            raise ValueError("NIST-PW-01: single-factor passwords need at least 15 characters")
        if self.min_length_with_second_factor < MIN_LENGTH_WITH_SECOND_FACTOR:
            raise ValueError("NIST-PW-01: passwords need at least 8 characters")
        if not 64 <= self.max_length <= MAX_INPUT_CHARACTERS:
            raise ValueError("NIST-PW-02: allow at least 64 characters (and at most 1024)")
        if self.max_length < self.min_length_single_factor:
            raise ValueError("the maximum length is below the minimum")

    def check(
        self, password: str, *, context_words: Iterable[str], has_second_factor: bool
    ) -> None:
        """Return if ``password`` may be chosen; raise a ``HearthError`` saying why not.

        ``context_words`` are the words specific to this user (user name, display name, e-mail
        address); ``has_second_factor`` is whether the account will also need a second factor
        at sign-in, which lowers the minimum length from 15 to 8 (NIST-PW-01).
        """
        if len(password) > MAX_INPUT_CHARACTERS:
            raise HearthError(PASSWORD_TOO_LONG, self._too_long())
        normalised = normalise(password)
        if has_forbidden_character(normalised):
            raise HearthError(PASSWORD_BAD_CHARACTER)
        if len(normalised) > self.max_length:
            raise HearthError(PASSWORD_TOO_LONG, self._too_long())
        minimum = (
            self.min_length_with_second_factor
            if has_second_factor
            else self.min_length_single_factor
        )
        if len(normalised) < minimum:
            raise HearthError(PASSWORD_TOO_SHORT, self._too_short(minimum, has_second_factor))
        folded = normalised.casefold()
        variants = _context_variants((*self.base_context_words, *context_words))
        if _is_context_variant(folded, variants):
            raise HearthError(
                PASSWORD_CONTEXT_WORD,
                "Choose another password: it is your user name, the service name or one of "
                "them with digits or symbols added, repeated or reversed.",
            )
        if is_trivial_pattern(folded):
            raise HearthError(
                PASSWORD_BLOCKLISTED,
                "Choose another password: it is a repeated or sequential pattern.",
            )
        blocklist = self.blocklist if self.blocklist is not None else shipped_blocklist()
        if blocklist.contains_folded(folded):
            raise HearthError(
                PASSWORD_BLOCKLISTED,
                "Choose another password: it is in Hearth's list of common and breached "
                "passwords, so attackers try it early.",
            )

    def _too_long(self) -> str:
        return f"Choose a shorter password: at most {self.max_length} characters."

    def _too_short(self, minimum: int, has_second_factor: bool) -> str:
        if has_second_factor:
            return f"Choose a longer password: at least {minimum} characters."
        return (
            f"Choose a longer password: at least {minimum} characters for an account that "
            f"signs in with a password alone (or {self.min_length_with_second_factor} once a "
            "second factor is set up). A few unrelated words make a good one."
        )
