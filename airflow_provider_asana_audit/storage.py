"""
Object storage for exports: where a file goes, and how it gets there whole.

Everything here works on Airflow's ``ObjectStoragePath``, so local disks, S3, GCS, Azure and every other
filesystem Airflow's object storage supports behave the same. Files are written through a hidden staging
object beside the destination and moved into place only when complete: a rename on local disks, a copy
then delete on object stores (where the destination object appears whole), so a destination holds
either its previous content or the complete new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import BinaryIO, TypeVar

from airflow.providers.common.compat.sdk import ObjectStoragePath, conf

from airflow_provider_asana_audit.client import Logger
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError

__all__ = [
    "FILESYSTEM_PROVIDERS",
    "HashingWriter",
    "default_destination",
    "resolve_destination",
    "write_atomically",
]

#: The provider that registers each URL scheme's filesystem, for the "cannot write there" error.
FILESYSTEM_PROVIDERS = {
    "s3": "apache-airflow-providers-amazon",
    "s3a": "apache-airflow-providers-amazon",
    "gs": "apache-airflow-providers-google",
    "gcs": "apache-airflow-providers-google",
    "abfs": "apache-airflow-providers-microsoft-azure",
    "abfss": "apache-airflow-providers-microsoft-azure",
    "az": "apache-airflow-providers-microsoft-azure",
    "adl": "apache-airflow-providers-microsoft-azure",
}
_T = TypeVar("_T")
_log = logging.getLogger(__name__)


class HashingWriter:
    """A write-only file wrapper that counts and hashes the bytes that reach storage."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def resolve_destination(
    value: str | os.PathLike[str] | ObjectStoragePath, *, conn_id: str | None = None
) -> ObjectStoragePath:
    """
    The destination file as an ``ObjectStoragePath`` whose filesystem is available.

    :param value: an absolute path, a URI or an ``ObjectStoragePath``.
    :param conn_id: the Airflow connection of the destination's filesystem, if it needs one.
    :raises AsanaAuditLogConfigError: for a relative path, a directory, or a scheme whose filesystem is
        not installed (the message names the provider to install).
    """
    if isinstance(value, ObjectStoragePath):
        path = value
    else:
        text = os.fspath(value).strip()
        if text.endswith("/"):
            # Checked on the text: the path object drops a trailing slash and would name a file.
            raise AsanaAuditLogConfigError(
                f"destination {text!r} names a directory: name the file, e.g. '.../export.jsonl.gz'"
            )
        if "://" not in text and not os.path.isabs(text):
            raise AsanaAuditLogConfigError(
                f"destination {text!r} is a relative path: use an absolute path or a URI such as "
                "'file:///data/asana/export.jsonl.gz' or 's3://bucket/asana/export.jsonl.gz'"
            )
        try:
            path = ObjectStoragePath(text, conn_id=conn_id) if conn_id else ObjectStoragePath(text)
        except (ValueError, ImportError) as err:
            raise _filesystem_error(text.split("://", 1)[0] if "://" in text else "", err) from None
    try:
        path.fs  # noqa: B018  # resolves the filesystem: fails when its provider is missing
    except (ValueError, ImportError) as err:
        raise _filesystem_error(str(path.protocol or ""), err) from None
    if not path.name:
        raise AsanaAuditLogConfigError(
            f"destination {str(path)!r} names a directory: name the file, e.g. '.../export.jsonl.gz'"
        )
    return path


def default_destination(
    *,
    base_path: str | None,
    workspace_gid: str,
    start_at: datetime,
    end_at: datetime,
    filters: Mapping[str, str | None],
    conn_id: str | None = None,
) -> ObjectStoragePath:
    """
    The file of one interval in the default layout.

    ``{base}/workspace_gid={gid}/date={start:%Y-%m-%d}/asana_audit_log_{start}_{end}.jsonl.gz``, with
    ``_f<hash of the filters>`` before ``.jsonl.gz`` when any filter is set, so differently filtered
    exports of one interval never overwrite each other. ``base`` is ``base_path``, else the config option
    ``[asana_audit_log] base_path``, else ``file://{AIRFLOW_HOME}/asana_audit_log``.
    """
    base = base_path or conf.get("asana_audit_log", "base_path", fallback=None)
    if not base:
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        base = f"file://{os.path.abspath(home)}/asana_audit_log"
    suffix = ""
    if any(value is not None for value in filters.values()):
        digest = hashlib.sha256(json.dumps(dict(filters), sort_keys=True).encode()).hexdigest()
        suffix = f"_f{digest[:10]}"
    name = f"asana_audit_log_{start_at:%Y%m%dT%H%M%SZ}_{end_at:%Y%m%dT%H%M%SZ}{suffix}.jsonl.gz"
    return resolve_destination(
        f"{str(base).rstrip('/')}/workspace_gid={workspace_gid}/date={start_at:%Y-%m-%d}/{name}",
        conn_id=conn_id,
    )


def write_atomically(
    target: ObjectStoragePath,
    write: Callable[[BinaryIO], _T],
    *,
    before_commit: Callable[[_T], None] | None = None,
    log: Logger | None = None,
) -> _T:
    """
    Write ``target`` through a hidden staging object in the same place, then move it over ``target``.

    ``write(raw)`` fills the staging object ``.<name>.<uuid>.partial``; ``before_commit(result)`` runs
    just before the move. The staging object is removed on any failure, so ``target`` holds either its
    previous content or the complete new one.
    """
    parent = target.parent
    if _is_local(target):
        parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{target.name}.{uuid.uuid4().hex}.partial"
    try:
        with staging.open("wb") as raw:  # type: ignore[no-untyped-call]
            result = write(raw)
        if before_commit is not None:
            before_commit(result)
        staging.rename(target)
    except BaseException:
        _remove_quietly(staging, log or _log)
        raise
    return result


def _filesystem_error(scheme: str, err: Exception) -> AsanaAuditLogConfigError:
    provider = FILESYSTEM_PROVIDERS.get(scheme.lower())
    if provider:
        advice = f"install {provider} in every Airflow worker"
    else:
        advice = (
            "install the Airflow provider that registers this filesystem for object storage, or use "
            "file://, s3:// (apache-airflow-providers-amazon) or gs:// (apache-airflow-providers-google)"
        )
    return AsanaAuditLogConfigError(
        f"Airflow cannot write to {scheme or 'this'}:// destinations ({err}): {advice}"
    )


def _is_local(path: ObjectStoragePath) -> bool:
    protocol = path.fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


def _remove_quietly(path: ObjectStoragePath, log: Logger) -> None:
    try:
        if path.exists():
            path.unlink()
    except Exception as err:  # the original error matters more
        log.warning("Could not remove the staging object %s: %s", path, err)
