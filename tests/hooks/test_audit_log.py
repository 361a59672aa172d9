"""
The hook: connections from every source, lazy resolution, test_connection, the shared check.

The connection form and provider registration are in ``tests/test_get_provider_info.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pytest_mock import MockerFixture

from airflow_provider_asana_audit.budget import RateLimiter, RetryPolicy
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook, AuditLogCheck
from airflow_provider_asana_audit.query import AuditLogQuery
from airflow_provider_asana_audit.testing import FakeAsana, Fault
from airflow_provider_asana_audit.timeutils import format_instant
from airflow_provider_asana_audit.transport import DEFAULT_BASE_URL

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


def test_a_ready_query_reads_the_pages_of_its_window(asana_conn: FakeAsana) -> None:
    truth = asana_conn.ground_truth()
    start, end = truth[10]["created_at"], truth[40]["created_at"]
    hook = AsanaAuditLogHook()

    pages = list(hook.iter_pages(query=AuditLogQuery.build(start, end, page_size=9)))

    assert [e for page in pages for e in page.events] == asana_conn.ground_truth(start, end)
    assert [len(page.events) for page in pages] == [
        len(page.events) for page in hook.iter_pages(start, end, page_size=9)
    ]


@pytest.mark.parametrize(
    "window", [{"start_at": "2026-01-01T00:00:00Z"}, {"event_type": "user_login_failed"}, {"page_size": 5}]
)
def test_a_query_with_a_window_or_filters_is_refused_before_any_request(
    asana_conn: FakeAsana, window: dict[str, Any]
) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="either query= or the window"):
        AsanaAuditLogHook().iter_pages(query=AuditLogQuery(), **window)
    assert asana_conn.stats.requests == 0


def test_iter_events_is_the_clients_read(asana_conn: FakeAsana, mocker: MockerFixture) -> None:
    hook = AsanaAuditLogHook()
    spy = mocker.spy(hook.client, "iter_events")

    events = list(hook.iter_events(event_type="user_login_failed", page_size=10))

    assert events == asana_conn.ground_truth(event_type="user_login_failed")
    spy.assert_called_once_with(AuditLogQuery(event_type="user_login_failed", page_size=10), concurrency=1)


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


def test_the_connection_is_resolved_lazily(mocker: MockerFixture) -> None:
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
    standin: FakeAsana, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any], message: str
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
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any], expected: str
) -> None:
    with FakeAsana(events_per_day=5, denied_tokens={"personal-access-token": 402}) as fake:
        monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", conn_json(fake, **changes))
        ok, message = AsanaAuditLogHook().test_connection()
    assert not ok
    assert expected in message
    for secret in ("wrong-token-123", "personal-access-token", fake.token):
        assert secret not in message


# --- secrecy ---------------------------------------------------------------------------------------


def _logged(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    """What the hook logged: Airflow 3 logs to the console (structlog), Airflow 2 through logging."""
    out, err = capfd.readouterr()
    return caplog.text + out + err


def test_the_token_never_appears_in_logs_or_errors(
    asana_conn: FakeAsana, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for fault in (Fault.UNAVAILABLE_503, Fault.DROP, Fault.RATE_LIMIT, Fault.EXPIRE_OFFSET):
        asana_conn.inject(fault, retry_after=0)
    hook = AsanaAuditLogHook(retry=RetryPolicy(backoff_base=0.01))
    events = list(hook.iter_events(page_size=50))
    assert events == asana_conn.ground_truth()
    logged = _logged(caplog, capfd)
    assert "HTTP 503" in logged, "the retries must have been logged"
    assert "offset" in logged, "the offset recovery must have been logged"
    assert asana_conn.token not in logged
    assert asana_conn.token not in repr(hook.client)


# --- the hook's settings reach the client ------------------------------------------------------


def test_the_retry_policy_reaches_the_client(asana_conn: FakeAsana) -> None:
    policy = RetryPolicy(max_attempts=2, max_elapsed=1, backoff_base=0.01)

    assert AsanaAuditLogHook(retry=policy).client.retry is policy


def test_the_read_timeout_reaches_the_client_with_the_default_connect_timeout(asana_conn: FakeAsana) -> None:
    assert AsanaAuditLogHook(read_timeout=5).client.timeout == (10.0, 5)


def test_the_connect_timeout_reaches_the_client(asana_conn: FakeAsana) -> None:
    assert AsanaAuditLogHook(connect_timeout=3).client.timeout == (3, 60.0)


def test_the_read_timeout_applies_to_each_request(
    asana_conn: FakeAsana, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    asana_conn.inject(Fault.SLOW, delay=2.0)
    hook = AsanaAuditLogHook(read_timeout=0.3, retry=RetryPolicy(backoff_base=0.01))

    page = next(hook.iter_pages(page_size=10))

    assert page.events == asana_conn.ground_truth()[:10]
    assert "ReadTimeout" in _logged(caplog, capfd)
    assert asana_conn.stats.requests == 2  # the slow one, then the retry


def test_requests_per_minute_gives_the_client_the_tokens_shared_rate_limiter(asana_conn: FakeAsana) -> None:
    client = AsanaAuditLogHook(requests_per_minute=600).client

    assert isinstance(client.rate_limiter, RateLimiter)
    assert client.rate_limiter.ceiling == pytest.approx(10)
    assert AsanaAuditLogHook(requests_per_minute=600).client.rate_limiter is client.rate_limiter


def test_by_default_the_token_gets_asanas_limits_found_by_a_slow_start(asana_conn: FakeAsana) -> None:
    # Shared by every client of the token in this process; other processes may spend the token
    # too, so this one starts slowly and finds its share, its requests spaced (no burst).
    client = AsanaAuditLogHook().client

    assert isinstance(client.rate_limiter, RateLimiter)
    assert client.rate_limiter.ceiling == pytest.approx(1500 / 60)
    assert client.rate_limiter.max_in_flight == 50
    assert client.rate_limiter.acquire()
    cancel = threading.Event()
    cancel.set()
    assert not client.rate_limiter.acquire(cancel=cancel), "a second request without a 40 ms gap"
    assert AsanaAuditLogHook().client.rate_limiter is client.rate_limiter
    assert AsanaAuditLogHook(requests_per_minute=600).client.rate_limiter is not client.rate_limiter


def test_the_connection_states_the_tokens_budget(
    asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection form stores text.
    extra = {
        "workspace_gid": asana_conn.workspace_gid,
        "requests_per_minute": "600",
        "max_concurrent_requests": "4",
    }
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", conn_json(asana_conn, extra=json.dumps(extra)))

    limiter = AsanaAuditLogHook().client.rate_limiter
    assert isinstance(limiter, RateLimiter)
    assert (limiter.ceiling, limiter.max_in_flight) == (10, 4)
    # A task's own requests_per_minute wins over the connection's.
    own = AsanaAuditLogHook(requests_per_minute=120).client.rate_limiter
    assert isinstance(own, RateLimiter)
    assert own.ceiling == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [("requests_per_minute", "fast"), ("requests_per_minute", "-5"), ("max_concurrent_requests", "0")],
)
def test_a_budget_in_the_connection_that_is_no_positive_number_is_refused(
    asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    extra = {"workspace_gid": asana_conn.workspace_gid, name: value}
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", conn_json(asana_conn, extra=json.dumps(extra)))

    with pytest.raises(AsanaAuditLogConfigError, match=name):
        AsanaAuditLogHook().get_conn()


# --- the shared check ---------------------------------------------------------------------------------


def _days_ago(days: int) -> str:
    return format_instant(datetime.now(timezone.utc) - timedelta(days=days))


def test_check_reports_the_first_min_events_from_one_request(asana_conn: FakeAsana) -> None:
    start_at = _days_ago(3)

    found = AsanaAuditLogHook().check(start_at=start_at, min_events=5)

    truth = asana_conn.ground_truth(start_at)[:5]
    assert found == AuditLogCheck(
        count=5,
        first_created_at=truth[0]["created_at"],
        first_gid=truth[0]["gid"],
        last_created_at=truth[-1]["created_at"],
        last_gid=truth[-1]["gid"],
        next_offset=found["next_offset"],
    )
    assert found["next_offset"]
    assert [r.params["limit"] for r in asana_conn.requests] == ["5"]


def test_check_continues_from_its_next_offset_with_the_events_after_the_last_one_found(
    asana_conn: FakeAsana,
) -> None:
    start_at = _days_ago(3)
    hook = AsanaAuditLogHook()

    found = hook.check(start_at=start_at, min_events=5)
    after = next(hook.iter_pages(start_at, page_size=5, offset=found["next_offset"]))

    assert after.events == asana_conn.ground_truth(start_at)[5:10]


def test_check_of_more_than_a_page_closes_its_read_when_it_has_enough(
    asana_conn: FakeAsana, mocker: MockerFixture
) -> None:
    start_at = _days_ago(3)
    truth = asana_conn.ground_truth(start_at)
    assert len(truth) > 101
    hook = AsanaAuditLogHook()
    spy = mocker.spy(hook.client, "iter_pages")

    found = hook.check(start_at=start_at, min_events=101)

    assert found["count"] == min(len(truth), 200)  # two pages of 100
    (pages,) = spy.spy_return_list
    assert pages.gi_frame is None  # closed, not left suspended after the second page


def test_check_of_a_window_without_matches_finds_nothing(asana_conn: FakeAsana) -> None:
    found = AsanaAuditLogHook().check(start_at=_days_ago(3), filters={"event_type": "no_such_event_type"})

    assert found == AuditLogCheck(
        count=0,
        first_created_at=None,
        first_gid=None,
        last_created_at=None,
        last_gid=None,
        next_offset=None,
    )


def test_check_refuses_an_unknown_filter_before_any_request(asana_conn: FakeAsana) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="Unknown filter"):
        AsanaAuditLogHook().check(start_at=_days_ago(1), filters={"event": "user_login_failed"})
    assert asana_conn.stats.requests == 0


@pytest.mark.parametrize("min_events", [0, -1, True, 1.5])
def test_check_refuses_a_min_events_that_is_not_a_positive_integer(
    asana_conn: FakeAsana, min_events: Any
) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="min_events"):
        AsanaAuditLogHook().check(start_at=_days_ago(1), min_events=min_events)
    assert asana_conn.stats.requests == 0


def test_acheck_finds_what_check_finds(asana_conn: FakeAsana) -> None:
    start_at = _days_ago(2)
    filters = {"event_type": "user_login_failed"}

    found = asyncio.run(AsanaAuditLogHook().acheck(start_at=start_at, filters=filters, min_events=2))
    expected = AsanaAuditLogHook().check(start_at=start_at, filters=filters, min_events=2)

    # Equal but for the offsets, which carry the instant they were issued.
    assert {**found, "next_offset": None} == {**expected, "next_offset": None}
    assert isinstance(found["next_offset"], str)
