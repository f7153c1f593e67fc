"""The schema, in SQLAlchemy Core. Migrations in ``migrations/`` create exactly this.

Columns hold no plaintext PHI. The clear columns, and why each is safe, are listed in
docs/design.md ("What the database holds in the clear").
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

__all__ = [
    "client_certificate",
    "oauth_assertion",
    "oauth_client",
    "oauth_code",
    "oauth_grant",
    "oauth_launch",
    "oauth_refresh",
    "alarm",
    "alarm_delivery",
    "access_break_glass",
    "access_link",
    "access_request",
    "access_resume",
    "access_role",
    "api_token",
    "audit_checkpoint",
    "audit_entry",
    "audit_head",
    "audit_patient",
    "counter",
    "crypto_key",
    "instance_meta",
    "integrity_finding",
    "metadata",
    "resource_current",
    "resource_version",
    "recovery_code",
    "scanner_state",
    "user_account",
    "user_enrolment",
    "web_session",
    "webauthn_credential",
    "search_compartment",
    "search_hash",
    "search_reference",
    "search_resource",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# MariaDB's BLOB holds 64 KiB; resource bodies and audit entries can be larger.
Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
Digest = LargeBinary(32).with_variant(mysql.VARBINARY(32), "mysql", "mariadb")
BlindKey = LargeBinary(16).with_variant(mysql.VARBINARY(16), "mysql", "mariadb")

instance_meta = Table(
    "instance_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(512), nullable=False),
)

# Gap-free sequences: a row per sequence, incremented under a row lock inside the writing
# transaction, so a rolled-back write leaves no hole (autoincrement columns do).
counter = Table(
    "counter",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

crypto_key = Table(
    "crypto_key",
    metadata,
    Column("key_id", Integer, primary_key=True, autoincrement=False),
    Column("purpose", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("wrapped", LargeBinary(128).with_variant(mysql.VARBINARY(128), "mysql", "mariadb")),
    Column("kek_id", String(32), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("rotated_us", BigInteger),
    Column("retired_us", BigInteger),
)

# Every version of every resource, immutable once written. ``seq`` is the global, gap-free
# version sequence that incremental backups and point-in-time restore follow.
resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("key_id", Integer),
    Column("body", Blob),
    Column("mac_key_id", Integer, nullable=False),
    Column("mac", Digest, nullable=False),
    UniqueConstraint("res_type", "res_id", "version"),
    Index(None, "res_type", "seq"),
    Index(None, "ts_us"),
    Index(None, "key_id"),
)

# The newest version of each resource: what read and search start from.
resource_current = Table(
    "resource_current",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("deleted", Boolean, nullable=False),
    Column("ts_us", BigInteger, nullable=False),
)

# The audit chain. ``body`` is the canonical entry (see hearth.audit.entry); the other columns
# repeat fields of it for querying and are checked against it by ``hearth audit verify``.
audit_entry = Table(
    "audit_entry",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("res_type", String(64)),
    Column("res_id", String(64)),
    # The resource version the entry is about; lets verification match every stored version
    # with the audit entry of the write that made it, and back.
    Column("version", Integer),
    Column("patient", String(64)),
    Column("detail_key_id", Integer),  # the data key that sealed this entry's detail, if any
    Column("body", Blob, nullable=False),
    Column("prev_hash", Digest, nullable=False),
    Column("hash", Digest, nullable=False),
    Index(None, "actor", "ts_us"),
    Index(None, "patient", "ts_us"),
    Index(None, "res_type", "res_id", "version"),
    Index(None, "ts_us"),
    Index(None, "detail_key_id"),
)

# The signed head of the chain (one row), rewritten at every commit, so that removing entries
# from the end is detected; and periodic signed checkpoints that localise damage.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", Digest, nullable=False),
    # The resource version sequence at the head's commit, signed with it.
    Column("version_seq", BigInteger, nullable=False, server_default="0"),
    Column("key_id", Integer, nullable=False),
    Column("signature", LargeBinary(64).with_variant(mysql.VARBINARY(64), "mysql", "mariadb")),
)

audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("hash", Digest, nullable=False),
    Column("key_id", Integer, nullable=False),
    Column(
        "signature",
        LargeBinary(64).with_variant(mysql.VARBINARY(64), "mysql", "mariadb"),
        nullable=False,
    ),
)

# Bootstrap bearer tokens (until full authentication replaces them): only a digest is stored.
api_token = Table(
    "api_token",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("subject", String(128), nullable=False),
    Column("roles", String(256), nullable=False),
    Column("digest", Digest, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger),
    Column("revoked_us", BigInteger),
    Column("label", String(128), nullable=False, default=""),
)


# People who sign in (issue 4). ``user_id`` is random and never changes or gets reused: it is the
# subject of every audit entry (HIPAA 164.312(a)(2)(i)). ``username`` is what people type. Secrets
# are stored only as argon2id hashes (passwords, PINs, recovery codes) or sealed under a data key
# (the TOTP seed, which the server must be able to read: NIST-OTP-03).
user_account = Table(
    "user_account",
    metadata,
    Column("user_id", String(40), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False),
    Column("roles", String(512), nullable=False),
    Column("status", String(16), nullable=False),  # active | disabled
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("locked_us", BigInteger),  # too many failed sign-ins; an administrator unlocks
    Column("password_hash", String(512)),
    Column("totp_secret", Blob),  # sealed, AAD bound to the user id
    Column("totp_last_step", BigInteger),  # RFC 6238 step last accepted: replay refusal
    Column("pin_hash", String(512)),
    # The WebAuthn user handle (random, not the user id: W3C WebAuthn sec. 14.6.1).
    Column("webauthn_handle", Digest, nullable=False, unique=True),
)

recovery_code = Table(
    "recovery_code",
    metadata,
    Column("user_id", String(40), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("code_hash", String(512), nullable=False),
)

# WebAuthn credentials; ``cred_digest`` (SHA-256 of the credential id) is the key, because ids
# may be up to 1023 bytes, longer than MariaDB allows in an index.
webauthn_credential = Table(
    "webauthn_credential",
    metadata,
    Column("cred_digest", Digest, primary_key=True),
    Column("credential_id", Blob, nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("name", String(64), nullable=False),
    Column("public_key", Blob, nullable=False),
    Column("sign_count", BigInteger, nullable=False),
    Column("transports", String(128), nullable=False),
    Column("aaguid", String(36), nullable=False),
    Column("user_verified", Boolean, nullable=False),
    Column("backup_eligible", Boolean, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("last_used_us", BigInteger),
    Index(None, "user_id"),
)

# One-time set-up links (``hearth user add``, ``hearth serve --issue-admin-credential``).
user_enrolment = Table(
    "user_enrolment",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("user_id", String(40), nullable=False),
    Column("digest", Digest, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("used_us", BigInteger),
    Index(None, "user_id"),
)

# Console sessions when they live in the database (else in Redis). The key is SHA-256 of the
# cookie's value, so a copy of this table holds no usable session. ``data`` is the sealed state
# of a sign-in in progress (the pending second factor, a WebAuthn challenge).
web_session = Table(
    "web_session",
    metadata,
    Column("id_digest", Digest, primary_key=True),
    Column("user_id", String(40)),
    Column("state", String(16), nullable=False),  # pending | active | locked
    Column("created_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("auth_us", BigInteger),
    Column("step_up_us", BigInteger),
    Column("amr", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("pin_failures", Integer, nullable=False),
    Column("data", Blob),
    Column("source", String(64)),
    Index(None, "user_id"),
    Index(None, "expires_us"),
)

# -- search indexes (docs/design.md, "Search indexes"). Derived from the current version of each
# resource inside the transaction that writes it, and rebuilt from the sealed versions by
# ``hearth reindex``. Every row is keyed by the ``seq`` of the version it describes.

# One row per current, non-deleted resource: the root every search starts from. Random id,
# type and write time are in the clear (the write time is in resource_version already).
search_resource = Table(
    "search_resource",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    UniqueConstraint("res_type", "res_id"),
    Index(None, "res_type", "ts_us"),
)

# Blind-index keys: HMAC-SHA-256 (truncated to 16 bytes) of (parameter domain, key) under the
# blind-index key. No value, type or parameter name is stored: the domain is inside the HMAC.
search_hash = Table(
    "search_hash",
    metadata,
    Column("hash", BlindKey, primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Index(None, "seq"),
    sqlite_with_rowid=False,
)

# Literal references between resources, in the clear: parameter code, target type and random
# target id. Chains, _include, _revinclude and _has join on these.
search_reference = Table(
    "search_reference",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("param", String(64), primary_key=True),
    Column("target_type", String(64), primary_key=True),
    Column("target_id", String(64), primary_key=True),
    Column("res_type", String(64), nullable=False),
    Index(None, "target_id", "target_type", "param", "res_type", "seq"),
    sqlite_with_rowid=False,
)

# The patient compartment (compartmentdefinition-patient.html): which patients' records hold
# each resource. $everything and access scoping by patient filter on it in SQL.
search_compartment = Table(
    "search_compartment",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Index(None, "seq"),
    sqlite_with_rowid=False,
)

# Care relationships (hearth.security.relationships): the actors (Practitioner, PractitionerRole,
# Organization) each current resource links to the patients in its compartment, derived on write
# from the same version as the other index tables. Access scoping probes it per candidate row
# (patient first) and lists a clinician's patients from it (actor first). Random ids only.
search_care_link = Table(
    "search_care_link",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("actor_type", String(64), primary_key=True),
    Column("actor_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Index(None, "actor_id", "actor_type", "patient_id"),
    Index(None, "seq"),
    sqlite_with_rowid=False,
)


# ---------------------------------------------------------------- OAuth 2 / SMART (docs/design.md
# "OAuth 2 and SMART"). No PHI: registration metadata, random ids, digests of secrets, scopes,
# and the launch patient's random resource id (the same clear id audit entries carry).

# Registered SMART apps and backend services. ``metadata`` is canonical JSON with the RFC 7591
# names (redirect_uris, scope, grant_types, jwks, jwks_uri, launch_uri) plus Hearth's roles.
oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("auth_method", String(32), nullable=False),
    Column("metadata", Text, nullable=False),
    Column("secret_digest", Digest),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger),
    Column("created_by", String(128), nullable=False),
)

# One authorization: what a client may do for a subject. Every access token names its grant;
# refresh tokens rotate within it (a family); revoking it ends every token it issued.
oauth_grant = Table(
    "oauth_grant",
    metadata,
    Column("grant_id", String(32), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("roles", String(256), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient", String(64)),
    Column("encounter", String(64)),
    Column("fhir_user", String(160)),
    Column("cnf", String(64)),  # x5t#S256 of the certificate the tokens are bound to
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger),
    Column("revoke_reason", String(32)),
    Index(None, "subject"),
    Index(None, "client_id"),
)

oauth_refresh = Table(
    "oauth_refresh",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("grant_id", String(32), nullable=False, index=True),
    Column("digest", Digest, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("used_us", BigInteger),
)

# Authorization codes: single use, 10 minutes at most (ASVS 10.4.2/10.4.3). ``request`` is the
# approved request as canonical JSON; ``grant_id`` names the grant a redeemed code produced, so
# that a second redemption revokes it (RFC 6749 sec. 4.1.2).
oauth_code = Table(
    "oauth_code",
    metadata,
    Column("code_id", String(32), primary_key=True),
    Column("digest", Digest, nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("redirect_uri", String(512), nullable=False),
    Column("challenge", String(128), nullable=False),
    Column("request", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("used_us", BigInteger),
    Column("grant_id", String(32)),
)

# EHR launch contexts (SMART-LC-01): single use, short-lived, bound to the user who launched.
oauth_launch = Table(
    "oauth_launch",
    metadata,
    Column("launch_id", String(32), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("patient", String(64)),
    Column("encounter", String(64)),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("used_us", BigInteger),
)

# Client assertion ids seen, until the assertion expires (replay defence, SMART-BS-06). The jti
# is stored as a SHA-256 digest: it is the client's string, of any length.
oauth_assertion = Table(
    "oauth_assertion",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti_digest", Digest, primary_key=True),
    Column("expires_us", BigInteger, nullable=False, index=True),
)

# Client certificates mapped explicitly to a user or a client (mutual TLS, RFC 8705), by the
# SHA-256 thumbprint of the DER certificate (x5t#S256).
client_certificate = Table(
    "client_certificate",
    metadata,
    Column("thumbprint", String(64), primary_key=True),
    Column("subject_kind", String(16), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("not_after_us", BigInteger, nullable=False),
    Column("label", String(128), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger),
    Index(None, "subject_kind", "subject"),
)


# -- alarms (docs/design.md, "Alarms"). An alarm names records by type and random id and users
# by id, never by content; operators' notes are sealed like resource bodies, since free text
# typed during an incident may name a patient.

# ``active_key`` is the de-duplication key while the alarm is open or acknowledged and NULL once
# it is resolved: the unique constraint allows any number of NULLs on all three engines, so it
# enforces "at most one active alarm per key" without partial indexes (MariaDB has none).
alarm = Table(
    "alarm",
    metadata,
    Column("alarm_id", String(32), primary_key=True),
    Column("kind", String(48), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("subject", String(160), nullable=False),
    Column("active_key", String(220), unique=True),
    Column("summary", String(512), nullable=False),
    Column("details", String(2048), nullable=False),  # canonical JSON object of strings
    Column("state", String(16), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("first_seen_us", BigInteger, nullable=False),
    Column("last_seen_us", BigInteger, nullable=False),
    Column("notices", Integer, nullable=False),
    Column("last_notified_us", BigInteger),
    Column("ack_by", String(128)),
    Column("ack_us", BigInteger),
    Column("ack_note", Blob),  # sealed, AAD bound to the alarm id and the transition
    Column("resolved_by", String(128)),
    Column("resolved_us", BigInteger),
    Column("resolve_note", Blob),
    Index(None, "state", "last_seen_us"),
    Index(None, "kind", "last_seen_us"),
)

# The outbox: one row per notice per sink, written in the transaction that records the alarm,
# so a notice survives a crash and is delivered (or retried) by whichever process's worker
# claims it first. ``claimed_until`` is a lease, so two processes never send the same attempt.
alarm_delivery = Table(
    "alarm_delivery",
    metadata,
    Column("delivery_id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_id", String(32), nullable=False),
    Column("sink", String(64), nullable=False),
    Column("notice", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("claimed_until_us", BigInteger),
    Column("last_attempt_us", BigInteger),
    Column("delivered_us", BigInteger),
    Column("last_error", String(256)),
    Index(None, "state", "next_attempt_us"),
    Index(None, "alarm_id"),
)

# -- the integrity scanner (docs/design.md, "Integrity scanner").

# Cursors and the audit anchor, one row each: what has been checked, so a restart continues.
scanner_state = Table(
    "scanner_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# What the scanner found, one row per damaged thing while it stays damaged (``active_key`` as
# for alarms). ``hearth integrity repair`` reads the open rows of kind ``version`` and marks
# them repaired; a later pass that finds the thing healthy marks it cleared.
integrity_finding = Table(
    "integrity_finding",
    metadata,
    Column("finding_id", Integer, primary_key=True, autoincrement=True),
    Column("active_key", String(200), unique=True),
    Column("kind", String(16), nullable=False),  # version | missing | pointer | index | audit
    Column("seq", BigInteger, nullable=False),  # version seq, or audit entry seq for kind audit
    Column("res_type", String(64)),
    Column("res_id", String(64)),
    Column("version", Integer),
    Column("problem", String(256), nullable=False),
    Column("state", String(16), nullable=False),  # open | repaired | cleared
    Column("first_found_us", BigInteger, nullable=False),
    Column("last_found_us", BigInteger, nullable=False),
    Column("closed_us", BigInteger),
    Column("closed_by", String(128)),
    Column("alarm_id", String(32)),
    Index(None, "state", "kind"),
    Index(None, "res_type", "res_id"),
)


# -- access control (docs/design.md, "Access control"). None of these columns holds PHI in the
# clear: role definitions, random ids, times, states; the break-the-glass reason and review note
# are free text and sealed under the data key.

# Administrators' edits of the role set: a row replaces the shipped default definition of one
# role (``deleted`` removes it). The shipped defaults are data in hearth/security/data/roles.json.
access_role = Table(
    "access_role",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("definition", Blob),  # canonical JSON; NULL when deleted
    Column("deleted", Boolean, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("updated_by", String(128), nullable=False),
)

# Which FHIR resource a user is: a Practitioner (clinicians: relationship scoping) and/or a Patient
# (patient users, and staff who are also patients: self-lookup detection). ``family_key`` is the
# keyed hash of the linked person's family name in the snooping domain, never the name itself.
access_link = Table(
    "access_link",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("practitioner_id", String(64)),
    Column("patient_id", String(64)),
    Column("family_key", BlindKey),
    Column("updated_us", BigInteger, nullable=False),
    Column("updated_by", String(128), nullable=False),
    Index(None, "practitioner_id"),
    Index(None, "patient_id"),
)

# Administrative changes waiting for a second administrator (self-granted clinical access).
access_request = Table(
    "access_request",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("target", String(128), nullable=False),
    Column("payload", Blob, nullable=False),  # canonical JSON: role names, ids
    Column("requested_by", String(128), nullable=False),
    Column("requested_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | rejected
    Column("decided_by", String(128)),
    Column("decided_us", BigInteger),
    Index(None, "status", "requested_us"),
)

# Break-the-glass grants and their review queue.
access_break_glass = Table(
    "access_break_glass",
    metadata,
    Column("grant_id", String(40), primary_key=True),
    Column("user_id", String(128), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("reason", Blob, nullable=False),  # sealed, AAD bound to the grant id
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("ended_us", BigInteger),
    Column("review_status", String(16), nullable=False),  # open | closed
    Column("reviewed_by", String(128)),
    Column("reviewed_us", BigInteger),
    Column("finding", String(32)),
    Column("note", Blob),  # sealed
    Index(None, "user_id", "expires_us"),
    Index(None, "review_status", "created_us"),
)

# The last time each user's snooping pause was lifted (``hearth access resume``, the API). A
# pause lives in the throttle counters (in the process, or in Redis); a process that finds a user
# paused reads this row and lets them through when the resume is newer than the pause, so a resume
# reaches every process, the command line's included, without shared counters.
access_resume = Table(
    "access_resume",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("resumed_us", BigInteger, nullable=False),
    Column("resumed_by", String(128), nullable=False),
)

# The patients an audit entry disclosed records of, when it names several (a search, a history
# page, $everything): the per-patient accounting of disclosures reads it. Derived from the
# entry's own ``patients`` field, which the hash chain covers.
audit_patient = Table(
    "audit_patient",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Index(None, "seq"),
    sqlite_with_rowid=False,
)
