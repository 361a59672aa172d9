"""What Airflow reads about the provider: its registration, the connection type and the connection form."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_provider_asana_audit import __version__
from airflow_provider_asana_audit.get_provider_info import CONN_FIELDS, get_provider_info
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True, timeout=120
    )


def test_form_widgets_for_airflow_before_3_2_match_the_declarative_fields() -> None:
    pytest.importorskip("flask_appbuilder", reason="the pre-3.2 form needs Flask-AppBuilder (Airflow 2.x)")
    assert (
        set(AsanaAuditLogHook.get_connection_form_widgets())
        == set(CONN_FIELDS)
        == {
            "workspace_gid",
            "requests_per_minute",
            "max_concurrent_requests",
            "budget_redis_conn_id",
        }
    )


def test_field_behaviour_matches_the_declarative_provider_info() -> None:
    connection_type = get_provider_info()["connection-types"][0]
    behaviour = AsanaAuditLogHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == connection_type["ui-field-behaviour"]["hidden-fields"]
    assert behaviour["relabeling"]["password"] == "Service account token"


def test_the_connection_type_is_ours_and_names_the_hook() -> None:
    connection_type = get_provider_info()["connection-types"][0]
    # "asana" belongs to apache-airflow-providers-asana.
    assert connection_type["connection-type"] == AsanaAuditLogHook.conn_type == "asana_audit_log"
    assert connection_type["hook-class-name"] == f"{AsanaAuditLogHook.__module__}.AsanaAuditLogHook"


def test_the_provider_info_names_the_distribution_and_its_version() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-asana-audit"
    assert info["versions"] == [__version__]


def test_airflow_discovers_the_provider_and_its_connection_form() -> None:
    result = _run_python(
        "from airflow.providers_manager import ProvidersManager\n"
        "import json\n"
        "pm = ProvidersManager()\n"
        "hook = pm.hooks['asana_audit_log']\n"
        "print(json.dumps({'provider': 'airflow-provider-asana-audit' in pm.providers,\n"
        "  'hook': hook.hook_class_name, 'name': hook.hook_name,\n"
        "  'widgets': sorted(k for k in pm.connection_form_widgets if 'asana_audit_log' in k),\n"
        "  'hidden': pm.field_behaviours['asana_audit_log']['hidden_fields']}))\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {
        "provider": True,
        "hook": "airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook",
        "name": "Asana Audit Log",
        "widgets": [
            f"extra__asana_audit_log__{name}"
            for name in (
                "budget_redis_conn_id",
                "max_concurrent_requests",
                "requests_per_minute",
                "workspace_gid",
            )
        ],
        "hidden": ["schema", "port", "login", "extra"],
    }
