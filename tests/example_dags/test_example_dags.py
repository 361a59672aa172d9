"""The example DAGs load on this Airflow version and do what their docstrings promise."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogEventTrigger
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.helpers.dags import EXAMPLE_DAGS, DagRunResult, copy_example, load_dag, load_dagbag, run_dag
from tests.helpers.exports import midnight, read_events

FAILED_LOGIN = "user_login_failed"


def _export_file(export_dir: Path, workspace_gid: str, start: datetime, end: datetime) -> Path:
    """Where the examples put the export of ``[start, end)`` (the default layout under ``export_dir``)."""
    return (
        export_dir
        / f"workspace_gid={workspace_gid}"
        / f"date={start:%Y-%m-%d}"
        / f"asana_audit_log_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.jsonl.gz"
    )


def _manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(path.with_name(path.name + ".manifest.json").read_text())
    return manifest


def test_every_example_dag_loads_without_errors(airflow_db: Path) -> None:
    bag = load_dagbag(EXAMPLE_DAGS)

    assert bag.import_errors == {}
    expected = {"example_asana_audit_export", "example_asana_audit_sensor", "example_asana_audit_archive"}
    if AIRFLOW_V_3_0_PLUS:
        expected.add("example_asana_audit_watcher")
    assert set(bag.dag_ids) == expected


# --------------------------------------------------------------------------- the export example


def test_the_export_example_runs_daily_intervals_with_catchup_and_parallel_runs(airflow_db: Path) -> None:
    dag = load_dag(EXAMPLE_DAGS / "example_asana_audit_export.py", "example_asana_audit_export")

    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.catchup is True
    assert dag.max_active_runs > 1
    assert all(task.retries > 0 for task in dag.tasks)


def test_the_export_example_exports_the_day_before_its_logical_date(
    run_export_example: Callable[[datetime], DagRunResult], asana_conn: FakeAsana, export_dir: Path
) -> None:
    start, end = midnight(3), midnight(2)

    run = run_export_example(end)

    assert run.task_state == "success"
    (path,) = export_dir.rglob("*.jsonl.gz")
    assert path.parent == export_dir / f"workspace_gid={asana_conn.workspace_gid}" / f"date={start:%Y-%m-%d}"
    assert read_events(path) == asana_conn.ground_truth(start, end)


# --------------------------------------------------------------------------- the archive example


def test_the_archive_example_reexports_days_later_and_checks_the_archive(airflow_db: Path) -> None:
    dag = load_dag(EXAMPLE_DAGS / "example_asana_audit_archive.py", "example_asana_audit_archive")

    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.catchup is True
    assert {task.task_id for task in dag.tasks} == {"reexport_audit_log", "verify_archive"}
    assert dag.get_task("verify_archive").upstream_task_ids == {"reexport_audit_log"}
    assert dag.get_task("reexport_audit_log").allow_event_removal is False


def test_the_archive_example_records_the_late_events_of_the_day_it_reexports(
    run_export_example: Callable[[datetime], DagRunResult],
    run_archive_example: Callable[..., DagRunResult],
    asana_conn: FakeAsana,
    export_dir: Path,
) -> None:
    reconcile_days = 2
    # The export example exports [6, 5), [5, 4) and [4, 3) days ago: its first three days.
    for end in (midnight(5), midnight(4), midnight(3)):
        assert run_export_example(end).task_state == "success"
    day_start, day_end = midnight(4), midnight(3)
    path = _export_file(export_dir, asana_conn.workspace_gid, day_start, day_end)
    first_manifest, first_events = _manifest(path), read_events(path)
    other_day = _export_file(export_dir, asana_conn.workspace_gid, midnight(5), midnight(4))
    other_day_bytes = other_day.read_bytes()
    # Asana captures events of the exported day late; one of the day before too, which this run does
    # not re-export.
    late = [
        *asana_conn.append_events(2, created_at=day_start + timedelta(hours=3)),
        *asana_conn.append_events(1, created_at=day_end - timedelta(milliseconds=1)),
    ]
    asana_conn.append_events(1, created_at=midnight(5) + timedelta(hours=1))

    # The run whose data interval ends reconcile_days after the day's end re-exports that day.
    run = run_archive_example(day_end + timedelta(days=reconcile_days), reconcile_days=reconcile_days)

    assert run.task_states == {"reexport_audit_log": "success", "verify_archive": "success"}
    assert read_events(path) == asana_conn.ground_truth(day_start, day_end)
    assert {e["gid"] for e in read_events(path)} - {e["gid"] for e in first_events} == {
        e["gid"] for e in late
    }
    manifest = _manifest(path)
    (change,) = manifest["changes"]
    assert change == {
        "detected_at": manifest["exported_at"],
        "previous_sha256": first_manifest["sha256"],
        "previous_bytes": first_manifest["bytes"],
        "previous_events": first_manifest["events"],
        "previous_exported_at": first_manifest["exported_at"],
        "added_events": len(late),
        "removed_events": 0,
        "added_created_at": {
            "first": format_instant(day_start + timedelta(hours=3)),
            "last": format_instant(day_end - timedelta(milliseconds=1)),
        },
        "previous_damaged": False,
    }
    assert run.xcom("reexport_audit_log")["change"] == change
    assert manifest["exported_by"]["dag_id"] == "example_asana_audit_archive"
    assert manifest["exported_by"]["data_interval_end"] == format_instant(
        day_end + timedelta(days=reconcile_days)
    )
    assert other_day.read_bytes() == other_day_bytes
    # The check covered the export example's three days, from its first day (the later of that day
    # and VERIFY_DAYS before the re-exported day) up to the re-exported day, and found them whole.
    checked = run.xcom("verify_archive")
    assert checked["whole"] is True
    assert checked["files"] == 3
    assert checked["problems"] == {}
    assert checked["late_events"] == {
        "changed_reexports": 1,
        "added_events": len(late),
        "removed_events": 0,
        "repairs": 0,
        "captured_after_end_at_least_seconds": (
            parse_instant(first_manifest["exported_at"]) - day_end
        ).total_seconds(),
    }


def test_the_archive_example_checks_only_its_last_verify_days(
    run_export_example: Callable[[datetime], DagRunResult],
    run_archive_example: Callable[..., DagRunResult],
    asana_conn: FakeAsana,
    export_dir: Path,
) -> None:
    for end in (midnight(5), midnight(4), midnight(3)):
        assert run_export_example(end).task_state == "success"
    day_end = midnight(3)
    path = _export_file(export_dir, asana_conn.workspace_gid, midnight(4), day_end)
    before = path.read_bytes()

    run = run_archive_example(day_end + timedelta(days=2), reconcile_days=2, verify_days=1)

    assert run.task_states == {"reexport_audit_log": "success", "verify_archive": "success"}
    # Nothing changed: the same bytes, no change recorded.
    assert path.read_bytes() == before
    assert run.xcom("reexport_audit_log")["change"] is None
    assert _manifest(path)["changes"] == []
    # VERIFY_DAYS=1 reaches back one day from the re-exported day's end: only that day's file is read.
    checked = run.xcom("verify_archive")
    assert checked["whole"] is True
    assert checked["files"] == 1


# --------------------------------------------------------------------------- the sensor example


def test_the_sensor_example_reports_the_failed_logins_of_its_data_interval(
    dags_folder: Path, asana_conn: FakeAsana
) -> None:
    dag = load_dag(copy_example(dags_folder, "example_asana_audit_sensor.py"), "example_asana_audit_sensor")
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    # A failed login in the last complete hour (and one in the next, should the hour turn meanwhile).
    asana_conn.append_events(1, created_at=hour - timedelta(minutes=30), event_type=FAILED_LOGIN)
    asana_conn.append_events(1, created_at=hour + timedelta(milliseconds=1), event_type=FAILED_LOGIN)

    run = run_dag(dag)  # manual: the last complete hour

    assert run.task_states == {"wait_for_failed_logins": "success", "report_failed_logins": "success"}
    interval = (run.dag_run.data_interval_start, run.dag_run.data_interval_end)
    found = run.xcom("wait_for_failed_logins")
    assert found["first_gid"] == asana_conn.ground_truth(*interval, event_type=FAILED_LOGIN)[0]["gid"]


# --------------------------------------------------------------------------- the watcher example


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="asset watchers are Airflow 3 only")
def test_the_watcher_example_is_scheduled_by_an_asset_watching_failed_logins(dags_folder: Path) -> None:
    dag = load_dag(copy_example(dags_folder, "example_asana_audit_watcher.py"), "example_asana_audit_watcher")

    (asset,) = dag.timetable.asset_condition.objects
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, AsanaAuditLogEventTrigger)
    assert watcher.trigger.serialize()[1]["filters"] == {"event_type": FAILED_LOGIN}


@pytest.mark.skipif(AIRFLOW_V_3_0_PLUS, reason="Airflow 3 has asset watchers")
def test_the_watcher_example_defines_no_dag_on_airflow_2(dags_folder: Path) -> None:
    bag = load_dagbag(copy_example(dags_folder, "example_asana_audit_watcher.py"))

    assert bag.import_errors == {}
    assert bag.dag_ids == []
