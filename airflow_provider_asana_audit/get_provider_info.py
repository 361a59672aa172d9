"""What Airflow reads about this provider: its modules, its connection type and the connection form."""

from __future__ import annotations

from typing import Any

from airflow_provider_asana_audit import __version__

__all__ = ["CONFIG", "CONN_FIELDS", "CONN_TYPE", "HIDDEN_FIELDS", "HOOK_NAME", "get_provider_info"]

CONN_TYPE = "asana_audit_log"
HOOK_NAME = "Asana Audit Log"
HOOK_CLASS = "airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook"

#: The custom form fields, stored in the connection's extra (Airflow 3.2+ reads this declaration;
#: the hook's ``get_connection_form_widgets`` derives the 2.11 / 3.0 / 3.1 form from it).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "workspace_gid": {
        "label": "Workspace GID",
        "description": "The gid of the Asana workspace or organisation whose audit log is read.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
    "requests_per_minute": {
        "label": "Requests per minute",
        "description": "The token's budget, for everything that uses it; empty: 1500, Asana's limit.",
        "schema": {"type": ["string", "null"], "pattern": "^([0-9]+(\\.[0-9]+)?)?$"},
    },
    "max_concurrent_requests": {
        "label": "Max concurrent requests",
        "description": "The token's requests in flight at once; empty: 50, Asana's limit.",
        "schema": {"type": ["string", "null"], "pattern": "^[0-9]*$"},
    },
    "budget_redis_conn_id": {
        "label": "Budget Redis connection id",
        "description": "A Redis connection through which every worker shares the token's budget; empty: "
        "each process has its own.",
        "schema": {"type": ["string", "null"]},
    },
}
HIDDEN_FIELDS = ["schema", "port", "login", "extra"]
RELABELING = {"password": "Service account token", "host": "API base URL"}
PLACEHOLDERS = {
    "password": "Asana service account token (Enterprise / Enterprise+)",
    "host": "https://app.asana.com/api/1.0 (leave empty for this default)",
    "workspace_gid": "1200000000000001",
    "requests_per_minute": "1500",
    "max_concurrent_requests": "50",
    "budget_redis_conn_id": "asana_budget_redis",
}


#: The options this provider reads from Airflow's configuration.
CONFIG: dict[str, Any] = {
    "asana_audit_log": {
        "description": "Exports of Asana's audit log (airflow-provider-asana-audit).",
        "options": {
            "base_path": {
                "description": (
                    "Where AsanaAuditLogExportOperator writes files when a task gives neither "
                    "destination nor base_path: the root of the layout "
                    "{base_path}/workspace_gid={gid}/date={YYYY-MM-DD}/"
                    "asana_audit_log_{start}_{end}.jsonl.gz. "
                    "Any Airflow object storage URI (file://, s3://, gs://, ...). When unset, "
                    "file://{AIRFLOW_HOME}/asana_audit_log."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": "s3://audit-lake/asana",
                "default": None,
            },
            "archives": {
                "description": (
                    "The archives the archive page of the Airflow UI shows: a JSON list of objects with "
                    "base_path and, optionally, conn_id (the storage's connection), report_path (the "
                    "verify operator's JSON report, or a folder ending in / whose newest *.json is "
                    "taken), since (the first day, YYYY-MM-DD) and settle_period_minutes (default 30). "
                    "When unset, the page shows base_path's archive."
                ),
                "version_added": "0.1.0",
                "type": "string",
                "example": '[{"base_path": "s3://audit-lake/asana", "conn_id": "aws_default", '
                '"report_path": "s3://audit-lake/asana-reports/"}]',
                "default": None,
            },
        },
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description that Airflow's providers manager reads."""
    return {
        "package-name": "airflow-provider-asana-audit",
        "name": "Asana Audit Log",
        "description": "Export, backfill and watch Asana's audit log (Audit Log API) with Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Asana Audit Log",
                "external-doc-url": "https://developers.asana.com/reference/audit-log-api",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Asana Audit Log",
                "python-modules": ["airflow_provider_asana_audit.hooks.audit_log"],
            }
        ],
        "operators": [
            {
                "integration-name": "Asana Audit Log",
                "python-modules": [
                    "airflow_provider_asana_audit.operators.audit_log",
                    "airflow_provider_asana_audit.operators.seal",
                    "airflow_provider_asana_audit.operators.verify",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Asana Audit Log",
                "python-modules": ["airflow_provider_asana_audit.sensors.audit_log"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Asana Audit Log",
                "python-modules": ["airflow_provider_asana_audit.triggers.audit_log"],
            }
        ],
        "config": CONFIG,
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": HOOK_CLASS,
                "hook-name": HOOK_NAME,
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": HIDDEN_FIELDS,
                    "relabeling": RELABELING,
                    "placeholders": PLACEHOLDERS,
                },
            }
        ],
    }
