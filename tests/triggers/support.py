"""
What the trigger tests share: a driver for a trigger's own poll (``run()``), a stand-in for the state
store the triggerer injects, and, on Airflow 3.3+, what the triggerer does with shared streams.

Everything synchronises on what happened (payloads that arrived, requests the stand-in answered,
values that were stored), never on the length of a sleep.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable
from typing import Any

from airflow_provider_asana_audit.testing import FakeAsana
from airflow_provider_asana_audit.triggers.audit_log import AsanaAuditLogEventTrigger
from tests.helpers.waiting import DEADLINE, await_until

__all__ = ["FakeAssetStore", "FakeStateStore", "Triggerer", "Watch", "gids"]


def gids(events: list[dict[str, Any]]) -> list[str]:
    """The gids of events or payloads, in order."""
    return [str(event["gid"]) for event in events]


class Watch:
    """Drives an event trigger's own poll (:meth:`run`) in the background and collects its payloads."""

    def __init__(self, trigger: AsanaAuditLogEventTrigger, fake: FakeAsana) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._fake = fake
        run = trigger.run()
        assert isinstance(run, AsyncGenerator)  # an async generator method, which stop() closes
        self._run = run
        self._task = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        async for event in self._run:
            self.payloads.append(event.payload)

    def _alive(self) -> bool:
        if self._task.done():
            self._task.result()  # raise the trigger's error
            raise AssertionError("the trigger stopped")
        return True

    async def until(self, count: int) -> list[dict[str, Any]]:
        """Wait until ``count`` payloads arrived."""
        await await_until(
            lambda: self._alive() and len(self.payloads) >= count,
            message=f"the trigger should deliver {count} events, not {len(self.payloads)}",
        )
        return list(self.payloads)

    async def polls(self, count: int) -> None:
        """Wait until the trigger has polled ``count`` more times."""
        seen = self._fake.stats.requests
        await await_until(
            lambda: self._alive() and self._fake.stats.requests >= seen + count,
            message=f"the trigger should poll {count} more times",
        )

    async def until_quiet(self, count: int) -> list[dict[str, Any]]:
        """Wait until ``count`` payloads arrived, then for 3 more polls, to catch any duplicate."""
        await self.until(count)
        await self.polls(3)
        return list(self.payloads)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._run.aclose()


class FakeAssetStore:
    """One asset's key/value state, as Airflow's ``AssetStateStoreAccessor`` offers it."""

    def __init__(self, name: str, values: dict[str, Any], *, log: list[tuple[str, str, Any]]) -> None:
        self.name = name
        self.values = values
        self._log = log
        #: Once set, writes are dropped: the process that would write is dead (a SIGKILL).
        self.dead = False

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        if self.dead:
            return
        self.values[key] = json.loads(json.dumps(value))  # stored as JSON, as in the metadata database
        self._log.append((self.name, key, self.values[key]))

    def __repr__(self) -> str:
        return f"<FakeAssetStore name={self.name!r}>"


class FakeStateStore:
    """
    What the triggerer injects as ``asset_state_store`` (Airflow's ``AssetStateStoreAccessors``).

    It holds the state of each watched asset. ``store[Asset.ref(name=...)]`` picks one asset (a
    ``KeyError`` for others); used directly, it acts on the only asset and raises ``ValueError`` when
    there are several, as Airflow's does. The state outlives the trigger, as the database's does: hand
    the same store to the trigger that replaces a stopped one.
    """

    def __init__(self, *names: str) -> None:
        self.writes: list[tuple[str, str, Any]] = []
        self.assets = {name: FakeAssetStore(name, {}, log=self.writes) for name in names}

    def __getitem__(self, ref: Any) -> FakeAssetStore:
        try:
            return self.assets[ref.name]
        except KeyError:
            raise KeyError(f"{ref!r} is not in this task's inlets or outlets") from None

    def _single(self) -> FakeAssetStore:
        if len(self.assets) != 1:
            raise ValueError(f"Task has {len(self.assets)} concrete inlets and outlets")
        return next(iter(self.assets.values()))

    async def aget(self, key: str, default: Any = None) -> Any:
        return await self._single().aget(key, default)

    async def aset(self, key: str, value: Any) -> None:
        await self._single().aset(key, value)

    def kill(self) -> None:
        """From now on, drop writes: the triggerer was killed."""
        for asset in self.assets.values():
            asset.dead = True

    def revive(self) -> None:
        """Accept writes again: a new triggerer runs."""
        for asset in self.assets.values():
            asset.dead = False

    def positions(self, name: str | None = None) -> dict[str, Any]:
        """The values stored for one asset (the only one if ``name`` is ``None``)."""
        return dict((self._single() if name is None else self.assets[name]).values)

    def __repr__(self) -> str:
        return f"<FakeStateStore {sorted(self.assets)}>"


class Triggerer:
    """
    What Airflow 3.3's triggerer does with event triggers that share a stream, in this process.

    Each trigger runs ``filter_shared_stream`` over Airflow's own ``SharedStreamManager`` (ack mode, as
    the triggerer runs it); every event it yields is bound to the batch it came from, exactly as
    ``TriggerRunner.run_trigger`` does. :meth:`store_asset_events` plays Airflow storing the asset
    events and confirming them to the runner; until then, the events are only yielded.
    """

    def __init__(self) -> None:
        from airflow.triggers.shared_stream import SharedStreamManager

        self.manager = SharedStreamManager(ack_timeout=DEADLINE * 4)
        #: Every payload yielded, per trigger id.
        self.yielded: dict[int, list[dict[str, Any]]] = defaultdict(list)
        #: The payloads whose asset events Airflow stored, per trigger id.
        self.stored: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self._pending: list[tuple[int, dict[str, Any], int]] = []
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def start(self, trigger_id: int, trigger: AsanaAuditLogEventTrigger) -> None:
        """Run ``trigger`` as trigger ``trigger_id``, on the stream of its shared-stream key."""
        trigger.trigger_id = trigger_id
        self._tasks[trigger_id] = asyncio.ensure_future(self._run(trigger_id, trigger))

    async def _run(self, trigger_id: int, trigger: AsanaAuditLogEventTrigger) -> None:
        key = trigger.shared_stream_key()
        assert key is not None
        stream = self.manager.subscribe(trigger_id=trigger_id, trigger=trigger, key=key)
        try:
            async for event in trigger.filter_shared_stream(stream):
                seq = self.manager.bind_pending_event(trigger_id=trigger_id, key=key)
                assert seq is not None, "each event is bound to the batch it came from (ack mode)"
                self.yielded[trigger_id].append(event.payload)
                self._pending.append((trigger_id, event.payload, seq))
        finally:
            await self.manager.unsubscribe(trigger_id, key)

    def _check(self) -> bool:
        for task in self._tasks.values():
            if task.done():
                task.result()  # raise the trigger's error
                raise AssertionError("a trigger stopped")
        return True

    async def until(self, predicate: Callable[[], object], *, message: str) -> None:
        """Wait until ``predicate()`` holds, failing at once if a trigger stopped."""
        await await_until(lambda: self._check() and predicate(), message=message)

    async def until_yielded(self, trigger_id: int, count: int) -> list[dict[str, Any]]:
        """Wait until trigger ``trigger_id`` has yielded ``count`` events."""
        await self.until(
            lambda: len(self.yielded[trigger_id]) >= count,
            message=f"trigger {trigger_id} should yield {count} events, not {len(self.yielded[trigger_id])}",
        )
        return list(self.yielded[trigger_id])

    def store_asset_events(self) -> None:
        """Airflow stores the asset events of every event yielded so far and confirms them."""
        for trigger_id, payload, _ in self._pending:
            self.stored[trigger_id].append(payload)
        self.manager.confirm_persisted([seq for _, _, seq in self._pending])
        self._pending.clear()

    async def stop(self) -> None:
        """Cancel every trigger and the shared polls (confirming nothing more)."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self.manager.stop_all()
