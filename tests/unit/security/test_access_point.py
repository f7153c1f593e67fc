"""The one decision point (hearth.security.access): pure decisions over roles, scopes and facts."""

from __future__ import annotations

from hearth.domain import Action, Principal, SmartScope
from hearth.security import (
    CHAIN_TYPES,
    Capability,
    ConsentDenial,
    Decision,
    DecisionPoint,
    Denial,
    Facts,
    PatientReach,
    Reach,
    Stated,
    default_catalog,
)
from hearth.security.labels import CONFIDENTIALITY

CATALOG = default_catalog()
POINT = DecisionPoint(lambda: CATALOG)
OBS = {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/a"}}
DOC_FACTS = Facts(practitioner="d", actors=frozenset({("Practitioner", "d")}))


def who(
    *roles: str, scopes: tuple[str, ...] | None = None, patient: str | None = None
) -> Principal:
    return Principal(
        "u",
        roles=frozenset(roles),
        scopes=frozenset(SmartScope.parse(s) for s in scopes) if scopes is not None else None,
        patient=patient,
    )


def test_type_level_deny_by_default_and_unknown_actions() -> None:
    nobody = POINT.profile(who())
    for action in Action:
        decision = nobody.decide(action, "Observation")
        assert not decision.allowed
        assert decision.denial is Denial.FORBIDDEN
    doc = POINT.profile(who("physician"), DOC_FACTS)
    assert doc.decide(Action.READ, "Observation", res_id="1").allowed
    assert not doc.decide("export", "Observation").allowed  # type: ignore[arg-type]
    assert not doc.allows("export").allowed  # type: ignore[arg-type]
    assert not doc.decide(Action.READ, next(iter(CHAIN_TYPES)), res_id="1").allowed


def test_relationship_scope_on_one_resource() -> None:
    doc = POINT.profile(who("physician"), DOC_FACTS)
    a = frozenset({"a"})
    linked = doc.decide(Action.READ, "Observation", res_id="1", resource=OBS, patients=a, linked=a)
    assert linked.allowed
    assert linked.purpose == "TREAT"
    assert linked.masks == ()
    unlinked = doc.decide(Action.READ, "Observation", res_id="1", resource=OBS, patients=a)
    assert unlinked.denial is Denial.OUT_OF_SCOPE
    assert doc.decide(Action.READ, "Practitioner", res_id="d", resource={}).allowed
    # Outside the compartment and not a directory type: only a role that sees everyone.
    assert not doc.decide(Action.READ, "Task", res_id="t", resource={}, patients=None).allowed
    desk = POINT.profile(who("front-desk"))
    assert desk.decide(Action.READ, "Patient", res_id="a", resource={}, patients=a).allowed
    assert doc.needs_links
    assert not desk.needs_links


def test_self_scope_labels_and_consent() -> None:
    me = POINT.profile(who("patient"), Facts(patient="a"))
    a, b = frozenset({"a"}), frozenset({"b"})
    assert me.decide(Action.READ, "Observation", res_id="1", resource=OBS, patients=a).allowed
    assert not me.decide(Action.READ, "Observation", res_id="1", resource=OBS, patients=b).allowed
    labelled = {**OBS, "meta": {"security": [{"system": CONFIDENTIALITY, "code": "V"}]}}
    doc = POINT.profile(who("physician"), DOC_FACTS)
    kw = {"res_id": "1", "resource": labelled, "patients": a, "linked": a}
    assert not doc.decide(Action.READ, "Observation", **kw).allowed  # type: ignore[arg-type]
    assert me.decide(Action.READ, "Observation", **kw).allowed  # type: ignore[arg-type]
    denied = POINT.profile(
        who("physician"), Facts(actors=DOC_FACTS.actors, denials=(ConsentDenial("a"),))
    )
    plain = {"res_id": "1", "resource": OBS, "patients": a, "linked": a}
    assert not denied.decide(Action.READ, "Observation", **plain).allowed  # type: ignore[arg-type]


def test_break_glass_lifts_scope_labels_and_consent_but_not_type_permissions() -> None:
    facts = Facts(
        actors=DOC_FACTS.actors, denials=(ConsentDenial("b"),), break_glass=frozenset({"b"})
    )
    doc = POINT.profile(who("physician"), facts)
    b = frozenset({"b"})
    labelled = {**OBS, "meta": {"security": [{"system": CONFIDENTIALITY, "code": "V"}]}}
    decision = doc.decide(Action.READ, "Observation", res_id="1", resource=labelled, patients=b)
    assert decision.allowed
    assert decision.purpose == "ETREAT"
    assert doc.purpose == "ETREAT"
    desk = POINT.profile(who("front-desk"), Facts(break_glass=b))
    assert not desk.decide(Action.READ, "Observation", res_id="1", resource=OBS, patients=b).allowed


def test_the_least_masked_role_decides_when_several_allow() -> None:
    both = POINT.profile(who("billing", "physician"), DOC_FACTS)
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/a"}}
    a = frozenset({"a"})
    unmasked = both.decide(
        Action.READ, "Condition", res_id="c", resource=condition, patients=a, linked=a
    )
    assert unmasked.masks == ()
    masked = both.decide(Action.READ, "Condition", res_id="c", resource=condition, patients=a)
    assert masked.allowed
    assert masked.masks == ("note", "text")
    assert masked.purpose == "HPAYMT"
    assert both.purpose == "TREAT"  # the clinical role names the request's purpose


def test_a_search_may_not_read_what_any_searching_role_masks() -> None:
    desk = POINT.profile(who("front-desk"))
    assert "reasonCode" in desk.search_masks("Encounter")
    assert "comment" in desk.search_masks("Appointment")
    assert desk.search_masks("Patient") == ()
    assert desk.search_masks("Observation") == ()  # not searched at all: nothing to mask
    assert desk.masks_anything
    assert not POINT.profile(who("physician")).masks_anything
    # Which role decides is known per resource only: the union holds (fail closed) ...
    both = POINT.profile(who("billing", "physician"), DOC_FACTS)
    assert both.search_masks("Condition") == ("note", "text")
    # ... unless one role reaches every row of the type unmasked and so decides every one.
    root = POINT.profile(who("front-desk", "bootstrap-admin"))
    assert root.search_masks("Encounter") == ()
    assert root.search_masks("AuditEvent") == ()


def test_scopes_intersect_never_widen() -> None:
    a = frozenset({"a"})
    app = POINT.profile(
        who("physician", scopes=("patient/Observation.rs",), patient="a"), DOC_FACTS
    )
    assert app.decide(
        Action.READ, "Observation", res_id="1", resource=OBS, patients=a, linked=a
    ).allowed
    other = frozenset({"z"})
    assert not app.decide(
        Action.READ, "Observation", res_id="1", resource=OBS, patients=other, linked=other
    ).allowed
    assert app.decide(Action.READ, "Patient", res_id="a").denial is Denial.FORBIDDEN
    assert not app.allows(Capability.AUDIT_READ).allowed  # capabilities are never delegated
    lab = POINT.profile(
        who("physician", scopes=("user/Observation.rs?category=laboratory",)), DOC_FACTS
    )
    assert not lab.decide(
        Action.READ, "Observation", res_id="1", resource=OBS, patients=a, linked=a
    ).allowed
    # A backend service has exactly its scopes; without any, nothing.
    assert not POINT.profile(who("backend-service")).decide(Action.READ, "Observation").allowed
    service = POINT.profile(who("backend-service", scopes=("system/Observation.rs",)))
    assert service.decide(Action.READ, "Observation", res_id="1", resource=OBS, patients=a).allowed


def test_search_scopes_state_the_same_rules_for_sql() -> None:
    root = POINT.profile(who("bootstrap-admin"))
    assert root.unrestricted
    assert root.search_scope("Observation", compartment=True).unrestricted
    nobody = POINT.profile(who("administrator"))
    assert nobody.search_scope("Observation", compartment=True).nothing
    # The researcher reaches every patient, de-identified, without restricted labels.
    research = POINT.profile(who("researcher"))
    assert research.deidentified
    assert not research.unrestricted
    (everyone,) = research.search_scope("Observation", compartment=True).reaches
    assert everyone.patients == PatientReach(everyone=True)
    assert {"R", "V", "HIV"} <= everyone.lacking
    denials = (
        ConsentDenial("x"),
        ConsentDenial("y", resources=frozenset({"Observation/9", "Condition/1"})),
    )
    facts = Facts(actors=DOC_FACTS.actors, denials=denials, break_glass=frozenset({"e"}))
    doc = POINT.profile(who("physician"), facts)
    scope = doc.search_scope("Observation", compartment=True)
    first, emergency = scope.reaches
    assert first.patients == PatientReach(linked=True)
    assert first.excluded_patients == {"x"}
    assert first.excluded_ids == {"9"}
    assert "V" in first.lacking
    assert "R" not in first.lacking
    assert emergency == Reach(PatientReach(ids=frozenset({"e"})))
    directory = doc.search_scope("Practitioner", compartment=False)
    assert directory.reaches[0].patients.everyone
    assert doc.search_scope("Task", compartment=False).nothing
    me = POINT.profile(who("patient"), Facts(patient="a"))
    assert me.search_scope("Observation", compartment=True).reaches[0].patients.ids == {"a"}
    pharm = POINT.profile(who("pharmacist"))
    assert pharm.search_scope("Observation", compartment=True).reaches[0].queries == (
        (("category", "laboratory"),),
    )
    app = POINT.profile(
        who("physician", scopes=("patient/*.rs", "user/Practitioner.rs"), patient="a")
    )
    delegated = app.search_scope("Observation", compartment=True)
    assert delegated.delegations is not None
    assert delegated.delegations[0].within == {"a"}
    no_launch = POINT.profile(who("physician", scopes=("patient/*.rs",)))
    assert no_launch.search_scope("Observation", compartment=True).nothing
    assert POINT.catalog is CATALOG


def test_relationships_widen_nobodys_own_access_and_are_not_written_in_an_emergency() -> None:
    mine = Stated(links=frozenset({("Practitioner", "d", "a")}))
    theirs = Stated(links=frozenset({("Practitioner", "n", "a")}))

    def decide(roles: tuple[str, ...], facts: Facts, res_type: str, after: Stated) -> Decision:
        profile = POINT.profile(who(*roles), facts)
        return profile.decide_relationships(
            res_type, Stated(), after, practitioner="d", actors=DOC_FACTS.actors
        )

    assert decide(("physician",), DOC_FACTS, "CareTeam", mine).denial is Denial.SELF_LINK
    assert decide(("physician",), DOC_FACTS, "CareTeam", theirs).allowed
    assert decide(("physician",), DOC_FACTS, "Observation", mine).allowed  # states nothing
    # No role is exempt: whoever manages links does not write one for themselves (the actors
    # are read for every principal, an unrestricted one whose profile needs no facts included).
    assert not decide(("administrator", "bootstrap-admin"), Facts(), "CareTeam", mine).allowed
    grant = Facts(actors=DOC_FACTS.actors, break_glass=frozenset({"a"}), break_glass_grant="g")
    assert decide(("physician",), grant, "CareTeam", theirs).denial is Denial.EMERGENCY
    # Under a grant, no write of a relationship type at all, a deletion included.
    assert decide(("physician",), grant, "Consent", Stated()).denial is Denial.EMERGENCY
    assert decide(("physician",), grant, "Observation", Stated()).allowed
    # A self-link under a grant is named for what it is.
    assert decide(("physician",), grant, "CareTeam", mine).denial is Denial.SELF_LINK
