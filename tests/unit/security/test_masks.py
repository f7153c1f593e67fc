"""Field masks: minimum necessary on the way out, and no clobbering on the way in."""

from __future__ import annotations

from hearth.security.labels import OBSERVATION_VALUE
from hearth.security.masks import (
    apply_masks,
    masked_keys,
    masked_present,
    masked_reads,
    restore_masked,
    strip_redacted,
)

OBS = {
    "resourceType": "Observation",
    "id": "1",
    "status": "final",
    "valueQuantity": {"value": 1},
    "note": [{"text": "secret"}],
    "meta": {"versionId": "2"},
}


def test_masks_remove_elements_and_mark_the_resource_redacted() -> None:
    masked = apply_masks(OBS, ("note", "value[x]", "id", "meta", "absent"))
    assert "note" not in masked
    assert "valueQuantity" not in masked
    assert masked["id"] == "1"
    assert masked["meta"]["versionId"] == "2"
    assert masked["meta"]["security"] == [
        {"system": OBSERVATION_VALUE, "code": "REDACTED", "display": "redacted"}
    ]
    assert apply_masks(masked, ("note",))["meta"]["security"] == masked["meta"]["security"]
    assert apply_masks(OBS, ("absent",)) == OBS


def test_choice_masks_match_only_typed_names() -> None:
    resource = {"value": 1, "valueString": "x", "valueset": 2}
    assert masked_keys(resource, ("value[x]",)) == ["valueString"]


def test_a_write_is_checked_and_masked_elements_restored() -> None:
    assert masked_present({"note": []}, ("note",)) == ["note"]
    new = apply_masks(OBS, ("note",))
    new["status"] = "amended"
    restored = restore_masked(new, OBS, ("note",))
    assert restored["note"] == OBS["note"]
    assert restored["status"] == "amended"
    assert "security" not in restored["meta"]
    assert restore_masked(new, None, ("note",)).get("note") is None


def test_strip_redacted_keeps_other_labels_and_drops_empty_meta() -> None:
    redacted = {"system": OBSERVATION_VALUE, "code": "REDACTED"}
    other = {"system": "x", "code": "R"}
    assert strip_redacted({"meta": {"security": [redacted]}}) == {}
    assert strip_redacted({"meta": {"security": [redacted], "tag": []}}) == {"meta": {"tag": []}}
    assert strip_redacted({"meta": {"security": [redacted, other]}}) == {
        "meta": {"security": [other]}
    }
    assert strip_redacted({"a": 1}) == {"a": 1}


def test_a_search_reads_a_masked_element_by_its_json_keys() -> None:
    masks = ("reasonCode", "value[x]", "id", "meta")
    assert masked_reads(["reasonCode"], masks) == ["reasonCode"]
    assert masked_reads(["valueQuantity", "valueString", "code"], masks) == [
        "valueQuantity",
        "valueString",
    ]
    assert masked_reads(["reasonReference", "status"], masks) == []
    # A resource without its id and meta is not a resource: no mask covers them.
    assert masked_reads(["id", "meta"], masks) == []


APPOINTMENT = {
    "resourceType": "Appointment",
    "id": "a1",
    "status": "booked",
    "contained": [
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "#p1"}},
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Location", "id": "l1"},
    ],
    "reasonReference": [{"reference": "#c1"}],
    "participant": [{"actor": {"reference": "#l1"}, "status": "accepted"}],
}


def test_contained_resources_only_a_masked_element_points_to_are_masked_too() -> None:
    """The Condition and the Patient it names are reached only through the masked
    reasonReference; the Location through a participant, which stays."""
    masked = apply_masks(APPOINTMENT, ("reasonReference",))
    assert [c["id"] for c in masked["contained"]] == ["l1"]
    assert "contained" not in apply_masks(APPOINTMENT, ("reasonReference", "participant"))
    assert apply_masks(APPOINTMENT, ("comment",)) == APPOINTMENT  # nothing masked: all kept


def test_a_masked_writer_keeps_the_contained_resources_it_never_saw() -> None:
    seen = apply_masks(APPOINTMENT, ("reasonReference",))
    written = restore_masked({**seen, "status": "fulfilled"}, APPOINTMENT, ("reasonReference",))
    assert written["reasonReference"] == APPOINTMENT["reasonReference"]
    assert sorted(c["id"] for c in written["contained"]) == ["c1", "l1", "p1"]
    assert written["status"] == "fulfilled"
