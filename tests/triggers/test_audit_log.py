"""
The triggers wait for and follow the audit log without blocking the event loop.

Plain tests that drive the async generators with ``asyncio.run``, against the stand-in over real
HTTP; ``standin.ground_truth`` and the events appended by the test are the oracle. They synchronise on
what the stand-in has seen (its request counters), never on the length of a sleep.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncGenerator, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from airflow_provider_asana_audit.exceptions import AsanaAuditLogAuthError, AsanaAuditLogConfigError
from airflow_provider_asana_audit.testing import FakeAsana, Fault
from airflow_provider_asana_audit.timeutils import format_instant
from airflow_provider_asana_audit.triggers.audit_log import (
    EVENT_PAYLOAD_KEYS,
    AsanaAuditLogEventTrigger,
    AsanaAuditLogTrigger,
)
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS
from tests.helpers.clients import now_ms
from tests.helpers.waiting import await_until
from tests.triggers.support import Watch, gids

FAILED_LOGIN = "user_login_failed"
WRONG_TOKEN = "0/wrong-service-account-token-5f1e"
T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    """Run a coroutine to completion in a fresh event loop, with a safety timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _rebuild(trigger: Any) -> Any:
    """Rebuild a trigger as the triggerer does: import the class path, pass the (JSON) kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


async def _first_event(trigger: Any) -> dict[str, Any]:
    run: AsyncGenerator[Any, None] = trigger.run()
    try:
        event = await anext(run)
    finally:
        await run.aclose()
    return dict(event.payload)


def _wait_trigger(**kwargs: Any) -> AsanaAuditLogTrigger:
    defaults: dict[str, Any] = {"asana_audit_log_conn_id": "asana_audit_log_default", "poll_interval": 0.1}
    return AsanaAuditLogTrigger(**{**defaults, **kwargs})


def _watch_trigger(**kwargs: Any) -> AsanaAuditLogEventTrigger:
    defaults: dict[str, Any] = {"poll_interval": 0.1, "filters": {"event_type": FAILED_LOGIN}}
    return AsanaAuditLogEventTrigger(**{**defaults, **kwargs})


# --------------------------------------------------------------------------- serialisation


def test_wait_trigger_round_trips_through_serialize() -> None:
    trigger = _wait_trigger(
        start_at="2026-01-01T00:00:00.000Z",
        end_at="2026-01-02T00:00:00.000Z",
        filters={"event_type": FAILED_LOGIN, "actor_type": "user"},
        min_events=3,
        poll_interval=30.0,
        timeout_at="2026-01-01T01:00:00.000Z",
    )

    rebuilt = _rebuild(trigger)

    assert type(rebuilt) is AsanaAuditLogTrigger
    assert rebuilt.serialize() == trigger.serialize()


def test_watch_trigger_round_trips_through_serialize() -> None:
    trigger = _watch_trigger(start_at=datetime(2026, 1, 1, 12, tzinfo=timezone.utc), poll_interval=15.0)

    rebuilt = _rebuild(trigger)

    assert type(rebuilt) is AsanaAuditLogEventTrigger
    assert rebuilt.serialize() == trigger.serialize()


def test_watch_trigger_keeps_its_start_as_an_iso_string() -> None:
    trigger = _watch_trigger(start_at=datetime(2026, 1, 1, 12, tzinfo=timezone.utc))

    assert trigger.serialize()[1]["start_at"] == "2026-01-01T12:00:00.000Z"


def test_watch_trigger_refuses_bad_filters_when_the_dag_is_parsed() -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="actor_type"):
        _watch_trigger(filters={"actor_type": "robot"})


# --------------------------------------------------------------------------- the waiting trigger


def test_wait_trigger_fires_once_events_are_appended_while_it_polls(asana_conn: FakeAsana) -> None:
    start_at = now_ms()

    async def scenario() -> dict[str, Any]:
        waiting = asyncio.ensure_future(
            _first_event(
                _wait_trigger(start_at=format_instant(start_at), filters={"event_type": FAILED_LOGIN})
            )
        )
        await await_until(
            lambda: len(asana_conn.requests) >= 2, message="the trigger should poll twice, finding nothing"
        )
        assert not waiting.done()
        await asyncio.to_thread(asana_conn.append_events, 2, event_type=FAILED_LOGIN)
        return await waiting

    payload = _run(scenario())

    truth = asana_conn.ground_truth(start_at, event_type=FAILED_LOGIN)
    assert payload["status"] == "success"
    assert (payload["count"], payload["first_gid"]) == (1, truth[0]["gid"])
    assert payload["next_offset"]


def test_wait_trigger_keeps_the_event_loop_running_while_a_request_is_in_flight(
    asana_conn: FakeAsana,
) -> None:
    # The stand-in holds the response for a second; the loop must run meanwhile.
    asana_conn.inject(Fault.SLOW, delay=1.0)
    in_flight: list[bool] = []

    async def scenario() -> dict[str, Any]:
        start_at = format_instant(datetime.now(timezone.utc) - timedelta(days=2))
        waiting = asyncio.ensure_future(_first_event(_wait_trigger(start_at=start_at)))
        await await_until(lambda: asana_conn.stats.requests == 1, message="the request should arrive")
        # Had the request blocked the loop, this would run only after the response was sent.
        in_flight.append(asana_conn.requests == [] and not waiting.done())
        return await waiting

    payload = _run(scenario())

    assert in_flight == [True]
    assert payload["status"] == "success"
    assert asana_conn.stats.faults_served[Fault.SLOW.value] == 1


def test_wait_trigger_gives_up_with_a_timeout_event_at_its_deadline(asana_conn: FakeAsana) -> None:
    timeout_at = datetime.now(timezone.utc) + timedelta(seconds=0.5)

    payload = _run(
        _first_event(
            _wait_trigger(
                start_at=format_instant(now_ms()),
                filters={"event_type": FAILED_LOGIN},
                poll_interval=60,  # the deadline, not the next poll, ends the wait
                timeout_at=format_instant(timeout_at),
            )
        )
    )

    # Within _run's 30 s: the deadline, not the next poll a minute later, ended the wait.
    assert payload["status"] == "timeout"
    assert payload["count"] == 0
    assert "Found 0 of 1" in payload["message"]
    assert datetime.now(timezone.utc) >= timeout_at


def test_wait_trigger_turns_a_refused_token_into_an_error_event_without_the_token(
    standin: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {**standin.connection_dict(), "password": WRONG_TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", json.dumps(conn))

    payload = _run(_first_event(_wait_trigger(start_at="2026-01-01T00:00:00Z")))

    assert payload["status"] == "error"
    assert "HTTP 401" in payload["message"]
    assert payload["permanent"] is True
    assert WRONG_TOKEN not in json.dumps(payload)


def test_wait_trigger_refuses_a_bad_argument_when_it_is_made(asana_conn: FakeAsana) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="start_at='yesterday' is not an ISO 8601 date-time"):
        _wait_trigger(start_at="yesterday")

    assert asana_conn.requests == []


# --------------------------------------------------------------------------- the watching trigger


def test_watch_trigger_delivers_the_backlog_and_each_appended_event_once(asana_conn: FakeAsana) -> None:
    start_at = datetime.now(timezone.utc) - timedelta(days=3)
    backlog = asana_conn.ground_truth(start_at, event_type=FAILED_LOGIN)
    appended: list[dict[str, Any]] = []

    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(_watch_trigger(start_at=start_at), asana_conn)
        try:
            await watch.until(len(backlog))
            for size in (1, 3, 2):
                appended.extend(
                    await asyncio.to_thread(asana_conn.append_events, size, event_type=FAILED_LOGIN)
                )
                await asyncio.to_thread(asana_conn.append_events, 1, event_type="task_deleted")
                await watch.until(len(backlog) + len(appended))  # each batch in its own poll
            return await watch.until_quiet(len(backlog) + len(appended))
        finally:
            await watch.stop()

    payloads = _run(scenario())

    assert backlog, "the stand-in should hold failed logins in the last 3 days"
    assert gids(payloads) == gids(backlog) + gids(appended)


def test_watch_trigger_from_now_delivers_only_events_created_after_it_started(asana_conn: FakeAsana) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        watch = Watch(_watch_trigger(), asana_conn)
        try:
            # Two polls: the trigger fixed its start at least one poll interval ago.
            await watch.polls(2)
            new = await asyncio.to_thread(asana_conn.append_events, 2, event_type=FAILED_LOGIN)
            return await watch.until_quiet(2), new
        finally:
            await watch.stop()

    payloads, new = _run(scenario())

    assert gids(payloads) == gids(new)


def test_watch_trigger_delivers_each_event_once_when_its_offset_expires(asana_conn: FakeAsana) -> None:
    start_at = now_ms()
    instant = start_at + timedelta(milliseconds=5)  # several events share one created_at
    delivered: list[dict[str, Any]] = []

    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(_watch_trigger(start_at=start_at), asana_conn)
        try:
            delivered.extend(
                await asyncio.to_thread(
                    asana_conn.append_events, 2, created_at=instant, event_type=FAILED_LOGIN
                )
            )
            await watch.until(2)
            asana_conn.inject(Fault.EXPIRE_OFFSET)
            await await_until(
                lambda: asana_conn.stats.faults_served[Fault.EXPIRE_OFFSET.value] == 1,
                message="the trigger's next poll should meet the expired offset",
            )
            delivered.extend(
                await asyncio.to_thread(
                    asana_conn.append_events, 2, created_at=instant, event_type=FAILED_LOGIN
                )
            )
            delivered.extend(await asyncio.to_thread(asana_conn.append_events, 1, event_type=FAILED_LOGIN))
            return await watch.until_quiet(5)
        finally:
            await watch.stop()

    payloads = _run(scenario())

    assert asana_conn.stats.faults_served[Fault.EXPIRE_OFFSET.value] == 1
    assert sorted(gids(payloads)) == sorted(gids(delivered))
    assert len(set(gids(payloads))) == len(payloads) == 5


def test_watch_trigger_payload_is_small_json_with_who_what_and_when(asana_conn: FakeAsana) -> None:
    start_at = now_ms()
    event = asana_conn.append_events(1, event_type=FAILED_LOGIN)[0]

    payload = _run(_first_event(_watch_trigger(start_at=start_at)))

    assert payload == {key: event[key] for key in EVENT_PAYLOAD_KEYS if key in event}
    assert {"gid", "created_at", "event_type", "actor"} <= payload.keys()
    assert json.loads(json.dumps(payload)) == payload


def test_watch_trigger_stops_with_the_error_when_the_token_is_refused(
    standin: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {**standin.connection_dict(), "password": WRONG_TOKEN}
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", json.dumps(conn))

    with pytest.raises(AsanaAuditLogAuthError, match="HTTP 401") as raised:
        _run(_first_event(_watch_trigger()))
    assert WRONG_TOKEN not in str(raised.value)


# --------------------------------------------------------------------------- Airflow 3 asset watcher


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="AssetWatcher is Airflow 3 only")
def test_watch_trigger_is_an_event_trigger_that_an_asset_watcher_accepts() -> None:
    from airflow.providers.common.compat.triggers import BaseEventTrigger
    from airflow.sdk import Asset, AssetWatcher

    trigger = _watch_trigger(start_at="2026-01-01T00:00:00Z")

    assert isinstance(trigger, BaseEventTrigger)
    Asset("asana_failed_logins", watchers=[AssetWatcher(name="w", trigger=trigger)])  # validates it


@pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="AssetWatcher is Airflow 3 only")
def test_watch_trigger_hashes_stably_across_a_rebuild() -> None:
    from airflow.providers.common.compat.triggers import BaseEventTrigger

    trigger = _watch_trigger(start_at="2026-01-01T00:00:00Z")

    assert BaseEventTrigger.hash(*trigger.serialize()) == BaseEventTrigger.hash(
        *_rebuild(trigger).serialize()
    )
