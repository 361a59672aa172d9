"""The example DAGs load on this Airflow version and do what their docstrings promise."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogEventTrigger
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.helpers.dags import EXAMPLE_DAGS, DagRunResult, copy_example, load_dag, load_dagbag, run_dag
from tests.helpers.exports import midnight, read_events

FAILED_LOGIN = "user_login_failed"


def test_every_example_dag_loads_without_errors(airflow_db: Path) -> None:
    bag = load_dagbag(EXAMPLE_DAGS)

    assert bag.import_errors == {}
    expected = {"example_asana_audit_export", "example_asana_audit_sensor"}
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
