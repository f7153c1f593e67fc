"""OperationOutcome rendering (FHIR R4 operationoutcome.html).

Every issue carries Hearth's stable error code as ``details.coding`` in the
``https://hearth.dev/fhir/CodeSystem/error`` system, so clients can act on the code rather than
parse the text.
"""

from __future__ import annotations

from typing import Any

from hearth.domain import HearthError

__all__ = ["ERROR_SYSTEM", "operation_outcome", "informational_outcome"]

ERROR_SYSTEM = "https://hearth.dev/fhir/CodeSystem/error"


def _issue(
    code: str, issue_type: str, text: str, severity: str, expr: str | None
) -> dict[str, Any]:
    issue: dict[str, Any] = {
        "severity": severity,
        "code": issue_type,
        "details": {"coding": [{"system": ERROR_SYSTEM, "code": code}], "text": text},
        "diagnostics": text,
    }
    if expr:
        issue["expression"] = [expr]
    return issue


def operation_outcome(error: HearthError) -> dict[str, Any]:
    """An OperationOutcome for ``error``; its texts never contain request values."""
    issues = [
        _issue(i.code.code, i.code.issue, i.diagnostics, i.severity, i.expression)
        for i in error.issues
    ] or [_issue(error.code.code, error.code.issue, error.detail, "error", None)]
    return {"resourceType": "OperationOutcome", "issue": issues}


def informational_outcome(text: str, code: str = "informational") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": code, "diagnostics": text}],
    }
