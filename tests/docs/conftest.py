"""
Fixtures for the documentation's tests: a stand-in and real exports of it, shared by the session.

The stand-in uses its default token and workspace gid (``fake-asana-token``, ``1200000000000001``),
the values the docs show for it. The exports are made by ``AsanaAuditLogExportOperator`` itself: three
whole days in the default layout under ``base`` (what the recipes and the manifest schema are checked
against), and one filtered export to a plain ``.jsonl`` file elsewhere.

``docs_archive`` is an archive made the way docs/archive.md describes, through real DAG runs
(``dag.test()``) of the two example DAGs against a stand-in of its own: the export example exports
three days, Asana (the stand-in) captures a few events of the oldest day late, and the archive example
re-exports that day and checks it. Its manifests carry ``exported_by`` and a ``changes`` record.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.budget import RetryPolicy
from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.dags import copy_example, load_dag, run_dag
from tests.helpers.exports import midnight

#: Whole days exported into the default layout: 3, 2 and 1 days before today (UTC).
EXPORTED_DAYS = (3, 2, 1)
#: Days the export example exports into ``docs_archive``, oldest first: 6, 5 and 4 days before today.
ARCHIVE_DAYS = (6, 5, 4)
#: How many days later the archive example re-exports a day (its default, ASANA_AUDIT_RECONCILE_DAYS).
RECONCILE_DAYS = 3
#: Events of the oldest archived day that the stand-in captures after that day's first export.
LATE_EVENTS = 3
#: When, after the start of their day, the late events were created.
LATE_AFTER_START = timedelta(hours=13, minutes=7)


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


@dataclass(frozen=True)
class DocsArchive:
    """An archive made by the example DAGs, with one late-event re-export (see the module's docstring)."""

    #: The directory of the default layout.
    base: Path
    workspace_gid: str
    #: The first instant of each exported day, oldest first.
    days: tuple[datetime, ...]
    #: The late events, as the stand-in made them; all created on ``days[0]``.
    late: tuple[dict[str, Any], ...]
    #: The manifest of ``days[0]`` as the first export wrote it, and as the re-export did.
    first_manifest: dict[str, Any]
    reexport_manifest: dict[str, Any]
    #: The XCom of the archive example's two tasks.
    reexport_xcom: dict[str, Any]
    verify_xcom: dict[str, Any]

    @property
    def start(self) -> datetime:
        return self.days[0]

    @property
    def end(self) -> datetime:
        return self.days[-1] + timedelta(days=1)

    def file(self, day: datetime) -> Path:
        """The export file of a day."""
        return _day_file(self.base, self.workspace_gid, day)

    def manifests(self) -> list[Path]:
        return sorted(self.base.rglob("*.manifest.json"))


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


@pytest.fixture(scope="session")
def docs_archive(dags_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> DocsArchive:
    """The example DAGs' archive: three days exported, the oldest re-exported after late events."""
    base = tmp_path_factory.mktemp("asana-archive") / "asana"
    days = tuple(midnight(days_ago) for days_ago in ARCHIVE_DAYS)
    export_dag = copy_example(dags_folder, "example_asana_audit_export.py")
    archive_dag = copy_example(dags_folder, "example_asana_audit_archive.py")
    with FakeAsana(seed=23, events_per_day=80) as fake, pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", fake.connection_json())
        patch.setenv("ASANA_AUDIT_EXPORT_BASE", f"file://{base}")
        patch.setenv("ASANA_AUDIT_EXPORT_START", f"{days[0]:%Y-%m-%d}")
        patch.setenv("ASANA_AUDIT_SETTLE_MINUTES", "0")
        patch.setenv("ASANA_AUDIT_RECONCILE_DAYS", str(RECONCILE_DAYS))
        dag = load_dag(export_dag, "example_asana_audit_export")
        for day in days:
            # A manual run's data interval is the day that ends at its logical date.
            run = run_dag(dag, day + timedelta(days=1))
            assert run.task_state == "success", f"the export of {day:%Y-%m-%d} failed"
        workspace_gid = fake.workspace_gid
        oldest = _day_file(base, workspace_gid, days[0])
        manifest = oldest.with_name(f"{oldest.name}.manifest.json")
        first_manifest = json.loads(manifest.read_text(encoding="utf-8"))
        late = fake.append_events(LATE_EVENTS, created_at=days[0] + LATE_AFTER_START)
        # The archive example's run whose data interval ends RECONCILE_DAYS + 1 days after the oldest
        # day's start re-exports that day, then checks the archive up to its end.
        run = run_dag(
            load_dag(archive_dag, "example_asana_audit_archive"),
            days[0] + timedelta(days=RECONCILE_DAYS + 1),
        )
        assert run.task_states == {"reexport_audit_log": "success", "verify_archive": "success"}, run
        reexport_xcom = run.xcom("reexport_audit_log")
        verify_xcom = run.xcom("verify_archive")
    return DocsArchive(
        base=base,
        workspace_gid=workspace_gid,
        days=days,
        late=tuple(late),
        first_manifest=first_manifest,
        reexport_manifest=json.loads(manifest.read_text(encoding="utf-8")),
        reexport_xcom=reexport_xcom,
        verify_xcom=verify_xcom,
    )


def _day_file(base: Path, workspace_gid: str, day: datetime) -> Path:
    """The default layout's file of the day starting at ``day``."""
    end = day + timedelta(days=1)
    return (
        base
        / f"workspace_gid={workspace_gid}"
        / f"date={day:%Y-%m-%d}"
        / f"asana_audit_log_{day:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.jsonl.gz"
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
