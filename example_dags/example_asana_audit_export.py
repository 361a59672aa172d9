"""
Export each day's Asana audit events to storage you own, exactly once per day.

Every run exports its data interval, ``[00:00 UTC, next 00:00 UTC)``, to one gzip-compressed JSON Lines
file plus a ``.manifest.json`` next to it. Runs are idempotent and atomic, so this DAG is safe to
backfill (``airflow backfill create --dag-id example_asana_audit_export --from-date ... --to-date ...``
on Airflow 3, ``airflow dags backfill -s ... -e ...`` on Airflow 2), to clear and re-run, and to run
several days in parallel.

Settings, read from the environment when the DAG file is parsed:

- ``ASANA_AUDIT_EXPORT_START``: the first day to export (``YYYY-MM-DD``, UTC). With ``catchup=True``
  the scheduler creates one run per day from there. Asana keeps audit events for 90 days only, so pick
  a day within the last 90; days that have expired since are skipped, not failed.
- ``ASANA_AUDIT_EXPORT_BASE``: where the files go, e.g. ``s3://my-bucket/asana`` (needs the Amazon
  provider) or ``file:///data/asana``. Default: the ``[asana_audit_log] base_path`` option, else
  ``$AIRFLOW_HOME/asana_audit_log``. Files are laid out as
  ``{base}/workspace_gid={gid}/date={day}/asana_audit_log_{start}_{end}.jsonl.gz``.
- ``ASANA_AUDIT_SETTLE_MINUTES``: how long after the end of a day to wait before exporting it, so that
  events Asana captures late are included (default 30).
- ``ASANA_AUDIT_SIGNING_CONN_ID``: a connection whose password holds an Ed25519 private key (made by
  ``python -m airflow_provider_asana_audit.evidence make-key``). With it, every export also writes a
  signed record, and a sealing task seals the archive after it and logs the seal hash to publish, so
  that an auditor can tell tampering from the public key alone (docs/evidence.md). Default: unsigned.

The connection ``asana_audit_log_default`` holds the service account token and the workspace gid.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow_provider_asana_audit.operators.audit_log import AsanaAuditLogExportOperator
from airflow_provider_asana_audit.operators.seal import AsanaAuditLogSealOperator

try:  # Airflow 3
    from airflow.sdk import DAG, CronDataIntervalTimetable
except ImportError:  # Airflow 2.11
    from airflow import DAG
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[assignment]

START = datetime.strptime(os.environ.get("ASANA_AUDIT_EXPORT_START", "2026-11-01"), "%Y-%m-%d").replace(
    tzinfo=timezone.utc
)
BASE_PATH = os.environ.get("ASANA_AUDIT_EXPORT_BASE") or None
SETTLE = timedelta(minutes=float(os.environ.get("ASANA_AUDIT_SETTLE_MINUTES", "30")))
SIGNING_CONN_ID = os.environ.get("ASANA_AUDIT_SIGNING_CONN_ID") or None

with DAG(
    dag_id="example_asana_audit_export",
    description="Daily export of the Asana audit log to JSON Lines files",
    # A data-interval timetable: each run covers the day before it. (On Airflow 3, schedule="@daily"
    # would give every run an empty interval and the export would refuse to run.)
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START,
    catchup=True,
    # Runs of different days are independent: let a few of them, e.g. a backfill, run at once.
    max_active_runs=4,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    tags=["asana", "audit-log", "export"],
):
    export = AsanaAuditLogExportOperator(
        task_id="export_audit_log",
        asana_audit_log_conn_id="asana_audit_log_default",
        base_path=BASE_PATH,
        settle_period=SETTLE,
        # Days that Asana no longer holds (older than 90 days) can never be exported: skip them.
        on_retention_violation="skip",
        # Wait for the settle period in the triggerer, without holding a worker slot.
        deferrable=True,
        signing_conn_id=SIGNING_CONN_ID,
    )
    if SIGNING_CONN_ID:
        # One seal at a time (the operator's default), over every day exported so far.
        export >> AsanaAuditLogSealOperator(
            task_id="seal_archive", signing_conn_id=SIGNING_CONN_ID, base_path=BASE_PATH
        )
