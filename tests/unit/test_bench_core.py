"""``bench core``'s varied create: every request a valid Patient, with keys of its own."""

from __future__ import annotations

import datetime
import json
import random
import re

from bench.core import VARIED_DRAWS, VARIED_PATIENT, lua_draw, varied_lua

from hearth.fhir.validation import validate_resource
from hearth.storage.index_workers import extract

PLACEHOLDER = re.compile(r"@([A-Za-z]+)@")


def _draw(rng: random.Random, kind: str, low: int, high: int) -> str:
    """One draw as ``VARIED_DRAWS`` describes it (and the wrk script makes it)."""
    if kind == "letters":
        n = rng.randint(low, high)
        return chr(rng.randint(65, 90)) + "".join(chr(rng.randint(97, 122)) for _ in range(n - 1))
    if kind == "digits":
        return "".join(str(rng.randint(0, 9)) for _ in range(low))
    assert kind == "number"
    return str(rng.randint(low, high))


def _filled(rng: random.Random, extreme: str | None = None) -> dict[str, object]:
    """The template filled with random draws, or with every draw at its ``extreme``."""

    def fill(match: re.Match[str]) -> str:
        kind, low, high = VARIED_DRAWS[match.group(1)]
        if extreme is not None:
            low = high = low if extreme == "low" else high
        return _draw(rng, kind, low, high)

    filled: dict[str, object] = json.loads(PLACEHOLDER.sub(fill, json.dumps(VARIED_PATIENT)))
    return filled


def test_the_script_draws_every_placeholder_as_described() -> None:
    assert set(PLACEHOLDER.findall(json.dumps(VARIED_PATIENT))) == set(VARIED_DRAWS)
    script = varied_lua("token")
    for name, draw in VARIED_DRAWS.items():
        assert f"{name} = function() return {lua_draw(*draw)} end," in script


def test_every_draw_is_a_valid_patient_and_a_real_date() -> None:
    rng = random.Random(7)
    patients = [_filled(rng) for _ in range(200)]
    patients += [_filled(rng, "low"), _filled(rng, "high")]
    for patient in patients:
        validate_resource(patient)
        datetime.date.fromisoformat(str(patient["birthDate"]))


def test_two_draws_differ_in_the_drawn_values_keys() -> None:
    rng = random.Random(11)
    first, second = (extract("Patient", _filled(rng))[0] for _ in range(2))
    differing = {domain.rsplit("/", 1)[1] for domain, _key in first ^ second}
    assert {"family", "given", "identifier", "birthdate", "address"} <= differing
