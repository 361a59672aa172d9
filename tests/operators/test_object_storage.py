"""
Exports to an object store that cannot rename, as S3 and GCS: a move there is a copy, then a delete.

The store is fsspec's in-memory filesystem made to behave that way, attached to Airflow's object
storage under its own scheme, so the operator reaches it through ``ObjectStoragePath`` exactly as it
reaches ``s3://``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, ClassVar

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_asana_audit.client import RetryPolicy
from airflow_provider_asana_audit.exceptions import AsanaAuditLogAuthError
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.testing import FakeAsana, Fault
from tests.operators.conftest import midnight, serialise

START, END = midnight(3), midnight(2)
DESTINATION = "noren://audit-bucket/asana/day.jsonl.gz"


class NoRenameStore(MemoryFileSystem):
    """An in-memory object store whose only move is copy + delete, and which logs every write."""

    protocol = ("noren",)
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]
    written: ClassVar[list[str]] = []
    moves: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, str) and path.startswith("noren://"):
            path = "/" + path.removeprefix("noren://")
        return super()._strip_protocol(path)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "w" in mode:
            self.written.append(self._strip_protocol(path))
        return super()._open(path, mode, **kwargs)

    def mv(self, path1: str, path2: str, *args: Any, **kwargs: Any) -> None:
        self.moves.append((self._strip_protocol(path1), self._strip_protocol(path2)))
        self.copy(path1, path2)
        self.rm(path1)


@pytest.fixture
def store() -> Iterator[NoRenameStore]:
    from airflow.providers.common.compat.sdk import io

    attach = getattr(io, "attach", None)
    if attach is None:  # Airflow 2
        from airflow.io.store import attach
    fsspec.register_implementation("noren", NoRenameStore, clobber=True)
    fs = NoRenameStore()
    NoRenameStore.store.clear()
    NoRenameStore.written.clear()
    NoRenameStore.moves.clear()
    attach(protocol="noren", fs=fs)
    yield fs
    NoRenameStore.store.clear()


def export(**kwargs: Any) -> dict[str, Any]:
    operator = AsanaAuditLogExportOperator(
        task_id="export",
        destination=DESTINATION,
        settle_period=timedelta(0),
        request_retry=RetryPolicy(max_attempts=2, backoff_base=0.01),
        page_size=20,
        **kwargs,
    )
    return operator.execute({"data_interval_start": START, "data_interval_end": END})


def objects(store: NoRenameStore) -> dict[str, bytes]:
    return {path: store.cat_file(path) for path in store.find("/audit-bucket")}


def test_the_export_reaches_the_object_store_whole_through_copy_and_delete(
    store: NoRenameStore, asana_conn: FakeAsana
) -> None:
    summary = export()

    stored = objects(store)
    truth = asana_conn.ground_truth(START, END)
    assert sorted(stored) == [
        "/audit-bucket/asana/day.jsonl.gz",
        "/audit-bucket/asana/day.jsonl.gz.manifest.json",
    ]
    assert stored["/audit-bucket/asana/day.jsonl.gz"] == serialise(truth, compressed=True)
    manifest = json.loads(stored["/audit-bucket/asana/day.jsonl.gz.manifest.json"])
    assert manifest["events"] == summary["events"] == len(truth)
    assert manifest["sha256"] == summary["sha256"]
    # Nothing was ever written at the destination itself: it only appeared, whole, by a copy.
    assert all(path.rsplit("/", 1)[1].startswith(".") for path in store.written)
    assert [target for _, target in store.moves] == [
        "/audit-bucket/asana/day.jsonl.gz",
        "/audit-bucket/asana/day.jsonl.gz.manifest.json",
    ]


def test_a_failure_part_way_leaves_the_previous_objects_untouched(
    store: NoRenameStore, asana_conn: FakeAsana
) -> None:
    export()
    before = objects(store)
    asana_conn.append_events(3, created_at=START + timedelta(hours=2))  # the new export would differ
    asana_conn.inject(Fault.SERVER_ERROR_500, count=10, when=lambda request: request.has_offset)

    with pytest.raises(Exception, match="HTTP 500"):
        export()

    assert objects(store) == before
    events = gzip.decompress(before["/audit-bucket/asana/day.jsonl.gz"]).decode().splitlines()
    assert len(events) == len(asana_conn.ground_truth(START, END)) - 3


def test_a_refused_token_writes_nothing(store: NoRenameStore, asana_conn: FakeAsana, monkeypatch) -> None:
    conn = json.loads(asana_conn.connection_json())
    conn["password"] = "revoked-token"
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", json.dumps(conn))

    with pytest.raises(AsanaAuditLogAuthError):
        export()

    assert objects(store) == {}
