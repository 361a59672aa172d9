"""Records: signed and verified, stored and read back, refused when edited, forged or malformed, chained."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, replace
from typing import Any

import pytest

from airflow_provider_asana_audit.evidence import (
    Keyring,
    Record,
    SigningKey,
    record_objects,
    record_sha256,
    sign_manifest,
    sign_record,
    verify_record,
)
from airflow_provider_asana_audit.evidence.canonical import canonical_json
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogSignatureError

KEY = SigningKey.generate()
KEYRING = Keyring([KEY.public_key])
DAY = "workspace_gid=1200000000000001/date=2026-11-24"
PATH = f"{DAY}/asana_audit_log_20261124T000000Z_20261125T000000Z.jsonl.gz"
FIELDS: dict[str, Any] = {
    "workspace_gid": "1200000000000001",
    "filters": {"event_type": None, "actor_type": None, "actor_gid": None, "resource_gid": None},
    "start_at": "2026-11-24T00:00:00Z",
    "end_at": "2026-11-25T00:00:00.000Z",
    "path": PATH,
    "sha256": "a" * 64,
    "bytes": 98765,
    "events": 1234,
    "manifest_sha256": "b" * 64,
    "exported_at": "2026-11-25T00:31:07.412Z",
    "exported_by": {"dag_id": "asana_audit_export", "task_id": "export", "try_number": 1, "map_index": -1},
}


def test_a_signed_record_verifies_and_round_trips() -> None:
    record = sign_record(key=KEY, **FIELDS)
    verify_record(record, KEYRING)
    assert record.key == KEY.fingerprint
    assert record.version == 1
    assert record.supersedes is None
    assert record.start_at == "2026-11-24T00:00:00.000Z"  # instants as the package writes them
    stored = record.to_json()
    assert stored.endswith(b"\n")
    assert b" " not in stored
    assert b"\n" not in stored[:-1]
    assert list(json.loads(stored)) == sorted(json.loads(stored))  # canonical: sorted keys
    assert Record.from_json(stored) == record
    assert record_sha256(Record.from_json(stored)) == record_sha256(record)
    verify_record(Record.from_json(stored), KEYRING)


def test_what_is_signed_is_everything_but_the_signature() -> None:
    record = sign_record(key=KEY, **FIELDS)
    unsigned = {"type": "asana_audit_log_record", **asdict(record)}
    del unsigned["signature"]
    assert record.signed_bytes() == canonical_json(unsigned)
    assert KEY.public_key.verifies(base64.b64decode(record.signature), record.signed_bytes())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("events", 1235),
        ("bytes", 1),
        ("sha256", "c" * 64),
        ("manifest_sha256", "c" * 64),
        ("exported_at", "2026-11-26T00:00:00.000Z"),
        ("exported_by", None),
        ("supersedes", "d" * 64),
        (
            "filters",
            {"event_type": None, "actor_type": None, "actor_gid": None, "resource_gid": None, "x": None},
        ),
    ],
)
def test_an_edited_record_fails(name: str, value: Any) -> None:
    edited = replace(sign_record(key=KEY, **FIELDS), **{name: value})
    with pytest.raises(AsanaAuditLogSignatureError, match="changed after it was signed") as failed:
        verify_record(edited, KEYRING)
    assert failed.value.kind == "signature_bad"


def test_a_record_signed_by_an_unknown_key_is_refused() -> None:
    forged = sign_record(key=SigningKey.generate(), **FIELDS)
    with pytest.raises(AsanaAuditLogSignatureError, match="not in the keyring") as refused:
        verify_record(forged, KEYRING)
    assert refused.value.kind == "signature_unknown_key"
    # Claiming the trusted key's fingerprint does not help: the signature is then wrong.
    with pytest.raises(AsanaAuditLogSignatureError) as claimed:
        verify_record(replace(forged, key=KEY.fingerprint), KEYRING)
    assert claimed.value.kind == "signature_bad"


def test_a_reexport_supersedes_the_previous_record() -> None:
    first = sign_record(key=KEY, **FIELDS)
    second = sign_record(key=KEY, **{**FIELDS, "events": 1237, "sha256": "e" * 64}, supersedes=first)
    assert second.supersedes == record_sha256(first) != record_sha256(second)
    verify_record(second, KEYRING)
    other = (
        PATH.replace("2026-11-24", "2026-11-23")
        .replace("20261124T", "20261123T")
        .replace("_20261125T", "_20261124T")
    )
    with pytest.raises(AsanaAuditLogConfigError, match="cannot supersede the record of another file"):
        sign_record(key=KEY, **{**FIELDS, "path": other}, supersedes=first)


def test_records_are_stored_as_current_and_kept_in_the_history() -> None:
    record = sign_record(key=KEY, **FIELDS)
    objects = record_objects(record)
    assert list(objects.items()) == [
        (f"{DAY}/_records/{record_sha256(record)}.json", record.to_json()),
        (f"{PATH}.record.json", record.to_json()),
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sha256": "ABC"}, "sha256 is not a hex SHA-256"),
        ({"events": -1}, "events is not an integer of 0 or more"),
        ({"bytes": True}, "bytes is not an integer of 0 or more"),
        ({"start_at": "2026-11-24"}, "has no timezone"),
        ({"workspace_gid": "1200000000000002"}, "names another workspace, interval or set of filters"),
        (
            {"filters": {"event_type": "user_login_failed"}},
            "names another workspace, interval or set of filters",
        ),
        ({"path": "somewhere/else.jsonl.gz"}, "is not an export file's path"),
        ({"exported_by": {"seconds": 1.5}}, "float"),
    ],
)
def test_a_wrong_field_is_refused_with_what_to_change(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match=message):
        sign_record(key=KEY, **{**FIELDS, **changes})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", "is not a JSON object of type"),
        ('{"type": "asana_audit_log_record", "version": 2}', "version 2"),
        ('{"type": "asana_audit_log_record", "version": 1}', "exactly the keys"),
    ],
)
def test_a_malformed_stored_record_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Record.from_json(text)


def test_a_stored_record_with_a_wrong_field_is_refused() -> None:
    value = json.loads(sign_record(key=KEY, **FIELDS).to_json())
    with pytest.raises(ValueError, match="events is not an integer"):
        Record.from_json(json.dumps({**value, "events": "many"}))
    with pytest.raises(ValueError, match="float"):
        Record.from_json(json.dumps({**value, "exported_by": {"x": 0.5}}))


def test_a_manifest_is_signed_as_its_record() -> None:
    manifest = json.dumps(
        {**{k: v for k, v in FIELDS.items() if k not in ("path", "manifest_sha256")}, "changes": []}
    ).encode()
    record = sign_manifest(key=KEY, path=PATH, manifest=manifest)
    assert (record.events, record.sha256, record.exported_by) == (1234, "a" * 64, FIELDS["exported_by"])
    assert record.manifest_sha256 == hashlib.sha256(manifest).hexdigest()
    with pytest.raises(AsanaAuditLogConfigError, match="is not a JSON object with the keys"):
        sign_manifest(key=KEY, path=PATH, manifest=b"[]")
