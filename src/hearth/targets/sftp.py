"""An SFTP backup target (SSH File Transfer Protocol over SSH-2, via paramiko).

The server must present exactly the configured host key (an OpenSSH public key line such as
``ssh-ed25519 AAAA...``): nothing is learned from known_hosts and an unknown key is never
accepted, so a man in the middle gets nothing. Authentication is by public key only.

Writes go to ``.tmp/<random>`` under the target directory, are fsynced with the
``fsync@openssh.com`` extension when the server offers it, and are then renamed with the
protocol's plain RENAME, which OpenSSH implements with ``link()``: it refuses to replace an
existing name, so write-once holds even between two writers.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import os
import posixpath
import secrets
import socket
import stat as stat_mod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

import paramiko

from hearth.domain import HearthError
from hearth.domain.errors import (
    BACKUP_ARGUMENT,
    TARGET_HOST_KEY_MISMATCH,
    TARGET_IMMUTABILITY_UNSUPPORTED,
    TARGET_OBJECT_EXISTS,
    TARGET_OBJECT_NOT_FOUND,
)
from hearth.targets.base import ObjectInfo, PutResult, check_name
from hearth.targets.local import CHUNK
from hearth.targets.retry import RetryPolicy, Transient

__all__ = ["SftpTarget", "parse_host_key"]

T = TypeVar("T")
TMP_DIR = ".tmp"
_NET_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT}


def parse_host_key(line: str) -> tuple[str, bytes]:
    """``"ssh-ed25519 AAAA... [comment]"`` -> (key type, key blob)."""
    parts = line.split()
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (IndexError, ValueError):
        raise HearthError(BACKUP_ARGUMENT, "A host key is 'TYPE BASE64' (OpenSSH).") from None
    return parts[0], blob


class SftpTarget:
    supports_immutability = False

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        private_key: paramiko.PKey,
        host_key: str,
        root: str,
        label: str = "sftp",
        region: str = "offsite",
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._pkey = private_key
        self._host_key = parse_host_key(host_key)
        self._root = root.rstrip("/") or "/"
        self._label = label
        self._region = region
        self._retry = retry or RetryPolicy()
        self._timeout = timeout
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def label(self) -> str:
        return self._label

    @property
    def region(self) -> str:
        return self._region

    # -- connection ----------------------------------------------------------------------

    def _connect(self) -> paramiko.SFTPClient:
        if self._sftp is not None and self._transport is not None and self._transport.is_active():
            return self._sftp
        self.close()
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=self._timeout)
            key = transport.get_remote_server_key()
            if (key.get_name(), key.asbytes()) != self._host_key:
                raise HearthError(
                    TARGET_HOST_KEY_MISMATCH,
                    f"{self._label}: the server's {key.get_name()} host key is not the "
                    "configured one; refusing to send anything.",
                )
            transport.auth_publickey(self._username, self._pkey)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise paramiko.SSHException("no SFTP channel")
            sftp.get_channel().settimeout(self._timeout)  # type: ignore[union-attr]
        except BaseException:
            transport.close()
            raise
        self._transport = transport
        self._sftp = sftp
        return sftp

    def close(self) -> None:
        # Closing a connection that already died raises (EOFError, socket errors); it is being
        # dropped either way.
        sftp, transport = self._sftp, self._transport
        self._sftp = None
        self._transport = None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()

    def _run(self, operation: Callable[[paramiko.SFTPClient], T], what: str) -> T:
        def attempt() -> T:
            try:
                return operation(self._connect())
            except paramiko.AuthenticationException:
                self.close()
                raise
            except (TimeoutError, paramiko.SSHException, EOFError, ConnectionError) as exc:
                self.close()
                raise Transient(type(exc).__name__) from exc
            except (OSError, paramiko.SFTPError) as exc:
                # SFTP status errors are OSErrors too ("Failure", "No such file"); what makes
                # one transient is that the connection itself is gone, which a round trip shows
                # (the transport thread may not have noticed a reset yet).
                if getattr(exc, "errno", None) in _NET_ERRNOS or self._connection_lost():
                    self.close()
                    raise Transient(str(exc) or type(exc).__name__) from exc
                raise

        return self._retry.run(attempt, f"{what} on {self._label}")

    def _connection_lost(self) -> bool:
        transport, sftp = self._transport, self._sftp
        if transport is None or sftp is None or not transport.is_active():
            return True
        channel = sftp.get_channel()
        if channel is None or channel.closed:
            return True
        try:
            sftp.normalize(".")
        except (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError):
            return True
        return False

    def _path(self, name: str) -> str:
        return posixpath.join(self._root, check_name(name))

    def _not_found(self, name: str) -> HearthError:
        return HearthError(TARGET_OBJECT_NOT_FOUND, f"No object {name} on {self._label}.")

    @staticmethod
    def _makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
        missing = []
        while True:
            try:
                sftp.stat(directory)
                break
            except FileNotFoundError:
                missing.append(directory)
                directory = posixpath.dirname(directory)
        for path in reversed(missing):
            try:
                sftp.mkdir(path)
            except OSError:
                sftp.stat(path)  # created meanwhile is fine; anything else raises

    # -- writes --------------------------------------------------------------------------

    def put_bytes(
        self, name: str, data: bytes, *, retain_until: datetime | None = None
    ) -> PutResult:
        return self._put(name, lambda: io.BytesIO(data), retain_until)

    def put_file(self, name: str, path: Path, *, retain_until: datetime | None = None) -> PutResult:
        source = Path(path)
        return self._put(name, lambda: source.open("rb"), retain_until)

    def _put(
        self, name: str, open_source: Callable[[], BinaryIO], retain_until: datetime | None
    ) -> PutResult:
        final = self._path(name)
        if retain_until is not None:
            raise HearthError(TARGET_IMMUTABILITY_UNSUPPORTED, f"{self._label} has no retention.")

        def attempt(sftp: paramiko.SFTPClient) -> PutResult:
            tmp_dir = posixpath.join(self._root, TMP_DIR)
            self._makedirs(sftp, tmp_dir)
            self._makedirs(sftp, posixpath.dirname(final))
            tmp = posixpath.join(tmp_dir, secrets.token_hex(16))
            digest = hashlib.sha256()
            size = 0
            try:
                with open_source() as source, sftp.open(tmp, "wx") as remote:
                    remote.set_pipelined(True)
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        remote.write(chunk)
                    remote.flush()
                    self._fsync(sftp, remote)
                sha = digest.hexdigest()
                try:
                    sftp.rename(tmp, final)
                except OSError:
                    if not self._exists(sftp, final):
                        raise
                    if self._digest(sftp, final) != sha:
                        raise HearthError(
                            TARGET_OBJECT_EXISTS, f"{name} on {self._label} holds other bytes."
                        ) from None
                    return PutResult(name, sha, size, True)
            finally:
                # Gone already when renamed away; if the connection dropped, a stray temp file in
                # .tmp/ is harmless (never listed, never an object).
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
            return PutResult(name, sha, size, False)

        return self._run(attempt, f"put {name}")

    @staticmethod
    def _fsync(sftp: paramiko.SFTPClient, remote: paramiko.SFTPFile) -> None:
        # fsync@openssh.com (PROTOCOL section 4.6): the handle's data reaches the server's disk.
        # A server without the extension answers with an error; the rename is still atomic.
        with contextlib.suppress(OSError):
            sftp._request(  # type: ignore[attr-defined]  # paramiko has no public fsync call
                paramiko.sftp.CMD_EXTENDED, "fsync@openssh.com", remote.handle
            )

    @staticmethod
    def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
        try:
            return stat_mod.S_ISREG(sftp.stat(path).st_mode or 0)
        except FileNotFoundError:
            return False

    @staticmethod
    def _digest(sftp: paramiko.SFTPClient, path: str) -> str:
        digest = hashlib.sha256()
        with sftp.open(path, "rb") as remote:
            remote.prefetch()
            while chunk := remote.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    # -- reads ---------------------------------------------------------------------------

    def _open(self, sftp: paramiko.SFTPClient, name: str) -> paramiko.SFTPFile:
        path = self._path(name)
        try:
            if not stat_mod.S_ISREG(sftp.stat(path).st_mode or 0):
                raise self._not_found(name)
            remote = sftp.open(path, "rb")
        except FileNotFoundError:
            raise self._not_found(name) from None
        remote.prefetch()
        return remote

    def get_bytes(self, name: str) -> bytes:
        def attempt(sftp: paramiko.SFTPClient) -> bytes:
            with self._open(sftp, name) as remote:
                return bytes(remote.read())

        return self._run(attempt, f"get {name}")

    def get_file(self, name: str, path: Path) -> ObjectInfo:
        destination = Path(path)

        def attempt(sftp: paramiko.SFTPClient) -> ObjectInfo:
            tmp = destination.with_name(f".{destination.name}.{secrets.token_hex(8)}")
            try:
                with self._open(sftp, name) as remote, tmp.open("xb") as writer:
                    while chunk := remote.read(CHUNK):
                        writer.write(chunk)
                    writer.flush()
                    os.fsync(writer.fileno())
                tmp.replace(destination)
            finally:
                tmp.unlink(missing_ok=True)
            return ObjectInfo(name, destination.stat().st_size)

        return self._run(attempt, f"get {name}")

    @contextmanager
    def open_read(self, name: str) -> Iterator[BinaryIO]:
        remote = self._run(lambda sftp: self._open(sftp, name), f"open {name}")
        try:
            yield cast("BinaryIO", remote)
        finally:
            remote.close()

    def exists(self, name: str) -> bool:
        path = self._path(name)
        return self._run(lambda sftp: self._exists(sftp, path), f"exists {name}")

    def stat(self, name: str) -> ObjectInfo:
        path = self._path(name)

        def attempt(sftp: paramiko.SFTPClient) -> ObjectInfo:
            try:
                attrs = sftp.stat(path)
            except FileNotFoundError:
                raise self._not_found(name) from None
            if not stat_mod.S_ISREG(attrs.st_mode or 0):
                raise self._not_found(name)
            return ObjectInfo(name, int(attrs.st_size or 0))

        return self._run(attempt, f"stat {name}")

    def list_names(self, prefix: str = "") -> list[str]:
        def walk(sftp: paramiko.SFTPClient, directory: str, rel: str, out: list[str]) -> None:
            for entry in sftp.listdir_attr(directory):
                if entry.filename.startswith("."):
                    continue
                name = f"{rel}{entry.filename}"
                if stat_mod.S_ISDIR(entry.st_mode or 0):
                    walk(sftp, posixpath.join(directory, entry.filename), name + "/", out)
                elif name.startswith(prefix):
                    out.append(name)

        def attempt(sftp: paramiko.SFTPClient) -> list[str]:
            out: list[str] = []
            try:
                walk(sftp, self._root, "", out)
            except FileNotFoundError:
                return []
            return sorted(out)

        return self._run(attempt, "list")

    def delete(self, name: str) -> None:
        path = self._path(name)

        def attempt(sftp: paramiko.SFTPClient) -> None:
            try:
                sftp.remove(path)
            except FileNotFoundError:
                raise self._not_found(name) from None

        self._run(attempt, f"delete {name}")

    def immutable_until(self, name: str) -> datetime | None:
        self.stat(name)
        return None

    def __enter__(self) -> SftpTarget:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
