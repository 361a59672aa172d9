"""
Late events in re-exports, against the stand-in and real files: what a re-export adds to the file it
replaces is recorded in the manifest's ``changes``, logged as a warning and returned in the XCom.

Each test exports an interval, has Asana capture events late (``FakeAsana.append_events`` with a
``created_at`` in the already exported interval, and some just outside it, which must not count), exports
it again, and checks that the change record names exactly the appended events. A previous file that was
damaged (cut short, holding a gid twice or events of other intervals) is replaced as a repair: its
record says ``previous_damaged``, and what it adds is not called late. The reading of files and the
counting themselves are tested in ``tests/test_archive.py``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from pytest_mock import MockerFixture

from airflow_provider_asana_audit.exceptions import AsanaAuditLogArchiveError
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_duration, format_instant, parse_instant
from tests.helpers.dags import DagRunResult
from tests.helpers.exports import midnight, read_events, serialise

START, END = midnight(3), midnight(2)
RunExport = Callable[..., DagRunResult]


def _export(path: Path, **kwargs: Any) -> dict[str, Any]:
    """Export ``[START, END)`` to ``path`` with the operator called directly, as a task would."""
    kwargs.setdefault("settle_period", timedelta(0))
    operator = AsanaAuditLogExportOperator(task_id="export", destination=f"file://{path}", **kwargs)
    context: Any = {"data_interval_start": START, "data_interval_end": END}
    summary: dict[str, Any] = operator.execute(context)
    return summary


def _manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def _manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(_manifest_path(path).read_text())
    return manifest


def _gids(events: list[dict[str, Any]]) -> set[str]:
    return {event["gid"] for event in events}


def _logged(log: Any, level: str) -> list[str]:
    """The export's messages logged at ``level`` through the mocked operator log, formatted."""
    calls = getattr(log.return_value, level).call_args_list
    texts = [call.args[0] % call.args[1:] for call in calls]
    # Airflow warns that execute() is called outside of a task run, as these tests do on purpose.
    return [text for text in texts if ".execute cannot be called outside" not in text]


def _late_events(asana: FakeAsana) -> list[dict[str, Any]]:
    """Have Asana capture events of ``[START, END)`` late, and events just outside it, which do not count."""
    late = [
        *asana.append_events(1, created_at=START),  # the first instant of the interval
        *asana.append_events(2, created_at=START + timedelta(hours=5, milliseconds=7)),
        *asana.append_events(1, created_at=END - timedelta(milliseconds=1)),  # its last millisecond
    ]
    asana.append_events(1, created_at=START - timedelta(milliseconds=1))
    asana.append_events(1, created_at=END)
    asana.append_events(2, created_at=END + timedelta(hours=6))
    return late


def _expected_change(
    previous: dict[str, Any],
    late: list[dict[str, Any]],
    *,
    detected_at: str,
    removed: int = 0,
) -> dict[str, Any]:
    """The record a re-export must add: ``previous`` is the replaced file's manifest."""
    created = sorted(parse_instant(event["created_at"]) for event in late)
    return {
        "detected_at": detected_at,
        "previous_sha256": previous["sha256"],
        "previous_bytes": previous["bytes"],
        "previous_events": previous["events"],
        "previous_exported_at": previous["exported_at"],
        "added_events": len(late),
        "removed_events": removed,
        "added_created_at": (
            {"first": format_instant(created[0]), "last": format_instant(created[-1])} if late else None
        ),
        "previous_damaged": False,
    }


def _staging_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*") if p.name.endswith(".partial")]


# ---------------------------------------------------------------- late events are recorded


@pytest.mark.parametrize(
    "reading", [{}, {"concurrency": 4, "page_size": 5}], ids=["sequential", "concurrency 4"]
)
def test_a_reexport_records_exactly_the_late_events_of_its_interval(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture, reading: dict[str, Any]
) -> None:
    path = tmp_path / "day.jsonl.gz"
    _export(path, **reading)
    first_manifest, first_bytes, first_events = _manifest(path), path.read_bytes(), read_events(path)
    late = _late_events(asana_conn)
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _export(path, **reading)

    # The file is what Asana holds now, the late events included and the ones outside left out.
    assert path.read_bytes() == serialise(asana_conn.ground_truth(START, END), compressed=True)
    assert _gids(read_events(path)) - _gids(first_events) == _gids(late)
    assert _gids(first_events) <= _gids(read_events(path))
    # The manifest's change record names exactly those, and the previous file as its manifest did.
    assert first_manifest["sha256"] == hashlib.sha256(first_bytes).hexdigest()
    assert first_manifest["bytes"] == len(first_bytes)
    manifest = _manifest(path)
    (change,) = manifest["changes"]
    assert change == _expected_change(first_manifest, late, detected_at=manifest["exported_at"])
    assert change["added_created_at"] == {
        "first": format_instant(START),
        "last": format_instant(END - timedelta(milliseconds=1)),
    }
    assert summary["change"] == change
    assert manifest["events"] == first_manifest["events"] + len(late)
    # One warning says how many, their created_at range, and how late Asana captured them at least.
    (warning,) = [text for text in _logged(log, "warning") if "Late events" in text]
    lag = format_duration(parse_instant(first_manifest["exported_at"]) - END)
    assert warning == (
        f"Late events: the re-export of [{format_instant(START)}, {format_instant(END)}) holds "
        f"{len(late)} events that the previous export ({first_manifest['events']} events, sha256 "
        f"{first_manifest['sha256']}) did not, created from {format_instant(START)} to "
        f"{format_instant(END - timedelta(milliseconds=1))}; Asana captured them at least {lag} after "
        f"the interval's end (the previous export ran at {first_manifest['exported_at']}): the settle "
        "period of the export that first wrote this interval must be longer than that to include such "
        "events the first time"
    )
    assert not any("lacks" in text for text in _logged(log, "warning"))
    if reading:
        # The interval was read in slices side by side: the requests start at several instants.
        assert len({request.params.get("start_at") for request in asana_conn.requests}) > 2


def test_an_identical_reexport_records_nothing_and_keeps_the_earlier_records(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    _late_events(asana_conn)
    _export(path)
    second_bytes, second_manifest = path.read_bytes(), _manifest(path)
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _export(path, page_size=7)

    assert summary["change"] is None
    assert path.read_bytes() == second_bytes
    manifest = _manifest(path)
    assert manifest["changes"] == second_manifest["changes"]
    assert len(manifest["changes"]) == 1
    assert manifest["exported_at"] >= second_manifest["exported_at"]
    assert not any("Late events" in text for text in _logged(log, "warning"))


def test_a_first_export_records_no_change(asana_conn: FakeAsana, tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl"

    summary = _export(path)

    assert summary["change"] is None
    assert _manifest(path)["changes"] == []


def test_each_late_batch_gets_its_own_record_in_order(asana_conn: FakeAsana, tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    first_manifest = _manifest(path)
    first_batch = asana_conn.append_events(3, created_at=START + timedelta(hours=2))
    _export(path)
    second_manifest = _manifest(path)
    second_batch = [
        *asana_conn.append_events(1, created_at=START + timedelta(hours=20)),
        *asana_conn.append_events(1, created_at=START + timedelta(hours=1)),
    ]

    summary = _export(path)

    manifest = _manifest(path)
    assert manifest["changes"] == [
        _expected_change(first_manifest, first_batch, detected_at=second_manifest["exported_at"]),
        _expected_change(second_manifest, second_batch, detected_at=manifest["exported_at"]),
    ]
    assert manifest["changes"][0] == second_manifest["changes"][0], "the earlier record is kept as it was"
    assert summary["change"] == manifest["changes"][1]
    assert read_events(path) == asana_conn.ground_truth(START, END)


@pytest.mark.parametrize(
    "manifest_text",
    [None, "{not json", '["not", "an", "object"]', '{"sha256": "0000", "changes": [{"added_events": 9}]}'],
    ids=["missing", "not JSON", "not an object", "stale"],
)
def test_late_events_are_recorded_also_when_the_previous_manifest_is_unusable(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture, manifest_text: str | None
) -> None:
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    first_manifest = _manifest(path)
    if manifest_text is None:
        _manifest_path(path).unlink()
    else:
        _manifest_path(path).write_text(manifest_text)
    late = _late_events(asana_conn)
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _export(path)

    manifest = _manifest(path)
    # Without a manifest of the previous bytes, when they were exported is not known, nor their history.
    expected = {**_expected_change(first_manifest, late, detected_at=manifest["exported_at"])}
    expected["previous_exported_at"] = None
    assert manifest["changes"] == [expected]
    assert summary["change"] == expected
    assert read_events(path) == asana_conn.ground_truth(START, END)
    (warning,) = [text for text in _logged(log, "warning") if "Late events" in text]
    assert warning.endswith("the previous export had no valid manifest, so when it ran is not known")


def test_events_added_to_a_previous_file_that_cannot_be_read_are_not_called_late(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    whole = read_events(path)
    damaged = path.read_bytes()[:-20]  # the gzip stream cut short: the last lines are lost
    path.write_bytes(damaged)
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _export(path)

    assert read_events(path) == whole
    change = summary["change"]
    assert change is not None
    readable = change["previous_events"]
    assert 0 < readable < len(whole)
    added = whole[readable:]  # the events after the break
    manifest = _manifest(path)
    assert change == {
        "detected_at": manifest["exported_at"],
        "previous_sha256": hashlib.sha256(damaged).hexdigest(),
        "previous_bytes": len(damaged),
        "previous_events": readable,
        "previous_exported_at": None,  # its manifest described the whole bytes, not these
        "added_events": len(added),
        "removed_events": 0,
        "added_created_at": {"first": added[0]["created_at"], "last": added[-1]["created_at"]},
        "previous_damaged": True,
    }
    assert manifest["changes"] == [change]
    warnings = _logged(log, "warning")
    assert any("cannot be decompressed after line" in text for text in warnings)
    assert not any("Late events" in text for text in warnings)
    assert (
        f"The re-export of [{format_instant(START)}, {format_instant(END)}) holds {len(added)} events that "
        f"the sound part of the previous export ({readable} events, sha256 {change['previous_sha256']}) "
        f"did not, created from {added[0]['created_at']} to {added[-1]['created_at']}; the previous file "
        "was damaged, so they need not be late events"
    ) in warnings


def test_an_event_of_another_interval_in_the_previous_file_is_left_out_without_allow_event_removal(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    # The archive check reports it as outside_interval (and a duplicate of its own interval's file), and
    # says to re-export: that must not count as losing an event.
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    truth = asana_conn.ground_truth(START, END)
    foreign = {**truth[0], "gid": "1", "created_at": format_instant(END + timedelta(hours=3))}
    data = serialise([*truth, foreign], compressed=True)
    path.write_bytes(data)
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _export(path)

    assert path.read_bytes() == serialise(truth, compressed=True)
    manifest = _manifest(path)
    assert (
        summary["change"]
        == manifest["changes"][0]
        == {
            "detected_at": manifest["exported_at"],
            "previous_sha256": hashlib.sha256(data).hexdigest(),
            "previous_bytes": len(data),
            "previous_events": len(truth) + 1,
            "previous_exported_at": None,
            "added_events": 0,
            "removed_events": 0,
            "added_created_at": None,
            "previous_damaged": True,
        }
    )
    assert _logged(log, "warning") == [
        f"The previous export at file://{path} holds 1 events whose created_at lies outside "
        f"[{format_instant(START)}, {format_instant(END)}): they belong to other intervals' files, and the "
        "re-export leaves them out"
    ]
    assert any(
        "holds the same events as the previous export in other bytes" in t for t in _logged(log, "info")
    )


# ---------------------------------------------------------------- removed events


def _file_with_an_extra_event(asana: FakeAsana, path: Path) -> tuple[bytes, bytes, dict[str, Any]]:
    """
    Make ``path`` hold the stand-in's events of the interval plus one Asana does not hold (as if Asana had
    deleted it since), with a valid manifest; return its bytes, its manifest's bytes and the event.
    """
    truth = asana.ground_truth(START, END)
    extra = {**truth[0], "gid": "1", "created_at": format_instant(START + timedelta(hours=12))}
    events = sorted([*truth, extra], key=lambda event: event["created_at"])
    data = serialise(events, compressed=True)
    path.write_bytes(data)
    manifest = {
        **_manifest(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "events": len(events),
    }
    manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
    _manifest_path(path).write_bytes(manifest_bytes)
    return data, manifest_bytes, extra


def test_a_reexport_lacking_events_of_the_file_it_replaces_fails_and_keeps_the_file(
    asana_conn: FakeAsana, tmp_path: Path
) -> None:
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    data, manifest_bytes, _ = _file_with_an_extra_event(asana_conn, path)
    events = len(read_events(path))
    _late_events(asana_conn)  # added events do not make up for a lost one

    with pytest.raises(AsanaAuditLogArchiveError) as caught:
        _export(path)

    assert isinstance(caught.value, AirflowFailException), "a retry would fail the same way"
    assert f"lacks 1 of the {events} events of the file it would replace" in str(caught.value)
    assert "allow_event_removal=True" in str(caught.value)
    assert path.read_bytes() == data
    assert _manifest_path(path).read_bytes() == manifest_bytes
    assert _staging_leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.jsonl.gz", "day.jsonl.gz.manifest.json"]


def test_allow_event_removal_lets_a_reexport_replace_the_file_and_records_the_removed_events(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    _, manifest_bytes, extra = _file_with_an_extra_event(asana_conn, path)
    previous_manifest = json.loads(manifest_bytes)
    late = _late_events(asana_conn)
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _export(path, allow_event_removal=True)

    assert path.read_bytes() == serialise(asana_conn.ground_truth(START, END), compressed=True)
    assert extra["gid"] not in _gids(read_events(path))
    manifest = _manifest(path)
    expected = _expected_change(previous_manifest, late, detected_at=manifest["exported_at"], removed=1)
    assert manifest["changes"] == [expected]
    assert summary["change"] == expected
    warnings = _logged(log, "warning")
    assert any(
        text.startswith(f"The re-export of [{format_instant(START)}, {format_instant(END)}) lacks 1 events")
        for text in warnings
    )
    assert any("Late events" in text for text in warnings)
    assert _staging_leftovers(tmp_path) == []


def test_a_previous_file_holding_an_event_twice_is_replaced_without_losing_any(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    # The archive check says to re-export a file with a repeated gid: that must not count as a loss.
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    truth = asana_conn.ground_truth(START, END)
    data = serialise([*truth, truth[-1]], compressed=True)
    path.write_bytes(data)
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _export(path)

    assert path.read_bytes() == serialise(truth, compressed=True)
    change = summary["change"]
    assert change is not None
    assert change["previous_sha256"] == hashlib.sha256(data).hexdigest()
    assert (change["previous_events"], change["added_events"], change["removed_events"]) == (
        len(truth) + 1,
        0,
        0,
    )
    assert change["previous_damaged"] is True
    assert _logged(log, "warning") == []
    assert any(
        "holds the same events as the previous export in other bytes" in t for t in _logged(log, "info")
    )


def test_lines_of_the_previous_file_that_are_not_events_are_left_out_with_a_warning(
    asana_conn: FakeAsana, tmp_path: Path, mocker: MockerFixture
) -> None:
    path = tmp_path / "day.jsonl.gz"
    _export(path)
    truth = asana_conn.ground_truth(START, END)
    text = serialise(truth, compressed=False) + b"not json\n" + b'{"no_gid": 1}\n'
    path.write_bytes(gzip.compress(text, mtime=0))
    log = mocker.patch.object(AsanaAuditLogExportOperator, "log", new_callable=mocker.PropertyMock)

    summary = _export(path)

    assert path.read_bytes() == serialise(truth, compressed=True)
    change = summary["change"]
    assert (change["added_events"], change["removed_events"], change["previous_damaged"]) == (0, 0, True)
    assert _logged(log, "warning") == [
        f"The previous export at file://{path} holds 2 lines that are not audit events; the re-export "
        "leaves them out"
    ]


# ---------------------------------------------------------------- in a real DAG run


def test_a_dag_run_names_itself_in_the_manifest_and_returns_the_change_record(
    run_export: RunExport, asana_conn: FakeAsana, export_dir: Path
) -> None:
    path = export_dir / "day.jsonl.gz"
    destination = str(path)
    first = run_export(END, destination=destination)
    assert first.task_state == "success"
    first_manifest = _manifest(path)
    assert first_manifest["exported_by"] == {
        "dag_id": "asana_audit_export_under_test",
        "task_id": "export",
        "run_id": first.dag_run.run_id,
        "map_index": -1,
        "try_number": 1,
        "data_interval_start": format_instant(START),
        "data_interval_end": format_instant(END),
    }
    assert first.xcom("export")["change"] is None
    late = _late_events(asana_conn)

    run = run_export(END, destination=destination, concurrency=4, page_size=5)

    assert run.task_state == "success"
    manifest = _manifest(path)
    (change,) = manifest["changes"]
    assert change == _expected_change(first_manifest, late, detected_at=manifest["exported_at"])
    assert run.xcom("export")["change"] == change
    assert manifest["exported_by"]["run_id"] == run.dag_run.run_id
    assert manifest["exported_by"]["data_interval_end"] == format_instant(END)
    assert read_events(path) == asana_conn.ground_truth(START, END)
