"""
Write-once storage (``airflow_provider_asana_audit.storage.object_lock``): the atomic write's move with
S3 Object Lock, against a real S3 API: moto's server mode on 127.0.0.1, reached through an
``aws_default`` connection and ``s3://aws_default@bucket/...`` paths, as the operator reaches S3.

moto enforces what these tests rely on: a lock needs a bucket created with Object Lock, a request that
sets lock parameters needs ``Content-MD5`` (or a checksum header), and a locked version cannot be
deleted before its date (in governance mode, unless the request bypasses it). It ignores the lock
parameters of ``CreateMultipartUpload``; the multipart copy's lock is set by the read-back that
follows every copy, which the multipart test checks.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("moto")

from airflow.providers.common.compat.sdk import ObjectStoragePath
from botocore.exceptions import ClientError

import airflow_provider_asana_audit.storage as storage
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.storage import (
    LockStatus,
    ObjectLock,
    atomic_write,
    lock_status,
)
from airflow_provider_asana_audit.storage.object_lock import (
    MAX_COPY_PARTS,
    check_lockable,
    copy_ranges,
    locked_move,
)
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from airflow_provider_asana_audit.verify.locks import lock_report
from tests.helpers.archive import run_verify
from tests.helpers.exports import midnight
from tests.helpers.services import Service, aws_connection, s3_client

#: A bucket created with Object Lock (so versioned), one without (not versioned), one versioned only.
LOCKED, PLAIN, VERSIONED = "locked-exports", "plain-exports", "versioned-exports"
DATA = b'{"gid": "1", "event_type": "user_login_succeeded"}\n' * 40


@pytest.fixture(scope="module")
def buckets(moto: Service) -> Service:
    """The session's moto server with the three buckets."""
    s3 = s3_client(moto)
    s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket=PLAIN)
    s3.create_bucket(Bucket=VERSIONED)
    s3.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    return moto


@pytest.fixture
def s3(buckets: Service, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client of moto; ``aws_default`` points at moto too, for ``s3://aws_default@...`` paths."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws_connection(buckets)))
    return s3_client(buckets)


@pytest.fixture
def prefix() -> str:
    """A folder of its own for each test, in every bucket."""
    return f"asana/{uuid.uuid4().hex}"


def _path(bucket: str, key: str) -> ObjectStoragePath:
    return ObjectStoragePath(f"s3://aws_default@{bucket}/{key}")


def _write(target: ObjectStoragePath, data: bytes, lock: ObjectLock | None) -> None:
    with atomic_write(target, object_lock=lock) as staged:
        staged.file.write(data)
        staged.commit()


def _versions(s3: Any, bucket: str, prefix: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every version and every delete marker under ``prefix``."""
    listed = s3.list_object_versions(Bucket=bucket, Prefix=f"{prefix}/")
    return listed.get("Versions", []), listed.get("DeleteMarkers", [])


def _sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


# ---------------------------------------------------------------------- the lock asked for


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("COMPLIANCE", "COMPLIANCE"), ("governance", "GOVERNANCE"), (" Compliance ", "COMPLIANCE")],
)
def test_a_lock_mode_is_normalised_to_upper_case(mode: str, expected: str) -> None:
    assert ObjectLock(mode=mode, days=7).mode == expected


@pytest.mark.parametrize("mode", ["x", "", "LEGAL_HOLD", None])
def test_a_lock_mode_other_than_governance_or_compliance_is_refused(mode: Any) -> None:
    with pytest.raises(AsanaAuditLogConfigError) as refused:
        ObjectLock(mode=mode, days=7)
    assert str(refused.value) == f"object_lock mode {mode!r} must be 'GOVERNANCE' or 'COMPLIANCE'"


@pytest.mark.parametrize("days", [0, -1, 36501, 1.5, True, "7", None])
def test_a_retention_out_of_range_or_not_whole_days_is_refused(days: Any) -> None:
    with pytest.raises(AsanaAuditLogConfigError) as refused:
        ObjectLock(mode="COMPLIANCE", days=days)
    assert str(refused.value) == (
        f"object_lock days {days!r} must be a whole number of days from 1 to 36500 (100 years)"
    )


@pytest.mark.parametrize("days", [1, 2555, 36500])
def test_a_retention_of_1_to_36500_days_is_accepted(days: int) -> None:
    assert ObjectLock(mode="GOVERNANCE", days=days).days == days


def test_the_retain_until_date_is_the_days_later_in_utc_rounded_up_to_the_second() -> None:
    lock = ObjectLock(mode="COMPLIANCE", days=10)
    now = datetime(2026, 3, 1, 23, 30, 15, 250_000, tzinfo=timezone(timedelta(hours=-5)))
    assert lock.retain_until(now) == datetime(2026, 3, 12, 4, 30, 16, tzinfo=timezone.utc)
    assert lock.retain_until(now.replace(microsecond=0)) == datetime(
        2026, 3, 12, 4, 30, 15, tzinfo=timezone.utc
    )
    with pytest.raises(ValueError, match="aware"):
        lock.retain_until(datetime(2026, 3, 1))


def test_a_local_target_with_a_lock_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    target = ObjectStoragePath(f"file://{tmp_path}/asana/day.jsonl.gz")
    expected = (
        "object_lock needs an s3:// destination: S3 Object Lock is an S3 feature; "
        f"{target} is on file://. Write to an s3:// bucket created with Object Lock, or drop object_lock"
    )
    with (
        pytest.raises(AsanaAuditLogConfigError) as refused,
        atomic_write(target, object_lock=ObjectLock(mode="COMPLIANCE", days=1)),
    ):
        pytest.fail("atomic_write should refuse a local target before it opens a staging file")
    assert str(refused.value) == expected
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AsanaAuditLogConfigError, match=re.escape(expected)):
        check_lockable(target, ObjectLock(mode="GOVERNANCE", days=1))
    assert lock_status(target) is None


# ---------------------------------------------------------------------- a locked write


@pytest.mark.parametrize("mode", ["COMPLIANCE", "GOVERNANCE"])
def test_a_locked_write_has_the_mode_the_retain_until_date_and_a_checksum(
    s3: Any, prefix: str, mode: str
) -> None:
    key = f"{prefix}/day.jsonl.gz"
    target = _path(LOCKED, key)
    before = datetime.now(timezone.utc)
    _write(target, DATA, ObjectLock(mode=mode.lower(), days=3))
    after = datetime.now(timezone.utc)

    head = s3.head_object(Bucket=LOCKED, Key=key, ChecksumMode="ENABLED")
    until = _utc(head["ObjectLockRetainUntilDate"])
    assert head["ObjectLockMode"] == mode
    assert before + timedelta(days=3) <= until <= after + timedelta(days=3, seconds=1)
    assert head["ChecksumSHA256"] == _sha256(DATA)
    assert s3.get_object(Bucket=LOCKED, Key=key)["Body"].read() == DATA
    assert lock_status(target) == LockStatus(mode=mode, retain_until=until)


def test_an_unlocked_write_to_the_same_bucket_reports_no_lock(s3: Any, prefix: str) -> None:
    target = _path(LOCKED, f"{prefix}/day.jsonl.gz")
    _write(target, DATA, None)
    assert lock_status(target) == LockStatus(mode=None, retain_until=None)


def test_the_lock_report_reads_every_file_of_a_mixed_folder_each_its_own(s3: Any, prefix: str) -> None:
    # More files than HEAD requests in flight, every third unlocked, each locked one for its own days: a
    # row given another file's retention would show.
    files = [f"day-{number:02d}.jsonl" for number in range(40)]
    until: dict[str, datetime] = {}
    for number, name in enumerate(files):
        extra: dict[str, Any] = {}
        if number % 3:
            until[name] = (datetime.now(timezone.utc) + timedelta(days=1 + number)).replace(microsecond=0)
            extra = {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until[name]}
        s3.put_object(Bucket=LOCKED, Key=f"{prefix}/{name}", Body=DATA, ChecksumAlgorithm="SHA256", **extra)

    report = lock_report(_path(LOCKED, prefix), reversed(files))

    assert report is not None
    assert (report["locked"], report["unlocked"]) == (len(until), len(files) - len(until))
    assert [row["path"] for row in report["files"]] == files
    for row in report["files"]:
        expected = until.get(row["path"])
        assert row["mode"] == ("GOVERNANCE" if expected else None), row
        assert row["retain_until"] == (format_instant(expected) if expected else None), row
    assert report["earliest_retain_until"] == format_instant(min(until.values()))
    assert lock_report(_path(LOCKED, prefix), []) is None


@pytest.mark.parametrize("mode", ["COMPLIANCE", "GOVERNANCE"])
def test_a_locked_version_cannot_be_deleted_before_its_date(s3: Any, prefix: str, mode: str) -> None:
    key = f"{prefix}/day.jsonl.gz"
    _write(_path(LOCKED, key), DATA, ObjectLock(mode=mode, days=1))
    version = s3.head_object(Bucket=LOCKED, Key=key)["VersionId"]

    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=LOCKED, Key=key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    # A delete without a version only hides the file behind a delete marker: the version stays.
    assert s3.delete_object(Bucket=LOCKED, Key=key)["DeleteMarker"] is True
    assert s3.get_object(Bucket=LOCKED, Key=key, VersionId=version)["Body"].read() == DATA

    if mode == "COMPLIANCE":
        with pytest.raises(ClientError) as bypassed:
            s3.delete_object(Bucket=LOCKED, Key=key, VersionId=version, BypassGovernanceRetention=True)
        assert bypassed.value.response["Error"]["Code"] == "AccessDenied"
        assert s3.get_object(Bucket=LOCKED, Key=key, VersionId=version)["Body"].read() == DATA
    else:
        # The limit of governance mode: whoever may bypass it can delete the version.
        s3.delete_object(Bucket=LOCKED, Key=key, VersionId=version, BypassGovernanceRetention=True)
        versions, _ = _versions(s3, LOCKED, prefix)
        assert [item["VersionId"] for item in versions if item["Key"] == key] == []


def test_a_second_write_adds_a_locked_version_and_keeps_the_first(s3: Any, prefix: str) -> None:
    key = f"{prefix}/day.jsonl.gz"
    target = _path(LOCKED, key)
    lock = ObjectLock(mode="COMPLIANCE", days=2)
    _write(target, DATA, lock)
    first = s3.head_object(Bucket=LOCKED, Key=key)["VersionId"]
    _write(target, DATA + b"late event\n", lock)

    versions, markers = _versions(s3, LOCKED, prefix)
    assert markers == []
    assert [item["Key"] for item in versions] == [key, key]
    current = next(item["VersionId"] for item in versions if item["IsLatest"])
    assert {item["VersionId"] for item in versions} == {first, current}
    assert current != first
    assert s3.get_object(Bucket=LOCKED, Key=key, VersionId=first)["Body"].read() == DATA
    assert s3.get_object(Bucket=LOCKED, Key=key)["Body"].read() == DATA + b"late event\n"
    for version in (first, current):
        assert s3.head_object(Bucket=LOCKED, Key=key, VersionId=version)["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=LOCKED, Key=key, VersionId=first)


def test_the_staging_object_is_never_locked_and_is_gone_for_good(
    s3: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"{prefix}/day.jsonl.gz"
    seen: list[tuple[str, dict[str, Any]]] = []

    def spy(staging: ObjectStoragePath, target: ObjectStoragePath, lock: ObjectLock, **kwargs: Any) -> Any:
        _, staging_key, _ = staging.fs.split_path(staging.path)
        seen.append((staging_key, s3.head_object(Bucket=LOCKED, Key=staging_key)))
        return locked_move(staging, target, lock, **kwargs)

    monkeypatch.setattr(storage, "locked_move", spy)
    _write(_path(LOCKED, key), DATA, ObjectLock(mode="COMPLIANCE", days=1))

    [(staging_key, head)] = seen
    assert staging_key.startswith(f"{prefix}/.day.jsonl.gz.")
    assert staging_key.endswith(".partial")
    assert "ObjectLockMode" not in head
    assert "ObjectLockRetainUntilDate" not in head
    # Deleted by version, which a locked version would refuse: no version and no delete marker left.
    versions, markers = _versions(s3, LOCKED, prefix)
    assert [item["Key"] for item in versions] == [key]
    assert markers == []


@pytest.mark.parametrize("bucket", [PLAIN, VERSIONED])
def test_a_bucket_without_object_lock_is_a_clear_error_and_leaves_nothing(
    s3: Any, prefix: str, bucket: str
) -> None:
    key = f"{prefix}/day.jsonl.gz"
    target = _path(bucket, key)
    with pytest.raises(AsanaAuditLogConfigError) as refused:
        _write(target, DATA, ObjectLock(mode="COMPLIANCE", days=1))
    assert str(refused.value) == (
        f"Cannot lock {target}: the bucket {bucket} does not have Object Lock enabled (create it with "
        "Object Lock, or drop object_lock)"
    )
    versions, markers = _versions(s3, bucket, prefix)
    assert versions == []
    assert markers == []


def test_a_failed_lock_leaves_the_previous_file_as_it_was(s3: Any, prefix: str) -> None:
    key = f"{prefix}/day.jsonl.gz"
    target = _path(PLAIN, key)
    _write(target, DATA, None)
    with pytest.raises(AsanaAuditLogConfigError, match="does not have Object Lock enabled"):
        _write(target, b"other bytes\n", ObjectLock(mode="GOVERNANCE", days=1))
    versions, _ = _versions(s3, PLAIN, prefix)
    assert [item["Key"] for item in versions] == [key]
    assert s3.get_object(Bucket=PLAIN, Key=key)["Body"].read() == DATA


# ---------------------------------------------------------------------- multipart copies


def test_the_parts_of_a_multipart_copy_cover_the_object_exactly() -> None:
    assert copy_ranges(10, 3) == [(0, 2), (3, 5), (6, 8), (9, 9)]
    assert copy_ranges(9, 3) == [(0, 2), (3, 5), (6, 8)]
    assert copy_ranges(1, 3) == [(0, 0)]
    assert copy_ranges(0, 3) == []
    size = 5 * 2**40 - 1  # about S3's largest object, in parts of S3's smallest size
    ranges = copy_ranges(size, 5 * 2**20)
    assert len(ranges) <= MAX_COPY_PARTS
    assert ranges[0][0] == 0
    assert ranges[-1][1] == size - 1
    assert all(previous[1] + 1 == current[0] for previous, current in itertools.pairwise(ranges))
    with pytest.raises(ValueError, match="parts of 0 bytes"):
        copy_ranges(10, 0)


def test_a_multipart_locked_copy_copies_the_bytes_exactly_and_locks_them(s3: Any, prefix: str) -> None:
    key = f"{prefix}/big.jsonl.gz"
    staging_key = f"{prefix}/.big.jsonl.gz.{uuid.uuid4().hex}.partial"
    data = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes: 11 parts of 1,000 bytes, the last of 244
    s3.put_object(Bucket=LOCKED, Key=staging_key, Body=data)
    now = datetime.now(timezone.utc).replace(microsecond=0)

    version = locked_move(
        _path(LOCKED, staging_key),
        _path(LOCKED, key),
        ObjectLock(mode="GOVERNANCE", days=5),
        now=now,
        single_copy_limit=0,
        part_size=1000,
    )

    head = s3.head_object(Bucket=LOCKED, Key=key)
    assert head["VersionId"] == version
    assert head["ETag"].strip('"').endswith("-11")  # a multipart object of 11 parts
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert _utc(head["ObjectLockRetainUntilDate"]) == now + timedelta(days=5)
    assert s3.get_object(Bucket=LOCKED, Key=key)["Body"].read() == data
    versions, markers = _versions(s3, LOCKED, prefix)
    assert [item["Key"] for item in versions] == [key]
    assert markers == []
    assert s3.list_multipart_uploads(Bucket=LOCKED, Prefix=f"{prefix}/").get("Uploads", []) == []


# ---------------------------------------------------------------------- a locked, signed archive


def test_a_locked_signed_archive_keeps_every_version_and_the_check_passes_over_s3(
    s3: Any, prefix: str, asana_conn: FakeAsana, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The export and sealing operators write to a bucket with Object Lock: files, manifests, records and
    seals locked; a re-export for late events adds versions and the locked first ones stay; the archive
    check with the public key runs over ``s3://``, passes, and reports each file's lock.
    """
    from airflow_provider_asana_audit.evidence import SigningKey
    from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
    from airflow_provider_asana_audit.operators.seal import AsanaAuditLogSealOperator

    key = SigningKey.generate()
    signing = {"conn_type": "generic", "password": key.export_private_pem()}
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_SIGNING", json.dumps(signing))
    public_key = tmp_path / "evidence.pub"
    public_key.write_text(key.public_key.pem)
    base = f"s3://aws_default@{LOCKED}/{prefix}"
    lock = ObjectLock(mode="GOVERNANCE", days=1)
    days = [midnight(n) for n in (4, 3, 2)]

    def export(day: datetime) -> dict[str, Any]:
        summary: dict[str, Any] = AsanaAuditLogExportOperator(
            task_id="export",
            base_path=base,
            start_at=day,
            end_at=day + timedelta(days=1),
            settle_period=timedelta(0),
            signing_conn_id="asana_audit_signing",
            object_lock=lock,
        ).execute(context={})
        return summary

    def seal() -> None:
        AsanaAuditLogSealOperator(
            task_id="seal", signing_conn_id="asana_audit_signing", base_path=base, object_lock=lock
        ).execute(context={})

    for day in days:
        export(day)
        seal()
    asana_conn.append_events(1, created_at=days[1] + timedelta(hours=23))  # captured late
    assert export(days[1])["change"]["added_events"] == 1
    seal()

    versions, markers = _versions(s3, LOCKED, prefix)
    relaxed = f"/date={days[1]:%Y-%m-%d}/"
    # The re-export removes the earlier manifest before it writes its own (a crash in between leaves a
    # missing manifest, not a wrong one): a delete marker, in front of a version that stays.
    assert [(relaxed in item["Key"], item["Key"].endswith(".manifest.json")) for item in markers] == [
        (True, True)
    ]
    by_key: dict[str, list[dict[str, Any]]] = {}
    for item in versions:
        by_key.setdefault(item["Key"], []).append(item)
    assert not [name for name in by_key if name.rsplit("/", 1)[-1].startswith(".")], "staging left behind"
    for name, items in by_key.items():
        rewritten = relaxed in name and "/_records/" not in name
        assert len(items) == (2 if rewritten else 1), name
        for item in items:
            head = s3.head_object(Bucket=LOCKED, Key=name, VersionId=item["VersionId"])
            assert head["ObjectLockMode"] == "GOVERNANCE", name
    assert sum("/_seals/" in name for name in by_key) == len(days) + 1
    file_key = next(name for name in by_key if relaxed in name and name.endswith(".jsonl.gz"))
    first = next(item for item in by_key[file_key] if not item["IsLatest"])
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=LOCKED, Key=file_key, VersionId=first["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    result = run_verify(base, "--json", "-", "--public-key", str(public_key))

    assert result.code == 0, result.stderr
    report = result.report
    assert report["late_events"]["changed_reexports"] == 1
    assert report["evidence"]["problems"] == 0
    locks = report["object_lock"]
    assert (locks["locked"], locks["unlocked"], locks["modes"]) == (3, 0, {"GOVERNANCE": 3})
    assert [row["mode"] for row in locks["files"]] == ["GOVERNANCE"] * 3
    earliest = locks["earliest_retain_until"]
    assert earliest == min(row["retain_until"] for row in locks["files"])
    assert f"object lock: 3 of 3 files locked (3 GOVERNANCE), the earliest until {earliest}" in result.stderr
