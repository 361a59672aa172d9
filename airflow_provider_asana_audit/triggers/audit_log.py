"""
The triggers: one that waits for new events in Asana's audit log, one that follows them.

.. seealso::
    docs/triggers.md
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Hashable
from contextlib import aclosing
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.query import AuditLogQuery, Page, StreamPosition
from airflow_provider_asana_audit.rules import check_number
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.triggers._stream import (
    EVENT_PAYLOAD_KEYS,
    SHARED_STREAM,
    Batch,
    Demands,
    Mark,
    Poll,
    PositionStore,
    event_payload,
    position_key,
)

__all__ = ["EVENT_PAYLOAD_KEYS", "AsanaAuditLogEventTrigger", "AsanaAuditLogTrigger"]


class AsanaAuditLogTrigger(BaseTrigger):
    """
    Fire once at least ``min_events`` events match the filters in ``[start_at, end_at)``.

    :param asana_audit_log_conn_id: the connection id.
    :param start_at: events created at or after this instant, as an ISO 8601 string.
    :param end_at: events created before this instant, as an ISO 8601 string, or ``None``.
    :param filters: Asana's filters, a subset of ``event_type``, ``actor_type``, ``actor_gid``,
        ``resource_gid``.
    :param min_events: how many events are enough.
    :param poll_interval: seconds between checks.
    :param timeout_at: when to give up, as an ISO 8601 string; ``None``: never.

    .. seealso::
        docs/triggers.md#asanaauditlogtrigger
    """

    def __init__(
        self,
        *,
        asana_audit_log_conn_id: str,
        start_at: str,
        end_at: str | None = None,
        filters: dict[str, str] | None = None,
        min_events: int = 1,
        poll_interval: float = 60.0,
        timeout_at: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        self.start_at = start_at
        self.end_at = end_at
        self.filters = dict(filters or {})
        self.min_events = min_events
        self.poll_interval = poll_interval
        self.timeout_at = timeout_at
        # Checked where the trigger is made (in the sensor's task), not later in the triggerer.
        AuditLogQuery.build(start_at, end_at, filters=self.filters)
        check_number(poll_interval, name="poll_interval", positive=True, unit="seconds", hint="e.g. 60")
        if timeout_at is not None:
            try:
                parse_instant(timeout_at, name="timeout_at")
            except ValueError as err:
                raise AsanaAuditLogConfigError(str(err)) from None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "asana_audit_log_conn_id": self.asana_audit_log_conn_id,
                "start_at": self.start_at,
                "end_at": self.end_at,
                "filters": dict(self.filters),
                "min_events": self.min_events,
                "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check every ``poll_interval`` seconds until satisfied; yield one success, timeout or error."""
        hook = AsanaAuditLogHook(self.asana_audit_log_conn_id)
        # The trigger carries its own deadline: `airflow dags test` runs triggers in-process and does
        # not enforce a deferred task's timeout, as the scheduler does.
        deadline = parse_instant(self.timeout_at, name="timeout_at") if self.timeout_at else None
        try:
            while True:
                found = await hook.acheck(
                    start_at=self.start_at,
                    end_at=self.end_at,
                    filters=self.filters,
                    min_events=self.min_events,
                )
                if found["count"] >= self.min_events:
                    self.log.info("Found %d matching Asana audit log events", found["count"])
                    yield _trigger_event({"status": "success", **found})
                    return
                left = (deadline - datetime.now(timezone.utc)).total_seconds() if deadline else None
                if left is not None and left <= 0:
                    yield _trigger_event(
                        {
                            "status": "timeout",
                            "message": f"Found {found['count']} of {self.min_events} matching Asana audit "
                            f"log events by the deadline {self.timeout_at}",
                            **found,
                        }
                    )
                    return
                self.log.info(
                    "Found %d of %d Asana audit log events; checking again in %s s",
                    found["count"],
                    self.min_events,
                    self.poll_interval,
                )
                # Wake at the deadline rather than a whole poll interval after it.
                await asyncio.sleep(self.poll_interval if left is None else min(self.poll_interval, left))
        except Exception as err:
            # The message goes to the task log. The package's own messages never hold the token, and
            # the client sends the token only in a header, which no error of requests repeats.
            yield _trigger_event(
                {
                    "status": "error",
                    "message": str(err) or type(err).__name__,
                    "permanent": isinstance(err, AirflowFailException),
                }
            )
        finally:
            hook.close()


class AsanaAuditLogEventTrigger(BaseEventTrigger):  # type: ignore[misc]  # BaseTrigger on Airflow 2
    """
    Fire once per new audit event that matches the filters, for an ``AssetWatcher`` (Airflow 3).

    :param asana_audit_log_conn_id: the connection id.
    :param start_at: deliver events created at or after this instant (an ISO 8601 string or an aware
        datetime), also when a stored position is older; ``None``: see ``lookback``.
    :param filters: Asana's filters, a subset of ``event_type``, ``actor_type``, ``actor_gid``,
        ``resource_gid``.
    :param poll_interval: seconds between polls once the stream is caught up.
    :param lookback: with ``start_at=None`` and no stored position, start this many seconds before
        the trigger starts (every start before Airflow 3.3; only the first on 3.3+).
    :param asset_name: the name of the asset whose state store keeps the position (Airflow 3.3+);
        needed only when identical triggers watch several assets.

    .. seealso::
        docs/triggers.md#asanaauditlogeventtrigger: the payload, where reading starts, the delivery
        guarantees, the shared poll, errors
    """

    def __init__(
        self,
        *,
        asana_audit_log_conn_id: str = AsanaAuditLogHook.default_conn_name,
        start_at: str | datetime | None = None,
        filters: dict[str, str] | None = None,
        poll_interval: float = 60.0,
        lookback: float = 0.0,
        asset_name: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger is untyped
        # Everything is checked here, so that a wrong argument fails the DAG file's parse, not the
        # triggerer.
        try:
            parsed = parse_instant(start_at, name="start_at") if start_at else None
        except ValueError as err:
            raise AsanaAuditLogConfigError(str(err)) from None
        check_number(poll_interval, name="poll_interval", positive=True, unit="seconds", hint="e.g. 60")
        check_number(lookback, name="lookback", positive=False, unit="seconds")
        self.asana_audit_log_conn_id = asana_audit_log_conn_id
        # Kept as an ISO string, so that the kwargs (the trigger's identity) serialise plainly.
        self.start_at = format_instant(parsed) if parsed is not None else None
        self.filters = dict(filters or {})
        self.poll_interval = poll_interval
        self.lookback = lookback
        self.asset_name = asset_name
        AuditLogQuery.build(parsed or datetime.now(timezone.utc), None, filters=self.filters)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and the keyword arguments that rebuild this trigger."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "asana_audit_log_conn_id": self.asana_audit_log_conn_id,
                "start_at": self.start_at,
                "filters": dict(self.filters),
                "poll_interval": self.poll_interval,
                "lookback": self.lookback,
                "asset_name": self.asset_name,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """
        Yield one event per new audit event, forever, from a poll of this trigger's own.

        What the triggerer runs before Airflow 3.3 (and what runs a trigger outside a triggerer); on
        3.3+ the triggerer calls :meth:`filter_shared_stream` instead. The filters are sent to Asana.
        """
        poll = Poll(
            conn_id=self.asana_audit_log_conn_id,
            filters=self.filters,
            poll_interval=self.poll_interval,
            demands=Demands(),
        )
        async with aclosing(self._deliver(poll.unacknowledged(), poll.demands)) as events:
            async for event in events:
                yield event

    # ------------------------------------------------------------------ Airflow 3.3+: shared stream

    def shared_stream_key(self) -> Hashable | None:
        """
        Watchers of one connection with one ``poll_interval`` share a poll (Airflow 3.3+).

        The filters are left out on purpose: the shared poll reads the whole audit log and each
        watcher keeps its own events, so watchers with different filters share too.
        """
        return (SHARED_STREAM, self.asana_audit_log_conn_id, float(self.poll_interval))

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> Any:
        """
        The shared poll of a group of watchers, in Airflow's ack mode (Airflow 3.3+).

        Ack mode is what makes the stored position safe: Airflow hands a batch back for
        :meth:`AckedPoll.advance` only once every watcher moved past it and the asset events they
        made of it are stored; only then is each watcher's position after the batch stored.
        """
        # Defined on Airflow 3.3+ only, where the triggerer calls this.
        from airflow_provider_asana_audit.triggers._stream import AckedPoll

        trigger = cls(**kwargs)
        poll = Poll(
            conn_id=trigger.asana_audit_log_conn_id,
            filters={},
            poll_interval=trigger.poll_interval,
            demands=Demands.shared(trigger.shared_stream_key()),
        )
        return AckedPoll(poll)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Yield one event per new audit event of this watcher's filters, from the shared poll."""
        demands = Demands.shared(self.shared_stream_key())
        async with aclosing(self._deliver(shared_stream, demands)) as events:
            async for event in events:
                yield event

    # ------------------------------------------------------------------ both paths

    async def _deliver(
        self, batches: AsyncIterator[Batch], demands: Demands
    ) -> AsyncGenerator[TriggerEvent, None]:
        """
        Turn a poll's batches into this watcher's trigger events, moving and storing its position.

        A batch is usable when it starts at or before this watcher's position (nothing between the two
        is missing); an earlier one is waited out while the poll goes back to where this watcher
        stands (``demands``). Of a usable batch, the events after the position are admitted through
        the position (the client's de-duplication at an instant), and those matching the filters are
        yielded. The position after the batch is attached to it, for the poll to store once the batch
        is resolved.
        """
        store = self._position_store()
        stored = await store.load() if store is not None else None
        mark = self._start_mark(stored)
        self.log.info(
            "Following the Asana audit log from %s (%s)",
            mark.created_at,
            "stored position" if mark == stored else "start_at" if self.start_at else "trigger start",
        )
        position = StreamPosition(
            query=AuditLogQuery.build(mark.instant, None, filters=self.filters),
            last_created_at=mark.created_at,
            gids_at_last=set(mark.gids),
        )
        watcher = id(self)
        demands.want(watcher, mark)
        try:
            async for batch in batches:
                mark = Mark.of(position)
                if not mark.covers(batch.before):
                    demands.want(watcher, mark)
                    continue
                demands.want(watcher, None)
                # A batch that starts exactly here continues this position: admit() alone handles it,
                # as in the client's own pagination. One from further back (the poll went back for
                # another watcher) repeats events already read, which are dropped first.
                events = (
                    batch.events if batch.before == mark else [e for e in batch.events if not mark.holds(e)]
                )
                for event in position.admit(Page(events=events, next_offset=None)):
                    if position.query.matches(event):
                        yield _trigger_event(event_payload(event))
                if store is not None:
                    batch.commits.append((store, Mark.of(position)))
        finally:
            demands.want(watcher, None)

    def _start_mark(self, stored: Mark | None) -> Mark:
        """Where reading starts: the stored position, but never before ``start_at``; else a start."""
        floor = parse_instant(self.start_at, name="start_at") if self.start_at else None
        if stored is not None and (floor is None or stored.instant >= floor):
            return stored
        if self.start_at is not None:
            return Mark(self.start_at, frozenset())
        now = datetime.now(timezone.utc) - timedelta(seconds=self.lookback)
        return Mark(format_instant(now.replace(microsecond=now.microsecond // 1000 * 1000)), frozenset())

    def _position_store(self) -> PositionStore | None:
        """Where this watcher keeps its position: its asset's state store (Airflow 3.3+), else nowhere."""
        # Injected by the triggerer on Airflow 3.3+, for asset watchers only.
        assets = getattr(self, "asset_state_store", None)
        if assets is None:
            return None
        key = position_key(self.asana_audit_log_conn_id, self.filters)
        if self.asset_name is None:
            # Airflow's accessors act on the only asset directly; with several, they raise on use.
            return PositionStore(assets, key, named=False)
        from airflow.sdk import Asset

        try:
            return PositionStore(assets[Asset.ref(name=self.asset_name)], key, named=True)
        except KeyError:
            raise AsanaAuditLogConfigError(
                f"asset_name={self.asset_name!r} is not an asset this trigger watches ({assets!r}): "
                "pass the name of the asset whose AssetWatcher holds this trigger"
            ) from None


def _trigger_event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]  # untyped in Airflow
