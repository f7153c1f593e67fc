"""hearth.fhir.definitions: the generated R4 tables and their accessors."""

from __future__ import annotations

import pytest

from hearth.fhir import definitions
from hearth.fhir.definitions import (
    RESOURCE_TYPES,
    CompositeComponent,
    compartment,
    compartment_names,
    element,
    is_resource_type,
    patient_compartment,
    primitive,
    search_parameter,
    search_parameters,
    type_definition,
    value_set_codes,
)


def test_there_are_146_concrete_resource_types() -> None:
    assert len(RESOURCE_TYPES) == 146
    assert RESOURCE_TYPES is definitions.resource_types()
    for name in ("Patient", "Observation", "Bundle", "Binary", "Parameters", "MedicinalProduct"):
        assert is_resource_type(name)


@pytest.mark.parametrize("name", ["Resource", "DomainResource", "HumanName", "patient", "", "Foo"])
def test_abstract_and_unknown_types_are_not_resource_types(name: str) -> None:
    assert not is_resource_type(name)


def test_unknown_module_attribute_raises() -> None:
    with pytest.raises(AttributeError):
        _ = definitions.NOT_A_THING  # type: ignore[attr-defined]


def test_patient_structure() -> None:
    patient = type_definition("Patient")
    assert patient is not None
    assert patient.kind == "resource"
    assert patient.base == "DomainResource"
    name = patient.elements["name"]
    assert name.types == ("HumanName",)
    assert name.is_array
    assert name.min == 0
    assert name.max is None
    birth = patient.elements["birthDate"]
    assert birth.types == ("date",)
    assert not birth.is_array
    assert birth.max == 1
    contact = patient.elements["contact"]
    assert contact.backbone
    other = patient.elements["link.other"]
    assert other.min == 1
    assert other.targets == ("Patient", "RelatedPerson")


def test_choice_elements_are_expanded() -> None:
    deceased = element("Patient.deceased[x]")
    assert deceased is not None
    assert dict(deceased.choices) == {
        "deceasedBoolean": "boolean",
        "deceasedDateTime": "dateTime",
    }
    value = element("Observation.valueQuantity")
    assert value is not None
    assert value.path == "Observation.value[x]"
    assert value.choices["valueQuantity"] == "Quantity"
    assert value.choices["valueSampledData"] == "SampledData"


def test_element_lookup_walks_datatypes_choices_and_content_references() -> None:
    family = element("Patient.name.family")
    assert family is not None
    assert family.path == "HumanName.family"
    assert family.types == ("string",)
    quantity_value = element("Observation.component.valueQuantity.value")
    assert quantity_value is not None
    assert quantity_value.types == ("decimal",)
    nested = element("Questionnaire.item.item")
    assert nested is not None
    assert nested.content_reference == "Questionnaire.item"
    link_id = element("Questionnaire.item.item.item.linkId")
    assert link_id is not None
    assert link_id.min == 1
    assert element("Patient.birthDate.value") is None
    assert element("Patient.nope") is None
    assert element("Nope.name") is None
    assert element("Patient") is None


def test_system_typed_elements() -> None:
    resource_id = element("Patient.id")
    assert resource_id is not None
    assert resource_id.types == ("id",)
    assert resource_id.system
    url = element("Extension.url")
    assert url is not None
    assert url.types == ("uri",)
    assert url.system
    assert url.min == 1


def test_simple_quantity_is_its_own_type() -> None:
    dose = element("Immunization.doseQuantity")
    assert dose is not None
    assert dose.types == ("SimpleQuantity",)
    comparator = element("Immunization.doseQuantity.comparator")
    assert comparator is not None
    assert comparator.max == 0


def test_primitives_carry_r4_regexes() -> None:
    date = primitive("date")
    assert date is not None
    assert date.json == "string"
    assert date.regex is not None
    assert date.regex.startswith("([0-9]([0-9]([0-9][1-9]")
    assert primitive("integer") is not None
    positive = primitive("positiveInt")
    assert positive is not None
    assert positive.json == "integer"
    boolean = primitive("boolean")
    assert boolean is not None
    assert boolean.json == "boolean"
    assert primitive("HumanName") is None
    assert len(definitions.primitive_types()) == 20


def test_search_parameters_of_patient() -> None:
    params = search_parameters("Patient")
    assert params["birthdate"].type == "date"
    assert params["birthdate"].expression == "Patient.birthDate"
    assert params["name"].type == "string"
    assert params["general-practitioner"].targets == (
        "Organization",
        "Practitioner",
        "PractitionerRole",
    )
    # Common parameters are merged in.
    assert params["_id"].resource_type == "Resource"
    assert params["_lastUpdated"].expression == "Resource.meta.lastUpdated"
    assert params["_text"].resource_type == "DomainResource"
    assert search_parameter("Patient", "family") is params["family"]
    assert search_parameter("Patient", "nope") is None


def test_multi_base_expressions_are_split_per_type() -> None:
    observation = search_parameters("Observation")["patient"]
    assert observation.expression == "Observation.subject.where(resolve() is Patient)"
    allergy = search_parameters("AllergyIntolerance")["patient"]
    assert allergy.expression == "AllergyIntolerance.patient"
    assert allergy.url == "http://hl7.org/fhir/SearchParameter/clinical-patient"


def test_composite_parameters_name_their_components() -> None:
    param = search_parameters("Observation")["code-value-quantity"]
    assert param.type == "composite"
    assert param.components == (
        CompositeComponent("code", "code"),
        CompositeComponent("value-quantity", "value.as(Quantity)"),
    )


def test_every_resource_type_has_search_parameters() -> None:
    total = 0
    kinds = set()
    for rtype in RESOURCE_TYPES:
        params = search_parameters(rtype)
        assert "_id" in params
        total += len(params)
        kinds.update(p.type for p in params.values())
    assert kinds == {
        "string",
        "token",
        "reference",
        "date",
        "number",
        "quantity",
        "uri",
        "composite",
        "special",
    }
    assert total > 2500  # every type has the nine Resource parameters plus its own


def test_bundle_binary_parameters_have_no_text_search() -> None:
    assert "_text" not in search_parameters("Bundle")
    assert "_text" not in search_parameters("Binary")
    assert search_parameters("NotAType") == {}


def test_patient_compartment() -> None:
    assert patient_compartment("Observation") == ("subject", "performer")
    assert patient_compartment("Patient") == ("link",)
    assert patient_compartment("AllergyIntolerance") == ("patient", "recorder", "asserter")
    assert patient_compartment("CodeSystem") == ()
    assert patient_compartment("Nope") == ()


def test_other_compartments() -> None:
    assert compartment_names() == {
        "Patient",
        "Encounter",
        "RelatedPerson",
        "Practitioner",
        "Device",
    }
    assert "encounter" in compartment("Encounter", "Observation")
    assert compartment("Encounter", "Encounter") == ("{def}",)
    assert compartment("Nope", "Observation") == ()


def test_every_compartment_parameter_is_a_search_parameter() -> None:
    for name in compartment_names():
        for rtype in RESOURCE_TYPES:
            for code in compartment(name, rtype):
                # "{def}" stands for the compartment's own resource (compartmentdefinition.html).
                assert code in search_parameters(rtype) or code == "{def}", (name, rtype, code)


def test_required_code_bindings_name_their_value_set() -> None:
    gender = element("Patient.gender")
    assert gender is not None
    assert gender.value_set == "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert value_set_codes(gender.value_set) == {"male", "female", "other", "unknown"}
    day = element("Timing.repeat.dayOfWeek")
    assert day is not None
    assert day.is_array
    assert day.value_set == "http://hl7.org/fhir/ValueSet/days-of-week"
    # units-of-time lists its UCUM codes explicitly, so it is enumerable without UCUM.
    unit = element("Timing.repeat.periodUnit")
    assert unit is not None
    assert unit.value_set is not None
    assert value_set_codes(unit.value_set) == {"s", "min", "h", "d", "wk", "mo", "a"}


def test_unlisted_bindings_have_no_value_set() -> None:
    for path in (
        "Attachment.contentType",  # required, mime types: not in the package
        "Money.currency",  # required, ISO 4217: not in the package
        "Patient.language",  # preferred
        "Coding.code",  # no binding
        "Patient.maritalStatus",  # CodeableConcept: out of scope
    ):
        found = element(path)
        assert found is not None, path
        assert found.value_set is None, path
    assert value_set_codes("http://hl7.org/fhir/ValueSet/mimetypes") is None


def test_every_bound_element_is_a_code_with_a_listed_value_set() -> None:
    bound = 0
    for name in definitions.type_names():
        typedef = type_definition(name)
        assert typedef is not None
        for el in typedef.elements.values():
            if el.value_set is None:
                continue
            bound += 1
            assert "code" in el.types, el.path
            codes = value_set_codes(el.value_set)
            assert codes, el.path
    assert bound == 341  # the generator's count for the 4.0.1 package
