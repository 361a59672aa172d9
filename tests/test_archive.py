"""
Export files read back (``airflow_provider_asana_audit.export_file``): lines and digests, manifests; and
the re-export against the file it replaces (``airflow_provider_asana_audit.reconcile``): gid sets, the
file a re-export replaces, and what the re-export changed.

The operator's use of these (a re-export against the stand-in) is tested in
``tests/operators/test_late_events.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit import export_file, reconcile
from airflow_provider_asana_audit.export_file import ExportReader, read_manifest
from airflow_provider_asana_audit.reconcile import GidSet, PreviousExport, Reconciliation
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

DAY = datetime(2026, 11, 20, tzinfo=timezone.utc)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _event(number: int, *, pad: str = "") -> dict[str, Any]:
    event: dict[str, Any] = {
        "gid": str(1_200_000_000_000_000 + number),
        "created_at": f"{DAY + timedelta(seconds=number):%Y-%m-%dT%H:%M:%S}.000Z",
        "event_type": "user_login_succeeded",
    }
    if pad:
        event["pad"] = pad
    return event


def _lines(events: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(event, separators=(",", ":")).encode() for event in events]


def _jsonl(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _gz(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as out:
        out.write(data)
    return buffer.getvalue()


def _stored(tmp_path: Path, name: str, data: bytes) -> ObjectStoragePath:
    (tmp_path / name).write_bytes(data)
    return ObjectStoragePath(f"file://{tmp_path / name}")


def _read(path: ObjectStoragePath) -> tuple[ExportReader, list[tuple[int, bytes]]]:
    reader = ExportReader(path)
    return reader, list(reader.lines())


def _big_lines(count: int) -> list[bytes]:
    """Lines that gzip compresses to about half: ``count`` of them take ``count * 170`` bytes stored."""
    rng = random.Random(3)
    return _lines([_event(n, pad=rng.randbytes(96).hex()) for n in range(count)])


# ---------------------------------------------------------------- ExportReader


def test_a_gzip_export_is_read_line_by_line_and_hashed_as_stored(tmp_path: Path) -> None:
    lines = _lines([_event(n) for n in range(5)])
    stored = _gz(_jsonl(lines))

    reader, read = _read(_stored(tmp_path, "day.jsonl.gz", stored))

    assert read == list(enumerate(lines, start=1))
    assert reader.sha256 == hashlib.sha256(stored).hexdigest()
    assert reader.size == len(stored)
    assert reader.error is None


def test_a_plain_export_is_read_as_stored_also_without_a_final_newline(tmp_path: Path) -> None:
    lines = _lines([_event(n) for n in range(3)])
    stored = _jsonl(lines)[:-1]

    reader, read = _read(_stored(tmp_path, "day.jsonl", stored))

    assert read == list(enumerate(lines, start=1))
    assert reader.sha256 == hashlib.sha256(stored).hexdigest()
    assert reader.size == len(stored)
    assert reader.error is None


def test_an_export_not_yet_read_has_the_digest_of_nothing(tmp_path: Path) -> None:
    reader = ExportReader(_stored(tmp_path, "day.jsonl", b"{}\n"))

    assert (reader.sha256, reader.size, reader.error) == (EMPTY_SHA256, 0, None)


def test_an_empty_export_has_no_lines(tmp_path: Path) -> None:
    stored = _gz(b"")

    reader, read = _read(_stored(tmp_path, "day.jsonl.gz", stored))

    assert read == []
    assert (reader.sha256, reader.size, reader.error) == (
        hashlib.sha256(stored).hexdigest(),
        len(stored),
        None,
    )


@pytest.mark.parametrize("name", ["day.jsonl.gz", "day.jsonl"])
def test_an_export_larger_than_one_read_is_hashed_whole(tmp_path: Path, name: str) -> None:
    lines = _big_lines(30_000)
    stored = _jsonl(lines) if name == "day.jsonl" else _gz(_jsonl(lines))
    assert len(stored) > 2 * export_file._CHUNK

    reader, read = _read(_stored(tmp_path, name, stored))

    assert [line for _, line in read] == lines
    assert reader.sha256 == hashlib.sha256(stored).hexdigest()
    assert reader.size == len(stored)
    assert reader.error is None


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _trailing_garbage(data: bytes) -> bytes:
    return data + b"this is not gzip" * 100_000


def _second_member_truncated(data: bytes) -> bytes:
    return data + _gz(_jsonl(_big_lines(100)))[:-100]


@pytest.mark.parametrize(
    "damage",
    [_truncated, _trailing_garbage, _second_member_truncated],
    ids=["truncated", "trailing garbage", "second member truncated"],
)
def test_a_broken_gzip_yields_its_readable_lines_says_why_and_is_hashed_to_its_last_byte(
    tmp_path: Path, damage: Any
) -> None:
    # Large enough that the break lies beyond the reader's first buffer, and the garbage beyond it too.
    lines = _big_lines(30_000)
    stored = damage(_gz(_jsonl(lines)))

    reader, read = _read(_stored(tmp_path, "day.jsonl.gz", stored))

    numbers = [number for number, _ in read]
    assert numbers == list(range(1, len(read) + 1))
    assert [line for _, line in read] == (lines + _big_lines(100))[: len(read)]
    assert reader.error is not None
    assert reader.error.startswith(f"cannot be decompressed after line {len(read)}: ")
    assert reader.sha256 == hashlib.sha256(stored).hexdigest()
    assert reader.size == len(stored)


def test_a_file_named_gz_that_is_not_gzip_yields_no_line_and_says_why(tmp_path: Path) -> None:
    stored = _jsonl(_lines([_event(1)]))

    reader, read = _read(_stored(tmp_path, "day.jsonl.gz", stored))

    assert read == []
    assert reader.error is not None
    assert reader.error.startswith("cannot be decompressed after line 0: ")
    assert reader.sha256 == hashlib.sha256(stored).hexdigest()
    assert reader.size == len(stored)


def test_a_gzip_with_a_corrupt_byte_says_why_and_is_hashed_whole(tmp_path: Path) -> None:
    data = bytearray(_gz(_jsonl(_big_lines(30_000))))
    data[len(data) // 2] ^= 0xFF
    stored = bytes(data)

    reader, _ = _read(_stored(tmp_path, "day.jsonl.gz", stored))

    assert reader.error is not None
    assert reader.error.startswith("cannot be decompressed after line ")
    assert reader.sha256 == hashlib.sha256(stored).hexdigest()
    assert reader.size == len(stored)


# ---------------------------------------------------------------- read_manifest


def test_a_manifest_is_read_as_a_json_object(tmp_path: Path) -> None:
    path = _stored(tmp_path, "day.jsonl.gz.manifest.json", b'{"events": 3, "sha256": "ab"}\n')

    assert read_manifest(path) == {"events": 3, "sha256": "ab"}


def test_a_missing_manifest_is_none(tmp_path: Path) -> None:
    assert read_manifest(ObjectStoragePath(f"file://{tmp_path}/day.jsonl.gz.manifest.json")) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [(b'{"events": 3', "is not valid JSON"), (b"[1, 2]", "is not a JSON object but list")],
    ids=["not JSON", "not an object"],
)
def test_a_manifest_that_is_not_a_json_object_is_refused_saying_why(
    tmp_path: Path, text: bytes, says: str
) -> None:
    path = _stored(tmp_path, "day.jsonl.gz.manifest.json", text)

    with pytest.raises(ValueError, match=says):
        read_manifest(path)


# ---------------------------------------------------------------- GidSet


def test_a_gid_set_holds_exactly_its_gids() -> None:
    gids = [str(1_200_000_000_000_000 + 7919 * n) for n in range(1000)]
    members = GidSet(gids)

    assert len(members) == len(gids)
    assert all(gid in members for gid in gids)
    others = [str(1_200_000_000_000_001 + 7919 * n) for n in range(1000)]
    assert not any(gid in members for gid in others)
    assert 1_200_000_000_000_000 not in members, "a gid is a string; the number is not a member"
    assert None not in members


def test_an_empty_gid_set_holds_nothing() -> None:
    assert len(GidSet()) == 0
    assert "1" not in GidSet()


def test_a_gid_set_counts_a_repeated_gid_once() -> None:
    members = GidSet(["3", "1", "3", "2", "1"])

    assert len(members) == 3
    assert {"1", "2", "3"} == {gid for gid in ("1", "2", "3", "4") if gid in members}


def test_a_gid_set_built_from_many_sorted_runs_is_the_same_set(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    gids = [str(rng.randrange(10**15, 10**16)) for _ in range(2000)]
    gids += gids[:300]  # repeated, also across runs
    rng.shuffle(gids)
    whole = GidSet(gids)

    monkeypatch.setattr(reconcile, "_SORT_RUN", 7)
    in_runs = GidSet(iter(gids))

    assert len(in_runs) == len(whole) == len(set(gids))
    assert all(gid in in_runs for gid in gids)
    assert list(in_runs._keys) == list(whole._keys) == sorted(set(whole._keys))


# ---------------------------------------------------------------- PreviousExport


def _manifest_of(stored: bytes, **fields: Any) -> bytes:
    content = {"sha256": hashlib.sha256(stored).hexdigest(), "exported_at": "2026-11-21T00:31:00.000Z"}
    return json.dumps({**content, **fields}).encode()


def test_no_previous_export_without_a_file(tmp_path: Path) -> None:
    manifest = _stored(tmp_path, "day.jsonl.gz.manifest.json", _manifest_of(b""))

    assert PreviousExport.read(ObjectStoragePath(f"file://{tmp_path}/day.jsonl.gz"), manifest) is None


def test_a_previous_export_is_described_by_its_bytes_and_its_manifest(tmp_path: Path) -> None:
    events = [_event(n) for n in range(4)]
    stored = _gz(_jsonl(_lines(events)))
    earlier = {"detected_at": "2026-11-22T00:00:00.000Z", "added_events": 1}
    file = _stored(tmp_path, "day.jsonl.gz", stored)
    manifest = _stored(
        tmp_path, "day.jsonl.gz.manifest.json", _manifest_of(stored, changes=[earlier, "junk", 3])
    )

    previous = PreviousExport.read(file, manifest)

    assert previous is not None
    assert previous.sha256 == hashlib.sha256(stored).hexdigest()
    assert previous.bytes == len(stored)
    assert previous.events == 4
    assert len(previous.gids) == 4
    assert all(event["gid"] in previous.gids for event in events)
    assert previous.exported_at == "2026-11-21T00:31:00.000Z"
    assert previous.changes == [earlier], "only the change records (objects) are carried over"
    assert previous.error is None
    assert (previous.misplaced, previous.invalid, previous.damaged) == (0, 0, False)


@pytest.mark.parametrize(
    "manifest_bytes",
    [
        None,
        _manifest_of(b"other bytes", changes=[{"added_events": 1}]),
        b'{"sha256": ',
        b'["not", "an", "object"]',
        "directory",
    ],
    ids=["missing", "stale", "not JSON", "not an object", "unreadable"],
)
def test_without_a_manifest_of_its_bytes_a_previous_export_has_no_time_and_no_history(
    tmp_path: Path, manifest_bytes: bytes | str | None
) -> None:
    stored = _gz(_jsonl(_lines([_event(n) for n in range(3)])))
    file = _stored(tmp_path, "day.jsonl.gz", stored)
    manifest = ObjectStoragePath(f"file://{tmp_path}/day.jsonl.gz.manifest.json")
    if manifest_bytes == "directory":  # reading it fails with an OSError
        (tmp_path / "day.jsonl.gz.manifest.json").mkdir()
    elif isinstance(manifest_bytes, bytes):
        manifest = _stored(tmp_path, "day.jsonl.gz.manifest.json", manifest_bytes)

    previous = PreviousExport.read(file, manifest)

    assert previous is not None
    assert (previous.sha256, previous.bytes, previous.events) == (
        hashlib.sha256(stored).hexdigest(),
        len(stored),
        3,
    )
    assert previous.exported_at is None
    assert previous.changes == []


def test_a_manifest_with_odd_fields_gives_no_time_and_no_history(tmp_path: Path) -> None:
    stored = _jsonl(_lines([_event(1)]))
    file = _stored(tmp_path, "day.jsonl", stored)
    manifest = _stored(tmp_path, "day.jsonl.manifest.json", _manifest_of(stored, exported_at=17, changes={}))

    previous = PreviousExport.read(file, manifest)

    assert previous is not None
    assert (previous.exported_at, previous.changes) == (None, [])


def test_only_json_objects_with_a_string_gid_count_as_events(tmp_path: Path) -> None:
    good = _lines([_event(1), _event(2)])
    junk = [b"", b"not json", b"[1, 2]", b'{"gid": 12}', b'{"created_at": "x"}', b"\xff\xfe", b'"gid"']
    stored = _jsonl([good[0], *junk, good[1]])
    file = _stored(tmp_path, "day.jsonl", stored)

    previous = PreviousExport.read(file, ObjectStoragePath(f"file://{tmp_path}/day.jsonl.manifest.json"))

    assert previous is not None
    assert previous.events == 2
    assert len(previous.gids) == 2
    assert all(json.loads(line)["gid"] in previous.gids for line in good)
    assert previous.sha256 == hashlib.sha256(stored).hexdigest()
    assert (previous.invalid, previous.misplaced) == (len(junk), 0)
    assert previous.damaged, "lines that are not events make the file damaged"


def test_a_previous_export_with_a_repeated_line_counts_its_lines_and_its_distinct_gids(
    tmp_path: Path,
) -> None:
    lines = _lines([_event(n) for n in range(3)])
    file = _stored(tmp_path, "day.jsonl.gz", _gz(_jsonl([*lines, lines[1]])))

    previous = PreviousExport.read(file, ObjectStoragePath(f"file://{tmp_path}/x.manifest.json"))

    assert previous is not None
    assert previous.events == 4
    assert len(previous.gids) == 3
    assert (previous.misplaced, previous.invalid, previous.error) == (0, 0, None)
    assert previous.damaged, "a gid twice makes the file damaged"


def test_a_previous_export_that_cannot_be_decompressed_says_why(tmp_path: Path) -> None:
    lines = _big_lines(30_000)
    stored = _truncated(_gz(_jsonl(lines)))
    file = _stored(tmp_path, "day.jsonl.gz", stored)
    manifest = _stored(tmp_path, "day.jsonl.gz.manifest.json", _manifest_of(stored))

    previous = PreviousExport.read(file, manifest)

    assert previous is not None
    assert previous.error is not None
    assert previous.error.startswith("cannot be decompressed after line ")
    assert 0 < previous.events < len(lines)
    assert len(previous.gids) == previous.events
    assert (previous.misplaced, previous.invalid) == (0, 0), "the lines before the break are whole"
    assert previous.damaged
    assert previous.sha256 == hashlib.sha256(stored).hexdigest()
    assert previous.bytes == len(stored)
    assert previous.exported_at == "2026-11-21T00:31:00.000Z", "the manifest describes these bytes"


def _misplaced_events() -> list[dict[str, Any]]:
    """Events of other intervals than ``[DAY, DAY + 1 day)``, or of none."""
    end = DAY + timedelta(days=1)
    return [
        {**_event(100), "created_at": format_instant(DAY - timedelta(milliseconds=1))},
        {**_event(101), "created_at": format_instant(end)},  # the end is not in the interval
        {**_event(102), "created_at": format_instant(end + timedelta(hours=12))},
        {key: value for key, value in _event(103).items() if key != "created_at"},
        {**_event(104), "created_at": "yesterday"},
        {**_event(105), "created_at": 1_795_000_000},
    ]


def test_events_outside_the_interval_are_misplaced_and_not_among_the_gids(tmp_path: Path) -> None:
    inside = [
        _event(0),  # the first instant of the interval
        _event(1),
        {**_event(2), "created_at": format_instant(DAY + timedelta(days=1, milliseconds=-1))},
    ]
    misplaced = _misplaced_events()
    stored = _gz(_jsonl(_lines([inside[0], misplaced[0], inside[1], *misplaced[1:], inside[2]])))
    file = _stored(tmp_path, "day.jsonl.gz", stored)
    manifest = _stored(tmp_path, "day.jsonl.gz.manifest.json", _manifest_of(stored))

    previous = PreviousExport.read(file, manifest, start_at=DAY, end_at=DAY + timedelta(days=1))

    assert previous is not None
    assert (previous.events, previous.misplaced, previous.invalid, previous.error) == (9, 6, 0, None)
    assert len(previous.gids) == 3
    assert all(event["gid"] in previous.gids for event in inside)
    assert not any(event["gid"] in previous.gids for event in misplaced)
    assert previous.damaged
    assert (previous.sha256, previous.bytes) == (hashlib.sha256(stored).hexdigest(), len(stored))
    assert previous.exported_at == "2026-11-21T00:31:00.000Z"


def test_without_an_interval_no_event_is_misplaced(tmp_path: Path) -> None:
    events = [_event(0), *_misplaced_events()]
    file = _stored(tmp_path, "day.jsonl", _jsonl(_lines(events)))
    manifest = ObjectStoragePath(f"file://{tmp_path}/day.jsonl.manifest.json")

    previous = PreviousExport.read(file, manifest)

    assert previous is not None
    assert (previous.events, previous.misplaced, previous.invalid) == (7, 0, 0)
    assert len(previous.gids) == 7
    assert not previous.damaged


def test_a_sound_file_read_with_its_interval_is_not_damaged(tmp_path: Path) -> None:
    events = [_event(n) for n in range(5)]
    file = _stored(tmp_path, "day.jsonl.gz", _gz(_jsonl(_lines(events))))
    manifest = ObjectStoragePath(f"file://{tmp_path}/day.jsonl.gz.manifest.json")

    previous = PreviousExport.read(file, manifest, start_at=DAY, end_at=DAY + timedelta(days=1))

    assert previous is not None
    assert (previous.events, len(previous.gids), previous.misplaced, previous.invalid) == (5, 5, 0, 0)
    assert not previous.damaged


def test_lines_that_are_not_events_are_invalid_not_misplaced(tmp_path: Path) -> None:
    junk = [b"not json", b'{"gid": 12, "created_at": "2026-11-20T00:00:01.000Z"}', b"[]"]
    good = _lines([_event(1)])
    file = _stored(tmp_path, "day.jsonl", _jsonl([*junk, *good]))
    manifest = ObjectStoragePath(f"file://{tmp_path}/day.jsonl.manifest.json")

    previous = PreviousExport.read(file, manifest, start_at=DAY, end_at=DAY + timedelta(days=1))

    assert previous is not None
    assert (previous.events, previous.invalid, previous.misplaced, len(previous.gids)) == (1, 3, 0, 1)
    assert previous.damaged


_GIDS = GidSet(["1", "2", "3"])


@pytest.mark.parametrize(
    ("previous", "damaged"),
    [
        (PreviousExport(sha256="0" * 64, bytes=1, events=3, gids=_GIDS), False),
        (PreviousExport(sha256="0" * 64, bytes=1, events=0, gids=GidSet()), False),
        (PreviousExport(sha256="0" * 64, bytes=1, events=3, gids=_GIDS, error="cannot be read: x"), True),
        (PreviousExport(sha256="0" * 64, bytes=1, events=3, gids=_GIDS, invalid=1), True),
        (PreviousExport(sha256="0" * 64, bytes=1, events=4, gids=_GIDS, misplaced=1), True),
        (PreviousExport(sha256="0" * 64, bytes=1, events=4, gids=_GIDS), True),  # a gid twice
        (PreviousExport(sha256="0" * 64, bytes=1, events=5, gids=_GIDS, misplaced=1), True),
    ],
    ids=[
        "sound",
        "empty",
        "unreadable",
        "invalid line",
        "misplaced event",
        "repeated gid",
        "misplaced and repeated",
    ],
)
def test_a_previous_export_is_damaged_when_it_is_not_a_sound_export_of_its_interval(
    previous: PreviousExport, damaged: bool
) -> None:
    assert previous.damaged is damaged


# ---------------------------------------------------------------- Reconciliation


def _previous(gids: list[str], **fields: Any) -> PreviousExport:
    fields.setdefault("sha256", "0" * 64)
    fields.setdefault("bytes", 1234)
    fields.setdefault("exported_at", "2026-11-21T00:31:00.000Z")
    return PreviousExport(events=len(gids), gids=GidSet(gids), **fields)


def test_a_first_export_changes_nothing() -> None:
    reconciliation = Reconciliation(None)

    reconciliation.observe({"gid": "1"}, DAY)

    assert reconciliation.added == 0
    assert reconciliation.removed(events=1) == 0
    assert reconciliation.change(events=1, sha256="a" * 64, detected_at="2026-11-24T00:00:00.000Z") is None
    assert reconciliation.changes(None) == []


def test_a_reexport_records_the_events_it_added_and_removed_and_their_created_at_range() -> None:
    earlier = {"detected_at": "2026-11-22T00:00:00.000Z", "added_events": 1}
    previous = _previous(["1", "2", "3"], changes=[earlier])
    reconciliation = Reconciliation(previous)
    written = [
        ("2", DAY + timedelta(hours=2)),
        ("3", DAY + timedelta(hours=3)),
        ("5", DAY + timedelta(hours=1, microseconds=1)),  # added, the first by created_at
        ("4", DAY + timedelta(hours=20)),  # added, the last
        ("6", DAY + timedelta(hours=4)),  # added
    ]

    for gid, created_at in written:
        reconciliation.observe({"gid": gid}, created_at)
    change = reconciliation.change(
        events=len(written), sha256="b" * 64, detected_at="2026-11-24T00:00:00.000Z"
    )

    assert change == {
        "detected_at": "2026-11-24T00:00:00.000Z",
        "previous_sha256": "0" * 64,
        "previous_bytes": 1234,
        "previous_events": 3,
        "previous_exported_at": "2026-11-21T00:31:00.000Z",
        "added_events": 3,
        "removed_events": 1,  # gid 1
        "added_created_at": {"first": "2026-11-20T01:00:00.000001Z", "last": "2026-11-20T20:00:00.000Z"},
        "previous_damaged": False,
    }
    assert reconciliation.changes(change) == [earlier, change], "the earlier records come first"


def test_a_reexport_of_the_same_bytes_records_nothing_and_carries_the_history_over() -> None:
    earlier = {"detected_at": "2026-11-22T00:00:00.000Z", "added_events": 1}
    reconciliation = Reconciliation(_previous(["1", "2"], changes=[earlier]))
    for gid in ("1", "2"):
        reconciliation.observe({"gid": gid}, DAY)

    change = reconciliation.change(events=2, sha256="0" * 64, detected_at="2026-11-24T00:00:00.000Z")

    assert change is None
    assert reconciliation.changes(change) == [earlier]


def test_a_reexport_that_only_lost_events_has_no_created_at_range() -> None:
    reconciliation = Reconciliation(_previous(["1", "2", "3"], exported_at=None))
    reconciliation.observe({"gid": "2"}, DAY)

    change = reconciliation.change(events=1, sha256="c" * 64, detected_at="2026-11-24T00:00:00.000Z")

    assert change is not None
    assert (change["added_events"], change["removed_events"], change["added_created_at"]) == (0, 2, None)
    assert change["previous_exported_at"] is None


def test_a_gid_repeated_in_the_previous_file_is_not_counted_as_removed() -> None:
    previous = PreviousExport(sha256="0" * 64, bytes=10, events=3, gids=GidSet(["1", "2", "2"]))
    reconciliation = Reconciliation(previous)
    for gid in ("1", "2"):
        reconciliation.observe({"gid": gid}, DAY)

    assert reconciliation.removed(events=2) == 0
    change = reconciliation.change(events=2, sha256="d" * 64, detected_at="2026-11-24T00:00:00.000Z")
    assert change is not None
    assert (change["previous_events"], change["added_events"], change["removed_events"]) == (3, 0, 0)
    assert change["previous_damaged"] is True


def test_a_reexport_that_leaves_out_misplaced_events_removes_none_and_records_a_damaged_previous_file(
    tmp_path: Path,
) -> None:
    inside = [_event(n) for n in range(4)]
    moved = {**inside[2], "created_at": format_instant(DAY + timedelta(days=1, hours=3))}  # edited
    foreign = _misplaced_events()[0]  # an event of the day before, copied in
    stored = _gz(_jsonl(_lines([inside[0], inside[1], moved, foreign, inside[3]])))
    file = _stored(tmp_path, "day.jsonl.gz", stored)
    manifest = _stored(tmp_path, "day.jsonl.gz.manifest.json", _manifest_of(stored))
    previous = PreviousExport.read(file, manifest, start_at=DAY, end_at=DAY + timedelta(days=1))
    assert previous is not None
    reconciliation = Reconciliation(previous)

    # Asana returns the day's events as they are: the moved one at its own created_at, the foreign not.
    for event in inside:
        reconciliation.observe(event, parse_instant(event["created_at"]))
    change = reconciliation.change(events=4, sha256="e" * 64, detected_at="2026-11-24T00:00:00.000Z")

    assert reconciliation.removed(events=4) == 0, "the removal guard lets the re-export through"
    assert change == {
        "detected_at": "2026-11-24T00:00:00.000Z",
        "previous_sha256": hashlib.sha256(stored).hexdigest(),
        "previous_bytes": len(stored),
        "previous_events": 5,
        "previous_exported_at": "2026-11-21T00:31:00.000Z",
        "added_events": 1,  # the moved event, back at its created_at
        "removed_events": 0,
        "added_created_at": {"first": inside[2]["created_at"], "last": inside[2]["created_at"]},
        "previous_damaged": True,
    }


def test_a_reexport_lacking_an_event_of_the_interval_still_removes_it_beside_misplaced_ones(
    tmp_path: Path,
) -> None:
    inside = [_event(n) for n in range(3)]
    stored = _jsonl(_lines([*inside, _misplaced_events()[2]]))
    file = _stored(tmp_path, "day.jsonl", stored)
    previous = PreviousExport.read(
        file,
        ObjectStoragePath(f"file://{tmp_path}/day.jsonl.manifest.json"),
        start_at=DAY,
        end_at=DAY + timedelta(days=1),
    )
    assert previous is not None
    reconciliation = Reconciliation(previous)

    for event in inside[:2]:  # the third is gone from Asana
        reconciliation.observe(event, parse_instant(event["created_at"]))

    assert reconciliation.removed(events=2) == 1
    change = reconciliation.change(events=2, sha256="f" * 64, detected_at="2026-11-24T00:00:00.000Z")
    assert change is not None
    assert (change["added_events"], change["removed_events"], change["previous_damaged"]) == (0, 1, True)


def test_a_reexport_of_a_truncated_file_records_a_damaged_previous_file(tmp_path: Path) -> None:
    events = [_event(n) for n in range(2000)]
    stored = _truncated(_gz(_jsonl(_lines(events))))
    file = _stored(tmp_path, "day.jsonl.gz", stored)
    previous = PreviousExport.read(
        file,
        ObjectStoragePath(f"file://{tmp_path}/day.jsonl.gz.manifest.json"),
        start_at=DAY,
        end_at=DAY + timedelta(days=1),
    )
    assert previous is not None
    assert previous.error is not None
    reconciliation = Reconciliation(previous)

    for event in events:
        reconciliation.observe(event, parse_instant(event["created_at"]))
    change = reconciliation.change(events=2000, sha256="a" * 64, detected_at="2026-11-24T00:00:00.000Z")

    assert change is not None
    assert (change["previous_events"], change["added_events"], change["removed_events"]) == (
        previous.events,
        2000 - previous.events,
        0,
    )
    assert change["previous_exported_at"] is None
    assert change["previous_damaged"] is True


def test_a_reexport_replacing_a_sound_file_records_it_as_not_damaged() -> None:
    reconciliation = Reconciliation(_previous(["1", "2"]))
    for gid in ("1", "2", "3"):
        reconciliation.observe({"gid": gid}, DAY)

    change = reconciliation.change(events=3, sha256="b" * 64, detected_at="2026-11-24T00:00:00.000Z")

    assert change is not None
    assert (change["added_events"], change["removed_events"], change["previous_damaged"]) == (1, 0, False)
