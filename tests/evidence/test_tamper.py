"""
The tamper suite: a signed archive written by the export example DAG (``signed_archive``: 7 days, a
signing key, sealed after each day), tampered with the way someone with write access to the storage
would, then checked as an auditor checks it: ``python -m airflow_provider_asana_audit.verify BASE
--public-key FILE --published-seal-hash HASH ...`` with the public key and every seal hash the sealing
tasks published. Each tampering is reported exactly, and nothing else is; late events and repairs, which
re-export through the signing export, are not tampering and leave the archive whole.

Every case runs twice: on a local copy of the archive, and on a copy in an S3 bucket (moto's server on
127.0.0.1), where the tampering and the re-exports go through S3 and the check runs over ``s3://``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from airflow_provider_asana_audit.evidence import EVIDENCE_PROBLEM_KINDS, Record, SigningKey
from airflow_provider_asana_audit.evidence.keys import encode_signature
from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.archive import Archive, check_not_whole, reexported_days, run_verify
from tests.helpers.exports import serialise
from tests.helpers.services import Service, aws_connection, s3_client

SIGNING_CONN_ID = "asana_audit_signing"
BUCKET = "tamper"


# ------------------------------------------------------------------------------------ the stores


class Store(Protocol):
    """The archive's objects, by path below its base, where the tampering happens."""

    @property
    def uri(self) -> str: ...

    def list(self) -> list[str]: ...
    def read(self, relative: str) -> bytes: ...
    def write(self, relative: str, data: bytes) -> None: ...
    def delete(self, relative: str) -> None: ...


@dataclass
class LocalStore:
    base: Path

    @property
    def uri(self) -> str:
        return f"file://{self.base}"

    def list(self) -> list[str]:
        return sorted(str(p.relative_to(self.base)) for p in self.base.rglob("*") if p.is_file())

    def read(self, relative: str) -> bytes:
        return (self.base / relative).read_bytes()

    def write(self, relative: str, data: bytes) -> None:
        (self.base / relative).write_bytes(data)

    def delete(self, relative: str) -> None:
        (self.base / relative).unlink()


@dataclass
class S3Store:
    client: Any
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://aws_default@{BUCKET}/{self.prefix}"

    def list(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{self.prefix}/")
        return sorted(
            item["Key"][len(self.prefix) + 1 :] for page in pages for item in page.get("Contents", [])
        )

    def read(self, relative: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=BUCKET, Key=f"{self.prefix}/{relative}")["Body"].read()
        return data

    def write(self, relative: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=f"{self.prefix}/{relative}", Body=data)

    def delete(self, relative: str) -> None:
        self.client.delete_object(Bucket=BUCKET, Key=f"{self.prefix}/{relative}")


@pytest.fixture(scope="module")
def bucket(moto: Service) -> Service:
    """The session's moto server, with a plain bucket."""
    s3_client(moto).create_bucket(Bucket=BUCKET)
    return moto


@dataclass
class Tampered:
    """A copy of the signed archive in a store, and what the auditor was given."""

    archive: Archive
    store: Store
    published: list[str] = field(default_factory=list)

    def file(self, n: int) -> str:
        """The export file of day ``n`` (0 the oldest), below the base."""
        return str(self.archive.file(self.archive.days[n]).relative_to(self.archive.base))

    def day_folder(self, n: int) -> str:
        return str(self.archive.day_folder(self.archive.days[n]).relative_to(self.archive.base))

    def seals(self) -> list[str]:
        """The seals, oldest first."""
        return [name for name in self.store.list() if "/_seals/" in name]

    def export(self, fake: FakeAsana, n: int) -> dict[str, Any]:
        """Re-export day ``n`` with the signing key, as the example DAG's export task does."""
        summary: dict[str, Any] = self.archive.export(
            fake, self.archive.days[n], base_path=self.store.uri, signing_conn_id=SIGNING_CONN_ID
        )
        return summary

    def seal(self) -> None:
        """Seal the archive, as the example DAG's sealing task does, and publish the new seal's hash."""
        from airflow_provider_asana_audit.operators.seal import AsanaAuditLogSealOperator

        sealed = AsanaAuditLogSealOperator(
            task_id="seal_archive", signing_conn_id=SIGNING_CONN_ID, base_path=self.store.uri
        ).execute(context={})
        self.published += [seal["seal_sha256"] for seal in sealed["seals"]]

    def check(self) -> Any:
        assert self.archive.public_key is not None
        hashes = [arg for seal_hash in self.published for arg in ("--published-seal-hash", seal_hash)]
        return run_verify(
            self.store.uri, "--json", "-", "--public-key", str(self.archive.public_key), *hashes
        )


@pytest.fixture(params=["local", "s3"])
def tampered(
    request: pytest.FixtureRequest, signed_archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Tampered:
    """A fresh copy of the signed archive, on local storage or in S3, with the signing key's connection."""
    key = signed_archive.signing_key
    assert key is not None
    connection = {"conn_type": "generic", "password": key.export_private_pem()}
    monkeypatch.setenv(f"AIRFLOW_CONN_{SIGNING_CONN_ID.upper()}", json.dumps(connection))
    published = list(signed_archive.seal_hashes)
    if request.param == "local":
        copy = signed_archive.copy(tmp_path / "archive")
        return Tampered(copy, LocalStore(copy.base), published)
    moto: Service = request.getfixturevalue("bucket")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws_connection(moto)))
    store = S3Store(s3_client(moto), f"archive-{uuid.uuid4().hex}")
    source = LocalStore(signed_archive.base)
    for name in source.list():
        store.write(name, source.read(name))
    return Tampered(signed_archive, store, published)


# ------------------------------------------------------------------------------------ tampering


def _gzip(lines: list[bytes]) -> bytes:
    return serialise([json.loads(line) for line in lines], compressed=True)


def _change_file_and_manifest(t: Tampered) -> None:
    """Drop an event from a day's file and rewrite its manifest to match: the archive check sees nothing."""
    name = t.file(3)
    lines = gzip.decompress(t.store.read(name)).splitlines()
    data = _gzip(lines[1:])
    manifest = json.loads(t.store.read(f"{name}.manifest.json"))
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), events=len(lines) - 1)
    t.store.write(name, data)
    t.store.write(f"{name}.manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())


def _delete_day(t: Tampered) -> None:
    """A day's file, manifest, record and kept records, all gone."""
    folder = t.day_folder(3) + "/"
    for name in t.store.list():
        if name.startswith(folder):
            t.store.delete(name)


def _delete_newest_days(t: Tampered) -> None:
    """The newest 2 days, with their records and the seals made since they were exported."""
    folders = (t.day_folder(5) + "/", t.day_folder(6) + "/")
    for name in t.store.list():
        if name.startswith(folders):
            t.store.delete(name)
    for seal in t.seals()[-2:]:
        t.store.delete(seal)


def _delete_record(t: Tampered) -> None:
    """A day's current record and its kept copies deleted; the file and manifest stay."""
    folder = t.day_folder(5) + "/"
    for name in t.store.list():
        if name.startswith(folder) and (name.endswith(".record.json") or "/_records/" in name):
            t.store.delete(name)


def _delete_middle_seal(t: Tampered) -> None:
    """A seal from the middle of the chain deleted."""
    t.store.delete(t.seals()[3])


def _resign_record(t: Tampered) -> None:
    """A day's current record, signed again with a key that is not the archive's."""
    name = f"{t.file(2)}.record.json"
    other = SigningKey.generate()
    record = dataclasses.replace(Record.from_json(t.store.read(name)), key=other.fingerprint)
    record = dataclasses.replace(record, signature=encode_signature(other.sign(record.signed_bytes())))
    t.store.write(name, record.to_json())


def _edit_record(t: Tampered) -> None:
    """A day's current record with one more event, its signature unchanged."""
    name = f"{t.file(4)}.record.json"
    record = json.loads(t.store.read(name))
    record["events"] += 1
    t.store.write(name, json.dumps(record).encode())


def _restore_older_version(t: Tampered) -> None:
    """A re-export for late events, sealed; then the day's earlier file, manifest and record put back."""
    name = t.file(1)
    earlier = {suffix: t.store.read(name + suffix) for suffix in ("", ".manifest.json", ".record.json")}
    with t.archive.standin() as fake:
        fake.append_events(1, created_at=t.archive.days[1] + timedelta(hours=23))
        t.export(fake, 1)
    t.seal()
    for suffix, data in earlier.items():
        t.store.write(name + suffix, data)


def _late_events(t: Tampered) -> None:
    """Not tampering: a re-export that picks up an event Asana captured late, then sealed."""
    with t.archive.standin() as fake:
        fake.append_events(1, created_at=t.archive.days[2] + timedelta(hours=23))
        summary = t.export(fake, 2)
    assert summary["change"]["added_events"] == 1
    t.seal()


def _repair(t: Tampered) -> None:
    """Not tampering: a damaged file (cut short) re-exported, then sealed."""
    name = t.file(6)
    data = t.store.read(name)
    t.store.write(name, data[: len(data) // 2])
    with t.archive.standin() as fake:
        summary = t.export(fake, 6)
    assert summary["change"]["previous_damaged"] is True
    t.seal()


@dataclass(frozen=True)
class Case:
    id: str
    tamper: Callable[[Tampered], None]
    #: Exactly the problems the check reports, by kind; none for what is not tampering.
    kinds: dict[str, int]
    #: The days (0 the oldest) whose re-export the check proposes.
    reexport: tuple[int, ...] = ()


CASES = (
    Case("untouched", lambda t: None, {}),
    Case("file-and-manifest-rewritten", _change_file_and_manifest, {"record_mismatch": 1}, (3,)),
    Case("day-deleted-with-its-records", _delete_day, {"gap": 1, "interval_removed": 1}, (3,)),
    Case("newest-days-and-seals-deleted", _delete_newest_days, {"seal_unpublished_mismatch": 1}),
    Case("record-deleted", _delete_record, {"record_missing": 1}, (5,)),
    Case(
        # Its hash was published too: the auditor misses it as well as the link.
        "middle-seal-deleted",
        _delete_middle_seal,
        {"seal_chain_broken": 1, "seal_unpublished_mismatch": 1},
    ),
    Case("record-re-signed-with-another-key", _resign_record, {"signature_unknown_key": 1}),
    Case("record-edited", _edit_record, {"signature_bad": 1}),
    Case("older-version-restored", _restore_older_version, {"version_rolled_back": 1}, (1,)),
    Case("late-events-re-exported", _late_events, {}),
    Case("damaged-file-repaired", _repair, {}),
)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_tampering_is_reported_exactly_and_nothing_else(case: Case, tampered: Tampered) -> None:
    case.tamper(tampered)

    result = tampered.check()

    if not case.kinds:
        assert result.code == 0, result.stderr
        assert result.report["problems"] == []
        assert result.report["evidence"]["problems"] == 0
        assert "WHOLE" in result.stderr
        return
    report = check_not_whole(result, case.kinds)
    assert reexported_days(report) >= {tampered.archive.days[n] for n in case.reexport}


def test_late_events_and_repairs_stay_distinguishable_from_tampering(tampered: Tampered) -> None:
    _late_events(tampered)
    _repair(tampered)

    report = tampered.check().report

    assert report["whole"] is True
    late = report["late_events"]
    assert (late["changed_reexports"], late["added_events"], late["repairs"]) == (1, 1, 1)


def test_the_suite_makes_every_evidence_problem_kind() -> None:
    # But seal_missing, a series that was never sealed, which the example DAG's archive cannot be: the
    # evidence check's own tests make it (tests/evidence/test_check.py).
    made = {kind for case in CASES for kind in case.kinds if kind in EVIDENCE_PROBLEM_KINDS}
    assert made == set(EVIDENCE_PROBLEM_KINDS) - {"seal_missing"}
