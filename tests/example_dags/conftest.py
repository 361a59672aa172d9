"""Fixtures for the example DAGs: the export example in the DAGs folder, and a fixture that runs it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.dags import DagRunResult, copy_example, load_dag, run_dag
from tests.helpers.exports import midnight


@pytest.fixture
def run_export_example(
    dags_folder: Path, asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch, export_dir: Path
) -> Callable[[datetime], DagRunResult]:
    """Run the export example once for the day before ``logical_date``, exporting under ``export_dir``."""
    path = copy_example(dags_folder, "example_asana_audit_export.py")

    def run(logical_date: datetime) -> DagRunResult:
        monkeypatch.setenv("ASANA_AUDIT_EXPORT_BASE", f"file://{export_dir}")
        monkeypatch.setenv("ASANA_AUDIT_SETTLE_MINUTES", "0")
        monkeypatch.setenv("ASANA_AUDIT_EXPORT_START", f"{midnight(6):%Y-%m-%d}")
        return run_dag(load_dag(path, "example_asana_audit_export"), logical_date)

    return run
