"""
Write-once export files: the final move of an atomic write with S3 Object Lock retention.

:func:`locked_move` replaces the rename of :func:`~airflow_provider_asana_audit.storage.atomic_write`
when an :class:`ObjectLock` is given: a server-side copy of the staging object to the target's key that
carries the lock (mode and retain-until date) and a SHA-256 checksum, a multipart copy above 5 GiB,
then the removal of the staging object, which is never locked, so that a failed write and the sweep can
always remove it. The bucket must have Object Lock enabled (which means versioning): each write adds
a locked version, and no version can be deleted or overwritten before its retain-until date.

.. seealso:: docs/write-once.md
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import ObjectStoragePath
from fsspec.asyn import sync

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.utils import Logger

__all__ = [
    "COPY_PART_SIZE",
    "LOCK_MODES",
    "MAX_COPY_PARTS",
    "MAX_RETENTION_DAYS",
    "MAX_SINGLE_COPY",
    "LockStatus",
    "ObjectLock",
    "check_lockable",
    "copy_ranges",
    "lock_status",
    "locked_move",
]

#: The retention modes of S3 Object Lock.
LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
#: The longest retention this package accepts, in days (100 years).
MAX_RETENTION_DAYS = 36500
#: The largest object one ``CopyObject`` request copies (5 GiB); a larger one is copied in parts.
MAX_SINGLE_COPY = 5 * 2**30
#: The size of each part of a multipart copy, unless the object needs larger parts (see
#: :data:`MAX_COPY_PARTS`); S3 takes parts of 5 MiB to 5 GiB.
COPY_PART_SIZE = 512 * 2**20
#: The most parts a multipart upload may have.
MAX_COPY_PARTS = 10_000
#: The filesystem protocols of S3 (s3fs).
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
#: ``Content-MD5`` of an empty request body. ``CopyObject`` sends no body, but S3 (and moto) ask for
#: ``Content-MD5`` or a checksum header on every request that sets Object Lock parameters.
_EMPTY_BODY_MD5 = base64.b64encode(hashlib.md5(b"", usedforsecurity=False).digest()).decode("ascii")
#: The id under which the ``Content-MD5`` handler is registered on the S3 client (once per client).
_HANDLER_ID = "airflow-provider-asana-audit-object-lock-content-md5"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectLock:
    """
    The S3 Object Lock retention every version written gets.

    :param mode: ``"GOVERNANCE"`` (users with ``s3:BypassGovernanceRetention`` may still delete a
        version, or shorten its retention, when they ask to bypass it) or ``"COMPLIANCE"`` (nobody can,
        not even the account's root user, until the date); lower case is accepted.
    :param days: how many days after the write each version is retained, 1 to 36500.
    :raises AsanaAuditLogConfigError: for another mode, or a number of days out of range.
    """

    mode: str
    days: int

    def __post_init__(self) -> None:
        mode = self.mode.strip().upper() if isinstance(self.mode, str) else self.mode
        if mode not in LOCK_MODES:
            raise AsanaAuditLogConfigError(
                f"object_lock mode {self.mode!r} must be 'GOVERNANCE' or 'COMPLIANCE'"
            )
        object.__setattr__(self, "mode", mode)
        days = self.days
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RETENTION_DAYS:
            raise AsanaAuditLogConfigError(
                f"object_lock days {days!r} must be a whole number of days from 1 to "
                f"{MAX_RETENTION_DAYS} (100 years)"
            )

    def retain_until(self, now: datetime | None = None) -> datetime:
        """
        The retain-until date of a version written at ``now``: :attr:`days` later, in UTC, rounded up
        to the second (S3 keeps whole seconds).

        :param now: the instant of the write (aware); default this machine's clock.
        :raises ValueError: for a naive ``now``.
        """
        if now is None:
            now = datetime.now(timezone.utc)
        elif now.tzinfo is None:
            raise ValueError(f"now must be an aware datetime, not {now!r}")
        until = now.astimezone(timezone.utc) + timedelta(days=self.days)
        if until.microsecond:
            until = until.replace(microsecond=0) + timedelta(seconds=1)
        return until


@dataclass(frozen=True)
class LockStatus:
    """
    The Object Lock retention of one object version, as the store reports it.

    :param mode: ``"GOVERNANCE"`` or ``"COMPLIANCE"``; ``None`` when the version is not locked.
    :param retain_until: until when, in UTC; ``None`` when the version is not locked.
    """

    mode: str | None
    retain_until: datetime | None


def check_lockable(target: ObjectStoragePath, lock: ObjectLock) -> None:
    """
    Check, before anything is written, that ``target`` can be written with ``lock``.

    :param target: the file to write.
    :param lock: the retention it is to get.
    :raises AsanaAuditLogConfigError: when ``target`` is not on S3 (Object Lock is an S3 feature).
    """
    fs = target.fs
    if not _is_s3(fs):
        raise AsanaAuditLogConfigError(
            f"object_lock needs an s3:// destination: S3 Object Lock is an S3 feature; {target} is on "
            f"{_protocol(fs)}://. Write to an s3:// bucket created with Object Lock, or drop object_lock"
        )


def locked_move(
    staging: ObjectStoragePath,
    target: ObjectStoragePath,
    lock: ObjectLock,
    *,
    now: datetime | None = None,
    single_copy_limit: int = MAX_SINGLE_COPY,
    part_size: int = COPY_PART_SIZE,
    log: Logger | None = None,
) -> str | None:
    """
    Move ``staging`` over ``target`` on S3, the new version of ``target`` locked with ``lock``.

    A server-side copy (``CopyObject``, or a multipart copy above ``single_copy_limit``) of the staging
    object to the target's key, with the lock's mode, its retain-until date
    (:meth:`ObjectLock.retain_until` of ``now``) and a SHA-256 checksum; then the lock of the new
    version is read back, and set with ``PutObjectRetention`` if the store did not apply it. The staging
    object, never locked, is removed in every case: its version is deleted for good (falling back to
    a delete marker without ``s3:DeleteObjectVersion``). Earlier versions of ``target`` stay.

    :param staging: the staging object, complete.
    :param target: where it goes, on the same bucket.
    :param lock: the retention of the new version.
    :param now: the instant of the write (aware); default this machine's clock.
    :param single_copy_limit: the largest object copied by one request; larger ones are copied in parts.
    :param part_size: the size of each part of a multipart copy (see :func:`copy_ranges`).
    :param log: where the lock and failures to remove the staging object are logged.
    :return: the version id of the new version of ``target``, if the store gave one.
    :raises AsanaAuditLogConfigError: when the bucket has no Object Lock configuration; ``target`` is
        left as it was.
    """
    log = log or _log
    fs = staging.fs
    until = lock.retain_until(now)
    source_bucket, source_key, _ = fs.split_path(staging.path)
    bucket, key, _ = fs.split_path(target.path)
    try:
        version: str | None = sync(
            fs.loop,
            _locked_move,
            fs,
            (source_bucket, source_key),
            (bucket, key),
            lock,
            until,
            single_copy_limit=single_copy_limit,
            part_size=part_size,
            log=log,
        )
    except Exception as err:
        if _missing_lock_configuration(err):
            raise AsanaAuditLogConfigError(
                f"Cannot lock {target}: the bucket {bucket} does not have Object Lock enabled (create it "
                "with Object Lock, or drop object_lock)"
            ) from err
        raise
    finally:
        fs.invalidate_cache(staging.path)
        fs.invalidate_cache(target.path)
    log.info("Wrote %s (version %s), locked in %s mode until %s", target, version, lock.mode, until)
    return version


def lock_status(path: ObjectStoragePath) -> LockStatus | None:
    """
    The Object Lock retention of the current version of ``path``.

    :param path: an object.
    :return: its retention (:attr:`LockStatus.mode` ``None`` when it is not locked), or ``None`` when
        the store cannot tell (it is not S3).
    :raises FileNotFoundError: when there is no such object.
    """
    fs = path.fs
    if not _is_s3(fs):
        return None
    bucket, key, version = fs.split_path(path.path)
    head = fs.call_s3("head_object", Bucket=bucket, Key=key, **_version(version))
    return _status(head)


def copy_ranges(size: int, part_size: int = COPY_PART_SIZE) -> list[tuple[int, int]]:
    """
    The byte ranges (first and last byte, inclusive) of the parts of a multipart copy of ``size`` bytes.

    Parts are ``part_size`` bytes but the last, or larger when ``size`` would need more than
    :data:`MAX_COPY_PARTS` parts.

    :param size: the object's size in bytes.
    :param part_size: the size of a part, in bytes.
    :raises ValueError: for a size below zero or a part size below one.
    """
    if size < 0 or part_size < 1:
        raise ValueError(f"cannot split {size} bytes into parts of {part_size} bytes")
    step = max(part_size, math.ceil(size / MAX_COPY_PARTS))
    return [(first, min(first + step, size) - 1) for first in range(0, size, step)]


# ---------------------------------------------------------------------- internals


async def _locked_move(
    fs: Any,
    source: tuple[str, str],
    destination: tuple[str, str],
    lock: ObjectLock,
    until: datetime,
    *,
    single_copy_limit: int,
    part_size: int,
    log: Logger,
) -> str | None:
    """:func:`locked_move` on the filesystem's event loop."""
    bucket, key = destination
    await fs.set_session()
    client = await fs.get_s3(bucket)
    client.meta.events.register("before-call.s3.CopyObject", _content_md5_for_lock, unique_id=_HANDLER_ID)
    head = await fs._call_s3("head_object", Bucket=source[0], Key=source[1])
    staged_version = head.get("VersionId")
    # The staging object's name is this attempt's own: its current version is what was written. Not
    # naming the version keeps the copy to s3:GetObject (a version needs s3:GetObjectVersion).
    copy_source = {"Bucket": source[0], "Key": source[1]}
    lock_parameters = {
        "ObjectLockMode": lock.mode,
        "ObjectLockRetainUntilDate": until,
        "ChecksumAlgorithm": "SHA256",
    }
    try:
        size = int(head["ContentLength"])
        if size <= single_copy_limit:
            done = await fs._call_s3(
                "copy_object", Bucket=bucket, Key=key, CopySource=copy_source, **lock_parameters
            )
        else:
            done = await _multipart_copy(
                fs, copy_source, bucket, key, size, part_size, lock_parameters, log=log
            )
        version = done.get("VersionId")
        await _confirm_lock(fs, bucket, key, version, lock, until)
    finally:
        await _remove_staging(fs, source, staged_version, log)
    return version if isinstance(version, str) else None


async def _multipart_copy(
    fs: Any,
    copy_source: dict[str, str],
    bucket: str,
    key: str,
    size: int,
    part_size: int,
    lock_parameters: dict[str, Any],
    *,
    log: Logger,
) -> dict[str, Any]:
    """Copy an object part by part into a multipart upload created with the lock; abort it on failure."""
    upload = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key, **lock_parameters)
    upload_id = upload["UploadId"]
    try:
        parts = []
        for number, (first, last) in enumerate(copy_ranges(size, part_size), start=1):
            copied = await fs._call_s3(
                "upload_part_copy",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=copy_source,
                CopySourceRange=f"bytes={first}-{last}",
            )
            result = copied["CopyPartResult"]
            part = {"PartNumber": number, "ETag": result["ETag"]}
            if result.get("ChecksumSHA256"):
                part["ChecksumSHA256"] = result["ChecksumSHA256"]
            parts.append(part)
        done: dict[str, Any] = await fs._call_s3(
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
    except BaseException:
        try:
            await fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as err:  # the copy's error matters more; a lifecycle rule ends the upload
            log.warning(
                "Could not abort the multipart upload %s of s3://%s/%s: %s", upload_id, bucket, key, err
            )
        raise
    return done


async def _confirm_lock(
    fs: Any, bucket: str, key: str, version: str | None, lock: ObjectLock, until: datetime
) -> None:
    """
    Read back the lock of the new version; set it when the store did not apply the one asked for.

    The current version is read (a given version would need s3:GetObjectVersion); when it is another
    (a concurrent write landed since), or its lock is not the one asked for, or the read does not show
    it (without s3:GetObjectRetention), the new version's retention is set, which S3 allows as long
    as it does not shorten it.
    """
    head = await fs._call_s3("head_object", Bucket=bucket, Key=key)
    status = _status(head)
    ours = version is None or head.get("VersionId") == version
    if ours and status.mode == lock.mode and status.retain_until is not None and status.retain_until >= until:
        return
    await fs._call_s3(
        "put_object_retention",
        Bucket=bucket,
        Key=key,
        Retention={"Mode": lock.mode, "RetainUntilDate": until},
        **_version(version),
    )


async def _remove_staging(fs: Any, source: tuple[str, str], version: str | None, log: Logger) -> None:
    """Delete the staging object's version for good, else hide it behind a delete marker; never fails."""
    bucket, key = source
    where = f"s3://{bucket}/{key}"
    if version is not None:
        try:
            await fs._call_s3("delete_object", Bucket=bucket, Key=key, VersionId=version)
            return
        except FileNotFoundError:
            return
        except PermissionError as err:
            log.warning(
                "Could not delete the version %s of the staging object %s (%s): it stays as a noncurrent "
                "version behind a delete marker; allow s3:DeleteObjectVersion, or let a lifecycle rule "
                "expire noncurrent versions",
                version,
                where,
                err,
            )
        except Exception as err:
            log.warning("Could not remove the staging object %s: %s", where, err)
            return
    try:
        await fs._call_s3("delete_object", Bucket=bucket, Key=key)
    except Exception as err:
        log.warning("Could not remove the staging object %s: %s", where, err)


def _content_md5_for_lock(params: dict[str, Any], **kwargs: Any) -> None:
    """Give a request that sets Object Lock parameters without a body the ``Content-MD5`` of its body."""
    headers = params.get("headers")
    if not isinstance(headers, dict) or params.get("body"):
        return
    names = {name.lower() for name in headers}
    if "x-amz-object-lock-mode" in names and "content-md5" not in names:
        headers["Content-MD5"] = _EMPTY_BODY_MD5


def _status(head: dict[str, Any]) -> LockStatus:
    mode = head.get("ObjectLockMode") or None
    until = head.get("ObjectLockRetainUntilDate")
    if isinstance(until, datetime):
        until = (until if until.tzinfo else until.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    else:
        until = None
    return LockStatus(mode=mode, retain_until=until if mode else None)


def _version(version: str | None) -> dict[str, str]:
    return {"VersionId": version} if version else {}


def _missing_lock_configuration(err: BaseException) -> bool:
    """Whether S3 refused a request because the bucket has no Object Lock configuration."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            text += " " + str((response.get("Error") or {}).get("Message", ""))
        # AWS says "Object Lock Configuration", moto "ObjectLockConfiguration".
        if "objectlockconfiguration" in text.replace(" ", "").lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _protocol(fs: Any) -> str:
    protocols = _protocols(fs)
    return protocols[0] if protocols else "an unknown filesystem"


def _is_s3(fs: Any) -> bool:
    return bool(_S3_PROTOCOLS.intersection(_protocols(fs))) and hasattr(fs, "_call_s3")
