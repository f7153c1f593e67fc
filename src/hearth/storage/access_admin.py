"""Access administration, break-the-glass grants and audit queries, each change audited in its
own transaction (issue 5 items 6, 8, 9).

``AccessStore`` is the narrow interface the access services reach storage through. Every method
that changes something takes the audit records describing the change and appends them in the
same transaction: a role edit, a link, an approval or a break-the-glass grant never commits
without its entry. Free text that may hold PHI (the reason for an emergency, a reviewer's note)
is sealed under the data key with associated data bound to the grant; audit details are opened
only for the audit views.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import replace

import orjson

from hearth.audit import AuditRecord, sealed_aad
from hearth.crypto import KeyRing
from hearth.domain import Random
from hearth.storage.audit import AuditTrail
from hearth.storage.sql import access as sql
from hearth.storage.sql.access import AuditQuery, BreakGlassRow, LinkRow, RequestRow, RoleRow
from hearth.storage.sql.store import AuditRow, SqlStore

__all__ = [
    "AccessStore",
    "AuditQuery",
    "AuditRow",
    "BreakGlassRow",
    "LinkRow",
    "RequestRow",
    "RoleRow",
    "grant_aad",
]


def grant_aad(grant_id: str, part: str) -> bytes:
    """Associated data of a break-glass reason or review note (sealed under a ``secrets`` key)."""
    return b"hearth/break-glass/v1\x00%s\x00%s" % (part.encode("ascii"), grant_id.encode("ascii"))


class AccessStore:
    def __init__(
        self, store: SqlStore, audit: AuditTrail, keyring: KeyRing, random: Random
    ) -> None:
        self._store = store
        self._audit = audit
        self._keys = keyring
        self._random = random

    def blind(self, domain: str, value: str) -> bytes:
        """A keyed hash under the instance's blind-index key (family names for snooping)."""
        return self._keys.blind(domain, value)

    # -- roles --------------------------------------------------------------------------------
    def role_edits(self) -> list[RoleRow]:
        with self._store.read() as conn:
            return sql.role_rows(conn)

    def save_role(self, row: RoleRow, records: Sequence[AuditRecord]) -> None:
        with self._store.write() as conn:
            sql.save_role(conn, row)
            self._audit.append_in(conn, records)

    def drop_role_edit(self, name: str, records: Sequence[AuditRecord]) -> int:
        with self._store.write() as conn:
            dropped = sql.drop_role_edit(conn, name)
            self._audit.append_in(conn, records)
            return dropped

    # -- links ----------------------------------------------------------------------------------
    def link(self, user_id: str) -> LinkRow | None:
        with self._store.read() as conn:
            return sql.link_of(conn, user_id)

    def links(self) -> list[LinkRow]:
        with self._store.read() as conn:
            return sql.links(conn)

    def save_link(self, row: LinkRow, records: Sequence[AuditRecord]) -> None:
        with self._store.write() as conn:
            sql.save_link(conn, row)
            self._audit.append_in(conn, records)

    def resource_exists(self, res_type: str, res_id: str) -> bool:
        """Whether a current, undeleted ``Type/id`` exists (nothing is read but its state)."""
        with self._store.read() as conn:
            state = sql.current_state(conn, res_type, res_id)
        return state is not None and not state[1]

    # -- snooping pauses ------------------------------------------------------------------------
    def save_resume(
        self, user_id: str, now_us: int, by: str, records: Sequence[AuditRecord]
    ) -> None:
        with self._store.write() as conn:
            sql.save_resume(conn, user_id, now_us, by)
            self._audit.append_in(conn, records)

    def resumed_us(self, user_id: str) -> int | None:
        with self._store.read() as conn:
            return sql.resumed_us(conn, user_id)

    # -- approvals --------------------------------------------------------------------------------
    def create_request(self, row: RequestRow, records: Sequence[AuditRecord]) -> None:
        with self._store.write() as conn:
            sql.insert_request(conn, row)
            self._audit.append_in(conn, records)

    def request(self, request_id: str) -> RequestRow | None:
        with self._store.read() as conn:
            return sql.request(conn, request_id)

    def requests(self, status: str | None = None) -> list[RequestRow]:
        with self._store.read() as conn:
            return sql.requests(conn, status)

    def decide_request(
        self, request_id: str, status: str, by: str, now_us: int, records: Sequence[AuditRecord]
    ) -> bool:
        with self._store.write() as conn:
            if not sql.decide_request(conn, request_id, status, by, now_us):
                return False
            self._audit.append_in(conn, records)
            return True

    # -- break-the-glass ------------------------------------------------------------------------
    def create_grant(self, row: BreakGlassRow, reason: str, records: Sequence[AuditRecord]) -> None:
        sealed = self._keys.seal_secret(
            reason.encode("utf-8"), aad=grant_aad(row.grant_id, "reason"), random=self._random
        )
        with self._store.write() as conn:
            sql.insert_grant(conn, replace(row, reason=sealed))
            self._audit.append_in(conn, records)

    def grant(self, grant_id: str) -> BreakGlassRow | None:
        with self._store.read() as conn:
            return sql.grant(conn, grant_id)

    def grants(
        self,
        *,
        review_status: str | None = None,
        user_id: str | None = None,
        patient_id: str | None = None,
        since_us: int | None = None,
    ) -> list[BreakGlassRow]:
        with self._store.read() as conn:
            return sql.grants(
                conn,
                review_status=review_status,
                user_id=user_id,
                patient_id=patient_id,
                since_us=since_us,
            )

    def reason(self, row: BreakGlassRow) -> str:
        return self._keys.open_secret(row.reason, aad=grant_aad(row.grant_id, "reason")).decode(
            "utf-8"
        )

    def note(self, row: BreakGlassRow) -> str | None:
        if row.note is None:
            return None
        return self._keys.open_secret(row.note, aad=grant_aad(row.grant_id, "note")).decode("utf-8")

    def end_grant(self, grant_id: str, now_us: int, records: Sequence[AuditRecord]) -> bool:
        with self._store.write() as conn:
            if not sql.end_grant(conn, grant_id, now_us):
                return False
            self._audit.append_in(conn, records)
            return True

    def review_grant(
        self,
        grant_id: str,
        *,
        by: str,
        now_us: int,
        finding: str,
        note: str | None,
        records: Sequence[AuditRecord],
    ) -> bool:
        sealed = (
            self._keys.seal_secret(
                note.encode("utf-8"), aad=grant_aad(grant_id, "note"), random=self._random
            )
            if note
            else None
        )
        with self._store.write() as conn:
            if not sql.review_grant(
                conn, grant_id, by=by, now_us=now_us, finding=finding, note=sealed
            ):
                return False
            self._audit.append_in(conn, records)
            return True

    # -- the audit chain, for the audit views -----------------------------------------------------
    def audit_rows(self, query: AuditQuery, limit: int) -> list[AuditRow]:
        with self._store.read() as conn:
            return sql.audit_rows(conn, query, limit)

    def audit_row(self, seq: int) -> AuditRow | None:
        with self._store.read() as conn:
            return sql.audit_row(conn, seq)

    def chained(self, row: AuditRow) -> bool:
        """Whether the entry's stored hash is the keyed link of its body to the one before
        (the chain is the source of truth; ``hearth audit verify`` checks all of it)."""
        return self._keys.audit_link(row.prev_hash, row.body) == row.hash

    def audit_detail(self, row: AuditRow) -> dict[str, object] | None:
        """The sealed detail of an entry (a search's query and what it disclosed): PHI, opened
        only for an audit view that the decision point allowed."""
        body = orjson.loads(row.body)
        sealed = body.get("sealed")
        if not isinstance(sealed, str):
            return None
        plain = self._keys.open_audit_detail(base64.b64decode(sealed), aad=sealed_aad(row.seq))
        try:
            found = orjson.loads(plain)
        except orjson.JSONDecodeError:
            return {"text": plain.decode("utf-8", "replace")}
        return found if isinstance(found, dict) else {"value": found}

    def record(self, record: AuditRecord) -> None:
        """Append one entry, durable on return (for reads of the audit views)."""
        self._audit.record(record)
