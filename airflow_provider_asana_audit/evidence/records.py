"""
The signed record of one export: what it wrote (the file's hash, size and events, its manifest's
hash), for which interval and series, when and by whom, and which earlier record of the same interval
it replaces.

A record is signed over its canonical JSON (:mod:`.canonical`) without its ``signature``. Records of one
interval form an append-only chain: each re-export's record names the previous one in ``supersedes``,
so a late-event re-export is a new link, and an older version put back is not the chain's newest.

.. seealso:: docs/evidence.md#records
"""

from __future__ import annotations

import builtins
import copy
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from airflow_provider_asana_audit.evidence.canonical import canonical_json, is_sha256, read_stored, sha256_hex
from airflow_provider_asana_audit.evidence.keys import Keyring, SigningKey, encode_signature
from airflow_provider_asana_audit.evidence.paths import filter_series, history_path, record_path
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.layout import layout_entry
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

__all__ = [
    "RECORD_TYPE",
    "RECORD_VERSION",
    "Record",
    "record_objects",
    "record_sha256",
    "sign_manifest",
    "sign_record",
    "verify_record",
]

#: The ``type`` of every record's JSON.
RECORD_TYPE = "asana_audit_log_record"
#: The version of the record format this package writes and reads.
RECORD_VERSION = 1


@dataclass(frozen=True)
class Record:
    """
    A signed record of one export file; the fields are its JSON's keys, with ``"type"``.

    :param version: the record format, :data:`RECORD_VERSION`.
    :param workspace_gid: the exported workspace.
    :param filters: Asana's filters of the export, ``None`` where not set.
    :param start_at: the interval's start, ISO 8601 UTC.
    :param end_at: its end.
    :param path: the export file's path below the archive's base (the default layout).
    :param sha256: hex SHA-256 of the file as stored.
    :param bytes: its size as stored.
    :param events: its events.
    :param manifest_sha256: hex SHA-256 of the manifest as stored.
    :param exported_at: when the export finished.
    :param exported_by: the Airflow task instance that wrote it (the manifest's), or ``None``.
    :param supersedes: the :func:`record_sha256` of the previous record of this file, ``None`` for the first.
    :param key: the fingerprint of the signing key.
    :param signature: base64 Ed25519 signature of :meth:`signed_bytes`.
    """

    version: int
    workspace_gid: str
    filters: dict[str, str | None]
    start_at: str
    end_at: str
    path: str
    sha256: str
    bytes: int
    events: int
    manifest_sha256: str
    exported_at: str
    exported_by: dict[str, Any] | None
    supersedes: str | None
    key: str
    signature: str

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON object."""
        # Built by hand: asdict deep-copies field by field, and the check reads a record per export.
        value: dict[str, Any] = {"type": RECORD_TYPE}
        value.update((field.name, getattr(self, field.name)) for field in fields(self))
        value["filters"] = dict(self.filters)
        value["exported_by"] = copy.deepcopy(self.exported_by)
        return value

    def signed_bytes(self) -> builtins.bytes:
        """What is signed: the canonical JSON of the record without its ``signature``."""
        unsigned = self.to_dict()
        del unsigned["signature"]
        return canonical_json(unsigned)

    def to_json(self) -> builtins.bytes:
        """The record as stored: its canonical JSON and a newline."""
        return canonical_json(self.to_dict()) + b"\n"

    @classmethod
    def from_json(cls, data: builtins.bytes | str) -> Record:
        """
        Read a stored record; its signature is not checked (see :func:`verify_record`).

        :raises ValueError: when it is not a record of this format (the message says why).
        """
        names = [field.name for field in fields(cls)]
        value = read_stored(data, kind=RECORD_TYPE, version=RECORD_VERSION, names=names)
        record = cls(**{name: value[name] for name in names})
        complaints = _complaints(record)
        if not isinstance(record.key, str) or not isinstance(record.signature, str):
            complaints.append("key and signature must be strings")
        if complaints:
            raise ValueError("; ".join(complaints))
        return record


def record_sha256(record: Record) -> str:
    """The record's identity: hex SHA-256 of its canonical JSON, signature included."""
    return sha256_hex(canonical_json(record.to_dict()))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _complaints(record: Record) -> list[str]:
    """What is wrong with a record's fields (its signature aside); empty when nothing is."""
    wrong: list[str] = []
    if not (isinstance(record.workspace_gid, str) and record.workspace_gid.isdigit()):
        wrong.append(f"workspace_gid {record.workspace_gid!r} is not a workspace gid (digits)")
    filters = record.filters
    if not isinstance(filters, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in filters.items()
    ):
        wrong.append("filters must be an object of strings or nulls")
        filters = {}
    instants = {}
    for name in ("start_at", "end_at", "exported_at"):
        try:
            instants[name] = parse_instant(getattr(record, name), name=name)
        except ValueError as err:
            wrong.append(str(err))
    if "start_at" in instants and "end_at" in instants and instants["start_at"] >= instants["end_at"]:
        wrong.append("start_at is not before end_at")
    for name in ("sha256", "manifest_sha256"):
        if not is_sha256(getattr(record, name)):
            wrong.append(f"{name} is not a hex SHA-256 (64 lower-case hex digits)")
    if record.supersedes is not None and not is_sha256(record.supersedes):
        wrong.append("supersedes is neither null nor a record's hex SHA-256")
    for name in ("bytes", "events"):
        if not _is_count(getattr(record, name)):
            wrong.append(f"{name} is not an integer of 0 or more")
    if record.exported_by is not None and not isinstance(record.exported_by, dict):
        wrong.append("exported_by is neither null nor an object")
    entry = layout_entry(record.path) if isinstance(record.path, str) else None
    if entry is None or entry.kind != "file":
        wrong.append(
            f"path {record.path!r} is not an export file's path below the base in the default layout"
        )
    elif (
        entry.workspace_gid != record.workspace_gid
        or instants.get("start_at") != entry.start_at
        or instants.get("end_at") != entry.end_at
        or (entry.filter_suffix.lstrip("_") or "unfiltered") != filter_series(filters)
    ):
        wrong.append(f"path {record.path!r} names another workspace, interval or set of filters")
    return wrong


def sign_record(
    *,
    key: SigningKey,
    workspace_gid: str,
    filters: Mapping[str, str | None],
    start_at: str,
    end_at: str,
    path: str,
    sha256: str,
    bytes: int,
    events: int,
    manifest_sha256: str,
    exported_at: str,
    exported_by: Mapping[str, Any] | None,
    supersedes: Record | None = None,
) -> Record:
    """
    Sign the record of one export file (the parameters are :class:`Record`'s).

    :param supersedes: the current record of the same file, which this one replaces (a re-export).
    :raises AsanaAuditLogConfigError: when a field is wrong, or ``supersedes`` is another file's record.
    """
    if supersedes is not None and supersedes.path != path:
        raise AsanaAuditLogConfigError(
            f"A record of {path} cannot supersede the record of another file, {supersedes.path}"
        )
    unsigned = Record(
        version=RECORD_VERSION,
        workspace_gid=workspace_gid,
        filters=dict(filters),
        start_at=start_at,
        end_at=end_at,
        path=path,
        sha256=sha256,
        bytes=bytes,
        events=events,
        manifest_sha256=manifest_sha256,
        exported_at=exported_at,
        exported_by=dict(exported_by) if exported_by is not None else None,
        supersedes=record_sha256(supersedes) if supersedes is not None else None,
        key=key.fingerprint,
        signature="",
    )
    complaints = _complaints(unsigned)
    if complaints:
        raise AsanaAuditLogConfigError(f"Cannot sign the record of {path!r}: {'; '.join(complaints)}")
    normalised = Record(
        **{
            **asdict(unsigned),
            "start_at": format_instant(parse_instant(start_at)),
            "end_at": format_instant(parse_instant(end_at)),
            "exported_at": format_instant(parse_instant(exported_at)),
        }
    )
    signature = encode_signature(key.sign(normalised.signed_bytes()))
    return Record(**{**asdict(normalised), "signature": signature})


def sign_manifest(
    *, key: SigningKey, path: str, manifest: builtins.bytes, supersedes: Record | None = None
) -> Record:
    """
    Sign the record of an export from its manifest, as stored.

    :param path: the export file's path below the archive's base.
    :param manifest: the bytes of ``<file>.manifest.json``.
    :param supersedes: the file's current record, when this is a re-export.
    :raises AsanaAuditLogConfigError: when the manifest is not one of an export of ``path``.
    """
    try:
        described = json.loads(manifest)
    except ValueError:
        described = None
    names = ("workspace_gid", "filters", "start_at", "end_at", "sha256", "bytes", "events")
    if (
        not isinstance(described, dict)
        or any(name not in described for name in names)
        or not isinstance(described["filters"], dict)
    ):
        raise AsanaAuditLogConfigError(
            f"The manifest of {path} is not a JSON object with the keys {', '.join(names)}: sign the "
            "manifest the export wrote"
        )
    return sign_record(
        key=key,
        path=path,
        manifest_sha256=sha256_hex(manifest),
        exported_at=described.get("exported_at", ""),
        exported_by=described.get("exported_by"),
        supersedes=supersedes,
        **{name: described[name] for name in names},
    )


def verify_record(record: Record, keyring: Keyring) -> None:
    """
    Check a record's signature.

    :raises AsanaAuditLogSignatureError: ``signature_unknown_key`` when its key is not in ``keyring``,
        ``signature_bad`` when the record was changed after it was signed.
    """
    keyring.verify(
        fingerprint=record.key,
        signature=record.signature,
        data=record.signed_bytes(),
        what=f"The record of {record.path}",
    )


def record_objects(record: Record) -> dict[str, builtins.bytes]:
    """
    What to store for a new record, by path below the base, in this order: the same bytes kept for good
    in the day's record history, then the file's current record. In that order, an attempt stopped
    between the two leaves a newer record in the history, which the check reports until a retry
    writes the current record; in the other order, it could leave a gap in the interval's chain.
    """
    data = record.to_json()
    return {history_path(record.path, record_sha256(record)): data, record_path(record.path): data}
