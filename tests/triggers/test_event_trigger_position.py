"""
The event trigger keeps its stream position across restarts, and its watchers share one poll.

Without a real triggerer: the trigger's own poll (``run()``) is driven directly, the state store the
triggerer injects is a stand-in (:class:`~tests.triggers.support.FakeStateStore`, or Airflow's own
accessors over a fake supervisor channel), and on Airflow 3.3+ the shared stream runs on Airflow's own
``SharedStreamManager`` in ack mode, with the test playing the part of the metadata database that
stores asset events and confirms them (:class:`~tests.triggers.support.Triggerer`). A restart is a new
trigger with the same store; a kill is a store that takes no more writes. ``tests/e2e`` does the same
with the real triggerer and SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar, cast

import pytest

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogEventTrigger
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_3_PLUS
from tests.helpers.clients import now_ms
from tests.helpers.waiting import await_until
from tests.triggers.support import FakeStateStore, Triggerer, Watch, gids

FAILED_LOGIN = "user_login_failed"
TASK_DELETED = "task_deleted"
T = TypeVar("T")

needs_asset_refs = pytest.mark.skipif(not AIRFLOW_V_3_0_PLUS, reason="asset references are Airflow 3 only")
needs_shared_streams = pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS, reason="shared streams and the asset state store are Airflow 3.3+"
)


def _run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    """Run a coroutine to completion in a fresh event loop, with a safety timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def _trigger(store: FakeStateStore | None = None, **kwargs: Any) -> AsanaAuditLogEventTrigger:
    defaults: dict[str, Any] = {"poll_interval": 0.1, "filters": {"event_type": FAILED_LOGIN}}
    trigger = AsanaAuditLogEventTrigger(**{**defaults, **kwargs})
    if store is not None:
        # As the triggerer injects it before running the trigger (a stand-in for Airflow's accessors).
        trigger.asset_state_store = cast(Any, store)
    return trigger


def _position_after(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The position a watcher stores once it has read ``events``: the last instant and its gids."""
    last = events[-1]["created_at"]
    return {
        "last_created_at": last,
        "gids_at_last": sorted(e["gid"] for e in events if e["created_at"] == last),
    }


def _stored(store: FakeStateStore, name: str | None = None) -> dict[str, Any] | None:
    """The one position stored for an asset, or ``None``."""
    positions = store.positions(name)
    assert len(positions) <= 1, positions
    return next(iter(positions.values()), None)


async def _append(fake: FakeAsana, n: int, **kwargs: Any) -> list[dict[str, Any]]:
    return await asyncio.to_thread(fake.append_events, n, **kwargs)


async def _later_than(events: list[dict[str, Any]]) -> None:
    """Wait until the clock is past the events' instant, so that a trigger starting now is after them."""
    last = max(parse_instant(event["created_at"]) for event in events)
    await await_until(
        lambda: datetime.now(timezone.utc) > last + timedelta(milliseconds=1),
        message="the clock should pass them",
    )


async def _first_event(trigger: AsanaAuditLogEventTrigger) -> Any:
    return await anext(trigger.run())


# --------------------------------------------------------------------------- identity and keys


def test_the_new_arguments_are_part_of_the_triggers_identity() -> None:
    trigger = _trigger(lookback=300, asset_name="failed_logins")

    kwargs = trigger.serialize()[1]

    assert (kwargs["lookback"], kwargs["asset_name"]) == (300, "failed_logins")
    assert AsanaAuditLogEventTrigger(**json.loads(json.dumps(kwargs))).serialize() == trigger.serialize()


@needs_asset_refs
def test_an_asset_name_gives_each_asset_its_own_trigger_row() -> None:
    from airflow.providers.common.compat.triggers import BaseEventTrigger

    first, second = _trigger(asset_name="logins_eu"), _trigger(asset_name="logins_us")

    assert BaseEventTrigger.hash(*first.serialize()) != BaseEventTrigger.hash(*second.serialize())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lookback": -1}, "lookback=-1 must be a number of seconds, 0 or more"),
        ({"lookback": "600"}, "lookback='600' must be a number of seconds"),
        ({"poll_interval": 0}, "poll_interval=0 must be a positive number of seconds"),
        ({"start_at": "2026-01-01T00:00:00"}, "start_at='2026-01-01T00:00:00' has no timezone"),
    ],
)
def test_wrong_arguments_are_refused_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match=re.escape(message)):
        _trigger(**kwargs)


def test_watchers_of_one_connection_and_interval_share_a_stream_whatever_their_filters() -> None:
    logins = _trigger(filters={"event_type": FAILED_LOGIN})
    users = _trigger(filters={"actor_type": "user"}, start_at="2026-01-01T00:00:00Z")

    assert logins.shared_stream_key() == users.shared_stream_key()
    assert logins.shared_stream_key() != _trigger(asana_audit_log_conn_id="other").shared_stream_key()
    assert logins.shared_stream_key() != _trigger(poll_interval=30).shared_stream_key()


# --------------------------------------------------------------------------- the trigger's own poll


def test_a_restarted_trigger_resumes_at_its_stored_position(asana_conn: FakeAsana) -> None:
    store = FakeStateStore("failed_logins")
    start_at = now_ms()

    async def scenario() -> tuple[list[dict[str, Any]], ...]:
        watch = Watch(_trigger(store, start_at=start_at), asana_conn)
        try:
            before = await _append(asana_conn, 3, event_type=FAILED_LOGIN)
            first_run = await watch.until_quiet(3)
            await await_until(
                lambda: _stored(store) == _position_after(before),
                message="the position after the delivered events should be stored",
            )
        finally:
            await watch.stop()
        outage = await _append(asana_conn, 2, event_type=FAILED_LOGIN)
        restarted = Watch(_trigger(store, start_at=start_at), asana_conn)
        try:
            second_run = await restarted.until_quiet(2)
        finally:
            await restarted.stop()
        return before, first_run, outage, second_run

    before, first_run, outage, second_run = _run(scenario())

    assert gids(first_run) == gids(before)
    assert gids(second_run) == gids(outage)


def test_without_a_store_a_restart_delivers_everything_since_start_at_again(asana_conn: FakeAsana) -> None:
    start_at = now_ms()

    async def scenario() -> tuple[list[dict[str, Any]], ...]:
        watch = Watch(_trigger(start_at=start_at), asana_conn)
        try:
            before = await _append(asana_conn, 2, event_type=FAILED_LOGIN)
            await watch.until_quiet(2)
        finally:
            await watch.stop()
        outage = await _append(asana_conn, 1, event_type=FAILED_LOGIN)
        restarted = Watch(_trigger(start_at=start_at), asana_conn)
        try:
            second_run = await restarted.until_quiet(3)
        finally:
            await restarted.stop()
        return before, outage, second_run

    before, outage, second_run = _run(scenario())

    assert gids(second_run) == gids(before) + gids(outage)


def test_without_a_store_lookback_delivers_the_events_of_that_window_at_each_start(
    asana_conn: FakeAsana,
) -> None:
    now = now_ms()
    (too_old,) = asana_conn.append_events(1, created_at=now - timedelta(seconds=120), event_type=FAILED_LOGIN)
    recent = asana_conn.append_events(2, created_at=now - timedelta(seconds=20), event_type=FAILED_LOGIN)

    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(_trigger(lookback=60), asana_conn)
        try:
            return await watch.until_quiet(2)
        finally:
            await watch.stop()

    # Every start of a trigger without a store is like this one: the outage is recovered up to
    # `lookback`, and the events of the window are delivered again.
    payloads = _run(scenario())

    assert gids(payloads) == gids(recent)
    assert too_old["gid"] not in gids(payloads)


def test_without_a_store_or_lookback_events_created_before_a_start_are_not_delivered(
    asana_conn: FakeAsana,
) -> None:
    missed = asana_conn.append_events(1, event_type=FAILED_LOGIN)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        await _later_than(missed)
        watch = Watch(_trigger(), asana_conn)
        try:
            await watch.polls(2)
            new = await _append(asana_conn, 1, event_type=FAILED_LOGIN)
            return await watch.until_quiet(1), new
        finally:
            await watch.stop()

    payloads, new = _run(scenario())

    assert gids(payloads) == gids(new)
    assert missed[0]["gid"] not in gids(payloads)


def test_a_start_at_later_than_the_stored_position_wins(asana_conn: FakeAsana) -> None:
    store = FakeStateStore("failed_logins")

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        watch = Watch(_trigger(store), asana_conn)
        try:
            await await_until(lambda: _stored(store) is not None, message="a first position should be stored")
        finally:
            await watch.stop()
        skipped = await _append(asana_conn, 1, event_type=FAILED_LOGIN)
        # Asana's instants have milliseconds: `later` too, and the next event is created after it.
        later = now_ms() + timedelta(milliseconds=5)
        await await_until(
            lambda: datetime.now(timezone.utc) > later + timedelta(milliseconds=1), message="time should pass"
        )
        restarted = Watch(_trigger(store, start_at=later), asana_conn)
        try:
            new = await _append(asana_conn, 1, event_type=FAILED_LOGIN)
            payloads = await restarted.until_quiet(1)
        finally:
            await restarted.stop()
        assert skipped[0]["gid"] not in gids(payloads)
        return payloads, new

    payloads, new = _run(scenario())

    assert gids(payloads) == gids(new)


def test_watchers_with_other_filters_keep_their_own_positions_on_one_asset(asana_conn: FakeAsana) -> None:
    store = FakeStateStore("audit")

    async def scenario() -> None:
        watches = [
            Watch(_trigger(store, filters={"event_type": FAILED_LOGIN}), asana_conn),
            Watch(_trigger(store, filters={"event_type": TASK_DELETED}), asana_conn),
        ]
        try:
            await await_until(lambda: len(store.positions()) == 2, message="two positions should be stored")
        finally:
            for watch in watches:
                await watch.stop()

    _run(scenario())

    keys = sorted(store.positions())
    assert keys == [
        f"asana_audit_log_position:asana_audit_log_default?event_type={TASK_DELETED}",
        f"asana_audit_log_position:asana_audit_log_default?event_type={FAILED_LOGIN}",
    ]
    assert "asana_audit_log_default" in keys[0]


def test_an_unreadable_stored_position_stops_the_trigger_with_a_configuration_error(
    asana_conn: FakeAsana,
) -> None:
    store = FakeStateStore("failed_logins")

    async def scenario() -> None:
        watch = Watch(_trigger(store), asana_conn)
        try:
            await await_until(lambda: _stored(store) is not None, message="a first position should be stored")
        finally:
            await watch.stop()
        (key,) = store.positions()
        store.assets["failed_logins"].values[key] = {"offset": "not a position"}
        await _first_event(_trigger(store))

    with pytest.raises(AsanaAuditLogConfigError, match="cannot be read"):
        _run(scenario())


def test_a_trigger_of_several_assets_needs_an_asset_name(asana_conn: FakeAsana) -> None:
    store = FakeStateStore("logins_eu", "logins_us")

    with pytest.raises(AsanaAuditLogConfigError, match="pass asset_name="):
        _run(_first_event(_trigger(store)))
    assert asana_conn.requests == []


@needs_asset_refs
def test_asset_name_picks_the_asset_whose_store_keeps_the_position(asana_conn: FakeAsana) -> None:
    store = FakeStateStore("logins_eu", "logins_us")

    async def scenario() -> None:
        watch = Watch(_trigger(store, asset_name="logins_us"), asana_conn)
        try:
            await await_until(
                lambda: _stored(store, "logins_us") is not None, message="a position should be stored"
            )
        finally:
            await watch.stop()

    _run(scenario())

    assert _stored(store, "logins_eu") is None


@needs_asset_refs
def test_an_asset_name_the_trigger_does_not_watch_is_a_configuration_error(asana_conn: FakeAsana) -> None:
    store = FakeStateStore("logins_eu")

    with pytest.raises(AsanaAuditLogConfigError, match="asset_name='logins_us' is not an asset"):
        _run(_first_event(_trigger(store, asset_name="logins_us")))


@needs_shared_streams
def test_the_position_goes_through_airflows_own_state_store_accessors(
    asana_conn: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk import Asset
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import comms, task_runner
    from airflow.sdk.execution_time.context import AssetStateStoreAccessors

    rows: dict[tuple[str, str], Any] = {}

    class Supervisor:
        """The triggerer's supervisor, as far as the state store goes: rows by asset name and key."""

        async def asend(self, msg: Any) -> Any:
            if isinstance(msg, comms.SetAssetStateStoreByName):
                rows[msg.name, msg.key] = json.loads(json.dumps(msg.value))
                return comms.OKResponse(ok=True)
            assert isinstance(msg, comms.GetAssetStateStoreByName), msg
            if (msg.name, msg.key) not in rows:
                return comms.ErrorResponse(error=ErrorType.ASSET_STORE_NOT_FOUND)
            return comms.AssetStateStoreResult(value=rows[msg.name, msg.key])

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Supervisor(), raising=False)
    start_at = now_ms()

    async def scenario() -> list[dict[str, Any]]:
        trigger = _trigger(start_at=start_at)
        trigger.asset_state_store = AssetStateStoreAccessors(inlets=[Asset(name="failed_logins")])
        watch = Watch(trigger, asana_conn)
        try:
            events = await _append(asana_conn, 2, event_type=FAILED_LOGIN)
            await watch.until_quiet(2)
            await await_until(
                lambda: list(rows.values()) == [_position_after(events)],
                message="the position should be stored through Airflow's accessors",
            )
        finally:
            await watch.stop()
        return events

    _run(scenario())

    ((name, key),) = rows
    assert (name, key) == (
        "failed_logins",
        f"asana_audit_log_position:asana_audit_log_default?event_type={FAILED_LOGIN}",
    )


# --------------------------------------------------------------------------- Airflow 3.3+: shared streams


@needs_shared_streams
def test_the_position_is_stored_only_once_airflow_has_stored_the_asset_events(asana_conn: FakeAsana) -> None:
    store = FakeStateStore("failed_logins")
    start_at = now_ms()

    async def scenario() -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        triggerer = Triggerer()
        triggerer.start(1, _trigger(store, start_at=start_at))
        try:
            await triggerer.until(lambda: _stored(store) is not None, message="the start should be stored")
            events = await _append(asana_conn, 3, event_type=FAILED_LOGIN)
            await triggerer.until_yielded(1, 3)
            seen = asana_conn.stats.requests
            await triggerer.until(lambda: asana_conn.stats.requests >= seen + 3, message="3 more polls")
            unconfirmed = _stored(store)
            triggerer.store_asset_events()
            await triggerer.until(
                lambda: _stored(store) == _position_after(events),
                message="the position should be stored once the asset events are",
            )
            return unconfirmed, events
        finally:
            await triggerer.stop()

    unconfirmed, events = _run(scenario())

    assert unconfirmed == {"last_created_at": format_instant(start_at), "gids_at_last": []}
    assert _stored(store) == _position_after(events)


@needs_shared_streams
def test_after_a_kill_every_event_not_stored_yet_is_delivered_again_and_none_twice_otherwise(
    asana_conn: FakeAsana,
) -> None:
    store = FakeStateStore("failed_logins")
    start_at = now_ms()

    async def scenario() -> tuple[list[dict[str, Any]], ...]:
        first = Triggerer()
        first.start(1, _trigger(store, start_at=start_at))
        try:
            stored = await _append(asana_conn, 3, event_type=FAILED_LOGIN)
            await first.until_yielded(1, 3)
            first.store_asset_events()
            await first.until(lambda: _stored(store) == _position_after(stored), message="stored position")
            in_flight = await _append(asana_conn, 2, event_type=FAILED_LOGIN)
            await first.until_yielded(1, 5)
            store.kill()  # SIGKILL: the asset events of `in_flight` may or may not be stored; nothing else is
        finally:
            await first.stop()
        outage = await _append(asana_conn, 2, event_type=FAILED_LOGIN)
        store.revive()
        second = Triggerer()
        second.start(1, _trigger(store, start_at=start_at))
        try:
            await second.until_yielded(1, 4)
            seen = asana_conn.stats.requests
            await second.until(lambda: asana_conn.stats.requests >= seen + 3, message="3 more polls")
            redelivered = second.yielded[1]
            return stored, in_flight, outage, redelivered
        finally:
            await second.stop()

    stored, in_flight, outage, redelivered = _run(scenario())

    assert gids(redelivered) == gids(in_flight) + gids(outage)
    assert not set(gids(stored)) & set(gids(redelivered))


@needs_shared_streams
def test_watchers_with_different_filters_share_one_unfiltered_poll(asana_conn: FakeAsana) -> None:
    logins_store, deletions_store = FakeStateStore("logins"), FakeStateStore("deletions")
    start_at = now_ms()

    async def scenario() -> tuple[list[dict[str, Any]], ...]:
        triggerer = Triggerer()
        triggerer.start(1, _trigger(logins_store, start_at=start_at, filters={"event_type": FAILED_LOGIN}))
        triggerer.start(2, _trigger(deletions_store, start_at=start_at, filters={"event_type": TASK_DELETED}))
        try:
            logins = await _append(asana_conn, 2, event_type=FAILED_LOGIN)
            deletions = await _append(asana_conn, 3, event_type=TASK_DELETED)
            await _append(asana_conn, 1, event_type="task_created")
            await triggerer.until_yielded(1, 2)
            await triggerer.until_yielded(2, 3)
            seen = asana_conn.stats.requests
            await triggerer.until(lambda: asana_conn.stats.requests >= seen + 3, message="3 more polls")
            return logins, deletions, triggerer.yielded[1], triggerer.yielded[2]
        finally:
            await triggerer.stop()

    logins, deletions, to_logins, to_deletions = _run(scenario())

    assert gids(to_logins) == gids(logins)
    assert gids(to_deletions) == gids(deletions)
    assert asana_conn.requests
    assert all("event_type" not in request.params for request in asana_conn.requests)


@needs_shared_streams
def test_a_watcher_behind_the_shared_poll_makes_it_go_back_and_the_one_ahead_skips_what_it_read(
    asana_conn: FakeAsana,
) -> None:
    ahead_store, behind_store = FakeStateStore("ahead"), FakeStateStore("behind")
    start_at = now_ms()

    async def scenario() -> tuple[list[dict[str, Any]], ...]:
        # The watcher that will be behind reads for a while, then stops, keeping its position.
        earlier = Triggerer()
        earlier.start(2, _trigger(behind_store, start_at=start_at))
        try:
            read = await _append(asana_conn, 1, event_type=FAILED_LOGIN)
            await earlier.until_yielded(2, 1)
            earlier.store_asset_events()
            await earlier.until(
                lambda: _stored(behind_store) == _position_after(read), message="its position"
            )
        finally:
            await earlier.stop()
        missed = await _append(asana_conn, 2, event_type=FAILED_LOGIN)
        await _later_than(missed)

        triggerer = Triggerer()
        triggerer.start(1, _trigger(ahead_store))  # from now: after `missed`
        try:
            seen = asana_conn.stats.requests
            await triggerer.until(lambda: asana_conn.stats.requests >= seen + 2, message="the poll runs")
            both = await _append(asana_conn, 2, event_type=FAILED_LOGIN)
            await triggerer.until_yielded(1, 2)
            triggerer.start(2, _trigger(behind_store, start_at=start_at))
            await triggerer.until_yielded(2, 4)
            seen = asana_conn.stats.requests
            await triggerer.until(lambda: asana_conn.stats.requests >= seen + 3, message="3 more polls")
            return read, missed, both, triggerer.yielded[1], triggerer.yielded[2]
        finally:
            await triggerer.stop()

    read, missed, both, to_ahead, to_behind = _run(scenario())

    assert gids(to_ahead) == gids(both)
    assert gids(to_behind) == gids(missed) + gids(both)
    went_back = [r for r in asana_conn.requests if r.params.get("start_at") == read[0]["created_at"]]
    assert went_back, "the shared poll should go back to the position of the watcher behind it"
