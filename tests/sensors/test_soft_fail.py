"""
``soft_fail`` skips a sensor only when its wait ends (the timeout, tested in ``test_audit_log_dag.py``);
an error of the sensor (a wrong argument, a refused token, a failed read) fails it in every mode.

Airflow's own handling differs by mode: it skips what ``poke`` raises as ``AirflowFailException`` and any
failure after a deferral, but not a failure before deferring. These tests pin the sensor's one rule.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException

from airflow_provider_asana_audit.exceptions import AsanaAuditLogError
from airflow_provider_asana_audit.sensors.audit_log import AsanaAuditLogSensor
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from tests.helpers.clients import now_ms
from tests.sensors.test_audit_log_dag import RunSensor

MODES = pytest.mark.parametrize(
    "mode",
    [{"mode": "poke"}, {"mode": "reschedule"}, {"deferrable": True}],
    ids=["poke", "reschedule", "deferrable"],
)
SUMMARY = {
    "count": 0,
    "first_created_at": None,
    "first_gid": None,
    "last_created_at": None,
    "last_gid": None,
    "next_offset": None,
}


def _resume(event: dict[str, Any], **kwargs: Any) -> Any:
    """Resume a deferred sensor as the worker does after its trigger fired with ``event``."""
    sensor = AsanaAuditLogSensor(task_id="wait", deferrable=True, **kwargs)
    return sensor.resume_execution("execute_complete", {"event": event}, {})  # type: ignore[arg-type]


@MODES
def test_a_window_that_ends_before_it_starts_fails_a_soft_fail_sensor_in_every_mode(
    mode: dict[str, Any], run_sensor: RunSensor, asana_conn: FakeAsana
) -> None:
    run = run_sensor(
        start_at="2026-12-03T00:00:00Z",
        end_at="2026-12-02T00:00:00Z",
        soft_fail=True,
        poke_interval=0.5,
        timeout=30,
        **mode,
    )

    assert run.task_state == "failed"
    assert asana_conn.requests == [], "the window is refused before any request"


@MODES
def test_a_refused_token_fails_a_soft_fail_sensor_in_every_mode(
    mode: dict[str, Any], run_sensor: RunSensor, asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = json.loads(asana_conn.connection_json())
    conn["password"] = "revoked-token"
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", json.dumps(conn))

    run = run_sensor(start_at=format_instant(now_ms()), soft_fail=True, poke_interval=0.5, timeout=30, **mode)

    assert run.task_state == "failed"
    assert len(asana_conn.requests) == 1, "a refused token is not retried"


def test_a_permanent_error_after_the_deferral_fails_a_soft_fail_sensor() -> None:
    event = {"status": "error", "message": "Asana returned HTTP 401: Not Authorized", "permanent": True}

    with pytest.raises(AirflowFailException, match="HTTP 401") as raised:
        _resume(event, soft_fail=True)

    assert not isinstance(raised.value, AirflowSkipException)


def test_a_transient_error_after_the_deferral_fails_a_soft_fail_sensor_so_that_airflow_retries_it() -> None:
    event = {"status": "error", "message": "Asana returned HTTP 503"}

    with pytest.raises(AsanaAuditLogError, match="HTTP 503") as raised:
        _resume(event, soft_fail=True)

    assert not isinstance(raised.value, (AirflowFailException, AirflowSkipException))


def test_the_timeout_after_the_deferral_still_skips_a_soft_fail_sensor() -> None:
    event = {"status": "timeout", "message": "Found 0 of 1", **SUMMARY}

    with pytest.raises(AirflowSkipException):
        _resume(event, soft_fail=True)


def test_without_soft_fail_a_permanent_error_after_the_deferral_fails_as_before() -> None:
    event = {"status": "error", "message": "Asana returned HTTP 404", "permanent": True}

    with pytest.raises(AirflowFailException, match="HTTP 404"):
        _resume(event)


def test_never_fail_keeps_airflows_meaning_skip_on_any_error(run_sensor: RunSensor) -> None:
    # never_fail asks for a skip on every error; only soft_fail's skips are narrowed to the timeout.
    run = run_sensor(
        start_at="2026-12-03T00:00:00Z", end_at="2026-12-02T00:00:00Z", never_fail=True, mode="poke"
    )

    assert run.task_state == "skipped"
