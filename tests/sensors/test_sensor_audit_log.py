"""
``AsanaAuditLogSensor`` waits for new audit events, in every mode, through real Airflow.

The DAG runs use ``dag.test()`` against the stand-in; events are appended from a background thread
while the sensor waits, and ``standin.ground_truth`` is the oracle of what it must report.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogConfigError,
    AsanaAuditLogError,
    AsanaAuditLogRetentionError,
)
from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogTrigger

FAILED_LOGIN = "user_login_failed"
EXAMPLE = Path(__file__).resolve().parents[2] / "example_dags" / "example_asana_audit_sensor.py"


def _now() -> str:
    """Now, to the millisecond as Asana's ``created_at`` (an event created now is not before it)."""
    now = datetime.now(timezone.utc)
    return format_instant(now.replace(microsecond=now.microsecond // 1000 * 1000))


def _expected(standin: FakeAsana, start_at: str, n: int) -> dict[str, Any]:
    truth = standin.ground_truth(start_at, event_type=FAILED_LOGIN)[:n]
    return {
        "count": n,
        "first_created_at": truth[0]["created_at"],
        "first_gid": truth[0]["gid"],
        "last_created_at": truth[-1]["created_at"],
        "last_gid": truth[-1]["gid"],
    }


def _sensor(**kwargs: Any) -> AsanaAuditLogSensor:
    return AsanaAuditLogSensor(task_id="wait", **kwargs)


# --------------------------------------------------------------------------- real DAG runs


@pytest.mark.airflow
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_succeeds_when_events_arrive_while_it_waits(
    mode: str, run_sensor: Callable[..., Any], append_later: Callable[..., Any], asana_conn: FakeAsana
) -> None:
    start_at = _now()
    append_later(1.0, 1, event_type="task_deleted")  # not of interest
    append_later(1.2, 2, event_type=FAILED_LOGIN)

    run = run_sensor(
        start_at=start_at,
        event_type=FAILED_LOGIN,
        min_events=2,
        mode=mode,
        poke_interval=0.5,
        timeout=30,
    )

    assert run.state == "success"
    assert {k: v for k, v in run.xcom.items() if k != "next_offset"} == _expected(asana_conn, start_at, 2)
    assert run.xcom["next_offset"]
    assert (run.reschedules > 0) == (mode == "reschedule")


@pytest.mark.airflow
def test_deferrable_sensor_succeeds_when_events_arrive_while_the_trigger_waits(
    run_sensor: Callable[..., Any], append_later: Callable[..., Any], asana_conn: FakeAsana
) -> None:
    start_at = _now()
    append_later(1.0, 2, event_type=FAILED_LOGIN)

    run = run_sensor(
        start_at=start_at, event_type=FAILED_LOGIN, min_events=2, deferrable=True, poke_interval=0.5
    )

    assert run.state == "success"
    assert {k: v for k, v in run.xcom.items() if k != "next_offset"} == _expected(asana_conn, start_at, 2)
    trigger_requests = [r for r in asana_conn.requests if r.status == 200]
    assert len(trigger_requests) >= 2, "the first check found nothing, so the trigger must have polled"


@pytest.mark.airflow
def test_sensor_fails_when_no_event_arrives_before_the_timeout(run_sensor: Callable[..., Any]) -> None:
    run = run_sensor(start_at=_now(), event_type=FAILED_LOGIN, poke_interval=0.5, timeout=2)

    assert run.state == "failed"
    assert run.xcom is None


@pytest.mark.airflow
def test_soft_fail_sensor_is_skipped_when_no_event_arrives_before_the_timeout(
    run_sensor: Callable[..., Any],
) -> None:
    run = run_sensor(
        start_at=_now(),
        event_type=FAILED_LOGIN,
        mode="reschedule",
        poke_interval=0.5,
        timeout=2,
        soft_fail=True,
    )

    assert run.state == "skipped"


# --------------------------------------------------------------------------- one check, directly


def test_each_poke_is_one_request_of_min_events(asana_conn: FakeAsana) -> None:
    start_at = format_instant(datetime.now(timezone.utc) - timedelta(days=3))
    sensor = _sensor(start_at=start_at, min_events=5)

    result = sensor.poke({})

    assert result.is_done
    assert len(asana_conn.requests) == 1
    assert asana_conn.requests[0].params["limit"] == "5"
    truth = asana_conn.ground_truth(start_at)[:5]
    assert (result.xcom_value["first_gid"], result.xcom_value["last_gid"]) == (
        truth[0]["gid"],
        truth[-1]["gid"],
    )


def test_min_events_above_a_page_reads_only_until_enough_were_found(asana_conn: FakeAsana) -> None:
    start_at = format_instant(datetime.now(timezone.utc) - timedelta(days=6))
    sensor = _sensor(start_at=start_at, min_events=150)

    result = sensor.poke({})

    assert result.is_done
    assert len(asana_conn.requests) == 2  # 100 + 100 events, of some 360 in the window
    assert result.xcom_value["count"] == 200
    assert result.xcom_value["last_gid"] == asana_conn.ground_truth(start_at)[199]["gid"]


def test_poke_is_not_done_while_fewer_than_min_events_match(asana_conn: FakeAsana) -> None:
    start_at = _now()
    asana_conn.append_events(1, event_type=FAILED_LOGIN)

    result = _sensor(start_at=start_at, event_type=FAILED_LOGIN, min_events=2).poke({})

    assert not result.is_done
    assert result.xcom_value["count"] == 1


def test_end_at_excludes_events_created_at_or_after_it(asana_conn: FakeAsana) -> None:
    start = datetime.now(timezone.utc).replace(microsecond=0)
    end = start + timedelta(seconds=1)
    asana_conn.append_events(1, created_at=start, event_type=FAILED_LOGIN)
    asana_conn.append_events(1, created_at=end, event_type=FAILED_LOGIN)

    result = _sensor(start_at=start, end_at=end, event_type=FAILED_LOGIN, min_events=2).poke({})

    assert not result.is_done
    assert result.xcom_value["count"] == 1


def test_start_at_defaults_to_the_data_interval_start(asana_conn: FakeAsana) -> None:
    interval_start = datetime.now(timezone.utc) - timedelta(hours=30)

    result = _sensor().poke({"data_interval_start": interval_start})

    assert result.xcom_value["first_gid"] == asana_conn.ground_truth(interval_start)[0]["gid"]
    assert asana_conn.requests[0].params["start_at"] == format_instant(interval_start)


def test_a_run_without_data_interval_or_start_at_fails_saying_to_pass_start_at(asana_conn: FakeAsana) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="pass start_at"):
        _sensor().poke({"data_interval_start": None})
    assert asana_conn.requests == []


def test_a_window_older_than_the_retention_fails_without_a_request(asana_conn: FakeAsana) -> None:
    old = datetime.now(timezone.utc) - timedelta(days=120)
    with pytest.raises(AsanaAuditLogRetentionError, match="after 90 days"):
        _sensor(start_at=old, end_at=old + timedelta(days=1)).poke({})
    assert asana_conn.requests == []


def test_min_events_below_one_is_refused() -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="min_events"):
        _sensor(min_events=0)


# --------------------------------------------------------------------------- deferrable mode


def test_deferrable_sensor_succeeds_at_once_without_deferring_when_enough_events_exist(
    asana_conn: FakeAsana,
) -> None:
    start_at = format_instant(datetime.now(timezone.utc) - timedelta(days=2))

    found = _sensor(start_at=start_at, deferrable=True).execute({})

    assert found["first_gid"] == asana_conn.ground_truth(start_at)[0]["gid"]


def test_deferrable_sensor_defers_to_the_trigger_with_its_window_filters_and_timeout(
    asana_conn: FakeAsana,
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    start_at = _now()
    sensor = _sensor(
        start_at=start_at, event_type=FAILED_LOGIN, min_events=3, deferrable=True, poke_interval=7, timeout=90
    )

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})

    assert isinstance(deferred.value.trigger, AsanaAuditLogTrigger)
    assert deferred.value.trigger.serialize()[1] == {
        "asana_audit_log_conn_id": "asana_audit_log_default",
        "start_at": start_at,
        "end_at": None,
        "filters": {"event_type": FAILED_LOGIN},
        "min_events": 3,
        "poll_interval": 7,
    }
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=90)


def test_execute_complete_returns_the_summary_of_a_success_event() -> None:
    summary = {
        "count": 1,
        "first_created_at": "2026-01-01T00:00:00.000Z",
        "first_gid": "1",
        "last_created_at": "2026-01-01T00:00:00.000Z",
        "last_gid": "1",
        "next_offset": "abc",
    }

    assert _sensor().execute_complete({}, {"status": "success", **summary}) == summary


def test_execute_complete_raises_the_message_of_an_error_event() -> None:
    with pytest.raises(AsanaAuditLogError, match="Asana returned HTTP 503"):
        _sensor().execute_complete({}, {"status": "error", "message": "Asana returned HTTP 503"})


@pytest.mark.parametrize("event", [{"status": "timeout"}, {"count": 5}, None, "success"])
def test_execute_complete_fails_closed_on_an_unknown_event(event: Any) -> None:
    with pytest.raises(AsanaAuditLogError, match="does not know"):
        _sensor().execute_complete({}, event)


def test_a_trigger_timeout_fails_the_sensor() -> None:
    from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

    with pytest.raises(AirflowException) as raised:
        _sensor(deferrable=True).resume_execution("__fail__", {"error": "Trigger timeout"}, {})
    assert not isinstance(raised.value, AirflowSkipException)


def test_a_trigger_timeout_skips_a_soft_fail_sensor() -> None:
    from airflow.providers.common.compat.sdk import AirflowSkipException

    with pytest.raises(AirflowSkipException):
        _sensor(deferrable=True, soft_fail=True).resume_execution(
            "__fail__", {"error": "Trigger timeout"}, {}
        )


def test_deferrable_defaults_to_operators_default_deferrable(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import airflow_provider_asana_audit.sensors.audit_log as module

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    try:
        assert importlib.reload(module).AsanaAuditLogSensor(task_id="wait").deferrable is True
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(module)


# --------------------------------------------------------------------------- the example DAG


@pytest.mark.airflow
def test_example_dag_reports_the_failed_logins_of_its_data_interval(
    airflow_db: Path, airflow_home: Path, asana_conn: FakeAsana
) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    path = airflow_home / "dags" / EXAMPLE.name
    shutil.copy(EXAMPLE, path)
    dagbag = DagBag(dag_folder=str(path))
    assert not dagbag.import_errors, dagbag.import_errors
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    # A failed login in the last complete hour (and one in the next, should the hour turn meanwhile).
    asana_conn.append_events(1, created_at=hour - timedelta(minutes=30), event_type=FAILED_LOGIN)
    asana_conn.append_events(1, created_at=hour + timedelta(milliseconds=1), event_type=FAILED_LOGIN)

    dag_run = dagbag.get_dag("example_asana_audit_sensor").test()  # manual: the last complete hour

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    assert states == {"wait_for_failed_logins": "success", "report_failed_logins": "success"}
    found = dag_run.get_task_instance("wait_for_failed_logins").xcom_pull(task_ids="wait_for_failed_logins")
    interval = (dag_run.data_interval_start, dag_run.data_interval_end)
    assert found["first_gid"] == asana_conn.ground_truth(*interval, event_type=FAILED_LOGIN)[0]["gid"]
