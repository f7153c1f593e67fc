"""Value types and errors with stable codes. Imports nothing outside the standard library."""

from hearth.domain import errors
from hearth.domain.alarms import (
    Alarm,
    AlarmKind,
    AlarmRaiser,
    AlarmState,
    Delivery,
    DeliveryState,
    Severity,
    StoredAlarm,
    can_transition,
)
from hearth.domain.errors import ErrorCode, HearthError, IntegrityError, Issue
from hearth.domain.scopes import ScopeContext, SmartScope, intersect_scopes, is_resource_scope
from hearth.domain.types import (
    ID_PATTERN,
    Action,
    Clock,
    Outcome,
    Principal,
    PrincipalKind,
    Random,
    ResourceRef,
    Secret,
    StoredResource,
    SystemClock,
    SystemRandom,
)

__all__ = [
    "Alarm",
    "AlarmKind",
    "AlarmRaiser",
    "AlarmState",
    "Delivery",
    "DeliveryState",
    "Severity",
    "StoredAlarm",
    "can_transition",
    "ID_PATTERN",
    "Action",
    "Clock",
    "ErrorCode",
    "HearthError",
    "IntegrityError",
    "Issue",
    "Outcome",
    "Principal",
    "PrincipalKind",
    "Random",
    "ResourceRef",
    "ScopeContext",
    "Secret",
    "SmartScope",
    "StoredResource",
    "SystemClock",
    "SystemRandom",
    "errors",
    "intersect_scopes",
    "is_resource_scope",
]
