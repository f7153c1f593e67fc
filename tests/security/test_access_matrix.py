"""The generated access matrix (issue 5 item 10): every role x every interaction x a patient in or
out of the role's reach x an unlabelled or very-restricted (``V``) resource, on every engine.

Interactions: read, vread, instance and type history, search, compartment search
(``Patient/{id}/Observation``), ``_revinclude`` (an Observation coming along with its Patient),
``$everything``, a batch entry, create, update, patch and delete.

Each case asserts the answer (allowed, 403, 404, or an empty search) against an oracle written
from the role definitions' intent (below, independent of the decision code), and that a refused
request never reached storage: no resource body was fetched or written (``CountingStore`` counts
the store calls that return or store bodies; the decision point's own index lookups are facts,
not disclosures). The clinic is built once per engine for the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hearth.domain import HearthError, errors
from hearth.fhir.search import Context, parse_search
from hearth.services.bundles import BundleService
from hearth.services.search import SearchService
from hearth.storage import RecordRepository, SearchBounds
from hearth.storage.sql.store import SqlStore
from tests.access_world import ROLES, World, build_world, observation
from tests.conftest import _server_database, requested_engines
from tests.support import admin, make_instance

pytestmark = [pytest.mark.engines, pytest.mark.xdist_group("access-matrix")]

INTERACTIONS = (
    "read",
    "vread",
    "history",
    "history-type",
    "search",
    "compartment",
    "revinclude",
    "everything",
    "batch",
    "create",
    "update",
    "patch",
    "delete",
)
WRITES = ("update", "patch", "delete")


@dataclass(frozen=True)
class Spec:
    """What a role should reach on Observations, stated from its purpose."""

    patients: str  # "linked" (care relationship), "all", "self", "none"
    letters: str  # SMART letters it holds on Observation
    sees_v: bool  # may it see a V (very restricted) resource
    vital_signs: bool = True  # does its Observation permission cover vital signs
    patient_letters: str = ""  # letters on Patient ($everything needs r and s)
    #: a de-identified view: it may not search by ``_id`` (what every search case here uses)
    deidentified: bool = False


ORACLE: dict[str, Spec] = {
    "physician": Spec("linked", "cruds", False, patient_letters="cruds"),
    "nurse": Spec("linked", "crus", False, patient_letters="rs"),
    "front-desk": Spec("all", "", False, patient_letters="crus"),
    "billing": Spec("all", "", False, patient_letters="rs"),
    "pharmacist": Spec("linked", "rs", False, vital_signs=False, patient_letters="rs"),
    "researcher": Spec("all", "s", False, patient_letters="s", deidentified=True),
    "privacy-officer": Spec("none", "", False),
    "auditor": Spec("none", "", False),
    "administrator": Spec("none", "", False),
    "patient": Spec("self", "rs", True, patient_letters="rs"),
    "backend-service": Spec("all", "", False),  # nothing without granted scopes
    "bootstrap-admin": Spec("all", "cruds", True, patient_letters="cruds"),
}
IN_SCOPE = {"linked": "careteam", "self": "careteam", "all": "careteam", "none": "careteam"}
OUT_OF_SCOPE = "stranger"
LETTER = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "history-type": "s",
    "search": "s",
    "compartment": "s",
    "batch": "r",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}


def reaches(spec: Spec, inside: bool, labelled: bool) -> bool:
    """Whether the role reaches the (vital-signs) Observation of that patient."""
    if spec.patients == "none":
        return False
    if not inside and spec.patients in ("linked", "self"):
        return False
    if labelled and not spec.sees_v:
        return False
    return spec.vital_signs


def expected(role: str, interaction: str, inside: bool, labelled: bool) -> str:
    """ "ok", "forbidden" (403), "hidden" (404), "empty" (a search with no match) or
    "deidentified" (403, a search a de-identified view may not run)."""
    spec = ORACLE[role]
    if spec.deidentified and interaction in ("search", "compartment", "revinclude", "history-type"):
        return "deidentified"  # refused (HRT-1112): by _id, in a compartment, or history
    reached = reaches(spec, inside, labelled)
    patient_reached = spec.patients == "all" or (spec.patients != "none" and inside)
    if interaction == "revinclude":
        # Patient?_id=...&_revinclude=Observation:subject: the Observation comes along only when
        # the role reaches the patient and may search it, and also reaches the Observation.
        if "s" not in spec.patient_letters:
            return "forbidden"
        if not patient_reached:
            return "empty"
        return "ok" if reached and "s" in spec.letters else "hidden"
    if interaction == "everything":
        if not {"r", "s"} <= set(spec.patient_letters):
            return "forbidden"
        if not patient_reached:
            return "hidden"
        return "ok" if reached and {"r", "s"} <= set(spec.letters) else "empty"
    if LETTER[interaction] not in spec.letters:
        return "forbidden"
    if interaction in ("search", "history-type", "compartment"):
        return "ok" if reached else "empty"
    if interaction == "create":
        return "ok" if reached else "forbidden"
    if interaction in WRITES:
        return "ok" if reached else "forbidden"
    return "ok" if reached else "hidden"


CASES = [
    (role, interaction, inside, labelled)
    for role in ROLES
    for interaction in INTERACTIONS
    for inside in (True, False)
    for labelled in (False, True)
]


class CountingStore(SqlStore):
    """The real store, counting the calls that fetch or store resource bodies."""

    def __init__(self, inner: SqlStore) -> None:
        super().__init__(inner.db)
        self.bodies = 0

    def current(self, *args: Any, **kwargs: Any) -> Any:
        self.bodies += 1
        return super().current(*args, **kwargs)

    def version(self, *args: Any, **kwargs: Any) -> Any:
        self.bodies += 1
        return super().version(*args, **kwargs)

    def versions(self, *args: Any, **kwargs: Any) -> Any:
        found = super().versions(*args, **kwargs)
        self.bodies += len(found)
        return found

    def history(self, *args: Any, **kwargs: Any) -> Any:
        self.bodies += 1
        return super().history(*args, **kwargs)

    def insert_version(self, *args: Any, **kwargs: Any) -> None:
        self.bodies += 1
        super().insert_version(*args, **kwargs)


@dataclass
class Clinic:
    world: World
    targets: dict[tuple[str, str, bool, bool], str]  # (role, write, inside, labelled) -> id


@pytest.fixture(scope="module", params=requested_engines())
def clinic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Clinic]:
    engine = str(request.param)
    home: Path = tmp_path_factory.mktemp(f"matrix-{engine}") / "home"
    databases = _server_database(engine) if engine != "sqlite" else iter([None])
    instance = make_instance(home, next(databases))
    try:
        world = build_world(instance.container)
        root = instance.container.repository(admin())
        targets: dict[tuple[str, str, bool, bool], str] = {}
        # A fresh Observation for every write case, so that cases never see each other's writes.
        with root.batch() as batch:
            for role in ROLES:
                for write in WRITES:
                    for inside in (True, False):
                        for labelled in (False, True):
                            patient = world.ids[
                                IN_SCOPE[ORACLE[role].patients] if inside else OUT_OF_SCOPE
                            ]
                            body = observation(patient, labels=("V",) if labelled else ())
                            targets[(role, write, inside, labelled)] = batch.create(body).res_id
        yield Clinic(world, targets)
    finally:
        instance.container.close()
        for _ in databases:
            pass


def counted_repository(world: World, role: str) -> tuple[RecordRepository, CountingStore]:
    container = world.container
    store = CountingStore(container.store)
    repo = RecordRepository(
        principal=world.principal(role),
        policy=container.policy,
        store=store,
        keyring=container.keyring,
        audit=container.audit,
        clock=container.clock,
        random=container.random,
        keys_current=container.live_keys.ensure_current,
        bounds=SearchBounds(),
    )
    return repo, store


def batch_read(world: World, repo: RecordRepository, target: str) -> str:
    """The status of a batch's one entry, ``GET Observation/{target}``, through the counted
    repository."""
    container = world.container
    search = SearchService(
        repo, pages=container.pages, limits=container.settings.limits, clock=container.clock
    )
    bundles = BundleService(
        repo,
        search=search,
        max_entries=container.settings.limits.max_json_array,
        now=container.clock.now,
    )
    answer = bundles.process(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "GET", "url": f"Observation/{target}"}}],
        },
        base="http://h/fhir",
        representation=True,
    )
    return str(answer["entry"][0]["response"]["status"])


def run(clinic: Clinic, role: str, interaction: str, inside: bool, labelled: bool) -> str:
    world = clinic.world
    repo, store = counted_repository(world, role)
    patient_name = IN_SCOPE[ORACLE[role].patients] if inside else OUT_OF_SCOPE
    patient = world.ids[patient_name]
    target = world.obs[f"{patient_name}:V" if labelled else patient_name]
    try:
        match interaction:
            case "read":
                repo.read("Observation", target)
            case "vread":
                repo.vread("Observation", target, 1)
            case "history":
                repo.history(res_type="Observation", res_id=target)
            case "history-type":
                versions = repo.history(res_type="Observation", count=1000).page
                return "ok" if target in {v.res_id for v in versions} else "empty"
            case "compartment":
                request = parse_search(
                    "Observation", [("_id", target)], ctx=Context(now_us=0), default_count=10,
                    max_count=10,
                )  # fmt: skip
                page = repo.search(request, compartment=patient)
                assert page.total == len(page.matches)
                return "ok" if [s.res_id for s in page.matches] == [target] else "empty"
            case "revinclude":
                request = parse_search(
                    "Patient", [("_id", patient), ("_revinclude", "Observation:subject")],
                    ctx=Context(now_us=0), default_count=10, max_count=10,
                )  # fmt: skip
                page = repo.search(request)
                if not page.matches:
                    return "empty"
                return "ok" if target in {s.res_id for s in page.included} else "hidden"
            case "batch":
                status = batch_read(world, repo, target)
                if not status.startswith("200"):
                    assert store.bodies == 0, f"{role} batch: a refused entry fetched a body"
                    return {"403": "forbidden", "404": "hidden"}[status[:3]]
            case "search":
                request = parse_search(
                    "Observation", [("_id", target)], ctx=Context(now_us=0), default_count=10,
                    max_count=10,
                )  # fmt: skip
                page = repo.search(request)
                assert page.total == len(page.matches)
                return "ok" if [s.res_id for s in page.matches] == [target] else "empty"
            case "everything":
                page = repo.everything(patient, types=None, since=None, offset=0, count=500)
                found = {s.res_id for s in [*page.matches, *page.included]}
                return "ok" if target in found else "empty"
            case "create":
                repo.create(observation(patient, labels=("V",) if labelled else ()))
            case "update":
                res_id = clinic.targets[(role, "update", inside, labelled)]
                body = observation(patient, labels=("V",) if labelled else ())
                repo.update("Observation", res_id, {**body, "id": res_id, "status": "amended"})
            case "patch":
                res_id = clinic.targets[(role, "patch", inside, labelled)]
                repo.update_with("Observation", res_id, lambda r: {**r, "status": "amended"})
            case "delete":
                res_id = clinic.targets[(role, "delete", inside, labelled)]
                repo.delete("Observation", res_id)
    except HearthError as error:
        assert store.bodies == 0, f"{role} {interaction}: a refused request fetched or wrote a body"
        if error.code is errors.FORBIDDEN:
            return "forbidden"
        if error.code is errors.NOT_FOUND:
            return "hidden"
        if error.code is errors.DEIDENTIFIED_VIEW:
            return "deidentified"
        raise
    return "ok"


@pytest.mark.parametrize(
    ("role", "interaction", "inside", "labelled"),
    CASES,
    ids=[f"{r}-{i}-{'in' if s else 'out'}-{'V' if v else 'N'}" for r, i, s, v in CASES],
)
def test_matrix(clinic: Clinic, role: str, interaction: str, inside: bool, labelled: bool) -> None:
    assert run(clinic, role, interaction, inside, labelled) == expected(
        role, interaction, inside, labelled
    )


def test_the_matrix_covers_every_default_role_and_interaction() -> None:
    assert set(ORACLE) == set(ROLES)
    assert len(CASES) == len(ROLES) * len(INTERACTIONS) * 4
    outcomes = {expected(*case) for case in CASES}
    assert outcomes == {"ok", "forbidden", "hidden", "empty", "deidentified"}
