"""
Keep the archive honest: re-export each day again a few days later, then check the whole archive.

Asana captures some audit events after their ``created_at``. The export DAG waits a settle period
before exporting a day, but nothing tells whether that wait was long enough. This DAG answers it: each
run re-exports the day that ended ``ASANA_AUDIT_RECONCILE_DAYS`` days before its own data interval
(Asana still holds it; it keeps events for 90 days) into the same file the export DAG wrote. When the
day's events changed, the new manifest's ``changes`` records the previous file's ``sha256`` and event
count, how many events were added, and the ``created_at`` range of the added ones, and the task log
warns how long after the day's end Asana captured them: raise the export DAG's settle period above
that. Then ``verify_archive`` checks the last ``ASANA_AUDIT_VERIFY_DAYS`` days of the archive up to the
re-exported day: every day present once, every file matching its manifest, every event valid, in its
day and in one file only. It fails, listing the backfill commands that mend the archive, when not.

Settings, read from the environment when the DAG file is parsed (the first two as in the export DAG):

- ``ASANA_AUDIT_EXPORT_START``: the export DAG's first day; this DAG re-exports from that day on.
- ``ASANA_AUDIT_EXPORT_BASE``: the archive's base path (default: ``[asana_audit_log] base_path``, else
  ``$AIRFLOW_HOME/asana_audit_log``).
- ``ASANA_AUDIT_RECONCILE_DAYS``: how many days after a day's first export to export it again
  (default 3; keep it well under 90).
- ``ASANA_AUDIT_VERIFY_DAYS``: how many days the check covers, ending with the re-exported day
  (default 30). ``python -m airflow_provider_asana_audit.verify BASE`` checks everything at once.
- ``ASANA_AUDIT_REPORTS``: a folder (path or URI) where each check writes its report, ``{ds}.json`` and
  ``{ds}.html`` (default: none). The archive page shows the newest JSON report of this folder.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.operators.verify import AsanaAuditLogVerifyOperator

try:  # Airflow 3
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[assignment]

START = datetime.strptime(os.environ.get("ASANA_AUDIT_EXPORT_START", "2026-11-01"), "%Y-%m-%d").replace(
    tzinfo=timezone.utc
)
BASE_PATH = os.environ.get("ASANA_AUDIT_EXPORT_BASE") or None
RECONCILE_DAYS = int(os.environ.get("ASANA_AUDIT_RECONCILE_DAYS", "3"))
VERIFY_DAYS = int(os.environ.get("ASANA_AUDIT_VERIFY_DAYS", "30"))
REPORTS = (os.environ.get("ASANA_AUDIT_REPORTS") or "").rstrip("/") or None
#: The re-exported day, from the run's data interval (templates render when the task runs).
LATE_START = f"{{{{ (data_interval_start - macros.timedelta(days={RECONCILE_DAYS})).isoformat() }}}}"
LATE_END = f"{{{{ (data_interval_end - macros.timedelta(days={RECONCILE_DAYS})).isoformat() }}}}"
#: The check starts VERIFY_DAYS before the re-exported day, but never before the archive's first day.
CHECK_SINCE = (
    f"{{{{ [data_interval_end - macros.timedelta(days={RECONCILE_DAYS + VERIFY_DAYS}), "
    f"macros.datetime.fromisoformat('{START.isoformat()}')] | max }}}}"
)

with DAG(
    dag_id="example_asana_audit_archive",
    description="Re-export each day a few days later (late events), then check the archive",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    # The first run re-exports the export DAG's first day.
    start_date=START + timedelta(days=RECONCILE_DAYS),
    catchup=True,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["asana", "audit-log", "archive"],
):
    reexport = AsanaAuditLogExportOperator(
        task_id="reexport_audit_log",
        asana_audit_log_conn_id="asana_audit_log_default",
        start_at=LATE_START,
        end_at=LATE_END,
        base_path=BASE_PATH,
        settle_period=timedelta(0),  # the day ended days ago
        on_retention_violation="skip",
    )
    verify = AsanaAuditLogVerifyOperator(
        task_id="verify_archive",
        base_path=BASE_PATH,
        # The days exported twice by now; a check up to today would find today's export still settling.
        since=CHECK_SINCE,
        until=LATE_END,
        # Re-export commands name the export DAG, whose runs export their own data interval.
        export_dag_id="example_asana_audit_export",
        report_path=f"{REPORTS}/{{{{ ds }}}}.json" if REPORTS else None,
        html_report_path=f"{REPORTS}/{{{{ ds }}}}.html" if REPORTS else None,
    )
    reexport >> verify
