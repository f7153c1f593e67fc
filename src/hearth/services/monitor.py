"""Snooping detection (issue 5 item 7; HIPAA 164.308(a)(1)(ii)(D) information system activity
review, 164.308(a)(5)(ii)(C) log-in monitoring's counterpart for record access).

The gate tells the monitor after every disclosure which patients' records a principal saw. Per
user it counts the distinct patients of the last hour and of the last day (sliding windows, in
the process or in Redis, keyed by keyed hashes: no user or patient id is stored in the clear).
Crossing ``[access] snooping_hour`` or ``snooping_day`` raises ``access.snooping``; with
``snooping_throttle`` the user's access is paused for the rest of the window
(``HRT-1109``) until it ends or a privacy officer lifts it.

A pause lives with the counters; a resume is recorded in the database (``access_resume``, with
its audit entry in the same transaction) as well as cleared from the counters. A process that
finds a user paused asks the database whether a resume is newer than the pause, so a resume by
another process (``hearth access resume`` on the command line, whose counters are its own when
there is no Redis) holds at once everywhere. Only a paused user's requests pay that read.

A write refused because it would have widened the user's own access (a care relationship,
practitioner role or Consent written for oneself: docs/design.md, "Relationships are written by
someone else") is flagged at once as well, kind ``self-link``: the gate has refused it, but a
user who tries is a user the privacy officer should talk to.

Where the data allows, two lookups are flagged at once: a user opening a Patient whose family
name equals their own (the keyed hash of the family name of the Practitioner or Patient they are
linked to, computed when they were linked, compared with the same keyed hash of the Patient's:
no name is decrypted for the comparison or stored), and a member of staff opening their own
patient record (a user linked to a Patient who does not hold a ``self`` role).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from hearth.domain import (
    Action,
    Alarm,
    AlarmKind,
    AlarmRaiser,
    Clock,
    Principal,
    PrincipalKind,
    Severity,
    StoredResource,
)
from hearth.fhir.search.values import fold
from hearth.security import PatientScope, RoleCatalog
from hearth.services.access import FAMILY_DOMAIN, access_record
from hearth.settings import AccessSettings
from hearth.storage import to_us
from hearth.storage.access_admin import AccessStore, LinkRow
from hearth.storage.throttle import ThrottleCounters

__all__ = ["AccessMonitor"]

_HOUR = 3600
_DAY = 86_400
_LINK_TTL = 30.0

KeyedHash = Callable[[str, str], str]


class AccessMonitor:
    def __init__(
        self,
        counters: ThrottleCounters,
        alarms: AlarmRaiser,
        store: AccessStore,
        catalog: Callable[[], RoleCatalog],
        settings: AccessSettings,
        *,
        clock: Clock,
        keyed_hash: KeyedHash,
    ) -> None:
        self._counters = counters
        self._alarms = alarms
        self._store = store
        self._catalog = catalog
        self.settings = settings
        self._clock = clock
        self._hash = keyed_hash
        self._links: dict[str, tuple[float, LinkRow | None]] = {}
        self._user_hashes: dict[str, str] = {}
        self._lock = threading.Lock()

    def _key(self, kind: str, user_id: str) -> str:
        return f"access:{kind}:{self._user_hash(user_id)}"

    def _user_hash(self, user_id: str) -> str:
        # One keyed hash per user, not one per read: they are remembered (a bounded table).
        hashed = self._user_hashes.get(user_id)
        if hashed is None:
            hashed = self._hash("access/v1/monitor-user", user_id)
            if len(self._user_hashes) >= 10_000:
                self._user_hashes.clear()
            self._user_hashes[user_id] = hashed
        return hashed

    @staticmethod
    def _watched(principal: Principal) -> bool:
        """People are watched; services and Hearth itself are not (their volume is their job)."""
        return principal.kind is PrincipalKind.USER

    # -- throttling ---------------------------------------------------------------------------
    def throttled(self, principal: Principal) -> bool:
        if not self.settings.snooping_throttle or not self._watched(principal):
            return False
        now_us = to_us(self._clock.now())
        key = self._key("paused", principal.subject)
        paused = self._counters.failures(key, now_us)
        if paused.count == 0:
            return False
        # Paused here; lifted if a resume was recorded since, by any process. The times of two
        # processes are compared: their clocks are assumed to agree, as grant expiry assumes.
        resumed = self._store.resumed_us(principal.subject)
        if resumed is not None and paused.last_us is not None and resumed >= paused.last_us:
            self._counters.clear(key)
            return False
        return True

    def lift(self, principal: Principal, user_id: str) -> None:
        """End ``user_id``'s pause (a privacy officer after looking into it, or the operator):
        recorded with its audit entry (``access.resume``), then cleared from the counters."""
        now = self._clock.now()
        record = access_record(principal, "access.resume", now, res_type="User", res_id=user_id)
        self._store.save_resume(user_id, to_us(now), principal.subject, [record])
        self._counters.clear(self._key("paused", user_id))

    # -- observing ------------------------------------------------------------------------------
    def observe(
        self, principal: Principal, patients: frozenset[str], resources: Sequence[StoredResource]
    ) -> None:
        if not self._watched(principal) or not patients:
            return
        now_us = to_us(self._clock.now())
        for window, seconds, limit in (
            ("hour", _HOUR, self.settings.snooping_hour),
            ("day", _DAY, self.settings.snooping_day),
        ):
            key = self._key(f"seen-{window}", principal.subject)
            count = 0
            for patient in sorted(patients):
                member = self._hash("access/v1/monitor-patient", patient)
                count = self._counters.add_member(key, member, now_us, seconds)
            if count > limit:
                # One alarm (and one pause) per user per window, in every process that shares
                # the counters: a pause lifted by a privacy officer stays lifted.
                alarmed = self._key(f"alarmed-{window}", principal.subject)
                if self._counters.failures(alarmed, now_us).count == 0:
                    self._counters.add_failure(alarmed, now_us, seconds)
                    self._volume(principal, window, count, limit, seconds, now_us)
        if self.settings.same_surname:
            self._lookups(principal, resources)

    def _volume(
        self, principal: Principal, window: str, count: int, limit: int, seconds: int, now_us: int
    ) -> None:
        paused = self.settings.snooping_throttle
        if paused:
            self._counters.add_failure(self._key("paused", principal.subject), now_us, seconds)
        self._alarms.raise_alarm(
            Alarm(
                AlarmKind.ACCESS_SNOOPING,
                Severity.WARNING,
                f"user:{principal.subject}",
                f"A user opened the records of more than {limit} distinct patients in one "
                f"{window}.",
                {
                    "user": principal.subject,
                    "window": window,
                    "patients": str(count),
                    "threshold": str(limit),
                    "paused": "yes" if paused else "no",
                },
            )
        )

    def _link(self, user_id: str) -> LinkRow | None:
        now = time.monotonic()
        with self._lock:
            cached = self._links.get(user_id)
            if cached is not None and now - cached[0] < _LINK_TTL:
                return cached[1]
        link = self._store.link(user_id)
        with self._lock:
            if len(self._links) > 10_000:
                self._links.clear()
            self._links[user_id] = (now, link)
        return link

    def _lookups(self, principal: Principal, resources: Sequence[StoredResource]) -> None:
        people = [r for r in resources if r.res_type == "Patient" and r.resource is not None]
        if not people:
            return
        link = self._link(principal.subject)
        if link is None:
            return
        catalog = self._catalog()
        is_patient_user = any(r.patients is PatientScope.SELF for r in catalog.of(principal.roles))
        for person in people:
            if link.patient_id == person.res_id:
                if not is_patient_user:
                    self._flag(principal, person.res_id, "self", "opened their own record")
                continue
            key = self._family(person)
            if key is not None and link.family_key is not None and key == link.family_key:
                self._flag(
                    principal,
                    person.res_id,
                    "same-surname",
                    "opened a record with their own family name",
                )

    def self_link(self, principal: Principal, action: Action, res_type: str, res_id: str) -> None:
        """The gate refused a write that would have widened the user's own access: flag it,
        naming the user and the resource by id (one alarm per user, repeats counted on it)."""
        if not self._watched(principal):
            return
        self._alarms.raise_alarm(
            Alarm(
                AlarmKind.ACCESS_SNOOPING,
                Severity.WARNING,
                f"user:{principal.subject}/self-link",
                "A user tried to write a care relationship, practitioner role or Consent that "
                "would widen their own access; it was refused.",
                {
                    "user": principal.subject,
                    "kind": "self-link",
                    "action": str(action),
                    "resource": f"{res_type}/{res_id}",
                },
            )
        )

    def _family(self, person: StoredResource) -> bytes | None:
        for name in (person.resource or {}).get("name") or ():
            if isinstance(name, dict) and isinstance(name.get("family"), str) and name["family"]:
                return self._store.blind(FAMILY_DOMAIN, fold(name["family"]))
        return None

    def _flag(self, principal: Principal, patient_id: str, kind: str, what: str) -> None:
        self._alarms.raise_alarm(
            Alarm(
                AlarmKind.ACCESS_SNOOPING,
                Severity.WARNING,
                f"user:{principal.subject}/Patient/{patient_id}",
                f"A user {what}.",
                {"user": principal.subject, "patient": f"Patient/{patient_id}", "kind": kind},
            )
        )
