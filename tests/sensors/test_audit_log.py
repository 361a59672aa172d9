"""
``AsanaAuditLogSensor`` called directly (no DAG run): one check, its window and filters, the deferral
and what the sensor does with each event of its trigger. The stand-in's ground truth is the oracle.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)

from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogConfigError,
    AsanaAuditLogError,
    AsanaAuditLogRetentionError,
)
from airflow_provider_asana_audit.query import FILTER_NAMES
from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogTrigger
from tests.helpers.clients import now_ms

FAILED_LOGIN = "user_login_failed"
#: What a template renders when its value is missing; each means "not set".
UNSET_RENDERINGS = pytest.mark.parametrize("unset", ["", "   ", "None"], ids=["empty", "blank", "None"])
SUMMARY = {
    "count": 1,
    "first_created_at": "2026-01-01T00:00:00.000Z",
    "first_gid": "1",
    "last_created_at": "2026-01-01T00:00:00.000Z",
    "last_gid": "1",
    "next_offset": "abc",
}


def _days_ago(days: int) -> str:
    return format_instant(datetime.now(timezone.utc) - timedelta(days=days))


def _context(**values: Any) -> Any:
    """A task context holding only ``values`` (Airflow's ``Context`` type wants pendulum instants)."""
    return values


def _sensor(**kwargs: Any) -> AsanaAuditLogSensor:
    return AsanaAuditLogSensor(task_id="wait", **kwargs)


# --------------------------------------------------------------------------- one check


def test_each_poke_is_one_request_of_min_events(asana_conn: FakeAsana) -> None:
    start_at = _days_ago(3)

    result = _sensor(start_at=start_at, min_events=5).poke({})

    assert result.is_done
    assert len(asana_conn.requests) == 1
    assert asana_conn.requests[0].params["limit"] == "5"
    truth = asana_conn.ground_truth(start_at)[:5]
    assert result.xcom_value is not None
    assert (result.xcom_value["first_gid"], result.xcom_value["last_gid"]) == (
        truth[0]["gid"],
        truth[-1]["gid"],
    )


def test_min_events_above_a_page_reads_only_until_enough_were_found(asana_conn: FakeAsana) -> None:
    start_at = _days_ago(6)

    result = _sensor(start_at=start_at, min_events=150).poke({})

    assert result.is_done
    assert len(asana_conn.requests) == 2  # 100 + 100 events, of some 360 in the window
    assert result.xcom_value is not None
    assert result.xcom_value["count"] == 200
    assert result.xcom_value["last_gid"] == asana_conn.ground_truth(start_at)[199]["gid"]


def test_poke_is_not_done_while_fewer_than_min_events_match(asana_conn: FakeAsana) -> None:
    start_at = format_instant(now_ms())
    asana_conn.append_events(1, event_type=FAILED_LOGIN)

    result = _sensor(start_at=start_at, event_type=FAILED_LOGIN, min_events=2).poke({})

    assert not result.is_done
    assert result.xcom_value is not None
    assert result.xcom_value["count"] == 1


def test_end_at_excludes_events_created_at_or_after_it(asana_conn: FakeAsana) -> None:
    start = datetime.now(timezone.utc).replace(microsecond=0)
    end = start + timedelta(seconds=1)
    asana_conn.append_events(1, created_at=start, event_type=FAILED_LOGIN)
    asana_conn.append_events(1, created_at=end, event_type=FAILED_LOGIN)

    result = _sensor(start_at=start, end_at=end, event_type=FAILED_LOGIN, min_events=2).poke({})

    assert not result.is_done
    assert result.xcom_value is not None
    assert result.xcom_value["count"] == 1


def test_start_at_defaults_to_the_data_interval_start(asana_conn: FakeAsana) -> None:
    interval_start = datetime.now(timezone.utc) - timedelta(hours=30)

    result = _sensor().poke(_context(data_interval_start=interval_start))

    assert result.xcom_value is not None
    assert result.xcom_value["first_gid"] == asana_conn.ground_truth(interval_start)[0]["gid"]
    assert asana_conn.requests[0].params["start_at"] == format_instant(interval_start)


def test_a_run_without_data_interval_or_start_at_fails_saying_to_pass_start_at(asana_conn: FakeAsana) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="pass start_at"):
        _sensor().poke(_context(data_interval_start=None))
    assert asana_conn.requests == []


def test_a_window_older_than_the_retention_fails_without_a_request(asana_conn: FakeAsana) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=120)
    with pytest.raises(AsanaAuditLogRetentionError, match="after 90 days"):
        _sensor(start_at=old, end_at=old + timedelta(days=1)).poke({})
    assert asana_conn.requests == []


def test_min_events_below_one_is_refused() -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="min_events"):
        _sensor(min_events=0)


# --------------------------------------------------------------------------- templated arguments


def test_the_window_the_filters_and_the_connection_are_templated() -> None:
    assert set(AsanaAuditLogSensor.template_fields) == {
        "start_at",
        "end_at",
        *FILTER_NAMES,
        "asana_audit_log_conn_id",
    }


def test_a_filter_template_of_a_missing_param_renders_to_the_string_none() -> None:
    # The case the "not set" rule is for: Jinja renders a None param as "None".
    sensor = _sensor(event_type="{{ params.event_type }}")

    sensor.render_template_fields({"params": {"event_type": None}})

    assert sensor.event_type == "None"


@UNSET_RENDERINGS
def test_a_start_at_that_rendered_to_nothing_defaults_to_the_data_interval_start(
    asana_conn: FakeAsana, unset: str
) -> None:
    interval_start = datetime.now(timezone.utc) - timedelta(hours=30)

    _sensor(start_at=unset).poke(_context(data_interval_start=interval_start))

    assert asana_conn.requests[0].params["start_at"] == format_instant(interval_start)


@UNSET_RENDERINGS
def test_an_end_at_that_rendered_to_nothing_means_no_end(asana_conn: FakeAsana, unset: str) -> None:
    result = _sensor(start_at=_days_ago(2), end_at=unset).poke({})

    assert result.is_done
    assert "end_at" not in asana_conn.requests[0].params


@UNSET_RENDERINGS
@pytest.mark.parametrize("name", FILTER_NAMES)
def test_a_filter_that_rendered_to_nothing_is_not_applied(
    asana_conn: FakeAsana, name: str, unset: str
) -> None:
    start_at = _days_ago(2)

    result = _sensor(start_at=start_at, **{name: unset}).poke({})

    assert name not in asana_conn.requests[0].params
    assert result.xcom_value is not None
    assert result.xcom_value["first_gid"] == asana_conn.ground_truth(start_at)[0]["gid"]


# --------------------------------------------------------------------------- deferrable mode


def test_deferrable_sensor_succeeds_at_once_without_deferring_when_enough_events_exist(
    asana_conn: FakeAsana,
) -> None:
    start_at = _days_ago(2)

    found = _sensor(start_at=start_at, deferrable=True).execute({})

    assert found["first_gid"] == asana_conn.ground_truth(start_at)[0]["gid"]


def test_deferrable_sensor_defers_to_the_trigger_with_its_window_filters_and_timeout(
    asana_conn: FakeAsana,
) -> None:
    start_at = format_instant(now_ms())
    sensor = _sensor(
        start_at=start_at, event_type=FAILED_LOGIN, min_events=3, deferrable=True, poke_interval=7, timeout=90
    )

    before = datetime.now(timezone.utc)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    after = datetime.now(timezone.utc)

    assert isinstance(deferred.value.trigger, AsanaAuditLogTrigger)
    kwargs = deferred.value.trigger.serialize()[1]
    timeout_at = parse_instant(kwargs.pop("timeout_at"))
    assert kwargs == {
        "asana_audit_log_conn_id": "asana_audit_log_default",
        "start_at": start_at,
        "end_at": None,
        "filters": {"event_type": FAILED_LOGIN},
        "min_events": 3,
        "poll_interval": 7,
    }
    # The trigger carries its own deadline: `airflow dags test` ignores the deferral's timeout.
    assert before + timedelta(seconds=90) <= timeout_at + timedelta(milliseconds=1)
    assert timeout_at <= after + timedelta(seconds=90)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=90)


def test_airflow_refuses_an_endless_timeout_so_the_trigger_always_gets_a_deadline() -> None:
    # What the deferral's `timeout_at` relies on, on every supported Airflow.
    with pytest.raises(OverflowError):
        _sensor(timeout=float("inf"))


def test_execute_complete_returns_the_summary_of_a_success_event() -> None:
    assert _sensor().execute_complete({}, {"status": "success", **SUMMARY}) == SUMMARY


def test_execute_complete_raises_a_retryable_error_with_the_message_of_an_error_event() -> None:
    with pytest.raises(AsanaAuditLogError, match="Asana returned HTTP 503") as raised:
        _sensor().execute_complete({}, {"status": "error", "message": "Asana returned HTTP 503"})
    assert not isinstance(raised.value, AirflowFailException)


def test_execute_complete_fails_without_retry_on_a_permanent_error_event() -> None:
    event = {"status": "error", "message": "Asana returned HTTP 401", "permanent": True}

    with pytest.raises(AirflowFailException, match="HTTP 401"):
        _sensor().execute_complete({}, event)


def test_a_timeout_event_fails_the_sensor_with_a_sensor_timeout() -> None:
    event = {"status": "timeout", "message": "Found 0 of 1", **SUMMARY}

    with pytest.raises(AirflowSensorTimeout, match="Found 0 of 1"):
        _sensor(deferrable=True).execute_complete({}, event)


def test_a_timeout_event_skips_a_soft_fail_sensor() -> None:
    event = {"status": "timeout", "message": "Found 0 of 1", **SUMMARY}

    with pytest.raises(AirflowSkipException, match="Found 0 of 1"):
        _sensor(deferrable=True, soft_fail=True).execute_complete({}, event)


@pytest.mark.parametrize("event", [{"status": "cancelled"}, {"count": 5}, None, "success"])
def test_execute_complete_fails_closed_on_an_unknown_event(event: Any) -> None:
    with pytest.raises(AsanaAuditLogError, match="does not know"):
        _sensor().execute_complete({}, event)


def test_deferrable_defaults_to_operators_default_deferrable(monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow_provider_asana_audit.sensors.audit_log as module

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    try:
        assert importlib.reload(module).AsanaAuditLogSensor(task_id="wait").deferrable is True
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(module)
