"""The synthetic population the search and access benchmarks load: generated, never real data.

Each generator draws from the caller's seeded ``random.Random`` in a fixed order, so one seed
always gives the same NDJSON.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

LOINC = "http://loinc.org"
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "bo", "da", "fe", "gu", "ha"]


def families(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct made-up family names."""
    out: set[str] = set()
    while len(out) < count:
        out.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4))).capitalize())
    return sorted(out)


def patient(
    i: int, rng: random.Random, names: Sequence[str], *, mrn_system: str | None = None
) -> dict[str, Any]:
    """Patient ``p{i}``: a family name from ``names``, a given name, gender and birth date;
    with ``mrn_system``, an MRN identifier ``MRN{i:08d}`` too."""
    resource: dict[str, Any] = {"resourceType": "Patient", "id": f"p{i}"}
    if mrn_system is not None:
        resource["identifier"] = [{"system": mrn_system, "value": f"MRN{i:08d}"}]
    resource["name"] = [{"family": rng.choice(names), "given": [rng.choice(SYLLABLES).upper()]}]
    resource["gender"] = rng.choice(["male", "female"])
    resource["birthDate"] = (
        f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    )
    return resource


def observation(
    i: int, per_patient: int, rng: random.Random, codes: Sequence[str]
) -> dict[str, Any]:
    """Observation ``o{i}`` of patient ``p{i // per_patient}``: a LOINC code from ``codes``, a day
    in 2020-2024 and a value."""
    day = rng.randrange(0, 5 * 365)
    return {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": codes[i % len(codes)]}]},
        "subject": {"reference": f"Patient/p{i // per_patient}"},
        "effectiveDateTime": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_577_836_800 + day * 86_400)
        ),
        "valueQuantity": {
            "value": round(rng.uniform(40, 200), 1),
            "system": "http://unitsofmeasure.org",
            "code": "1",
        },
    }
