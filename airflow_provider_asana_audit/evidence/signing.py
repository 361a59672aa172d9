"""
Signing an archive as it is written: the private key from its Airflow connection, the record an export
writes beside its file, and the seals a sealing task writes for each series.

.. seealso:: docs/evidence.md
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook, ObjectStoragePath

from airflow_provider_asana_audit.evidence.check import series_state
from airflow_provider_asana_audit.evidence.keys import Keyring, SigningKey
from airflow_provider_asana_audit.evidence.paths import record_path
from airflow_provider_asana_audit.evidence.records import Record, record_objects, record_sha256, sign_manifest
from airflow_provider_asana_audit.evidence.seals import Seal, make_seal, seal_hash, seal_objects
from airflow_provider_asana_audit.evidence.view import StorageArchive
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.storage import atomic_write
from airflow_provider_asana_audit.utils import Logger

if TYPE_CHECKING:
    from airflow_provider_asana_audit.storage.object_lock import ObjectLock

__all__ = ["SealWritten", "load_signing_key", "seal_archive", "write_record"]


def load_signing_key(conn_id: str) -> SigningKey:
    """
    The private key held in the password of the Airflow connection ``conn_id`` (any connection type; a
    secrets backend serves it like any other connection).

    :raises AsanaAuditLogConfigError: when the password is empty or not an Ed25519 private key; the
        message never repeats it.
    """
    password = BaseHook.get_connection(conn_id).password
    if not password:
        raise AsanaAuditLogConfigError(
            f"The connection {conn_id!r} has no password: store the private key that make-key printed "
            "(-----BEGIN PRIVATE KEY----- ...) in its password"
        )
    return SigningKey.from_pem(password)


def write_record(
    *,
    key: SigningKey,
    base: ObjectStoragePath,
    relative: str,
    manifest: bytes,
    object_lock: ObjectLock | None = None,
    log: Logger,
) -> Record:
    """
    Sign and store the record of an export that has just been written, linked to the record it replaces.

    :param base: the archive's base.
    :param relative: the export file's path below ``base``.
    :param manifest: the bytes of its manifest, as stored.
    :param object_lock: the S3 Object Lock retention the record's objects are written with.
    :param log: where the record is reported.
    """
    record = sign_manifest(
        key=key, path=relative, manifest=manifest, supersedes=_current_record(base, relative, log)
    )
    for path, data in record_objects(record).items():
        with atomic_write(base / path, log=log, object_lock=object_lock) as staged:
            staged.file.write(data)
            staged.commit()
    log.info(
        "Signed the record of %s with key %s: record sha256 %s%s",
        relative,
        record.key,
        record_sha256(record),
        f", superseding {record.supersedes}" if record.supersedes else "",
    )
    return record


def _current_record(base: ObjectStoragePath, relative: str, log: Logger) -> Record | None:
    """
    The file's current record, which a new one supersedes, whether or not its file is still there: a
    re-export of a deleted interval continues its chain rather than starting a second one.
    """
    path = base / record_path(relative)
    try:
        current = Record.from_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning(
            "The current record %s cannot be read (%s): the new record starts a new chain, and the archive "
            "check with the public keys will report the old one",
            path,
            err,
        )
        return None
    return current if current.path == relative else None


@dataclass(frozen=True)
class SealWritten:
    """A seal a sealing task wrote, and the hash to publish outside the archive."""

    seal: Seal
    path: str
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace_gid": self.seal.workspace_gid,
            "series": self.seal.series,
            "sequence": self.seal.sequence,
            "intervals": self.seal.intervals,
            "merkle_root": self.seal.merkle_root,
            "path": self.path,
            "seal_sha256": self.sha256,
        }


def seal_archive(
    *,
    key: SigningKey,
    base: ObjectStoragePath,
    keyring: Keyring | None = None,
    object_lock: ObjectLock | None = None,
    log: Logger,
) -> list[SealWritten]:
    """
    Seal every series under ``base`` whose records changed since its newest seal; series with nothing new
    keep their newest seal.

    :param keyring: the public keys of earlier signing keys, whose records the seals still cover; the
        key's own public key is always added.
    :param object_lock: the S3 Object Lock retention the seals are written with.
    :raises AsanaAuditLogConfigError: when an interval that the newest seal covers has no record now
        (from :func:`~.seals.make_seal`): the archive must be checked and mended first.
    """
    keys = [key.public_key, *(keyring or [])]
    ring = Keyring(keys)
    state = series_state(StorageArchive(base), ring)  # every record and seal read once, for all the series
    written: list[SealWritten] = []
    for (workspace_gid, _), filters in sorted(state.series.items()):
        records, previous = state(workspace_gid, filters)
        if previous is not None and {i.record for i in previous.covered} == {
            record_sha256(r) for r in records
        }:
            log.info(
                "Workspace %s, series %s: nothing new since seal %d (sha256 %s)",
                workspace_gid,
                previous.series,
                previous.sequence,
                seal_hash(previous),
            )
            continue
        seal = make_seal(
            key=key, workspace_gid=workspace_gid, filters=filters, records=records, previous=previous
        )
        ((path, data),) = seal_objects(seal).items()
        with atomic_write(base / path, log=log, object_lock=object_lock) as staged:
            staged.file.write(data)
            staged.commit()
        done = SealWritten(seal=seal, path=path, sha256=seal_hash(seal))
        log.info(
            "Sealed workspace %s, series %s: seal %d covers %d intervals from %s to %s (Merkle root %s). "
            "Publish this seal hash outside the archive: %s",
            workspace_gid,
            seal.series,
            seal.sequence,
            seal.intervals,
            seal.first_start_at,
            seal.last_end_at,
            seal.merkle_root,
            done.sha256,
        )
        written.append(done)
    return written
