"""FHIR JSON responses: ``application/fhir+json; charset=utf-8`` rendered with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from hearth.domain import HearthError
from hearth.fhir import jsonbody as fhir_json
from hearth.fhir.outcome import operation_outcome

__all__ = ["FHIR_JSON", "error_response", "fhir_response"]

FHIR_JSON = "application/fhir+json; charset=utf-8"


def fhir_response(
    body: dict[str, Any] | None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    pretty: bool = False,
) -> Response:
    if body is None:
        return Response(status_code=status, headers=headers)
    option = orjson.OPT_INDENT_2 if pretty else 0
    return Response(fhir_json.dumps(body, option=option), status, headers, media_type=FHIR_JSON)


def error_response(error: HearthError, *, pretty: bool = False) -> Response:
    return fhir_response(
        operation_outcome(error), status=error.status, headers=error.headers, pretty=pretty
    )
