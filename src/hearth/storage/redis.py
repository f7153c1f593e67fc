"""Sessions and throttling counters in Redis, shared by every Hearth process of one instance.

Keys are ``hearth:<instance id>:`` followed by ``s:<digest hex>`` (a session, a hash that
expires at the session's absolute end), ``u:<user id>`` (the set of a user's session digests, so
that disabling a user ends them all at once), ``t:<key>`` (a failure counter) and ``m:<key>``
(a sorted set of the names one address failed against). Read-modify-write steps run as Lua
scripts, which Redis executes atomically: two processes counting the same PIN failure or saving
the same session cannot interleave.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import redis

from hearth.domain import HearthError, errors
from hearth.storage.sessions import SessionRow, SessionSealer
from hearth.storage.throttle import Failures

__all__ = ["RedisCounters", "RedisSessionStore", "connect"]

_FIELDS = (
    "user_id",
    "state",
    "created_us",
    "last_seen_us",
    "expires_us",
    "auth_us",
    "step_up_us",
    "amr",
    "csrf",
    "pin_failures",
    "data",
    "source",
)
_INTS = frozenset(
    {"created_us", "last_seen_us", "expires_us", "auth_us", "step_up_us", "pin_failures"}
)

# KEYS[1] session key; ARGV[1] expiry in ms since the epoch; ARGV[2:] field, value pairs;
# fields not given are deleted (None). Only if the session still exists.
_SAVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_seen_us', ARGV[1])
return 1
"""
_PIN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HINCRBY', KEYS[1], 'pin_failures', 1)
"""
# KEYS[1] user set; ARGV[1] session key prefix. Deletes every session of the user.
_END_USER = """
local members = redis.call('SMEMBERS', KEYS[1])
local ended = 0
for _, digest in ipairs(members) do
  ended = ended + redis.call('DEL', ARGV[1] .. digest)
end
redis.call('DEL', KEYS[1])
return ended
"""
_ADD_FAILURE = """
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return count
"""
_ADD_MEMBER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('ZCARD', KEYS[1])
"""


def connect(url: str) -> redis.Redis:
    """A client for ``url``; fails at once with a clear error when Redis does not answer."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        raise HearthError(
            errors.STORAGE_UNAVAILABLE, "Redis ([redis] url) does not answer."
        ) from None
    return client


P = ParamSpec("P")
R = TypeVar("R")


def _guard(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn Redis errors into STORAGE_UNAVAILABLE (fail closed: no session, no sign-in)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise HearthError(errors.STORAGE_UNAVAILABLE) from exc

    return wrapper


class RedisSessionStore:
    """``SessionStore`` in Redis (see ``hearth.storage.sessions``)."""

    def __init__(self, client: redis.Redis, instance_id: str, sealer: SessionSealer) -> None:
        self._r = client
        self._prefix = f"hearth:{instance_id}:"
        self._sealer = sealer
        self._save = client.register_script(_SAVE)
        self._touch = client.register_script(_TOUCH)
        self._pin = client.register_script(_PIN)
        self._end_user = client.register_script(_END_USER)

    def _key(self, digest: bytes) -> str:
        return f"{self._prefix}s:{digest.hex()}"

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}u:{user_id}"

    @staticmethod
    def _pairs(row: SessionRow) -> list[Any]:
        pairs: list[Any] = []
        for name in _FIELDS:
            value = getattr(row, name)
            if value is not None:
                pairs += [name, value]
        return pairs

    def _row(self, digest: bytes, raw: dict[bytes, bytes]) -> SessionRow | None:
        if not raw:
            return None
        values: dict[str, Any] = {}
        for name in _FIELDS:
            value = raw.get(name.encode("ascii"))
            if value is None:
                values[name] = None
            elif name in _INTS:
                values[name] = int(value)
            elif name == "data":
                values[name] = bytes(value)
            else:
                values[name] = value.decode("utf-8")
        return self._sealer.open(SessionRow(id_digest=digest, **values))

    @_guard
    def create(self, row: SessionRow) -> None:
        sealed = self._sealer.seal(row)
        pipe = self._r.pipeline(transaction=True)
        key = self._key(row.id_digest)
        pipe.hset(key, mapping=dict(zip(*[iter(self._pairs(sealed))] * 2, strict=True)))
        pipe.pexpireat(key, row.expires_us // 1000)
        if row.user_id is not None:
            pipe.sadd(self._user_key(row.user_id), row.id_digest.hex())
        pipe.execute()

    @_guard
    def get(self, digest: bytes) -> SessionRow | None:
        raw: dict[bytes, bytes] = self._r.hgetall(self._key(digest))  # type: ignore[assignment]
        return self._row(digest, raw)

    @_guard
    def save(self, row: SessionRow) -> bool:
        sealed = self._sealer.seal(row)
        done = self._save(
            keys=[self._key(row.id_digest)], args=[row.expires_us // 1000, *self._pairs(sealed)]
        )
        if done and row.user_id is not None:
            self._r.sadd(self._user_key(row.user_id), row.id_digest.hex())
        return bool(done)

    @_guard
    def rotate(self, old: bytes, row: SessionRow) -> None:
        sealed = self._sealer.seal(row)
        pipe = self._r.pipeline(transaction=True)
        key = self._key(row.id_digest)
        pipe.delete(self._key(old))
        pipe.hset(key, mapping=dict(zip(*[iter(self._pairs(sealed))] * 2, strict=True)))
        pipe.pexpireat(key, row.expires_us // 1000)
        if row.user_id is not None:
            pipe.srem(self._user_key(row.user_id), old.hex())
            pipe.sadd(self._user_key(row.user_id), row.id_digest.hex())
        pipe.execute()

    @_guard
    def touch(self, digest: bytes, now_us: int) -> None:
        self._touch(keys=[self._key(digest)], args=[now_us])

    @_guard
    def add_pin_failure(self, digest: bytes) -> int | None:
        value = self._pin(keys=[self._key(digest)])
        return None if value is None else int(value)

    @_guard
    def delete(self, digest: bytes) -> bool:
        return bool(self._r.delete(self._key(digest)))

    @_guard
    def delete_user(self, user_id: str) -> int:
        return int(self._end_user(keys=[self._user_key(user_id)], args=[f"{self._prefix}s:"]))

    @_guard
    def user_sessions(self, user_id: str) -> list[SessionRow]:
        rows = []
        members: set[bytes] = self._r.smembers(self._user_key(user_id))  # type: ignore[assignment]
        for member in members:
            digest = bytes.fromhex(member.decode("ascii"))
            row = self.get(digest)
            if row is None:
                self._r.srem(self._user_key(user_id), member)
            else:
                rows.append(row)
        return rows

    def purge(self, now_us: int) -> int:
        return 0  # Redis expires sessions at their absolute end by itself


class RedisCounters:
    """``ThrottleCounters`` in Redis (see ``hearth.storage.throttle``)."""

    def __init__(self, client: redis.Redis, instance_id: str) -> None:
        self._r = client
        self._prefix = f"hearth:{instance_id}:"
        self._add_failure = client.register_script(_ADD_FAILURE)
        self._add_member = client.register_script(_ADD_MEMBER)

    @_guard
    def failures(self, key: str, now_us: int) -> Failures:
        raw: dict[bytes, bytes] = self._r.hgetall(f"{self._prefix}t:{key}")  # type: ignore[assignment]
        if not raw:
            return Failures()
        return Failures(int(raw[b"count"]), int(raw[b"last"]))

    @_guard
    def add_failure(self, key: str, now_us: int, ttl_seconds: int) -> Failures:
        count = self._add_failure(keys=[f"{self._prefix}t:{key}"], args=[now_us, ttl_seconds])
        return Failures(int(count), now_us)

    @_guard
    def clear(self, key: str) -> None:
        self._r.delete(f"{self._prefix}t:{key}", f"{self._prefix}m:{key}")

    @_guard
    def add_member(self, key: str, member: str, now_us: int, ttl_seconds: int) -> int:
        horizon = now_us - ttl_seconds * 1_000_000
        count = self._add_member(
            keys=[f"{self._prefix}m:{key}"], args=[horizon, now_us, member, ttl_seconds]
        )
        return int(count)
