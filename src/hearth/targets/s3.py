"""An S3-compatible backup target, with Object Lock COMPLIANCE retention where the bucket has it.

Write-once uses a conditional write (``If-None-Match: *``) on PutObject and on
CompleteMultipartUpload, so the server itself refuses to replace a name. The SHA-256 of the
whole object is kept in its metadata (``x-amz-meta-sha256``): S3's multipart checksums are
checksums of part checksums, not of the object. With Object Lock (which needs a versioned
bucket) a delete removes every version of the name by version id, so the server's retention
refuses it; deleting without a version id would only hide the object behind a delete marker.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

import boto3
import botocore.exceptions
from botocore.config import Config

from hearth.domain import HearthError, Secret
from hearth.domain.errors import (
    TARGET_FAILED,
    TARGET_IMMUTABILITY_UNSUPPORTED,
    TARGET_OBJECT_EXISTS,
    TARGET_OBJECT_LOCKED,
    TARGET_OBJECT_NOT_FOUND,
)
from hearth.targets.base import ObjectInfo, PutResult, check_name
from hearth.targets.local import CHUNK, file_digest
from hearth.targets.retry import RetryPolicy, Transient

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Target"]

T = TypeVar("T")
_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed",
    "Throttling", "ThrottlingException", "OperationAborted", "500", "502", "503", "504",
}  # fmt: skip
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_EXISTS_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
_NETWORK_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
)


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Target:
    """Objects under ``prefix`` in ``bucket``. ``region`` is the policy's region label (where
    the copy physically is); ``region_name`` is the S3 API's signing region."""

    def __init__(
        self,
        *,
        bucket: str,
        access_key: str,
        secret_key: Secret,
        endpoint_url: str | None = None,
        prefix: str = "",
        region_name: str = "us-east-1",
        label: str = "s3",
        region: str = "offsite",
        retry: RetryPolicy | None = None,
        multipart_threshold: int = 64 * 1024 * 1024,
        part_size: int = 16 * 1024 * 1024,
        timeout: float = 60.0,
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket = bucket
        self.prefix = prefix
        self._label = label
        self._region = region
        self._retry = retry or RetryPolicy()
        self._threshold = multipart_threshold
        self._part_size = max(part_size, 5 * 1024 * 1024)
        self._lock_enabled: bool | None = None
        # botocore's own retries are off: ours are uniform across targets and injectable.
        config = Config(
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            connect_timeout=timeout,
            read_timeout=timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_name,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key.reveal(),
            config=config,
        )

    @property
    def label(self) -> str:
        return self._label

    @property
    def region(self) -> str:
        return self._region

    @property
    def supports_immutability(self) -> bool:
        if self._lock_enabled is None:

            def probe() -> bool:
                try:
                    conf = self._client.get_object_lock_configuration(Bucket=self.bucket)
                except botocore.exceptions.ClientError as exc:
                    if "ObjectLockConfigurationNotFound" in _code(exc):
                        return False
                    raise
                return conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

            self._lock_enabled = self._run(probe, "object lock probe")
        return self._lock_enabled

    def _key(self, name: str) -> str:
        return self.prefix + check_name(name)

    def _run(self, operation: Callable[[], T], what: str) -> T:
        def attempt() -> T:
            try:
                return operation()
            except _NETWORK_ERRORS as exc:
                raise Transient(type(exc).__name__) from exc
            except botocore.exceptions.ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if _code(exc) in _TRANSIENT_CODES or int(status) >= 500:
                    raise Transient(_code(exc) or str(status)) from exc
                raise

        try:
            return self._retry.run(attempt, f"{what} on {self._label}")
        except botocore.exceptions.ClientError as exc:
            raise HearthError(TARGET_FAILED, f"{what} on {self._label}: {_code(exc)}") from exc

    def _not_found(self, name: str) -> HearthError:
        return HearthError(TARGET_OBJECT_NOT_FOUND, f"No object {name} on {self._label}.")

    # -- writes --------------------------------------------------------------------------

    def put_bytes(
        self, name: str, data: bytes, *, retain_until: datetime | None = None
    ) -> PutResult:
        sha = hashlib.sha256(data).hexdigest()

        return self._put(name, lambda: io.BytesIO(data), sha, len(data), retain_until)

    def put_file(self, name: str, path: Path, *, retain_until: datetime | None = None) -> PutResult:
        source = Path(path)
        sha, size = file_digest(source)
        return self._put(name, lambda: source.open("rb"), sha, size, retain_until)

    def _put(
        self,
        name: str,
        open_body: Callable[[], Any],
        sha: str,
        size: int,
        retain_until: datetime | None,
    ) -> PutResult:
        key = self._key(name)
        extra: dict[str, Any] = {"Metadata": {"sha256": sha}}
        if retain_until is not None:
            if not self.supports_immutability:
                raise HearthError(
                    TARGET_IMMUTABILITY_UNSUPPORTED,
                    f"Bucket {self.bucket} on {self._label} has no Object Lock.",
                )
            extra["ObjectLockMode"] = "COMPLIANCE"
            extra["ObjectLockRetainUntilDate"] = retain_until.astimezone(UTC)

        def attempt() -> bool:
            try:
                with open_body() as body:
                    if size <= self._threshold:
                        self._client.put_object(
                            Bucket=self.bucket,
                            Key=key,
                            Body=body,
                            ContentLength=size,
                            IfNoneMatch="*",
                            **extra,
                        )
                    else:
                        self._multipart(key, body, extra)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in _EXISTS_CODES:
                    raise
                return self._same(name, key, sha)
            return False

        existed = self._run(attempt, f"put {name}")
        return PutResult(name, sha, size, existed)

    def _multipart(self, key: str, body: BinaryIO, extra: dict[str, Any]) -> None:
        upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)
        upload_id = upload["UploadId"]
        try:
            parts = []
            number = 1
            while chunk := body.read(self._part_size):
                part = self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": part["ETag"], "PartNumber": number})
                number += 1
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": cast("Any", parts)},
                IfNoneMatch="*",
            )
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except botocore.exceptions.BotoCoreError:
                pass  # The upload expires by lifecycle; the original error matters more.
            except botocore.exceptions.ClientError:
                pass
            raise

    def _same(self, name: str, key: str, sha: str) -> bool:
        head = self._client.head_object(Bucket=self.bucket, Key=key)
        if head.get("Metadata", {}).get("sha256") != sha:
            raise HearthError(TARGET_OBJECT_EXISTS, f"{name} on {self._label} holds other bytes.")
        return True

    # -- reads ---------------------------------------------------------------------------

    def _get(self, name: str) -> Any:
        key = self._key(name)
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                raise self._not_found(name) from None
            raise

    def get_bytes(self, name: str) -> bytes:
        return self._run(lambda: bytes(self._get(name)["Body"].read()), f"get {name}")

    def get_file(self, name: str, path: Path) -> ObjectInfo:
        destination = Path(path)

        def attempt() -> ObjectInfo:
            body = self._get(name)["Body"]
            tmp = destination.with_name(f".{destination.name}.{secrets.token_hex(8)}")
            try:
                with tmp.open("xb") as writer:
                    for chunk in body.iter_chunks(CHUNK):
                        writer.write(chunk)
                    writer.flush()
                    os.fsync(writer.fileno())
                tmp.replace(destination)
            finally:
                body.close()
                tmp.unlink(missing_ok=True)
            return ObjectInfo(name, destination.stat().st_size)

        return self._run(attempt, f"get {name}")

    @contextmanager
    def open_read(self, name: str) -> Iterator[BinaryIO]:
        body = self._run(lambda: self._get(name)["Body"], f"open {name}")
        try:
            yield cast("BinaryIO", body)
        finally:
            body.close()

    def _head(self, name: str) -> Any:
        try:
            return self._client.head_object(Bucket=self.bucket, Key=self._key(name))
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                raise self._not_found(name) from None
            raise

    def exists(self, name: str) -> bool:
        try:
            self.stat(name)
        except HearthError as exc:
            if exc.code is TARGET_OBJECT_NOT_FOUND:
                return False
            raise
        return True

    def stat(self, name: str) -> ObjectInfo:
        head = self._run(lambda: self._head(name), f"stat {name}")
        return ObjectInfo(name, int(head["ContentLength"]))

    def list_names(self, prefix: str = "") -> list[str]:
        def attempt() -> list[str]:
            names = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    names.append(item["Key"][len(self.prefix) :])
            return sorted(names)

        return self._run(attempt, "list")

    def delete(self, name: str) -> None:
        key = self._key(name)

        def attempt() -> None:
            listing = self._client.list_object_versions(Bucket=self.bucket, Prefix=key)
            versions = [
                v["VersionId"]
                for group in ("Versions", "DeleteMarkers")
                for v in listing.get(group, [])  # type: ignore[attr-defined]
                if v["Key"] == key
            ]
            if not any(v["Key"] == key for v in listing.get("Versions", [])):
                raise self._not_found(name)
            for version in versions:
                try:
                    self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
                except botocore.exceptions.ClientError as exc:
                    if _code(exc) in {"AccessDenied", "ObjectLocked", "InvalidRequest", "403"}:
                        raise HearthError(
                            TARGET_OBJECT_LOCKED,
                            f"{name} on {self._label} is under retention; the server refused.",
                        ) from None
                    raise

        self._run(attempt, f"delete {name}")

    def immutable_until(self, name: str) -> datetime | None:
        head = self._run(lambda: self._head(name), f"stat {name}")
        if head.get("ObjectLockMode") not in ("COMPLIANCE", "GOVERNANCE"):
            return None
        until = head.get("ObjectLockRetainUntilDate")
        return until.astimezone(UTC) if isinstance(until, datetime) else None
