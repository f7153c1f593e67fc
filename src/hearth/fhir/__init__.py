"""FHIR R4 (4.0.1) knowledge Hearth needs, as pure code: definitions, parsing, validation.

- :mod:`hearth.fhir.definitions`: resource and datatype structures, the value sets of required
  ``code`` bindings, search parameters and compartments, generated from the official HL7
  package (CC0) by ``scripts/gen_fhir_definitions.py``.
- :mod:`hearth.fhir.jsonbody`: strict parsing of request bodies with size and shape limits.
- :mod:`hearth.fhir.validation`: structural validation of resources and their required ``code``
  bindings (validation.html).
- :mod:`hearth.fhir.references`: the literal forms of ``Reference.reference``.

No I/O beyond reading the package's own data files.
"""

from hearth.fhir.definitions import (
    ElementDef,
    SearchParam,
    is_resource_type,
    patient_compartment,
    search_parameters,
)
from hearth.fhir.jsonbody import parse_json_body, parse_json_value
from hearth.fhir.references import ParsedReference, ReferenceKind, parse_reference
from hearth.fhir.validation import collect_issues, validate_resource

__all__ = [
    "ElementDef",
    "ParsedReference",
    "ReferenceKind",
    "SearchParam",
    "collect_issues",
    "is_resource_type",
    "parse_json_body",
    "parse_json_value",
    "parse_reference",
    "patient_compartment",
    "search_parameters",
    "validate_resource",
]
