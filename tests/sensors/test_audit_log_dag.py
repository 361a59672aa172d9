"""
``AsanaAuditLogSensor`` in real DAG runs (``dag.test()``), in every mode, against the stand-in.

Events are appended from a background thread once the stand-in has answered the sensor's Nth request,
so "it waited, then events arrived" holds by construction; ``standin.ground_truth`` is the oracle of
what the sensor must report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant
from tests.helpers.clients import now_ms
from tests.helpers.dags import DagRunResult, reschedules

FAILED_LOGIN = "user_login_failed"

RunSensor = Callable[..., DagRunResult]
AppendAfter = Callable[..., None]


def _expected(standin: FakeAsana, start_at: str, n: int) -> dict[str, Any]:
    truth = standin.ground_truth(start_at, event_type=FAILED_LOGIN)[:n]
    return {
        "count": n,
        "first_created_at": truth[0]["created_at"],
        "first_gid": truth[0]["gid"],
        "last_created_at": truth[-1]["created_at"],
        "last_gid": truth[-1]["gid"],
    }


def _without_offset(found: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in found.items() if key != "next_offset"}


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_succeeds_in_its_mode_when_events_arrive_while_it_waits(
    mode: str, run_sensor: RunSensor, append_after: AppendAfter, asana_conn: FakeAsana
) -> None:
    start_at = format_instant(now_ms())
    append_after(1, 1, event_type="task_deleted")  # not of interest
    append_after(2, 2, event_type=FAILED_LOGIN)  # after the second check found nothing

    run = run_sensor(
        start_at=start_at, event_type=FAILED_LOGIN, min_events=2, mode=mode, poke_interval=0.5, timeout=30
    )

    assert run.task_state == "success"
    found = run.xcom("wait")
    assert _without_offset(found) == _expected(asana_conn, start_at, 2)
    assert isinstance(found["next_offset"], str)
    assert found["next_offset"]
    # Reschedule mode frees the worker slot after each check that found nothing (at least two).
    count = reschedules(run, "wait")
    assert count >= 2 if mode == "reschedule" else count == 0, count


def test_deferrable_sensor_succeeds_when_events_arrive_while_the_trigger_waits(
    run_sensor: RunSensor, append_after: AppendAfter, asana_conn: FakeAsana
) -> None:
    start_at = format_instant(now_ms())
    append_after(2, 2, event_type=FAILED_LOGIN)  # after the sensor's check and the trigger's first poll

    run = run_sensor(
        start_at=start_at, event_type=FAILED_LOGIN, min_events=2, deferrable=True, poke_interval=0.5
    )

    assert run.task_state == "success"
    assert _without_offset(run.xcom("wait")) == _expected(asana_conn, start_at, 2)
    answered = [r for r in asana_conn.requests if r.status == 200]
    assert len(answered) >= 3, "the sensor's check and the trigger's first poll found nothing"


def test_sensor_fails_when_no_event_arrives_before_the_timeout(run_sensor: RunSensor) -> None:
    run = run_sensor(start_at=format_instant(now_ms()), event_type=FAILED_LOGIN, poke_interval=0.5, timeout=2)

    assert run.task_state == "failed"
    assert run.xcom("wait") is None


def test_soft_fail_sensor_is_skipped_when_no_event_arrives_before_the_timeout(run_sensor: RunSensor) -> None:
    run = run_sensor(
        start_at=format_instant(now_ms()),
        event_type=FAILED_LOGIN,
        mode="reschedule",
        poke_interval=0.5,
        timeout=2,
        soft_fail=True,
    )

    assert run.task_state == "skipped"


def test_deferrable_sensor_fails_when_no_event_arrives_before_the_timeout(run_sensor: RunSensor) -> None:
    # `dags test` ignores a deferred task's timeout: the trigger's own deadline must end the wait.
    run = run_sensor(
        start_at=format_instant(now_ms()),
        event_type=FAILED_LOGIN,
        deferrable=True,
        poke_interval=0.5,
        timeout=2,
    )

    assert run.task_state == "failed"
    assert run.xcom("wait") is None


def test_deferrable_soft_fail_sensor_is_skipped_when_no_event_arrives_before_the_timeout(
    run_sensor: RunSensor,
) -> None:
    run = run_sensor(
        start_at=format_instant(now_ms()),
        event_type=FAILED_LOGIN,
        deferrable=True,
        poke_interval=0.5,
        timeout=2,
        soft_fail=True,
    )

    assert run.task_state == "skipped"
