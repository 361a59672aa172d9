"""
Alert on failed logins: wait for ``user_login_failed`` audit events of each hour, then report them.

Every hourly run waits, deferred in the triggerer so no worker slot is held, until at least one
failed login created in its data interval ``[data_interval_start, data_interval_end)`` shows up in
the audit log. Asana can capture events late, so the sensor keeps polling for up to 45 minutes after
the hour; hours without failed logins are skipped (``soft_fail``), not failed.

Needs the connection ``asana_audit_log_default`` (an ``asana_audit_log`` connection with a service
account token and the workspace gid). ``CronDataIntervalTimetable`` gives every run, manual ones
included, a real hour as its data interval; on Airflow 3 a plain cron or ``timedelta`` schedule would
give an empty one.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor

try:
    from airflow.sdk import CronDataIntervalTimetable
except ImportError:  # Airflow 2
    from airflow.timetables.interval import CronDataIntervalTimetable

with DAG(
    dag_id="example_asana_audit_sensor",
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["example", "asana", "audit-log"],
):
    wait_for_failed_logins = AsanaAuditLogSensor(
        task_id="wait_for_failed_logins",
        asana_audit_log_conn_id="asana_audit_log_default",
        # start_at defaults to the data interval's start
        end_at="{{ data_interval_end }}",
        event_type="user_login_failed",
        min_events=1,
        deferrable=True,
        poke_interval=60,
        timeout=45 * 60,
        soft_fail=True,
    )

    @task
    def report_failed_logins(found: dict[str, Any]) -> None:
        """Log what the sensor pushed to XCom; replace with a Slack or e-mail notification."""
        print(
            f"{found['count']} failed login(s) from {found['first_created_at']} (event {found['first_gid']}) "
            f"to {found['last_created_at']} (event {found['last_gid']})"
        )

    report_failed_logins(wait_for_failed_logins.output)
