"""Property: search returns exactly what a brute-force filter over the decrypted resources does.

Random patients and observations (names with accents, dates at every precision, quantities over
several magnitudes) are written through the gate; random searches are then run both through the
index and by a plain reimplementation of R4 search.html over the resources read back. Each
example writes under its own tag, so examples do not see each other's data.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.fhir.search import Context, parse_search
from tests.support import Instance, admin

pytestmark = pytest.mark.engines

FAMILIES = ["Ng", "Nguyen", "Núñez", "Noor", "Åberg", "Abe", "O'Neil", "Oneida", "Smith-Jones"]
UCUM = "http://unitsofmeasure.org"


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join(
        "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split()
    )


@st.composite
def date_texts(draw: st.DrawFn) -> str:
    day = draw(
        st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2030, 12, 31).date())
    )
    precision = draw(st.sampled_from(["y", "m", "d", "t"]))
    if precision == "y":
        return f"{day.year:04d}"
    if precision == "m":
        return f"{day.year:04d}-{day.month:02d}"
    if precision == "d":
        return day.isoformat()
    hour = draw(st.integers(0, 23))
    return f"{day.isoformat()}T{hour:02d}:{draw(st.integers(0, 59)):02d}:00Z"


def span(text: str) -> tuple[datetime, datetime]:
    """The instant range a date covers, end exclusive (independent of Hearth's code)."""
    if len(text) == 4:
        start = datetime(int(text), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    if len(text) == 7:
        y, m = int(text[:4]), int(text[5:7])
        start = datetime(y, m, 1, tzinfo=UTC)
        return start, datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
    if len(text) == 10:
        start = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return start, start + timedelta(minutes=1)


def date_matches(prefix: str, value: str, query: str) -> bool:
    vlo, vhi = span(value)
    qlo, qhi = span(query)
    eq = qlo <= vlo and vhi <= qhi
    return {
        "eq": eq,
        "ne": not eq,
        "gt": vhi > qhi,
        "lt": vlo < qlo,
        "ge": vhi > qhi or eq,
        "le": vlo < qlo or eq,
        "sa": vlo >= qhi,
        "eb": vhi <= qlo,
    }[prefix]


def number_matches(prefix: str, value: Decimal, query: str) -> bool:
    q = Decimal(query)
    exponent = q.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    inside = q - half <= value < q + half
    return {
        "eq": inside,
        "ne": not inside,
        "gt": value > q,
        "lt": value < q,
        "ge": value >= q,
        "le": value <= q,
    }[prefix]


@st.composite
def patients(draw: st.DrawFn) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if draw(st.booleans()):
        patient["name"] = [{"family": draw(st.sampled_from(FAMILIES))}]
    if draw(st.booleans()):
        patient["birthDate"] = draw(date_texts())
    patient["gender"] = draw(st.sampled_from(["male", "female", "other", "unknown"]))
    return patient


@st.composite
def observations(draw: st.DrawFn) -> dict[str, Any]:
    value = draw(st.decimals(min_value=Decimal("-1000"), max_value=Decimal("100000"), places=2))
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": draw(st.sampled_from("ABC"))}]},
        "effectiveDateTime": draw(date_texts()),
        "valueQuantity": {"value": float(value), "system": UCUM, "code": "g"},
    }


@st.composite
def patient_queries(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(["family", "birthdate", "gender", "family:exact", "contains"]))
    if kind == "family":
        family = draw(st.sampled_from(FAMILIES))
        return "family", family[: draw(st.integers(1, len(family)))].upper()
    if kind == "family:exact":
        return "family:exact", draw(st.sampled_from(FAMILIES))
    if kind == "contains":
        family = fold(draw(st.sampled_from(FAMILIES)))
        start = draw(st.integers(0, len(family) - 1))
        return "family:contains", family[start : start + draw(st.integers(1, 4))]
    if kind == "gender":
        return "gender", draw(st.sampled_from(["male", "female", "other"]))
    prefix = draw(st.sampled_from(["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"]))
    return "birthdate", prefix + draw(date_texts())


def brute_patient(resource: dict[str, Any], name: str, value: str) -> bool:
    families = [n["family"] for n in resource.get("name", [])]
    if name == "family":
        return any(fold(f).startswith(fold(value)) for f in families)
    if name == "family:exact":
        return value in families
    if name == "family:contains":
        return any(fold(value) in fold(f) for f in families)
    if name == "gender":
        return bool(resource.get("gender") == value)
    birth = resource.get("birthDate")
    return birth is not None and date_matches(value[:2], birth, value[2:])


@st.composite
def observation_queries(draw: st.DrawFn) -> tuple[str, str]:
    if draw(st.booleans()):
        prefix = draw(st.sampled_from(["eq", "ne", "gt", "lt", "ge", "le"]))
        number = draw(
            st.decimals(min_value=Decimal("-1000"), max_value=Decimal("100000"), places=1)
        )
        return "value-quantity", f"{prefix}{number}"
    prefix = draw(st.sampled_from(["eq", "gt", "lt", "ge", "le", "sa", "eb"]))
    return "date", prefix + draw(date_texts())


def brute_observation(resource: dict[str, Any], name: str, value: str) -> bool:
    if name == "value-quantity":
        number = Decimal(str(resource["valueQuantity"]["value"]))
        return number_matches(value[:2], number, value[2:])
    return date_matches(value[:2], resource["effectiveDateTime"], value[2:])


def _run(instance: Instance, res_type: str, tag: str, name: str, value: str) -> set[str]:
    repo = instance.container.repository(admin())
    request = parse_search(
        res_type,
        [("_tag", f"urn:prop|{tag}"), (name, value)],
        ctx=Context(now_us=0),
        default_count=1000,
        max_count=1000,
        strict=True,
    )
    return {s.res_id for s in repo.search(request).matches}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.lists(patients(), min_size=1, max_size=12),
    queries=st.lists(patient_queries(), min_size=1, max_size=6),
)
def test_patient_search_equals_brute_force(
    instance: Instance, data: list[dict[str, Any]], queries: list[tuple[str, str]]
) -> None:
    tag = uuid.uuid4().hex
    repo = instance.container.repository(admin())
    stored = []
    for drawn in data:
        tagged = {**drawn, "meta": {"tag": [{"system": "urn:prop", "code": tag}]}}
        stored.append(repo.create(tagged))
    for name, value in queries:
        expected = {
            s.res_id for s in stored if s.resource and brute_patient(s.resource, name, value)
        }
        assert _run(instance, "Patient", tag, name, value) == expected, (name, value)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.lists(observations(), min_size=1, max_size=12),
    queries=st.lists(observation_queries(), min_size=1, max_size=6),
)
def test_observation_search_equals_brute_force(
    instance: Instance, data: list[dict[str, Any]], queries: list[tuple[str, str]]
) -> None:
    tag = uuid.uuid4().hex
    repo = instance.container.repository(admin())
    stored = []
    for drawn in data:
        tagged = {**drawn, "meta": {"tag": [{"system": "urn:prop", "code": tag}]}}
        stored.append(repo.create(tagged))
    for name, value in queries:
        expected = {
            s.res_id for s in stored if s.resource and brute_observation(s.resource, name, value)
        }
        assert _run(instance, "Observation", tag, name, value) == expected, (name, value)
