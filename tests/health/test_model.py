"""
The archive's health (``airflow_provider_asana_audit.health``): the calendar built from a real archive
that the export example DAG wrote (a copy, damaged the way it happens), the newest check's report, late
events and repairs, Asana's 90-day window and drop-offs.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_asana_audit.health import CELL_STATES, archive_health
from airflow_provider_asana_audit.health.model import EXPIRING_WITHIN, Cell, _mark_drop_offs
from airflow_provider_asana_audit.rules import RETENTION
from airflow_provider_asana_audit.verify import verify_archive
from tests.helpers.archive import Archive, manifest_of, read_export, rewrite_events

DAY = timedelta(days=1)


def _states(archive: Archive, **kwargs: Any) -> list[str]:
    health = archive_health(archive.uri, now=archive.end + timedelta(hours=1), **kwargs)
    (series,) = health.series
    return [cell.state for cell in series.cells]


def test_an_untouched_archive_is_whole_up_to_the_day_not_yet_due(archive: Archive) -> None:
    now = archive.end + timedelta(hours=1)
    health = archive_health(archive.uri, now=now)

    (series,) = health.series
    assert series.workspace_gid == archive.workspace_gid
    assert [cell.day for cell in series.cells] == [*archive.days, archive.end]
    assert [cell.state for cell in series.cells] == ["whole"] * len(archive.days) + ["not_due"]
    for cell, file in zip(series.cells, archive.files(), strict=False):
        manifest = manifest_of(file)
        assert (cell.events, cell.bytes) == (manifest["events"], manifest["bytes"])
        assert cell.dag_id == manifest["exported_by"]["dag_id"]
        assert cell.run_id == manifest["exported_by"]["run_id"]
        exported = datetime.fromisoformat(manifest["exported_at"].replace("Z", "+00:00"))
        assert cell.exported_at == exported
        assert cell.lag_seconds == (exported - (cell.day + DAY)).total_seconds()
        assert cell.days_left == (cell.day + RETENTION - now).days
        assert (cell.problems, cell.expiring, cell.drop_off) == ([], False, False)
    assert series.mend() == []


def test_a_deleted_day_is_missing_and_a_file_without_manifest_damaged(damaged: Archive) -> None:
    damaged.file(damaged.days[2]).unlink()
    damaged.manifest(damaged.days[2]).unlink()
    damaged.manifest(damaged.days[4]).unlink()

    states = _states(damaged)

    assert states[2] == "missing"
    assert states[4] == "damaged"
    assert states.count("whole") == len(damaged.days) - 2


def test_a_manifest_without_its_file_is_damaged(damaged: Archive) -> None:
    damaged.file(damaged.days[1]).unlink()
    assert _states(damaged)[1] == "damaged"


def test_the_newest_checks_problems_mark_their_days_until_the_day_is_exported_again(
    damaged: Archive,
) -> None:
    file = damaged.file(damaged.days[3])
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])  # the manifests cannot tell: only reading the file can
    assert _states(damaged)[3] == "whole"
    report = verify_archive(damaged.uri).to_json()

    health = archive_health(damaged.uri, report=report, now=damaged.end + timedelta(hours=1))

    cell = health.series[0].cells[3]
    assert cell.state == "damaged"
    assert {problem["kind"] for problem in cell.problems} == {"unreadable_file", "manifest_mismatch"}
    assert health.series[0].mend() == [report["reexport"][0]["command"]]
    assert health.to_json()["check"]["whole"] is False

    with damaged.standin() as fake:  # the backfill of that day
        damaged.export(fake, damaged.days[3])
    assert _states(damaged, report=report)[3] == "repaired"


def test_late_events_recorded_by_a_re_export_are_shown_apart(damaged: Archive) -> None:
    day = damaged.days[5]
    with damaged.standin() as fake:
        fake.append_events(1, created_at=day + timedelta(hours=23))
        damaged.export(fake, day)
    assert _states(damaged)[5] == "late"


def test_a_missing_day_near_the_end_of_asanas_window_is_marked_with_the_days_left(damaged: Archive) -> None:
    day = damaged.days[1]
    damaged.file(day).unlink()
    damaged.manifest(day).unlink()
    now = day + RETENTION - timedelta(days=EXPIRING_WITHIN - 3, hours=1)

    cell = archive_health(damaged.uri, now=now).series[0].cells[1]

    assert (cell.state, cell.expiring, cell.days_left) == ("missing", True, EXPIRING_WITHIN - 3)
    later = archive_health(damaged.uri, now=day + RETENTION + DAY).series[0]
    assert later.cells[1].days_left < 0
    assert later.mend()[0].startswith(f"restore {day:%Y-%m-%d} to {day:%Y-%m-%d} from a backup")


def test_days_before_the_first_file_are_missing_from_since_on(damaged: Archive) -> None:
    first = damaged.days[0]
    damaged.file(first).unlink()
    damaged.manifest(first).unlink()
    assert _states(damaged)[0] == "whole", "without since, the calendar starts at the first file"

    states = _states(damaged, since=first - DAY)

    assert states[:3] == ["missing", "missing", "whole"]


def test_a_day_far_below_the_usual_volume_is_a_drop_off() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cells = [Cell(day=start + n * DAY, state="whole", events=1000 + n) for n in range(10)]
    cells[8].events = 200  # a fifth of the median
    cells[9].events = 300  # above a quarter of it

    _mark_drop_offs(cells)

    assert [n for n, cell in enumerate(cells) if cell.drop_off] == [8]


def test_too_little_history_flags_no_drop_off() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    cells = [Cell(day=start + n * DAY, state="whole", events=1000) for n in range(6)] + [
        Cell(day=start + 6 * DAY, state="whole", events=1)
    ]
    _mark_drop_offs(cells)
    assert not any(cell.drop_off for cell in cells)


def test_the_json_holds_counts_and_paths_never_events(damaged: Archive) -> None:
    day = damaged.days[2]
    events = read_export(damaged.file(day))
    rewrite_events(damaged.file(day), events[:1])  # a drop-off is not a problem of the manifests

    document = json.dumps(archive_health(damaged.uri, now=damaged.end).to_json())

    (series,) = json.loads(document)["series"]
    assert set(series["counts"]) == set(CELL_STATES)
    assert sum(series["counts"].values()) == len(series["cells"])
    for event in events:
        assert event["gid"] not in document
    assert str(events[0]["actor"]) not in document
