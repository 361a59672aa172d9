"""
Fixtures for the documentation's tests: a stand-in and real exports of it, shared by the session.

The stand-in uses its default token and workspace gid (``fake-asana-token``, ``1200000000000001``),
the values the docs show for it. The exports are made by ``AsanaAuditLogExportOperator`` itself: three
whole days in the default layout under ``base`` (what the recipes and the manifest schema are checked
against), and one filtered export to a plain ``.jsonl`` file elsewhere.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_asana_audit.client import RetryPolicy
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.exports import midnight

#: Whole days exported into the default layout: 3, 2 and 1 days before today (UTC).
EXPORTED_DAYS = (3, 2, 1)


@dataclass(frozen=True)
class DocsExports:
    """Real exports of :attr:`fake`."""

    fake: FakeAsana
    #: The directory of the default layout (``base_path`` was ``file://<base>``).
    base: Path
    #: ``[start, end)`` of the days exported into ``base``.
    start: datetime
    end: datetime
    #: The filtered export (``event_type="user_login_failed"``), a plain ``.jsonl`` file.
    filtered: Path


@pytest.fixture(scope="session")
def docs_standin() -> Iterator[FakeAsana]:
    """A stand-in with a week of events, running for the whole session."""
    with FakeAsana(seed=11, events_per_day=300) as fake:
        yield fake


@pytest.fixture(scope="session")
def docs_exports(docs_standin: FakeAsana, tmp_path_factory: pytest.TempPathFactory) -> DocsExports:
    """Three days exported into the default layout, and one filtered export, by the operator."""
    base = tmp_path_factory.mktemp("asana-exports")
    other = tmp_path_factory.mktemp("asana-filtered")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", docs_standin.connection_json())
        for days_ago in EXPORTED_DAYS:
            _export(start_at=midnight(days_ago + 1), end_at=midnight(days_ago), base_path=f"file://{base}")
        _export(
            start_at=midnight(EXPORTED_DAYS[0] + 1),
            end_at=midnight(EXPORTED_DAYS[-1]),
            destination=str(other / "failed_logins.jsonl"),
            event_type="user_login_failed",
        )
    return DocsExports(
        fake=docs_standin,
        base=base,
        start=midnight(EXPORTED_DAYS[0] + 1),
        end=midnight(EXPORTED_DAYS[-1]),
        filtered=other / "failed_logins.jsonl",
    )


def _export(
    *,
    start_at: datetime,
    end_at: datetime,
    base_path: str | None = None,
    destination: str | None = None,
    event_type: str | None = None,
) -> None:
    AsanaAuditLogExportOperator(
        task_id="export",
        start_at=start_at,
        end_at=end_at,
        base_path=base_path,
        destination=destination,
        event_type=event_type,
        settle_period=timedelta(0),
        request_retry=RetryPolicy(backoff_base=0.01, backoff_max=0.05),
    ).execute(context={})


@pytest.fixture
def airflow_cli_home(tmp_path: Path, airflow_db: Path) -> Path:
    """A private Airflow home holding a copy of the session's migrated metadata database."""
    home = tmp_path / "airflow-home"
    (home / "dags").mkdir(parents=True)
    shutil.copy(airflow_db, home / "airflow.db")
    return home
