"""
Fixtures for the sensor's DAG runs: a one-task DAG holding an ``AsanaAuditLogSensor``, run through
real Airflow (``dag.test()``, see ``tests/helpers/dags.py``), and events that arrive while it waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.dags import DagRunResult, load_dag, run_dag, write_dag
from tests.helpers.waiting import Background, after_requests

_DAG_TEMPLATE = """\
from __future__ import annotations

from datetime import datetime, timezone

from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG
else:
    from airflow import DAG

with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):
    AsanaAuditLogSensor(task_id="wait", **{kwargs!r})
"""


@pytest.fixture
def run_sensor(
    dags_folder: Path, asana_conn: FakeAsana, request: pytest.FixtureRequest
) -> Callable[..., DagRunResult]:
    """Return ``run(**sensor_kwargs)``: write, load and ``dag.test()`` a DAG whose one task is ``wait``."""

    def run(**kwargs: Any) -> DagRunResult:
        dag_id = "asana_sensor_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
        path = write_dag(dags_folder, dag_id, _DAG_TEMPLATE.format(dag_id=dag_id, kwargs=kwargs))
        # A run at now; the sensors under test get an explicit start_at.
        return run_dag(load_dag(path, dag_id))

    return run


@pytest.fixture
def append_after(asana_conn: FakeAsana) -> Iterator[Callable[..., None]]:
    """
    Return ``append(requests, n, **fields)``: append ``n`` events once the stand-in has answered its
    ``requests``-th request, from a background thread, while the sensor waits.
    """
    workers: list[Background] = []

    def append(requests: int, n: int, **fields: Any) -> None:
        workers.append(after_requests(asana_conn, requests, lambda: asana_conn.append_events(n, **fields)))

    yield append
    for worker in workers:
        worker.join()
