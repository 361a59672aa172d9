"""
Runs a one-task DAG holding an ``AsanaAuditLogSensor`` through real Airflow (``dag.test()``).

The DAG file is written into the session's DAGs folder (Airflow 3's ``dag.test()`` needs it there),
loaded with a ``DagBag`` and run in-process against the stand-in, with tasks, reschedules and
triggers all handled by Airflow itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana

DAG_TEMPLATE = """\
from __future__ import annotations

from datetime import datetime, timezone

from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):
    AsanaAuditLogSensor(task_id="wait", **{kwargs!r})
"""


@dataclass
class SensorRun:
    """The outcome of one DAG run: the sensor task's final state and its XCom ``return_value``."""

    state: str
    xcom: Any
    seconds: float
    reschedules: int


def _count_reschedules(ti: Any) -> int:
    """How many times the task was rescheduled (rows of ``task_reschedule``), on Airflow 2 and 3."""
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskReschedule).all()
        return sum(
            1
            for row in rows
            if getattr(row, "ti_id", None) == getattr(ti, "id", object())
            or (getattr(row, "dag_id", None), getattr(row, "run_id", None)) == (ti.dag_id, ti.run_id)
        )


@pytest.fixture
def run_sensor(
    airflow_db: Path, airflow_home: Path, asana_conn: FakeAsana, request: pytest.FixtureRequest
) -> Callable[..., SensorRun]:
    """Return ``run(**sensor_kwargs)``: write, load and ``dag.test()`` a DAG with one sensor."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    def run(**kwargs: Any) -> SensorRun:
        dag_id = "asana_sensor_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
        path = airflow_home / "dags" / f"{dag_id}.py"
        path.write_text(DAG_TEMPLATE.format(dag_id=dag_id, kwargs=kwargs))
        dagbag = DagBag(dag_folder=str(path))
        assert not dagbag.import_errors, dagbag.import_errors
        dag = dagbag.get_dag(dag_id)
        started = time.monotonic()
        dag_run = dag.test()  # a run at now; the sensors under test get an explicit start_at
        seconds = time.monotonic() - started
        ti = dag_run.get_task_instance("wait")
        return SensorRun(
            state=str(ti.state),
            xcom=ti.xcom_pull(task_ids="wait"),
            seconds=seconds,
            reschedules=_count_reschedules(ti),
        )

    return run


@pytest.fixture
def append_later(asana_conn: FakeAsana) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """Return ``append(delay, n, **fields)``: append events from a background thread after ``delay`` s."""
    threads: list[threading.Thread] = []
    appended: list[dict[str, Any]] = []

    def append(delay: float, n: int, **fields: Any) -> list[dict[str, Any]]:
        def work() -> None:
            time.sleep(delay)
            appended.extend(asana_conn.append_events(n, **fields))

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        threads.append(thread)
        return appended

    yield append
    for thread in threads:
        thread.join()
