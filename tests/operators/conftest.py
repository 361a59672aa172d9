"""
Fixtures for the export operator's tests: a DAG file in the DAGs folder, and a helper that runs it.

The DAG under test lives in a real file in ``AIRFLOW_HOME/dags`` (Airflow 3's ``dag.test()`` syncs the
DAGs folder to the metadata database). Each test configures it through the environment variable
``ASANA_EXPORT_TEST_OPTIONS`` (JSON), which the file reads when it is parsed, and runs it with
``dag.test()``: a real DAG run, with templating, XCom and task states, in this process, against the
stand-in.
"""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana

DAG_ID = "asana_audit_export_under_test"
TASK_ID = "export"
EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"

_DAG_FILE = f'''\
"""The export operator, configured by ASANA_EXPORT_TEST_OPTIONS (JSON); written by tests/operators."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

from airflow_provider_asana_audit.client import RetryPolicy
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator

try:
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:
    from airflow import DAG
    from airflow.timetables.interval import CronDataIntervalTimetable

options = json.loads(os.environ.get("ASANA_EXPORT_TEST_OPTIONS") or "{{}}")
schedule = options.pop("schedule", "data-interval")
retry = options.pop("request_retry", None)
settle = timedelta(seconds=options.pop("settle_seconds", 0))

with DAG(
    dag_id="{DAG_ID}",
    schedule=(
        CronDataIntervalTimetable("0 0 * * *", timezone="UTC") if schedule == "data-interval" else schedule
    ),
    start_date=datetime(2021, 10, 8, tzinfo=timezone.utc),
    catchup=False,
):
    AsanaAuditLogExportOperator(
        task_id="{TASK_ID}",
        settle_period=settle,
        request_retry=RetryPolicy(**retry) if retry else None,
        retries=0,
        **options,
    )
'''

#: Retry fast in tests: faults are retried, but a fault that outlasts 3 attempts fails the task quickly.
FAST_RETRY = {"max_attempts": 3, "backoff_base": 0.01, "backoff_max": 0.05, "max_elapsed": 30}


def midnight(days_ago: int) -> datetime:
    """Midnight UTC ``days_ago`` days before today."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def serialise(events: list[dict[str, Any]], *, compressed: bool) -> bytes:
    """The bytes an export of ``events`` must consist of."""
    text = "".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n" for e in events)
    data = text.encode("utf-8")
    if not compressed:
        return data
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buffer.getvalue()


def read_events(path: Path) -> list[dict[str, Any]]:
    """The events in an export file, parsed line by line."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


@dataclass
class Run:
    """The outcome of one DAG run of the export."""

    dag_run_state: str
    task_state: str | None


def _run_dag(dag: Any, logical_date: datetime | None) -> Run:
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        dag_run = dag.test(logical_date=logical_date)
    else:
        # Airflow 2: re-running a date clears its DagRun, whose note table refers to the FAB user
        # table; SQLAlchemy can only resolve that once FAB's models are imported.
        import airflow.providers.fab.auth_manager.models  # noqa: F401

        dag_run = dag.test(execution_date=logical_date)
    (ti,) = dag_run.get_task_instances()
    return Run(str(dag_run.state), None if ti.state is None else str(ti.state))


def load_dagbag(path: Path) -> Any:
    """Parse ``path`` (a file or folder) the way the DAG processor does, on Airflow 3 or 2."""
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

    if AIRFLOW_V_3_0_PLUS:
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(path))
    from airflow.models.dagbag import DagBag as LegacyDagBag

    return LegacyDagBag(dag_folder=str(path), include_examples=False)


def _load_dag(path: Path, dag_id: str) -> Any:
    bag = load_dagbag(path)
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


@pytest.fixture(scope="session")
def export_dag_file(airflow_home: Path, airflow_db: Path) -> Path:
    """The DAG under test, written into the DAGs folder of a migrated Airflow home."""
    path = airflow_home / "dags" / "asana_audit_export_under_test.py"
    path.write_text(_DAG_FILE)
    return path


@pytest.fixture(scope="session")
def example_dag_file(airflow_home: Path, airflow_db: Path) -> Path:
    """The example export DAG, copied into the DAGs folder."""
    path = airflow_home / "dags" / "example_asana_audit_export.py"
    shutil.copy(EXAMPLE_DAGS / "example_asana_audit_export.py", path)
    return path


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    """A fresh directory for export files."""
    path = tmp_path / "exports"
    path.mkdir()
    return path


@pytest.fixture
def run_export(
    export_dag_file: Path, asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    """
    Run the DAG under test once: ``run_export(logical_date, **options)``.

    ``logical_date`` is the end of the exported day (the data interval is the day before it);
    ``options`` are the operator's arguments, plus ``schedule``, ``settle_seconds`` and
    ``request_retry`` (a dict for :class:`RetryPolicy`).
    """

    def run(logical_date: datetime | None, **options: Any) -> Run:
        options.setdefault("request_retry", FAST_RETRY)
        monkeypatch.setenv("ASANA_EXPORT_TEST_OPTIONS", json.dumps(options))
        return _run_dag(_load_dag(export_dag_file, DAG_ID), logical_date)

    return run


@pytest.fixture
def run_example(
    example_dag_file: Path, asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch, export_dir: Path
) -> Callable[[datetime], Run]:
    """Run the example DAG once for the day before ``logical_date``, exporting under ``export_dir``."""

    def run(logical_date: datetime) -> Run:
        monkeypatch.setenv("ASANA_AUDIT_EXPORT_BASE", f"file://{export_dir}")
        monkeypatch.setenv("ASANA_AUDIT_SETTLE_MINUTES", "0")
        monkeypatch.setenv("ASANA_AUDIT_EXPORT_START", f"{midnight(6):%Y-%m-%d}")
        return _run_dag(_load_dag(example_dag_file, "example_asana_audit_export"), logical_date)

    return run
