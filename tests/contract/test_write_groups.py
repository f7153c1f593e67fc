"""Group commit for single writes (``run_write_group``) on every engine: members share one
transaction and are each decided, written and audited as their own; one member's failure is
never another's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text

from hearth.domain import HearthError, errors
from hearth.security.access import Facts
from hearth.services.integrity import verify_audit, verify_integrity
from hearth.storage import RecordRepository
from hearth.storage.repository import SingleWrite, WriteBatch, run_write_group
from hearth.storage.write_groups import GroupMember
from tests.access_world import build_world, privacy_consent
from tests.support import Instance, admin, nobody

pytestmark = pytest.mark.engines


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], "active": True}


def member(repo: RecordRepository, op: Any) -> GroupMember[SingleWrite]:
    return GroupMember(SingleWrite(repo, op))


def outcome(m: GroupMember[SingleWrite]) -> Any:
    assert m.done
    if m.after is not None:
        m.after()
    if m.error is not None:
        raise m.error
    return m.result


def rows(instance: Instance, sql: str, **params: object) -> list[tuple[Any, ...]]:
    with instance.container.db.write.begin() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def families(instance: Instance) -> set[str]:
    """The family names of every current Patient, read through the gate."""
    repo = instance.container.repository(admin())
    ids = rows(instance, "SELECT res_id FROM resource_current WHERE res_type = 'Patient'")
    found = (repo.read("Patient", res_id).resource for (res_id,) in ids)
    return {str(r["name"][0]["family"]) for r in found if r and r.get("name")}


def all_clear(instance: Instance) -> None:
    c = instance.container
    assert verify_audit(c.system_repository("test")).ok
    assert verify_integrity(c.system_repository("test")).ok


def test_members_commit_together_each_under_its_own_principal(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = instance.container
    heads_before = rows(instance, "SELECT seq FROM audit_head")[0][0]
    members = [
        member(c.repository(admin(f"writer-{n}")), lambda b, n=n: b.create(patient(f"Group{n}")))
        for n in range(5)
    ]
    sizes = appends(monkeypatch, instance)
    run_write_group(members)
    stored = [outcome(m) for m in members]
    assert sizes == [5]  # one transaction, one audit append
    assert [s.seq for s in stored] == list(range(stored[0].seq, stored[0].seq + 5))
    assert {f"Group{n}" for n in range(5)} <= families(instance)
    entries = rows(
        instance,
        "SELECT actor, action, res_id FROM audit_entry WHERE seq > :seq ORDER BY seq",
        seq=heads_before,
    )
    assert entries[:5] == [(f"writer-{n}", "create", s.res_id) for n, s in enumerate(stored)]
    all_clear(instance)


def test_a_refused_member_fails_alone_and_its_refusal_is_audited(instance: Instance) -> None:
    c = instance.container
    root = c.repository(admin())
    existing = root.create(patient("Existing"))
    members = [
        member(c.repository(admin()), lambda b: b.create(patient("Before"))),
        member(
            c.repository(admin("stale")),
            lambda b: b.update(
                "Patient", existing.res_id, {**patient("Stale"), "id": existing.res_id}, if_match=9
            ),
        ),
        member(c.repository(nobody()), lambda b: b.delete("Patient", existing.res_id)),
        member(
            c.repository(admin()),
            lambda b: b.update(
                "Patient", existing.res_id, {**patient("After"), "id": existing.res_id}
            ),
        ),
    ]
    run_write_group(members)
    assert outcome(members[0]).version == 1
    with pytest.raises(HearthError) as stale:
        outcome(members[1])
    assert stale.value.code is errors.VERSION_CONFLICT
    with pytest.raises(HearthError) as denied:
        outcome(members[2])
    assert denied.value.code is errors.FORBIDDEN
    assert outcome(members[3])[0].version == 2
    assert {"Before", "After"} <= families(instance)
    refusals = rows(
        instance,
        "SELECT actor, action, outcome FROM audit_entry "
        "WHERE res_id = :id AND outcome <> 'success'",
        id=existing.res_id,
    )
    assert sorted(refusals) == [("mallory", "delete", "denied"), ("stale", "update", "invalid")]
    all_clear(instance)


def test_a_member_failing_after_it_wrote_sends_every_member_to_run_alone(
    instance: Instance,
) -> None:
    c = instance.container

    def wrote_then_failed(b: WriteBatch) -> None:
        b.create(patient("HalfWritten"))
        raise RuntimeError("after the write")

    members = [
        member(c.repository(admin()), lambda b: b.create(patient("First"))),
        member(c.repository(admin("breaker")), wrote_then_failed),
        member(c.repository(admin()), lambda b: b.create(patient("Third"))),
    ]
    run_write_group(members)
    first, third = outcome(members[0]), outcome(members[2])
    with pytest.raises(RuntimeError, match="after the write"):
        outcome(members[1])
    found = families(instance)
    assert {"First", "Third"} <= found
    assert "HalfWritten" not in found
    assert first.seq + 1 == third.seq  # the rolled-back attempt left no gap
    assert rows(instance, "SELECT action, outcome FROM audit_entry WHERE actor = 'breaker'") == [
        ("write", "error")
    ]
    all_clear(instance)


def test_a_group_that_cannot_commit_runs_each_member_alone(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = instance.container
    audit = c.audit
    real = audit.append_in
    calls = 0

    def fails_once(conn: Any, records: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise HearthError(errors.AUDIT_FAILED)
        real(conn, records)

    monkeypatch.setattr(audit, "append_in", fails_once)
    members = [
        member(c.repository(admin()), lambda b, n=n: b.create(patient(f"Retry{n}")))
        for n in range(3)
    ]
    run_write_group(members)
    assert [outcome(m).version for m in members] == [1, 1, 1]
    assert calls == 4  # the group's, then one per member
    assert {"Retry0", "Retry1", "Retry2"} <= families(instance)
    all_clear(instance)


def appends(monkeypatch: pytest.MonkeyPatch, instance: Instance) -> list[int]:
    """Count the audit appends (one per transaction that commits writes)."""
    audit = instance.container.audit
    real = audit.append_in
    sizes: list[int] = []

    def counted(conn: Any, records: Any) -> None:
        sizes.append(len(records))
        real(conn, records)

    monkeypatch.setattr(audit, "append_in", counted)
    return sizes


def observation_of(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def care_team(patient_id: str, practitioner: str) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"member": {"reference": f"Practitioner/{practitioner}"}}],
    }


def test_a_care_team_written_earlier_in_a_group_decides_later_members(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_world(instance.container)
    stranger, doc = world.patient("stranger"), world.ids["doc"]
    root = world.container.repository(admin())
    existing = root.create(observation_of(stranger))
    with pytest.raises(HearthError):  # no care relationship yet
        world.repo("physician").create(observation_of(stranger))
    sizes = appends(monkeypatch, instance)
    members = [
        member(root, lambda b: b.create(care_team(stranger, doc))),
        member(world.repo("physician"), lambda b: b.create(observation_of(stranger))),
        member(
            world.repo("physician"),
            lambda b: b.update(
                "Observation",
                existing.res_id,
                {**observation_of(stranger), "id": existing.res_id, "status": "amended"},
            ),
        ),
    ]
    run_write_group(members)
    outcome(members[0])
    assert outcome(members[1]).resource["subject"]["reference"] == f"Patient/{stranger}"
    assert outcome(members[2])[0].version == 2
    # The care team ended its group: the physician's writes were decided after its commit.
    assert sizes == [1, 2]


def test_a_consent_written_earlier_in_a_group_refuses_later_members_and_kept_facts(
    instance: Instance,
) -> None:
    world = build_world(instance.container)
    linked, doc = world.patient("careteam"), world.ids["doc"]
    physician = world.principal("physician")
    c = world.container
    assert c.repository(physician).read("Patient", linked).res_id == linked  # facts now kept
    consent = privacy_consent(linked, f"Practitioner/{doc}")

    def consent_then_facts_read(b: WriteBatch) -> Any:
        written = b.create(consent)
        # Another request gathers the physician's facts on a connection of its own while
        # this transaction is open: it cannot see the Consent, and must not keep what it saw.
        assert c.repository(physician).access.profile is not None
        return written

    members = [
        member(c.repository(admin()), consent_then_facts_read),
        member(c.repository(physician), lambda b: b.create(observation_of(linked))),
    ]
    run_write_group(members)
    outcome(members[0])
    with pytest.raises(HearthError) as refused:
        outcome(members[1])
    assert refused.value.code is errors.FORBIDDEN
    with pytest.raises(HearthError):  # the kept facts were dropped: the denial holds at once
        c.repository(physician).read("Patient", linked)


def test_if_match_sees_a_version_written_earlier_in_the_group(instance: Instance) -> None:
    c = instance.container
    existing = c.repository(admin()).create(patient("Matched"))
    body = {**patient("Matched"), "id": existing.res_id}
    members = [
        member(c.repository(admin()), lambda b: b.update("Patient", existing.res_id, body)),
        member(
            c.repository(admin()),
            lambda b: b.update("Patient", existing.res_id, body, if_match=2),
        ),
        member(c.repository(admin()), lambda b: b.delete("Patient", existing.res_id)),
        member(
            c.repository(admin()),
            lambda b: b.update("Patient", existing.res_id, body, if_match=3),
        ),
    ]
    run_write_group(members)
    assert outcome(members[0])[0].version == 2
    assert outcome(members[1])[0].version == 3
    assert outcome(members[2]).version == 4
    with pytest.raises(HearthError) as stale:
        outcome(members[3])
    assert stale.value.code is errors.VERSION_CONFLICT
    all_clear(instance)


def test_a_refusal_before_a_rerun_is_audited_once(instance: Instance) -> None:
    c = instance.container
    existing = c.repository(admin()).create(patient("Kept"))

    def wrote_then_failed(b: WriteBatch) -> None:
        b.create(patient("Never"))
        raise RuntimeError("after the write")

    members = [
        member(c.repository(nobody()), lambda b: b.delete("Patient", existing.res_id)),
        member(c.repository(admin()), wrote_then_failed),
        member(c.repository(admin()), lambda b: b.create(patient("Later"))),
    ]
    run_write_group(members)
    with pytest.raises(HearthError):
        outcome(members[0])
    with pytest.raises(RuntimeError):
        outcome(members[1])
    assert outcome(members[2]).version == 1
    denials = rows(
        instance,
        "SELECT action, outcome FROM audit_entry WHERE actor = 'mallory' AND res_id = :id",
        id=existing.res_id,
    )
    assert denials == [("delete", "denied")]


def test_a_group_that_cannot_begin_fails_every_member_once(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = instance.container
    store = c.store
    real = store.lock_writers
    calls = 0

    def unavailable(conn: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise HearthError(errors.STORAGE_UNAVAILABLE)
        real(conn)

    monkeypatch.setattr(store, "lock_writers", unavailable)
    members = [
        member(c.repository(admin(f"blocked-{n}")), lambda b, n=n: b.create(patient(f"B{n}")))
        for n in range(3)
    ]
    run_write_group(members)
    for m in members:
        with pytest.raises(HearthError) as failed:
            outcome(m)
        assert failed.value.code is errors.STORAGE_UNAVAILABLE
    assert calls == 1  # not tried again, member by member
    assert not {"B0", "B1", "B2"} & families(instance)
    audited = rows(
        instance,
        "SELECT actor, action, outcome FROM audit_entry "
        "WHERE actor LIKE 'blocked-%' ORDER BY actor",
    )
    assert audited == [(f"blocked-{n}", "write", "error") for n in range(3)]


def test_a_failed_commit_fails_the_writes_it_held_and_only_those(
    instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = instance.container
    root = c.repository(admin())
    existing = root.create(patient("Target"))
    doc = root.create({"resourceType": "Practitioner", "name": [{"family": "Doc"}]})
    store = c.store
    real = store.write
    calls = 0

    @contextmanager
    def commit_fails() -> Iterator[Any]:
        nonlocal calls
        calls += 1
        with real() as conn:
            yield conn
            if calls == 1:  # the end of the block, where the commit happens: it fails
                raise HearthError(errors.STORAGE_UNAVAILABLE)

    monkeypatch.setattr(store, "write", commit_fails)
    members = [
        member(c.repository(admin("lost-0")), lambda b: b.create(patient("L0"))),
        member(c.repository(nobody()), lambda b: b.delete("Patient", existing.res_id)),
        member(
            c.repository(admin("lost-team")),
            lambda b: b.create(care_team(existing.res_id, doc.res_id)),
        ),
        member(c.repository(admin("after")), lambda b: b.create(patient("After"))),
    ]
    run_write_group(members)
    for written in (members[0], members[2]):
        with pytest.raises(HearthError) as failed:
            outcome(written)
        assert failed.value.code is errors.STORAGE_UNAVAILABLE
    with pytest.raises(HearthError) as refused:  # its refusal stands, whatever the commit did
        outcome(members[1])
    assert refused.value.code is errors.FORBIDDEN
    # The care team ended the failed transaction; the write queued after it ran in the next.
    assert outcome(members[3]).version == 1
    found = families(instance)
    assert "After" in found
    assert "L0" not in found
    audited = rows(
        instance,
        "SELECT actor, action, outcome FROM audit_entry "
        "WHERE actor IN ('lost-0', 'lost-team', 'mallory', 'after') ORDER BY actor",
    )
    assert audited == [
        ("after", "create", "success"),
        ("lost-0", "write", "error"),
        ("lost-team", "write", "error"),
        ("mallory", "delete", "denied"),
    ]
    all_clear(instance)


def test_facts_read_across_a_change_are_not_kept(instance: Instance) -> None:
    control = instance.container.policy
    stamp = control.facts_stamp()  # a reader starts gathering facts...
    control.forget_facts()  # ...a Consent commits meanwhile...
    control.keep_facts("reader", Facts(), stamp)  # ...and what it read is kept
    assert control.cached_facts("reader") is None
    control.keep_facts("reader", Facts(), control.facts_stamp())
    assert control.cached_facts("reader") is not None


def test_a_resource_written_earlier_in_a_group_is_in_scope_for_later_members(
    instance: Instance,
) -> None:
    world = build_world(instance.container)
    linked = world.patient("careteam")
    body = {
        "resourceType": "Observation",
        "id": "shared-obs",
        "status": "preliminary",
        "code": {"text": "pulse"},
        "subject": {"reference": f"Patient/{linked}"},
    }
    members = [
        member(
            world.container.repository(admin()),
            lambda b: b.update("Observation", "shared-obs", body),
        ),
        member(
            world.repo("physician"),
            lambda b: b.update("Observation", "shared-obs", {**body, "status": "final"}),
        ),
    ]
    run_write_group(members)
    assert outcome(members[0])[1] is True
    second, created = outcome(members[1])
    assert (second.version, created) == (2, False)


def test_concurrent_writers_through_the_container_form_groups(instance: Instance) -> None:
    c = instance.container
    groups = c.write_groups
    writers, each = 8, 3
    sizes: list[int] = []
    real = groups._run

    def counted(members: list[GroupMember[SingleWrite]]) -> None:
        if not sizes:  # hold the first group until every other writer waits behind it
            deadline = time.monotonic() + 10
            while len(groups._queue) < writers - 1 and time.monotonic() < deadline:
                time.sleep(0.001)
        sizes.append(len(members))
        real(members)

    groups._run = counted
    errors_seen: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            records = c.records(admin(f"thread-{n}"))
            for k in range(each):
                records.create("Patient", patient(f"T{n}x{k}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors_seen.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors_seen
    assert sum(sizes) == writers * each
    assert max(sizes) > 1
    assert {f"T{n}x{k}" for n in range(writers) for k in range(each)} <= families(instance)
    seqs = [r[0] for r in rows(instance, "SELECT seq FROM resource_version ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1))
    all_clear(instance)


def test_facts_gathered_while_a_batch_writes_a_consent_are_dropped_when_it_ends(
    instance: Instance,
) -> None:
    world = build_world(instance.container)
    linked, doc = world.patient("careteam"), world.ids["doc"]
    physician = world.principal("physician")
    c = world.container
    consent = privacy_consent(linked, f"Practitioner/{doc}")
    with c.repository(admin()).batch() as batch:
        batch.create(consent)
        assert c.repository(physician).access.profile is not None  # gathered, without it
    with pytest.raises(HearthError):
        c.repository(physician).read("Patient", linked)
