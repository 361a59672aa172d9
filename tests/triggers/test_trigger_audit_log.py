"""
The triggers wait for and follow the audit log without blocking the event loop.

Plain tests that drive the async generators with ``asyncio.run``, against the stand-in over real
HTTP; ``standin.ground_truth`` and the events appended by the test are the oracle.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime, timedelta, timezone
from pathlib import Path
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

FAILED_LOGIN = "user_login_failed"
EXAMPLE = Path(__file__).resolve().parents[2] / "example_dags" / "example_asana_audit_watcher.py"
WRONG_TOKEN = "0/wrong-service-account-token-5f1e"
T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    """Run a coroutine to completion in a fresh event loop, with a safety timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _now() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _rebuild(trigger: Any) -> Any:
    """Rebuild a trigger as the triggerer does: import the class path, pass the (JSON) kwargs."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


async def _first_event(trigger: Any) -> dict[str, Any]:
    run: AsyncIterator[Any] = trigger.run()
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
    )

    rebuilt = _rebuild(trigger)

    assert type(rebuilt) is AsanaAuditLogTrigger
    assert rebuilt.serialize() == trigger.serialize()


def test_watch_trigger_round_trips_through_serialize() -> None:
    trigger = _watch_trigger(start_at=datetime(2026, 1, 1, 12, tzinfo=timezone.utc), poll_interval=15.0)

    rebuilt = _rebuild(trigger)

    assert type(rebuilt) is AsanaAuditLogEventTrigger
    assert rebuilt.serialize() == trigger.serialize()
    assert trigger.serialize()[1]["start_at"] == "2026-01-01T12:00:00.000Z"


def test_watch_trigger_refuses_bad_filters_when_the_dag_is_parsed() -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="actor_type"):
        _watch_trigger(filters={"actor_type": "robot"})


# --------------------------------------------------------------------------- the waiting trigger


def test_wait_trigger_fires_once_events_are_appended_while_it_polls(asana_conn: FakeAsana) -> None:
    start_at = _now()

    async def scenario() -> dict[str, Any]:
        waiting = asyncio.ensure_future(
            _first_event(
                _wait_trigger(start_at=format_instant(start_at), filters={"event_type": FAILED_LOGIN})
            )
        )
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await asyncio.to_thread(asana_conn.append_events, 2, event_type=FAILED_LOGIN)
        return await waiting

    payload = _run(scenario())

    truth = asana_conn.ground_truth(start_at, event_type=FAILED_LOGIN)
    assert payload["status"] == "success"
    assert (payload["count"], payload["first_gid"]) == (1, truth[0]["gid"])
    assert payload["next_offset"]


def test_wait_trigger_does_not_block_the_event_loop_during_a_slow_request(asana_conn: FakeAsana) -> None:
    asana_conn.inject(Fault.SLOW, delay=1.0)
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    async def scenario() -> dict[str, Any]:
        ticking = asyncio.ensure_future(ticker())
        try:
            start_at = format_instant(datetime.now(timezone.utc) - timedelta(days=2))
            return await _first_event(_wait_trigger(start_at=start_at))
        finally:
            ticking.cancel()

    started = time.monotonic()
    payload = _run(scenario())

    assert payload["status"] == "success"
    assert asana_conn.stats.faults_served[Fault.SLOW.value] == 1
    assert time.monotonic() - started >= 1.0
    assert len(ticks) >= 10, f"the loop ticked {len(ticks)} times during a 1 s request"


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


def test_wait_trigger_turns_a_bad_argument_into_an_error_event(asana_conn: FakeAsana) -> None:
    payload = _run(_first_event(_wait_trigger(start_at="yesterday")))

    assert payload["status"] == "error"
    assert "start_at='yesterday' is not an ISO 8601 date-time" in payload["message"]
    assert asana_conn.requests == []


# --------------------------------------------------------------------------- the watching trigger


class Watch:
    """Drives an event trigger in the background and collects its payloads."""

    def __init__(self, trigger: AsanaAuditLogEventTrigger) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._run = trigger.run()
        self._task = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        async for event in self._run:
            self.payloads.append(event.payload)

    async def until(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Wait until ``count`` payloads arrived, then a little longer to catch any duplicate."""
        deadline = time.monotonic() + timeout
        while len(self.payloads) < count and time.monotonic() < deadline and not self._task.done():
            await asyncio.sleep(0.05)
        if self._task.done():
            self._task.result()  # raise the trigger's error
        await asyncio.sleep(0.4)  # several more polls
        return list(self.payloads)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def _gids(events: list[dict[str, Any]]) -> list[str]:
    return [str(event["gid"]) for event in events]


def test_watch_trigger_delivers_the_backlog_and_each_appended_event_once(asana_conn: FakeAsana) -> None:
    start_at = datetime.now(timezone.utc) - timedelta(days=3)
    backlog = asana_conn.ground_truth(start_at, event_type=FAILED_LOGIN)
    appended: list[dict[str, Any]] = []

    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(_watch_trigger(start_at=start_at))
        try:
            await watch.until(len(backlog))
            for size in (1, 3, 2):
                appended.extend(
                    await asyncio.to_thread(asana_conn.append_events, size, event_type=FAILED_LOGIN)
                )
                await asyncio.to_thread(asana_conn.append_events, 1, event_type="task_deleted")
                await asyncio.sleep(0.25)
            return await watch.until(len(backlog) + len(appended))
        finally:
            await watch.stop()

    payloads = _run(scenario())

    assert backlog, "the stand-in should hold failed logins in the last 3 days"
    assert _gids(payloads) == _gids(backlog) + _gids(appended)


def test_watch_trigger_from_now_delivers_only_events_created_after_it_started(asana_conn: FakeAsana) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        watch = Watch(_watch_trigger())
        try:
            await asyncio.sleep(0.3)
            new = await asyncio.to_thread(asana_conn.append_events, 2, event_type=FAILED_LOGIN)
            return await watch.until(2), new
        finally:
            await watch.stop()

    payloads, new = _run(scenario())

    assert _gids(payloads) == _gids(new)


def test_watch_trigger_delivers_each_event_once_when_its_offset_expires(asana_conn: FakeAsana) -> None:
    start_at = _now()
    instant = start_at + timedelta(milliseconds=5)  # several events share one created_at
    delivered: list[dict[str, Any]] = []

    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(_watch_trigger(start_at=start_at))
        try:
            delivered.extend(
                await asyncio.to_thread(
                    asana_conn.append_events, 2, created_at=instant, event_type=FAILED_LOGIN
                )
            )
            await watch.until(2)
            asana_conn.inject(Fault.EXPIRE_OFFSET)
            await asyncio.sleep(0.3)
            delivered.extend(
                await asyncio.to_thread(
                    asana_conn.append_events, 2, created_at=instant, event_type=FAILED_LOGIN
                )
            )
            delivered.extend(await asyncio.to_thread(asana_conn.append_events, 1, event_type=FAILED_LOGIN))
            return await watch.until(5)
        finally:
            await watch.stop()

    payloads = _run(scenario())

    assert asana_conn.stats.faults_served[Fault.EXPIRE_OFFSET.value] == 1
    assert sorted(_gids(payloads)) == sorted(_gids(delivered))
    assert len(set(_gids(payloads))) == len(payloads) == 5


def test_watch_trigger_payload_is_small_json_with_who_what_and_when(asana_conn: FakeAsana) -> None:
    start_at = _now()
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


def test_watch_trigger_is_accepted_by_an_asset_watcher_and_hashes_stably() -> None:
    sdk = pytest.importorskip("airflow.sdk")
    if not hasattr(sdk, "AssetWatcher"):
        pytest.skip("AssetWatcher is Airflow 3 only")
    from airflow.triggers.base import BaseEventTrigger

    trigger = _watch_trigger(start_at="2026-01-01T00:00:00Z")
    asset = sdk.Asset("asana_failed_logins", watchers=[sdk.AssetWatcher(name="w", trigger=trigger)])

    assert asset.watchers[0].trigger is trigger
    assert BaseEventTrigger.hash(*trigger.serialize()) == BaseEventTrigger.hash(
        *_rebuild(trigger).serialize()
    )


def test_example_watcher_dag_loads_and_is_scheduled_by_the_watched_asset(airflow_home: Path) -> None:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS

    path = airflow_home / "dags" / EXAMPLE.name
    shutil.copy(EXAMPLE, path)
    dagbag = DagBag(dag_folder=str(path))

    assert not dagbag.import_errors, dagbag.import_errors
    if not AIRFLOW_V_3_0_PLUS:
        assert dagbag.dag_ids == []  # asset watchers are Airflow 3 only
        return
    (asset,) = dagbag.dags["example_asana_audit_watcher"].timetable.asset_condition.objects
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, AsanaAuditLogEventTrigger)
    assert watcher.trigger.serialize()[1]["filters"] == {"event_type": FAILED_LOGIN}
