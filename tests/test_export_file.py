"""
The export file format (``airflow_provider_asana_audit.export_file``): the writer and what it says it
wrote, and the manifest's JSON form. The reader is tested in ``tests/test_archive.py``; the operator's
use of both in ``tests/operators``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.export_file import ExportReader, ExportWriter, Manifest, file_format

DAY = datetime(2026, 11, 20, tzinfo=timezone.utc)
SCHEMA = Path(__file__).parent.parent / "docs" / "manifest.schema.json"


def _event(seconds: int, **fields: Any) -> dict[str, Any]:
    return {
        "gid": str(1_200_000_000_000_000 + seconds),
        "created_at": f"{DAY + timedelta(seconds=seconds):%Y-%m-%dT%H:%M:%S}.000Z",
        **fields,
    }


def _write(file_format: str, *pages: list[dict[str, Any]]) -> tuple[bytes, Any, list[Any]]:
    raw = io.BytesIO()
    kept: list[Any] = []
    with ExportWriter(raw, file_format=file_format, start_at=DAY, end_at=DAY + timedelta(days=1)) as writer:
        for page in pages:
            kept.extend(writer.write(page))
    return raw.getvalue(), writer.close(), kept


@pytest.mark.parametrize("name", ["day.jsonl.gz", "day.jsonl"])
def test_the_writer_says_what_it_wrote_and_the_reader_reads_it_back(tmp_path: Path, name: str) -> None:
    events = [_event(1, name="Zoë"), _event(2), _event(3)]

    data, written, kept = _write(file_format(name), events[:2], [], events[2:])

    (tmp_path / name).write_bytes(data)
    reader = ExportReader(ObjectStoragePath(f"file://{tmp_path / name}"))
    assert [event for _, event, _ in reader.events()] == events
    assert (written.sha256, written.bytes) == (hashlib.sha256(data).hexdigest(), len(data))
    assert (reader.sha256, reader.size) == (written.sha256, written.bytes)
    assert (written.events, written.outside) == (3, 0)
    assert (written.first_created_at, written.last_created_at) == (
        DAY + timedelta(seconds=1),
        DAY + timedelta(seconds=3),
    )
    assert [event for event, _ in kept] == events


def test_lines_are_the_events_as_returned_compact_and_not_ascii_escaped() -> None:
    data, _, _ = _write("jsonl", [_event(1, name="Zoë", details={"b": 1, "a": None})])

    assert (
        data
        == (
            json.dumps(
                _event(1, name="Zoë", details={"b": 1, "a": None}), ensure_ascii=False, separators=(",", ":")
            )
            + "\n"
        ).encode()
    )


def test_events_outside_the_interval_or_without_created_at_are_dropped_and_counted() -> None:
    outside = [_event(-1), _event(86_400), {"gid": "1"}]

    data, written, kept = _write("jsonl", [_event(1), *outside])

    assert (written.events, written.outside, len(kept)) == (1, 3, 1)
    assert data.count(b"\n") == 1


def test_the_same_events_give_the_same_gzip_bytes_with_mtime_0() -> None:
    first, _, _ = _write("jsonl.gz", [_event(1), _event(2)])
    second, _, _ = _write("jsonl.gz", [_event(1)], [_event(2)])

    assert first == second
    assert first[4:8] == b"\0\0\0\0"
    assert gzip.decompress(first).count(b"\n") == 2


def test_an_empty_interval_gives_an_empty_file_or_an_empty_gzip_stream() -> None:
    plain, written, _ = _write("jsonl")
    compressed, _, _ = _write("jsonl.gz")

    assert (plain, written.events, written.first_created_at) == (b"", 0, None)
    assert gzip.decompress(compressed) == b""


def test_the_manifest_is_indented_json_in_the_schemas_key_order() -> None:
    manifest = Manifest(
        events=1,
        start_at="2026-11-20T00:00:00.000Z",
        end_at="2026-11-21T00:00:00.000Z",
        filters=dict.fromkeys(("event_type", "actor_type", "actor_gid", "resource_gid")),
        sha256="0" * 64,
        bytes=10,
        path="/data/é.jsonl.gz",
        format="jsonl.gz",
        exported_at="2026-11-21T00:31:00.000Z",
        package_version="0.1.0",
        workspace_gid="1",
        exported_by=None,
        changes=[],
    )

    text = manifest.to_json().decode("utf-8")

    assert list(json.loads(text)) == json.loads(SCHEMA.read_text())["required"]
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert "/data/é.jsonl.gz" in text
