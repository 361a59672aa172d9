"""The hook: connections from every source, lazy resolution, test_connection, the connection form."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from airflow_provider_asana_audit.client import DEFAULT_BASE_URL, RetryPolicy
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.get_provider_info import CONN_FIELDS, get_provider_info
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.testing import FakeAsana, Fault

CONN_ID = "asana_audit_log_default"


def conn_json(fake: FakeAsana, **changes: object) -> str:
    conn = json.loads(fake.connection_json())
    conn.update(changes)
    return json.dumps(conn)


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


READ_ALL = (
    "from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook\n"
    "import json\n"
    "print(json.dumps([e['gid'] for e in AsanaAuditLogHook({conn_id!r}).iter_events()]))\n"
)


# --- where connections come from -----------------------------------------------------------------


def test_reads_the_window_through_an_environment_variable_connection(asana_conn: FakeAsana) -> None:
    truth = asana_conn.ground_truth()
    start, end = truth[10]["created_at"], truth[40]["created_at"]
    events = list(AsanaAuditLogHook().iter_events(start, end, page_size=9))
    assert events == asana_conn.ground_truth(start, end)
    assert len(events) >= 25  # less when the end instant is shared by several events


def test_filters_are_passed_through(asana_conn: FakeAsana) -> None:
    events = list(AsanaAuditLogHook().iter_events(event_type="user_login_failed", page_size=10))
    assert events == asana_conn.ground_truth(event_type="user_login_failed")


def test_pages_carry_the_offset_to_continue_from(asana_conn: FakeAsana) -> None:
    hook = AsanaAuditLogHook()
    last = list(hook.iter_pages(page_size=100))[-1]
    new = asana_conn.append_events(2)
    later = [e for page in hook.iter_pages(page_size=100, offset=last.next_offset) for e in page.events]
    assert later == new


def test_reads_a_connection_from_a_secrets_backend(standin: FakeAsana, tmp_path: Path) -> None:
    connections = tmp_path / "connections.json"
    connections.write_text(json.dumps({"asana_from_secrets": json.loads(standin.connection_json())}))
    result = run_python(
        READ_ALL.format(conn_id="asana_from_secrets"),
        {
            "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(connections)}),
        },
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [e["gid"] for e in standin.ground_truth()]


def airflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env={**os.environ, "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_connection_in_the_metadata_database_is_tested_by_the_airflow_cli(
    airflow_db: Path, standin: FakeAsana
) -> None:
    conn_id = f"asana_db_{standin.bound_port}"
    added = airflow_cli(
        "connections",
        "add",
        conn_id,
        "--conn-type",
        "asana_audit_log",
        "--conn-host",
        standin.base_url,
        "--conn-password",
        standin.token,
        "--conn-extra",
        json.dumps({"workspace_gid": standin.workspace_gid}),
    )
    assert added.returncode == 0, added.stderr[-2000:]
    tested = airflow_cli("connections", "test", conn_id)
    assert "Connection success!" in tested.stdout, tested.stdout + tested.stderr[-2000:]
    assert standin.token not in tested.stdout + tested.stderr
    assert standin.stats.by_status[200] >= 1


def test_the_connection_is_resolved_lazily(mocker) -> None:  # type: ignore[no-untyped-def]
    get_connection = mocker.patch.object(AsanaAuditLogHook, "get_connection")
    AsanaAuditLogHook("anything")
    get_connection.assert_not_called()


def test_a_host_without_scheme_is_taken_as_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT",
        json.dumps(
            {"conn_type": "asana_audit_log", "host": "app.asana.com/api/1.0", "password": "t0ken-value"}
            | {"extra": {"workspace_gid": "42"}}
        ),
    )
    assert AsanaAuditLogHook().client.base_url == "https://app.asana.com/api/1.0"


def test_an_empty_host_means_asanas_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT",
        json.dumps(
            {"conn_type": "asana_audit_log", "password": "t0ken-value", "extra": {"workspace_gid": "42"}}
        ),
    )
    assert AsanaAuditLogHook().client.base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra": {}}, "has no workspace_gid"),
        ({"password": ""}, "has no token"),
        ({"host": "http://asana.example.com/api/1.0"}, "Refusing to send the token over plain http"),
    ],
)
def test_an_incomplete_connection_says_what_to_set(
    standin: FakeAsana, monkeypatch: pytest.MonkeyPatch, changes: dict, message: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", conn_json(standin, **changes))
    with pytest.raises(AsanaAuditLogConfigError, match=message):
        list(AsanaAuditLogHook().iter_events())
    assert standin.stats.requests == 0


# --- test_connection -------------------------------------------------------------------------------


def test_test_connection_succeeds_against_a_readable_audit_log(asana_conn: FakeAsana) -> None:
    ok, message = AsanaAuditLogHook().test_connection()
    assert ok, message
    assert asana_conn.workspace_gid in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"password": "wrong-token-123"}, "token was refused"),
        ({"password": "personal-access-token"}, "service account token"),
        ({"extra": {"workspace_gid": "1999999999999999"}}, "Check the workspace_gid"),
        ({"host": "http://127.0.0.1:9/api/1.0"}, "ConnectionError"),
        ({"host": "http://asana.example.com/api/1.0"}, "use an https:// URL"),
        ({"extra": {}}, "has no workspace_gid"),
    ],
    ids=[
        "wrong-token",
        "no-audit-log-access",
        "unknown-workspace",
        "unreachable",
        "plain-http",
        "no-workspace",
    ],
)
def test_test_connection_tells_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, changes: dict, expected: str
) -> None:
    with FakeAsana(events_per_day=5, denied_tokens={"personal-access-token": 402}) as fake:
        monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", conn_json(fake, **changes))
        ok, message = AsanaAuditLogHook().test_connection()
    assert not ok
    assert expected in message
    for secret in ("wrong-token-123", "personal-access-token", fake.token):
        assert secret not in message


# --- secrecy ---------------------------------------------------------------------------------------


def test_the_token_never_appears_in_logs_or_errors(
    asana_conn: FakeAsana, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for fault in (Fault.UNAVAILABLE_503, Fault.DROP, Fault.RATE_LIMIT, Fault.EXPIRE_OFFSET):
        asana_conn.inject(fault, retry_after=0)
    hook = AsanaAuditLogHook(retry=RetryPolicy(backoff_base=0.01))
    events = list(hook.iter_events(page_size=50))
    assert events == asana_conn.ground_truth()
    assert asana_conn.token not in caplog.text
    assert asana_conn.token not in repr(hook.client)


# --- the connection form and provider registration ----------------------------------------------


def test_form_widgets_for_airflow_before_3_2_match_the_declarative_fields() -> None:
    pytest.importorskip("flask_appbuilder", reason="the pre-3.2 form needs Flask-AppBuilder (Airflow 2.x)")
    assert set(AsanaAuditLogHook.get_connection_form_widgets()) == set(CONN_FIELDS) == {"workspace_gid"}


def test_field_behaviour_matches_the_declarative_provider_info() -> None:
    connection_type = get_provider_info()["connection-types"][0]
    behaviour = AsanaAuditLogHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == connection_type["ui-field-behaviour"]["hidden-fields"]
    assert behaviour["relabeling"]["password"] == "Service account token"
    assert connection_type["connection-type"] == AsanaAuditLogHook.conn_type == "asana_audit_log"
    assert connection_type["hook-class-name"] == f"{AsanaAuditLogHook.__module__}.AsanaAuditLogHook"


def test_airflow_discovers_the_provider_and_its_connection_form() -> None:
    result = run_python(
        "from airflow.providers_manager import ProvidersManager\n"
        "import json\n"
        "pm = ProvidersManager()\n"
        "hook = pm.hooks['asana_audit_log']\n"
        "print(json.dumps({'provider': 'airflow-provider-asana-audit' in pm.providers,\n"
        "  'hook': hook.hook_class_name, 'name': hook.hook_name,\n"
        "  'widgets': sorted(k for k in pm.connection_form_widgets if 'asana_audit_log' in k),\n"
        "  'hidden': pm.field_behaviours['asana_audit_log']['hidden_fields']}))\n",
        {},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {
        "provider": True,
        "hook": "airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook",
        "name": "Asana Audit Log",
        "widgets": ["extra__asana_audit_log__workspace_gid"],
        "hidden": ["schema", "port", "login", "extra"],
    }


def test_retry_policy_reaches_the_client(asana_conn: FakeAsana) -> None:
    policy = RetryPolicy(max_attempts=2, max_elapsed=1, backoff_base=0.01)
    hook = AsanaAuditLogHook(retry=policy, read_timeout=5, requests_per_minute=600)
    assert hook.client.retry is policy
    assert hook.client.timeout == (10.0, 5)
    assert hook.client.rate_limiter is not None
    assert hook.client.rate_limiter.rate == pytest.approx(10)
    assert timedelta(seconds=hook.client.timeout[1]) == timedelta(seconds=5)
