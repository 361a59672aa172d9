"""
Fixtures for the example DAGs: the export and archive examples in the DAGs folder, and fixtures that run
them against the stand-in, writing under ``export_dir``.

The examples read their settings from the environment when they are parsed, so each run sets the
variables first, as a user's deployment would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.dags import DagRunResult, copy_example, load_dag, run_dag
from tests.helpers.exports import midnight

#: The export example's first day (``ASANA_AUDIT_EXPORT_START``), in days before today.
EXPORT_START_DAYS_AGO = 6


def _archive_settings(monkeypatch: pytest.MonkeyPatch, export_dir: Path) -> None:
    """The settings both examples read: where the archive is and its first day."""
    monkeypatch.setenv("ASANA_AUDIT_EXPORT_BASE", f"file://{export_dir}")
    monkeypatch.setenv("ASANA_AUDIT_EXPORT_START", f"{midnight(EXPORT_START_DAYS_AGO):%Y-%m-%d}")


@pytest.fixture
def run_export_example(
    dags_folder: Path, asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch, export_dir: Path
) -> Callable[[datetime], DagRunResult]:
    """Run the export example once for the day before ``logical_date``, exporting under ``export_dir``."""
    path = copy_example(dags_folder, "example_asana_audit_export.py")

    def run(logical_date: datetime) -> DagRunResult:
        _archive_settings(monkeypatch, export_dir)
        monkeypatch.setenv("ASANA_AUDIT_SETTLE_MINUTES", "0")
        return run_dag(load_dag(path, "example_asana_audit_export"), logical_date)

    return run


@pytest.fixture
def run_archive_example(
    dags_folder: Path, asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch, export_dir: Path
) -> Callable[..., DagRunResult]:
    """
    Run the archive example once: ``run_archive_example(logical_date, reconcile_days=..., verify_days=30)``.

    The run's data interval is the day before ``logical_date``; it re-exports the day ``reconcile_days``
    before that (``ASANA_AUDIT_RECONCILE_DAYS``) under ``export_dir``, then checks the ``verify_days``
    days up to it (``ASANA_AUDIT_VERIFY_DAYS``).
    """
    path = copy_example(dags_folder, "example_asana_audit_archive.py")

    def run(logical_date: datetime, *, reconcile_days: int, verify_days: int = 30) -> DagRunResult:
        _archive_settings(monkeypatch, export_dir)
        monkeypatch.setenv("ASANA_AUDIT_RECONCILE_DAYS", str(reconcile_days))
        monkeypatch.setenv("ASANA_AUDIT_VERIFY_DAYS", str(verify_days))
        return run_dag(load_dag(path, "example_asana_audit_archive"), logical_date)

    return run
