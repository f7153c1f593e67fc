"""Errors with stable codes.

Every failure Hearth reports carries a code such as ``HRT-0301`` that never changes meaning, an
HTTP status and a FHIR ``IssueType`` (R4 valueset-issue-type). The message is written for the
person reading it and never contains PHI: it names what was wrong with the request, not the
values in it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ErrorCode",
    "HearthError",
    "IntegrityError",
    "Issue",
    "ALL_CODES",
    "by_code",
]


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """A stable error code with its HTTP status and FHIR issue type."""

    code: str
    status: int
    issue: str
    title: str


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem found in a request, for an OperationOutcome ``issue`` entry.

    ``expression`` is a FHIRPath-like location (``Patient.name[0].given``); it names elements,
    never values, so it is safe to echo back and to log.
    """

    code: ErrorCode
    diagnostics: str
    expression: str | None = None
    severity: str = "error"


class HearthError(Exception):
    """The base of every error Hearth raises on purpose.

    ``detail`` is shown to the client; it must not contain PHI or secrets.
    """

    def __init__(
        self,
        code: ErrorCode,
        detail: str | None = None,
        *,
        issues: tuple[Issue, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.detail = detail or code.title
        self.issues = issues
        self.headers = headers or {}
        #: Set by the repository gate once the failure has an audit entry.
        self.audited = False
        super().__init__(f"{code.code}: {self.detail}")

    @property
    def status(self) -> int:
        return self.code.status


class IntegrityError(HearthError):
    """A sealed blob, MAC, signature or chain did not verify.

    Deliberately opaque (pyca/cryptography's ``InvalidTag`` model): every failure looks the same
    to the caller, so a probe learns nothing about which check failed.
    """

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(INTEGRITY_FAILED, detail)


ALL_CODES: list[ErrorCode] = []
_BY_CODE: dict[str, ErrorCode] = {}


def _code(code: str, status: int, issue: str, title: str) -> ErrorCode:
    ec = ErrorCode(code, status, issue, title)
    ALL_CODES.append(ec)
    _BY_CODE.setdefault(code, ec)
    return ec


def by_code(code: str) -> ErrorCode:
    return _BY_CODE[code]


# 01xx: request syntax and transport
MALFORMED_JSON = _code("HRT-0101", 400, "structure", "The request body is not valid JSON.")
UNSUPPORTED_MEDIA_TYPE = _code(
    "HRT-0102", 415, "not-supported", "Send application/fhir+json or application/json."
)
PAYLOAD_TOO_LARGE = _code("HRT-0103", 413, "too-costly", "The request body exceeds the limit.")
NESTING_TOO_DEEP = _code("HRT-0104", 400, "structure", "The JSON nests too deeply.")
BAD_ID = _code(
    "HRT-0105", 400, "value", "Resource ids are 1 to 64 characters of A-Z a-z 0-9 - and ."
)
UNKNOWN_RESOURCE_TYPE = _code("HRT-0106", 404, "not-supported", "Unknown resource type.")
METHOD_NOT_ALLOWED = _code("HRT-0107", 405, "not-supported", "Method not allowed here.")
NOT_ACCEPTABLE = _code("HRT-0108", 406, "not-supported", "Only FHIR JSON can be returned.")
BAD_REQUEST = _code("HRT-0109", 400, "invalid", "The request is malformed.")
ROUTE_NOT_FOUND = _code("HRT-0110", 404, "not-found", "No such endpoint.")
ARRAY_TOO_LONG = _code("HRT-0111", 400, "too-costly", "A JSON array is longer than allowed.")
BAD_VERSION_ID = _code("HRT-0112", 400, "value", "Version ids are positive integers.")
BAD_PARAMETER = _code("HRT-0113", 400, "invalid", "A request parameter is not valid.")
NOT_IMPLEMENTED = _code("HRT-0114", 501, "not-supported", "This interaction is not supported yet.")
PAGE_LINK_INVALID = _code(
    "HRT-0115",
    400,
    "invalid",
    "The page link is invalid, has expired or belongs to another request: search again.",
)
UNKNOWN_OPERATION = _code(
    "HRT-0116",
    400,
    "not-supported",
    "This server has no such operation; its CapabilityStatement (/metadata) lists the ones it has.",
)
HEADERS_TOO_LARGE = _code(
    "HRT-0117",
    431,
    "too-costly",
    "The request line and header fields exceed 64 KiB, or there are more than 100 header fields.",
)

# 02xx: resource content
INVALID_RESOURCE = _code("HRT-0201", 400, "structure", "The resource is not valid FHIR R4.")
TYPE_MISMATCH = _code(
    "HRT-0202", 400, "invalid", "The resource type in the body does not match the URL."
)
ID_MISMATCH = _code("HRT-0203", 400, "invalid", "The id in the body does not match the URL.")
UNKNOWN_ELEMENT = _code("HRT-0204", 400, "structure", "Unknown element.")
WRONG_TYPE = _code("HRT-0205", 400, "value", "An element has the wrong type.")
CARDINALITY = _code("HRT-0206", 400, "structure", "An element occurs the wrong number of times.")
REQUIRED_MISSING = _code("HRT-0207", 400, "required", "A required element is missing.")
BAD_REFERENCE = _code("HRT-0208", 400, "value", "A reference is malformed.")
BAD_PATCH = _code("HRT-0209", 400, "invalid", "The JSON Patch document is not valid.")
PATCH_FAILED = _code("HRT-0210", 422, "processing", "The JSON Patch could not be applied.")
BUSINESS_RULE = _code("HRT-0211", 422, "business-rule", "The resource breaks a rule of FHIR R4.")
MISSING_RESOURCE_TYPE = _code("HRT-0212", 400, "required", "The body has no resourceType.")
BAD_PRIMITIVE = _code("HRT-0213", 400, "value", "A primitive value is not in the allowed format.")
CODE_NOT_IN_VALUE_SET = _code(
    "HRT-0214", 400, "code-invalid", "A code is not in the value set its element requires."
)

# 03xx: versions and preconditions
NOT_FOUND = _code("HRT-0301", 404, "not-found", "Resource not found.")
GONE = _code("HRT-0302", 410, "deleted", "The resource has been deleted.")
VERSION_CONFLICT = _code(
    "HRT-0303", 412, "conflict", "The resource has changed since the version you sent in If-Match."
)
BAD_IF_MATCH = _code("HRT-0304", 400, "invalid", 'If-Match must be a weak ETag such as W/"3".')
VERSION_NOT_FOUND = _code(
    "HRT-0305", 404, "not-found", "That version of the resource was not found."
)
CONFLICT = _code("HRT-0306", 409, "conflict", "The write conflicts with a concurrent change.")

# 04xx: authentication and authorization
UNAUTHENTICATED = _code("HRT-0401", 401, "login", "Authentication is required.")
FORBIDDEN = _code("HRT-0402", 403, "forbidden", "You are not allowed to do this.")
TLS_REQUIRED = _code("HRT-0403", 400, "security", "Serve over TLS outside loopback.")

# 0420-0449: OAuth 2, SMART App Launch and client certificates. Each maps to one RFC 6749 /
# RFC 7009 / RFC 7662 error string (hearth.auth.oauth.errors); messages never quote a token.
OAUTH_INVALID_REQUEST = _code(
    "HRT-0420", 400, "invalid", "The OAuth request is malformed or lacks a required parameter."
)
INVALID_CLIENT = _code("HRT-0421", 401, "login", "Client authentication failed.")
INVALID_GRANT = _code(
    "HRT-0422",
    400,
    "security",
    "The authorization code or refresh token is invalid, expired, revoked or not this client's.",
)
UNAUTHORIZED_CLIENT = _code(
    "HRT-0423", 400, "forbidden", "This client is not registered for this grant type."
)
UNSUPPORTED_GRANT_TYPE = _code("HRT-0424", 400, "not-supported", "Unsupported grant type.")
INVALID_SCOPE = _code(
    "HRT-0425", 400, "invalid", "The requested scope is malformed or not allowed for this client."
)
ACCESS_DENIED = _code("HRT-0426", 403, "forbidden", "The authorization request was denied.")
UNSUPPORTED_RESPONSE_TYPE = _code(
    "HRT-0427",
    400,
    "not-supported",
    "Only the authorization code flow (response_type=code) is supported.",
)
INVALID_REDIRECT = _code(
    "HRT-0428",
    400,
    "security",
    "Unknown client or unregistered redirect URI: the request cannot be answered safely.",
)
CERTIFICATE_REFUSED = _code(
    "HRT-0429",
    401,
    "security",
    "The client certificate is not accepted (unknown, not mapped, expired or revoked).",
)
UNKNOWN_CLIENT = _code("HRT-0430", 404, "not-found", "No such client.")
INVALID_CLIENT_METADATA = _code("HRT-0431", 400, "invalid", "The client registration is not valid.")

# 05xx: server and safeguards
INTERNAL = _code("HRT-0501", 500, "exception", "Internal error. The incident has been logged.")
AUDIT_FAILED = _code(
    "HRT-0502", 503, "transient", "The audit trail could not be written, so nothing was done."
)
INTEGRITY_FAILED = _code(
    "HRT-0503", 500, "exception", "A stored record failed its integrity check."
)
STORAGE_UNAVAILABLE = _code("HRT-0504", 503, "transient", "The database is unavailable.")
KEY_UNAVAILABLE = _code("HRT-0505", 500, "security", "A required key is not available.")
AUDIT_CHAIN_BROKEN = _code(
    "HRT-0506", 409, "business-rule", "The audit chain does not verify, so this cannot be done."
)

# 06xx: authentication (authenticators: passwords, TOTP, recovery codes, PINs)
PASSWORD_TOO_SHORT = _code(
    "HRT-0601",
    422,
    "business-rule",
    "Choose a longer password: at least 15 characters, or 8 if you also use a second factor.",
)
PASSWORD_TOO_LONG = _code(
    "HRT-0602", 422, "business-rule", "Choose a shorter password: at most 256 characters."
)
PASSWORD_BAD_CHARACTER = _code(
    "HRT-0603",
    422,
    "business-rule",
    "Remove control characters (such as tabs or line breaks) from the password.",
)
PASSWORD_BLOCKLISTED = _code(
    "HRT-0604",
    422,
    "business-rule",
    "Choose another password: this one is common, a simple pattern or known from data breaches.",
)
PASSWORD_CONTEXT_WORD = _code(
    "HRT-0605",
    422,
    "business-rule",
    "Choose another password: it must not be your user name or the service name.",
)
AUTHENTICATION_FAILED = _code(
    "HRT-0606", 401, "login", "Sign-in failed. Check what you entered and try again."
)
TOTP_INVALID = _code(
    "HRT-0607", 401, "login", "The code is not valid. Enter the current code from your app."
)
TOTP_REPLAYED = _code(
    "HRT-0608", 401, "login", "That code was already used. Wait for the next code and enter it."
)
RECOVERY_CODE_INVALID = _code(
    "HRT-0609",
    401,
    "login",
    "The recovery code is not valid or was already used. Enter another of your codes.",
)
PIN_FORMAT = _code(
    "HRT-0610", 422, "business-rule", "Choose a PIN of 6 to 16 digits, with nothing but digits."
)
PIN_GUESSABLE = _code(
    "HRT-0611",
    422,
    "business-rule",
    "Choose a PIN that is not a simple pattern such as 123456, 111111 or 121212.",
)
PIN_INVALID = _code(
    "HRT-0612",
    401,
    "login",
    "The PIN is not correct. Try again; after five wrong PINs you are signed out.",
)
TOTP_SECRET_INVALID = _code(
    "HRT-0613",
    500,
    "exception",
    "A stored TOTP secret is malformed. Reset the user's second factor and enrol again.",
)

# 11xx: access control (roles, relationships, masks, break-the-glass, audit views)
ROLE_INVALID = _code("HRT-1101", 400, "invalid", "The role definition is not valid.")
ROLE_BUILTIN = _code(
    "HRT-1102", 409, "business-rule", "This role is built in and cannot be changed or removed."
)
APPROVAL_NOT_FOUND = _code(
    "HRT-1103", 404, "not-found", "No pending request with that id (it may have expired)."
)
APPROVAL_SELF = _code(
    "HRT-1104",
    403,
    "security",
    "Another administrator must approve this: nobody approves a change they asked for or that "
    "gives them clinical access.",
)
BREAK_GLASS_NOT_ACTIVE = _code(
    "HRT-1105",
    403,
    "forbidden",
    "No active break-the-glass grant of yours has that id; declare an emergency first.",
)
BREAK_GLASS_REASON = _code(
    "HRT-1106",
    400,
    "required",
    "Give the reason for the emergency access (at least 10 characters) and a purpose of use.",
)
REVIEW_CLOSED = _code(
    "HRT-1107", 409, "business-rule", "This break-the-glass use has already been reviewed."
)
REVIEW_OWN = _code("HRT-1108", 403, "security", "Nobody reviews their own break-the-glass use.")
ACCESS_THROTTLED = _code(
    "HRT-1109",
    429,
    "throttled",
    "Access paused: you opened an unusual number of patient records. A privacy officer has "
    "been alerted and can lift the pause.",
)
MASKED_FIELD = _code(
    "HRT-1110", 403, "forbidden", "The body sets an element your role may not see or change."
)
LINK_INVALID = _code(
    "HRT-1111",
    400,
    "value",
    "Link a user to an existing Practitioner or Patient by its id.",
)
DEIDENTIFIED_VIEW = _code(
    "HRT-1112",
    403,
    "forbidden",
    "A de-identified view searches by codes, quantities, numbers and years; it does not read, "
    "write or follow one record.",
)
MASKED_SEARCH = _code(
    "HRT-1113",
    403,
    "forbidden",
    "The search reads an element your role may not see: search by other parameters.",
)
SELF_LINK = _code(
    "HRT-1114",
    403,
    "forbidden",
    "Nobody writes a care relationship, practitioner role or Consent that widens their own "
    "access: an administrator or a colleague writes it.",
)
BREAK_GLASS_RELATIONSHIP = _code(
    "HRT-1115",
    403,
    "forbidden",
    "Under a break-the-glass grant, care teams, encounters, episodes of care, Patient "
    "resources, practitioner roles and Consents are read only: they decide who sees a record.",
)
# 08xx: backups and backup targets
BACKUP_INVALID = _code(
    "HRT-0801", 500, "exception", "A backup failed verification; it must not be restored."
)
BACKUP_FORMAT = _code(
    "HRT-0802", 400, "not-supported", "The backup object is not in a format this Hearth reads."
)
BACKUP_NO_IDENTITY = _code(
    "HRT-0803", 500, "security", "No backup identity given opens this backup."
)
BACKUP_ARGUMENT = _code("HRT-0804", 400, "invalid", "The backup request is not consistent.")
TARGET_UNAVAILABLE = _code(
    "HRT-0810", 503, "transient", "The backup target is not reachable or not mounted."
)
TARGET_OBJECT_EXISTS = _code(
    "HRT-0811", 409, "conflict", "The backup target already holds a different object of that name."
)
TARGET_OBJECT_NOT_FOUND = _code("HRT-0812", 404, "not-found", "No such object on the target.")
TARGET_OBJECT_LOCKED = _code(
    "HRT-0813", 409, "conflict", "The object is under retention and cannot be deleted yet."
)
TARGET_READBACK_MISMATCH = _code(
    "HRT-0814",
    500,
    "exception",
    "The object read back from the target differs from what was written.",
)
TARGET_HOST_KEY_MISMATCH = _code(
    "HRT-0815", 500, "security", "The SFTP server's host key is not the configured one."
)
TARGET_IMMUTABILITY_UNSUPPORTED = _code(
    "HRT-0816", 400, "not-supported", "This backup target cannot make objects immutable."
)
TARGET_BAD_NAME = _code("HRT-0817", 400, "value", "Backup object names are plain ASCII paths.")
TARGET_FAILED = _code("HRT-0818", 502, "exception", "The backup target refused the operation.")
BACKUP_CONFIG = _code(
    "HRT-0830", 400, "invalid", "The [backup] section of hearth.toml is not configured correctly."
)
BACKUP_POLICY_UNMET = _code(
    "HRT-0831", 409, "business-rule", "The backups do not meet the configured copy policy."
)
BACKUP_COPY_MISMATCH = _code(
    "HRT-0832",
    500,
    "exception",
    "An object read from the source target is not the one its signed manifest names.",
)
BACKUP_REGION_REFUSED = _code(
    "HRT-0833", 403, "business-rule", "The target's region is outside backup.allowed_regions."
)

# 07xx: sign-in, sessions and user accounts
SIGN_IN_REQUIRED = _code("HRT-0701", 401, "login", "Sign in to continue.")
SESSION_ENDED = _code(
    "HRT-0702", 401, "login", "Your session has ended. Sign in again to continue."
)
SESSION_LOCKED = _code("HRT-0703", 401, "login", "Your session is locked. Unlock it to continue.")
CSRF_FAILED = _code(
    "HRT-0704",
    403,
    "security",
    "The form has expired or did not come from this site. Reload the page and try again.",
)
STEP_UP_REQUIRED = _code(
    "HRT-0705", 401, "login", "Confirm it is you (security key or authenticator code) first."
)
SIGN_IN_THROTTLED = _code(
    "HRT-0706", 429, "throttled", "Too many failed attempts. Wait a little, then try again."
)
ACCOUNT_LOCKED = _code(
    "HRT-0707",
    429,
    "throttled",
    "Too many failed sign-ins for this account. Ask an administrator to unlock it.",
)
ENROLMENT_INVALID = _code(
    "HRT-0708",
    404,
    "not-found",
    "This set-up link is not valid, was already used or has expired. Ask an administrator "
    "for a new one.",
)
WEBAUTHN_FAILED = _code(
    "HRT-0709", 401, "login", "The security key or passkey could not be verified. Try again."
)
WEBAUTHN_UV_REQUIRED = _code(
    "HRT-0710",
    401,
    "login",
    "This account needs a security key or passkey that verifies you with a PIN or biometric.",
)
USER_EXISTS = _code("HRT-0711", 409, "duplicate", "A user with that name already exists.")
USER_NOT_FOUND = _code("HRT-0712", 404, "not-found", "No such user.")
UNKNOWN_ROLE = _code("HRT-0713", 400, "value", "Unknown role name.")
BAD_USERNAME = _code(
    "HRT-0714",
    400,
    "value",
    "User names are 2 to 64 characters: lower-case letters, digits and . _ - @, "
    "starting with a letter or digit.",
)
CREDENTIAL_NOT_FOUND = _code("HRT-0715", 404, "not-found", "No such credential.")
LAST_CREDENTIAL = _code(
    "HRT-0716",
    409,
    "business-rule",
    "This is your last way to sign in: add another before removing it.",
)
WRONG_USER = _code(
    "HRT-0717",
    403,
    "security",
    "This locked session belongs to someone else. Sign out and sign in as yourself.",
)
PIN_NOT_SET = _code("HRT-0718", 409, "business-rule", "No PIN is set for this account.")
PIN_LOCKOUT = _code(
    "HRT-0719",
    401,
    "login",
    "Too many wrong PINs: you have been signed out. Sign in again with your full credentials.",
)
PASSWORD_MISMATCH = _code(
    "HRT-0720", 422, "business-rule", "The two passwords are not the same. Type them again."
)
ADMIN_NEEDS_CONSOLE = _code(
    "HRT-0721",
    403,
    "security",
    "User and role administration is not accepted with an API or OAuth token. Use the console "
    "(signed in, with a recent security key or authenticator code) or the hearth user and "
    "hearth role commands on the server.",
)
# 09xx: search, bundles and conditional interactions
UNKNOWN_SEARCH_PARAMETER = _code(
    "HRT-0901", 400, "not-supported", "A search parameter is not known for this resource type."
)
UNSUPPORTED_MODIFIER = _code(
    "HRT-0902", 400, "not-supported", "A search modifier is not supported for this parameter."
)
BAD_SEARCH_VALUE = _code("HRT-0903", 400, "value", "A search parameter's value is not valid.")
SEARCH_TOO_COSTLY = _code(
    "HRT-0904",
    400,
    "too-costly",
    "The search needs more resources opened than the bound allows; add a more selective parameter.",
)
MULTIPLE_MATCHES = _code(
    "HRT-0905", 412, "multiple-matches", "The condition matches more than one resource."
)
BAD_BUNDLE = _code("HRT-0906", 400, "invalid", "The Bundle is not a valid batch or transaction.")
TRANSACTION_FAILED = _code(
    "HRT-0907", 400, "processing", "An entry of the transaction failed, so none was applied."
)
UNRESOLVED_REFERENCE = _code(
    "HRT-0908", 400, "not-found", "A conditional reference in the Bundle matches no resource."
)
PRECONDITION_FAILED = _code(
    "HRT-0909", 412, "conflict", "The request's precondition does not hold."
)
UNKNOWN_PLACEHOLDER = _code(
    "HRT-0910",
    400,
    "not-found",
    "A urn:uuid reference names no entry of the Bundle (in a batch, entries cannot reference "
    "one another): stored as written it would point nowhere.",
)
BAD_IMPORT = _code("HRT-0911", 400, "invalid", "The import file is not NDJSON or a FHIR Bundle.")

# 10xx: alarms and integrity scanning
ALARM_NOT_FOUND = _code("HRT-1001", 404, "not-found", "No such alarm.")
ALARM_TRANSITION = _code(
    "HRT-1002",
    409,
    "business-rule",
    "The alarm cannot move to that state (open -> acknowledged -> resolved).",
)
ALARM_DELIVERY_FAILED = _code(
    "HRT-1003", 502, "transient", "An alarm notice could not be delivered; it will be retried."
)
ALARM_SINK_CONFIG = _code(
    "HRT-1004", 400, "invalid", "An alarm sink in hearth.toml is not configured correctly."
)
FINDING_NOT_FOUND = _code("HRT-1005", 404, "not-found", "No such integrity finding.")
ALARM_AMBIGUOUS = _code(
    "HRT-1010", 400, "invalid", "That id prefix matches several alarms; give more of the id."
)
SCAN_BUSY = _code(
    "HRT-1006", 409, "transient", "Another Hearth process is scanning this instance; try again."
)
REPAIR_REFUSED = _code(
    "HRT-1007", 409, "business-rule", "The damaged records cannot be repaired from that backup."
)
