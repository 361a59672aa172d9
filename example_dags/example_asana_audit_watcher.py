"""
Event-driven scheduling (Airflow 3): run a DAG for every new failed login in Asana's audit log.

An ``AssetWatcher`` runs :class:`AsanaAuditLogEventTrigger` in the triggerer. It follows the audit
log's stream and fires once per new ``user_login_failed`` event; each firing updates the asset
``asana_audit_failed_logins`` with the event (gid, created_at, event_type, actor, resource, context)
in the asset event's ``extra["payload"]``, which schedules ``example_asana_audit_watcher``. Airflow
may fold several asset events into one DAG run, so the task loops over all of them.

On Airflow 3.3+ the trigger keeps its position in the asset's state store: a restarted triggerer (a
deploy, a crash, an OOM kill) resumes where the last one stopped, so the failed logins of the outage
are reported too. No login is ever missed; one that Airflow recorded in the second or two before a
triggerer was killed may be reported twice, so a notification should name the event's gid. With
``start_at=None``, the very first start reads from ``lookback`` seconds (10 minutes) before it.
``asset_name`` names the asset whose state store keeps the position, and keeps this trigger apart
from an identical one on another asset. Watchers of the same connection and poll interval share one
poll of the audit log.

Before Airflow 3.3 there is no state store: every start reads from ``lookback`` seconds before it, so
an outage shorter than that is covered, and the logins of that window are reported again. Never pass
``datetime.now()`` as ``start_at``: the arguments are the trigger's identity.

Asset watchers do not exist on Airflow 2, so there this file defines no DAG.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow import __version__ as airflow_version
from packaging.version import Version

from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogEventTrigger

if Version(airflow_version).major >= 3:
    from airflow.sdk import DAG, Asset, AssetWatcher, task

    ASSET_NAME = "asana_audit_failed_logins"

    failed_logins = Asset(
        ASSET_NAME,
        watchers=[
            AssetWatcher(
                name="asana_audit_failed_logins_watcher",
                trigger=AsanaAuditLogEventTrigger(
                    asana_audit_log_conn_id="asana_audit_log_default",
                    start_at=None,
                    filters={"event_type": "user_login_failed"},
                    poll_interval=60,
                    # Where the first start reads from (every start before Airflow 3.3): see above.
                    lookback=600,
                    asset_name=ASSET_NAME,
                ),
            )
        ],
    )

    with DAG(
        dag_id="example_asana_audit_watcher",
        schedule=[failed_logins],
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        tags=["example", "asana", "audit-log"],
    ):

        @task
        def report_failed_logins(triggering_asset_events: Any = None) -> None:
            """Log each failed login that triggered this run; replace with a notification."""
            for asset_event in triggering_asset_events[failed_logins]:
                login = asset_event.extra["payload"]
                actor = login.get("actor") or {}
                print(
                    f"Failed login at {login['created_at']} by {actor.get('email') or actor.get('gid')} "
                    f"from {(login.get('context') or {}).get('client_ip_address', 'an unknown address')} "
                    f"(event {login['gid']})"
                )

        report_failed_logins()
