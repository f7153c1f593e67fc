"""FHIR R4 search, planned in pure code (search.html).

- :mod:`~hearth.fhir.search.fhirpath`: the FHIRPath subset of R4 SearchParameter expressions;
- :mod:`~hearth.fhir.search.extract`: typed values a parameter selects from a resource;
- :mod:`~hearth.fhir.search.index`: blind-index keys, references and compartment of a resource;
- :mod:`~hearth.fhir.search.buckets`: coarse buckets for dates and numbers;
- :mod:`~hearth.fhir.search.criteria`: one criterion per parameter, with its exact check;
- :mod:`~hearth.fhir.search.query`: parsing a search request into a ``SearchRequest``;
- :mod:`~hearth.fhir.search.conditions`: the condition tree the storage layer compiles to SQL;
- :mod:`~hearth.fhir.search.shaping`: ``_summary`` and ``_elements``.

No I/O: values are parsed and keys computed here; blinding and SQL happen in the gate.
"""

from hearth.fhir.search.conditions import (
    ALL,
    NONE,
    All,
    And,
    Chain,
    Cond,
    Criterion,
    Has,
    HasRef,
    IdIn,
    Keys,
    None_,
    Not,
    Or,
    RefTo,
    SubSearch,
    Updated,
    and_,
    or_,
)
from hearth.fhir.search.criteria import Context
from hearth.fhir.search.extract import Param, extract, indexed_params, param_for, read_elements
from hearth.fhir.search.index import KEY_KINDS, IndexEntries, index_resource
from hearth.fhir.search.query import (
    FORMAT_PARAMETERS,
    RESULT_PARAMETERS,
    Include,
    SearchRequest,
    SortKey,
    capability_includes,
    capability_params,
    capability_revincludes,
    criterion_for,
    parameters_read,
    parse_search,
    wildcard_includes,
)
from hearth.fhir.search.sorting import sort_value

__all__ = [
    "ALL",
    "KEY_KINDS",
    "NONE",
    "FORMAT_PARAMETERS",
    "RESULT_PARAMETERS",
    "All",
    "And",
    "Chain",
    "Cond",
    "Context",
    "Criterion",
    "Has",
    "HasRef",
    "IdIn",
    "Include",
    "IndexEntries",
    "Keys",
    "None_",
    "Not",
    "Or",
    "Param",
    "RefTo",
    "SearchRequest",
    "SortKey",
    "SubSearch",
    "Updated",
    "and_",
    "capability_includes",
    "capability_params",
    "capability_revincludes",
    "criterion_for",
    "extract",
    "index_resource",
    "indexed_params",
    "or_",
    "param_for",
    "parameters_read",
    "parse_search",
    "read_elements",
    "sort_value",
    "wildcard_includes",
]
