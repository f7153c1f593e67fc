"""Valid-looking resources with edge-of-range values go all the way through the write path
(validation, sealing, indexing, audit) and come back, or are refused with a HearthError."""

from __future__ import annotations

import contextlib
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.domain import HearthError
from hearth.services.search import SearchQuery
from tests.support import Instance, admin

EXAMPLES = int(os.environ.get("HEARTH_FUZZ_EXAMPLES", "60"))

years = st.sampled_from(["0001", "0002", "1900", "1970", "2038", "9998", "9999"])
offsets = st.sampled_from(["Z", "+14:00", "-14:00", "+00:00", "-12:00", "+05:30"])


@st.composite
def date_times(draw: st.DrawFn) -> str:
    year = draw(years)
    shape = draw(st.integers(0, 4))
    if shape == 0:
        return year
    month = draw(st.sampled_from(["01", "02", "12"]))
    if shape == 1:
        return f"{year}-{month}"
    day = draw(st.sampled_from(["01", "28", "31" if month in ("01", "12") else "28"]))
    if shape == 2:
        return f"{year}-{month}-{day}"
    clock = draw(st.sampled_from(["00:00:00", "23:59:59", "12:30:00.5", "23:59:59.999999"]))
    return f"{year}-{month}-{day}T{clock}{draw(offsets)}"


names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20
).filter(lambda s: s.strip() == s and s != "")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    born=st.sampled_from(["0001-01-01", "1970-01-01", "9999-12-31", "2000-02-29"]),
    died=date_times(),
    family=names,
    since=date_times(),
)
def test_edge_values_store_index_and_read_back(
    sqlite_instance: Instance, born: str, died: str, family: str, since: str
) -> None:
    records = sqlite_instance.container.records(admin())
    patient = {
        "resourceType": "Patient",
        "name": [{"family": family}],
        "birthDate": born,
        "deceasedDateTime": died,
    }
    try:
        stored = records.create("Patient", patient)
    except HearthError:
        return  # refused cleanly (for example a dateTime FHIR does not allow)
    assert records.read("Patient", stored.res_id).resource == stored.resource
    search = sqlite_instance.container.search(admin())
    query = SearchQuery("Patient", [("death-date", f"le{since}"), ("family", family)])
    with contextlib.suppress(HearthError):
        search.search(query, base="http://127.0.0.1/fhir", url="http://127.0.0.1/fhir/Patient")
