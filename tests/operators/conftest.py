"""
Fixtures for the export operator's DAG runs: a DAG file in the DAGs folder, and a fixture that runs it.

Each test configures the DAG through the environment variable ``ASANA_EXPORT_TEST_OPTIONS`` (JSON),
which the file reads when it is parsed, and runs it with ``dag.test()`` (see ``tests/helpers/dags.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.clients import FAST_RETRY_ARGS
from tests.helpers.dags import DagRunResult, load_dag, run_dag, write_dag

_DAG_ID = "asana_audit_export_under_test"

_DAG_SOURCE = f'''\
"""The export operator, configured by ASANA_EXPORT_TEST_OPTIONS (JSON); written by tests/operators."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS

if AIRFLOW_V_3_0_PLUS:
    from airflow.sdk import DAG, CronDataIntervalTimetable
else:
    from airflow import DAG
    from airflow.timetables.interval import CronDataIntervalTimetable

options = json.loads(os.environ.get("ASANA_EXPORT_TEST_OPTIONS") or "{{}}")
schedule = options.pop("schedule", "data-interval")
retry = options.pop("request_retry", None)
settle = timedelta(seconds=options.pop("settle_seconds", 0))

with DAG(
    dag_id="{_DAG_ID}",
    schedule=(
        CronDataIntervalTimetable("0 0 * * *", timezone="UTC") if schedule == "data-interval" else schedule
    ),
    start_date=datetime(2021, 10, 8, tzinfo=timezone.utc),
    catchup=False,
):
    AsanaAuditLogExportOperator(
        task_id="export",
        settle_period=settle,
        request_retry=RetryPolicy(**retry) if retry else None,
        retries=0,
        **options,
    )
'''


@pytest.fixture(scope="session")
def export_dag_file(dags_folder: Path) -> Path:
    """The DAG under test, written into the DAGs folder of a migrated Airflow home."""
    return write_dag(dags_folder, _DAG_ID, _DAG_SOURCE)


@pytest.fixture
def run_export(
    export_dag_file: Path, asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DagRunResult]:
    """
    Run the DAG under test once: ``run_export(logical_date, **options)``.

    ``logical_date`` is the end of the exported day (the data interval is the day before it);
    ``options`` are the operator's arguments, plus ``schedule``, ``settle_seconds`` and
    ``request_retry`` (a dict for ``RetryPolicy``, default ``FAST_RETRY_ARGS``).
    """

    def run(logical_date: datetime | None, **options: Any) -> DagRunResult:
        options.setdefault("request_retry", FAST_RETRY_ARGS)
        monkeypatch.setenv("ASANA_EXPORT_TEST_OPTIONS", json.dumps(options))
        return run_dag(load_dag(export_dag_file, _DAG_ID), logical_date)

    return run
