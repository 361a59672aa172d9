"""The example DAGs load on this Airflow version, and the export example exports a day exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from tests.operators.conftest import EXAMPLE_DAGS, load_dagbag, midnight, read_events

pytestmark = pytest.mark.airflow


def test_every_example_dag_loads_without_errors(airflow_db: Path):
    bag = load_dagbag(EXAMPLE_DAGS)

    assert bag.import_errors == {}
    assert "example_asana_audit_export" in bag.dag_ids


def test_the_export_example_runs_daily_intervals_with_catchup_and_parallel_runs(airflow_db: Path):
    dag = load_dagbag(EXAMPLE_DAGS).dags["example_asana_audit_export"]

    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.catchup is True
    assert dag.max_active_runs > 1
    assert all(task.retries > 0 for task in dag.tasks)


def test_the_export_example_exports_the_day_before_its_logical_date(
    run_example, asana_conn: FakeAsana, export_dir: Path
):
    start, end = midnight(3), midnight(2)

    run = run_example(end)

    assert run.task_state == "success"
    (path,) = export_dir.rglob("*.jsonl.gz")
    assert path.parent == export_dir / f"workspace_gid={asana_conn.workspace_gid}" / f"date={start:%Y-%m-%d}"
    assert read_events(path) == asana_conn.ground_truth(start, end)
