"""
The async side: triggers that wait for, or follow, new events in Asana's audit log.

Both triggers resolve their connection with the hook's async API and run every blocking HTTP call of
the client in a thread, so the triggerer's event loop is never blocked. A restarted triggerer rebuilds
them from :meth:`serialize`.

- :class:`AsanaAuditLogTrigger` fires once, when enough events have arrived: the deferrable mode of
  :class:`~airflow_provider_asana_audit.sensors.audit_log.AsanaAuditLogSensor`. It keeps no state but
  its keyword arguments.
- :class:`AsanaAuditLogEventTrigger` fires once per new event, for Airflow 3's ``AssetWatcher``. On
  Airflow 3.3+ it keeps its stream position in the watched asset's state store, so that a restarted
  trigger resumes where it stopped, and its watchers share one poll of the audit log.

Both read through :class:`~airflow_provider_asana_audit.hooks.audit_log.AsanaAuditLogHook`; the sensor
and :class:`AsanaAuditLogTrigger` share the hook's one check (``check`` and ``acheck``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Iterator, Sequence
from contextlib import aclosing, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import urlencode
from weakref import WeakKeyDictionary

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_asana_audit.client import AuditLogQuery, Event, Page, StreamPosition
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogConfigError,
    AsanaAuditLogRetriesExhaustedError,
)
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_3_PLUS

__all__ = ["EVENT_PAYLOAD_KEYS", "AsanaAuditLogEventTrigger", "AsanaAuditLogTrigger"]

#: The keys of an event that :class:`AsanaAuditLogEventTrigger` puts in its payload.
EVENT_PAYLOAD_KEYS = ("gid", "created_at", "event_type", "actor", "resource", "context")


class AsanaAuditLogTrigger(BaseTrigger):
    """
    Fire once at least ``min_events`` events match the filters in ``[start_at, end_at)``.

    Polls with :meth:`AsanaAuditLogHook.acheck` every ``poll_interval`` seconds. The event's payload is
    ``{"status": "success", **AuditLogCheck}``, or ``{"status": "error", "message": ...}`` if anything
    fails (transient failures are first retried by the client); ``"permanent": True`` marks errors that
    a task retry cannot cure (a refused token, a wrong workspace, bad arguments). At ``timeout_at`` it
    gives up with ``{"status": "timeout", "message": ...}``: the scheduler enforces a deferred task's
    timeout, but ``airflow dags test`` runs triggers in-process and does not, so the trigger carries
    its own deadline.

    :param asana_audit_log_conn_id: the connection id.
    :param start_at: events created at or after this instant, as an ISO 8601 string.
    :param end_at: events created before this instant, as an ISO 8601 string, or ``None``.
    :param filters: Asana's filters, a subset of ``event_type``, ``actor_type``, ``actor_gid``,
        ``resource_gid``.
    :param min_events: how many events are enough.
    :param poll_interval: seconds between checks.
    :param timeout_at: when to give up, as an ISO 8601 string; ``None``: never.
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
        _check_poll_interval(poll_interval)
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
    Follow the audit log and fire one event per new matching audit event, for an ``AssetWatcher``.

    Each payload, which Airflow puts in the asset event's ``extra["payload"]``, holds the event's
    ``gid``, ``created_at``, ``event_type``, ``actor``, ``resource`` and ``context``. Events are
    delivered in Asana's order (by ``created_at``).

    **Where reading starts.** At the stream position this watcher stored (Airflow 3.3+, below), but
    never before ``start_at``; without a stored position, at ``start_at``, or ``lookback`` seconds
    before the trigger starts. The position is the ``created_at`` of the last event read and the gids
    read at that instant, so reading resumes by time and skips by gid what was delivered already.
    No pagination offset is kept: offsets expire, and one offset serves every watcher of a shared poll
    (below); resuming by time costs one request that re-reads the events of one instant.

    **Delivery guarantee on Airflow 3.3+**, where the triggerer gives event triggers a persistent
    per-asset state store (``asset_state_store``) and runs them on a shared stream in ack mode:

    * *At least once, across triggerer restarts, crashes and kills:* the position is stored in the
      watched asset's state store only after Airflow has confirmed that the asset events of every
      event up to it are stored in the metadata database (the shared stream's persistence-gated
      advance). A restarted trigger resumes at the stored position, so no event created while no
      triggerer ran, or delivered but not yet stored when the triggerer died, is lost (as long as
      Asana still holds it: events are deleted after 90 days).
    * *Exactly once, except* for events whose asset events Airflow stored within the short interval
      before a triggerer dies in which the confirmation is on its way back to the trigger and the
      position is being written (one state sync of the triggerer, typically a second or two): those
      are delivered once more after the restart. Closing that interval would need Airflow to store
      the asset event and the position in one transaction, or to let a trigger read asset events
      back; it offers neither, so exactly-once across a kill cannot be proved.
    * Within one run, each event is delivered exactly once, also when Asana rejects an expired
      offset (reading resumes at the last delivered instant and skips its gids).

    The position is kept under a key named after the connection and the filters, in the state store of
    the watched asset. Identical triggers share one trigger row in Airflow, which then feeds every
    asset whose watcher uses it; pass ``asset_name`` to name the asset whose store keeps the position
    (it also makes each asset's trigger row its own). Without it, a trigger that feeds several assets
    fails with a configuration error rather than run without its guarantee.

    **Before Airflow 3.3** there is no state store, so a restarted trigger cannot know what it
    delivered: it starts again at ``start_at`` (everything since then is delivered again: at least
    once, with duplicates), or ``lookback`` seconds before it starts: events created while no
    triggerer ran are delivered if the outage was shorter than ``lookback``, and the events of the
    last ``lookback`` seconds before the restart are delivered again (at least once for outages
    shorter than ``lookback``; with the default ``lookback=0``, at most once). Within one run each
    event is delivered once. Airflow 2 has no asset watchers: nothing schedules on this trigger there.

    **One poll for several watchers (Airflow 3.3+).** Watchers with the same connection and
    ``poll_interval`` share one poll of the workspace's whole audit log, each keeping the events that
    match its filters (compared as Asana compares them: ``event_type``, ``actor.actor_type``,
    ``actor.gid``, ``resource.gid``) and its own stored position, so N watchers cost one request per
    poll instead of N. A watcher whose position is behind the shared poll (a restart, or one that
    joins later) makes the poll go back to its position; watchers that are ahead skip what they have
    seen. The shared poll reads every event of the workspace, so a workspace with many more events
    per poll than a page holds (100) costs more requests per poll than one filtered watcher would.
    Before 3.3 each trigger polls on its own, with its filters sent to Asana.

    Transient failures that outlast the client's retries are logged and polled again; errors that a
    retry cannot cure (a refused token, a wrong workspace, bad filters) end the trigger with the error.
    Never yields anything but audit events, so a watched asset is never updated by an error. Keep
    every argument constant in the DAG file (never ``datetime.now()``): the arguments are the
    trigger's identity.

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
        _check_poll_interval(poll_interval)
        if isinstance(lookback, bool) or not isinstance(lookback, (int, float)) or lookback < 0:
            raise AsanaAuditLogConfigError(f"lookback={lookback!r} must be a number of seconds, 0 or more")
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
        With a state store, the position after a page is stored as soon as the caller asks for the
        next event: its events were handed over, but nothing on this path tells whether they were
        stored, which is why the triggerer on 3.3+ is given the shared stream in ack mode.
        """
        poll = _Poll(
            conn_id=self.asana_audit_log_conn_id,
            filters=self.filters,
            poll_interval=self.poll_interval,
            demands=_Demands(),
        )

        async def batches() -> AsyncGenerator[_Batch, None]:
            async with aclosing(poll.batches()) as polled:
                async for batch in polled:
                    yield batch
                    await poll.commit(batch)

        async with aclosing(self._deliver(batches(), poll.demands)) as events:
            async for event in events:
                yield event

    # ------------------------------------------------------------------ Airflow 3.3+: shared stream

    def shared_stream_key(self) -> Hashable | None:
        """
        Watchers of one connection with one ``poll_interval`` share a poll (Airflow 3.3+).

        The filters are left out on purpose: the shared poll reads the whole audit log and each
        watcher keeps its own events, so watchers with different filters share too.
        """
        return (_SHARED_STREAM, self.asana_audit_log_conn_id, float(self.poll_interval))

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> Any:
        """
        The shared poll of a group of watchers, in Airflow's ack mode (Airflow 3.3+).

        Ack mode is what makes the stored position safe: Airflow hands a batch back for
        :meth:`_AckedPoll.advance` only once every watcher moved past it and the asset events they
        made of it are stored; only then is each watcher's position after the batch stored.
        """
        trigger = cls(**kwargs)
        poll = _Poll(
            conn_id=trigger.asana_audit_log_conn_id,
            filters={},
            poll_interval=trigger.poll_interval,
            demands=_Demands.shared(trigger.shared_stream_key()),
        )
        return _AckedPoll(poll)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Yield one event per new audit event of this watcher's filters, from the shared poll."""
        demands = _Demands.shared(self.shared_stream_key())
        async with aclosing(self._deliver(shared_stream, demands)) as events:
            async for event in events:
                yield event

    # ------------------------------------------------------------------ both paths

    async def _deliver(
        self, batches: AsyncIterator[_Batch], demands: _Demands
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
                mark = _Mark.of(position)
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
                        yield _trigger_event(_event_payload(event))
                if store is not None:
                    batch.commits.append((store, _Mark.of(position)))
        finally:
            demands.want(watcher, None)

    def _start_mark(self, stored: _Mark | None) -> _Mark:
        """Where reading starts: the stored position, but never before ``start_at``; else a start."""
        floor = parse_instant(self.start_at, name="start_at") if self.start_at else None
        if stored is not None and (floor is None or stored.instant >= floor):
            return stored
        if self.start_at is not None:
            return _Mark(self.start_at, frozenset())
        now = datetime.now(timezone.utc) - timedelta(seconds=self.lookback)
        return _Mark(format_instant(now.replace(microsecond=now.microsecond // 1000 * 1000)), frozenset())

    def _position_store(self) -> _PositionStore | None:
        """Where this watcher keeps its position: its asset's state store (Airflow 3.3+), else nowhere."""
        # Injected by the triggerer on Airflow 3.3+, for asset watchers only.
        assets = getattr(self, "asset_state_store", None)
        if assets is None:
            return None
        key = _position_key(self.asana_audit_log_conn_id, self.filters)
        if self.asset_name is None:
            # Airflow's accessors act on the only asset directly; with several, they raise on use.
            return _PositionStore(assets, key, named=False)
        from airflow.sdk import Asset

        try:
            return _PositionStore(assets[Asset.ref(name=self.asset_name)], key, named=True)
        except KeyError:
            raise AsanaAuditLogConfigError(
                f"asset_name={self.asset_name!r} is not an asset this trigger watches ({assets!r}): "
                "pass the name of the asset whose AssetWatcher holds this trigger"
            ) from None


#: The first part of :meth:`AsanaAuditLogEventTrigger.shared_stream_key`, which the triggerer compares
#: with the keys of every other trigger's shared stream.
_SHARED_STREAM = "airflow_provider_asana_audit.audit_log_events"
#: The start of the key under which a watcher's position is stored in its asset's state store.
_POSITION_KEY = "asana_audit_log_position"
#: Airflow's limit on the length of a state store key.
_MAX_KEY_LENGTH = 512

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Mark:
    """
    A point in the audit log's order: every event created before ``created_at``, and the events with
    the ``gids`` at that instant, are behind it. The resumable part of a :class:`StreamPosition`.
    """

    created_at: str
    gids: frozenset[str]

    @classmethod
    def of(cls, position: StreamPosition) -> _Mark:
        start = position.query.start_at
        created_at = position.last_created_at or (format_instant(start) if start else None)
        if created_at is None:
            raise ValueError("a position without a start has no mark")
        return cls(created_at, frozenset(position.gids_at_last))

    @property
    def instant(self) -> datetime:
        return parse_instant(self.created_at, name="created_at")

    def covers(self, other: _Mark) -> bool:
        """Whether everything behind ``other`` is behind this mark too."""
        mine, theirs = self.instant, other.instant
        return mine > theirs or (mine == theirs and self.gids >= other.gids)

    def holds(self, event: Event) -> bool:
        """Whether ``event`` is behind this mark (read already)."""
        created_at = event.get("created_at")
        if not isinstance(created_at, str):
            return False
        instant = parse_instant(created_at, name="created_at")
        mine = self.instant
        return instant < mine or (instant == mine and str(event.get("gid")) in self.gids)

    def position(self, query: AuditLogQuery) -> StreamPosition:
        """A position of ``query`` that reads on from this mark (by time, skipping its gids)."""
        return StreamPosition(
            query=replace(query, start_at=self.instant),
            last_created_at=self.created_at,
            gids_at_last=set(self.gids),
        )

    def to_json(self) -> dict[str, Any]:
        return {"last_created_at": self.created_at, "gids_at_last": sorted(self.gids)}

    @classmethod
    def from_json(cls, value: Any) -> _Mark:
        """Read a stored position; raises ``ValueError`` for anything this class did not write."""
        if not isinstance(value, dict):
            raise ValueError(f"not an object: {value!r}")
        created_at, gids = value.get("last_created_at"), value.get("gids_at_last")
        if not isinstance(created_at, str) or not isinstance(gids, list):
            raise ValueError(f"no last_created_at and gids_at_last: {value!r}")
        parse_instant(created_at, name="last_created_at")
        return cls(created_at, frozenset(str(gid) for gid in gids))


@dataclass(eq=False)
class _Batch:
    """
    One page of a poll, as broadcast to the watchers: the poll's mark before it, and its events.

    ``commits`` collects, from each watcher that used the batch, its state store and its mark after
    the batch: the poll stores them once the batch is resolved (:meth:`_Poll.commit`).
    """

    before: _Mark
    events: list[Event]
    commits: list[tuple[_PositionStore, _Mark]] = field(default_factory=list)


class _PositionStore:
    """A watcher's position in its asset's state store, under one key."""

    def __init__(self, accessor: Any, key: str, *, named: bool) -> None:
        self.accessor = accessor
        self.key = key
        #: Whether ``accessor`` is one asset's, picked by ``asset_name``, rather than the triggerer's
        #: accessors of every watched asset, which act on the only one and raise if there are several.
        self.named = named

    async def load(self) -> _Mark | None:
        try:
            value = await self.accessor.aget(self.key)
        except ValueError as err:
            if self.named:
                raise
            # Airflow's accessors refuse to pick one of several assets for a shared trigger row.
            raise AsanaAuditLogConfigError(
                f"This trigger watches several assets ({self.accessor!r}), because identical triggers "
                "share one trigger row: pass asset_name= (the asset whose state store keeps the stream "
                f"position) to each watcher's AsanaAuditLogEventTrigger ({err})"
            ) from None
        if value is None:
            return None
        try:
            return _Mark.from_json(value)
        except ValueError as err:
            raise AsanaAuditLogConfigError(
                f"The stored position {self.key!r} of {self.accessor!r} cannot be read ({err}); delete "
                "that key from the asset's state store to start again at start_at"
            ) from None

    async def save(self, mark: _Mark) -> None:
        await self.accessor.aset(self.key, mark.to_json())


class _Demands:
    """
    Where the watchers of one poll need it to be: each one's position while the poll is ahead of it.

    The shared stream only flows from the poll to the watchers, so a watcher that joins behind the
    poll (after a restart, or later than the others) says so here, and the poll goes back to the
    earliest such position on its next round; the process-wide registry is keyed like the shared
    stream, so that the poll and its watchers find each other.
    """

    _shared: ClassVar[dict[Hashable, _Demands]] = {}

    def __init__(self) -> None:
        self._marks: dict[int, _Mark] = {}
        self._wakeups: set[asyncio.Event] = set()

    @classmethod
    def shared(cls, key: Hashable) -> _Demands:
        """The demands on the shared poll ``key``."""
        return cls._shared.setdefault(key, cls())

    def want(self, watcher: int, mark: _Mark | None) -> None:
        """Ask the poll to go back to ``mark`` for ``watcher``; ``None`` withdraws the request."""
        if mark is None:
            self._marks.pop(watcher, None)
        elif self._marks.get(watcher) != mark:
            self._marks[watcher] = mark
            for wakeup in self._wakeups:
                wakeup.set()

    def earliest(self) -> _Mark | None:
        """A mark that every requested one covers, or ``None`` if nothing is requested."""
        if not self._marks:
            return None
        first = min(mark.instant for mark in self._marks.values())
        at_first = [mark for mark in self._marks.values() if mark.instant == first]
        return _Mark(at_first[0].created_at, frozenset.intersection(*(mark.gids for mark in at_first)))

    @contextmanager
    def wakeup(self) -> Iterator[asyncio.Event]:
        """An event of the running loop, set whenever a watcher asks the poll to go back."""
        event = asyncio.Event()
        self._wakeups.add(event)
        try:
            yield event
        finally:
            self._wakeups.discard(event)


class _Poll:
    """
    Polls one query of the audit log and yields its pages as :class:`_Batch` es, through the
    client's one pagination loop (:meth:`AsanaAuditLogClient.follow`).

    It starts at the earliest position its watchers ask for and goes back whenever one asks for an
    earlier one; between rounds it waits ``poll_interval`` seconds, or less when a watcher asks.
    """

    def __init__(
        self, *, conn_id: str, filters: dict[str, str], poll_interval: float, demands: _Demands
    ) -> None:
        self.conn_id = conn_id
        self.query = AuditLogQuery.build(None, None, filters=filters)
        self.poll_interval = poll_interval
        self.demands = demands
        self._written: WeakKeyDictionary[_PositionStore, _Mark] = WeakKeyDictionary()

    async def batches(self) -> AsyncGenerator[_Batch, None]:
        hook = AsanaAuditLogHook(self.conn_id)
        try:
            with self.demands.wakeup() as wakeup:
                client = await hook.aget_client()
                position: StreamPosition | None = None
                while True:
                    wanted = self.demands.earliest()
                    if wanted is not None and (position is None or not wanted.covers(_Mark.of(position))):
                        if position is not None:
                            log.info("Asana audit log poll goes back to %s for a watcher", wanted.created_at)
                        position = wanted.position(self.query)
                    if position is not None:
                        pages = client.follow(position)
                        try:
                            while True:
                                before = _Mark.of(position)
                                page = await asyncio.to_thread(next, pages, None)
                                if page is None:
                                    break
                                yield _Batch(before=before, events=page.events)
                        except AsanaAuditLogRetriesExhaustedError as err:
                            log.warning("Polling the Asana audit log failed, trying again later: %s", err)
                    # Until the next round, or at once when a watcher asks the poll to go back.
                    with suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(
                            wakeup.wait(), None if position is None else self.poll_interval
                        )
                    wakeup.clear()
        finally:
            hook.close()

    async def commit(self, batch: _Batch) -> None:
        """Store the positions that the watchers reached with ``batch`` (skipping unchanged ones)."""
        for store, mark in batch.commits:
            if self._written.get(store) != mark:
                await store.save(mark)
                self._written[store] = mark


if AIRFLOW_V_3_3_PLUS:
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

    class _AckedPoll(SharedStreamProducer):
        """The shared poll as Airflow's ack-mode producer: positions are stored in :meth:`advance`."""

        def __init__(self, poll: _Poll) -> None:
            self.poll = poll

        async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
            async with aclosing(self.poll.batches()) as batches:
                async for batch in batches:
                    yield batch, batch

        async def advance(self, batch: Sequence[AdvanceItem]) -> None:
            # Called with batches that every watcher moved past and whose asset events Airflow has
            # stored. A batch a watcher failed on (its asset events were not confirmed in time) stores
            # nothing: which watcher failed is not told, and a later batch stores the others' positions.
            for item in batch:
                if item.outcome.failed == 0 and item.outcome.rejected == 0:
                    await self.poll.commit(item.broker_payload)


def _position_key(conn_id: str, filters: dict[str, str]) -> str:
    """The state store key of a watcher's position: the stream it reads (connection and filters)."""
    chosen = sorted((name, str(value)) for name, value in filters.items() if value is not None)
    key = f"{_POSITION_KEY}:{conn_id}" + (f"?{urlencode(chosen)}" if chosen else "")
    if len(key) > _MAX_KEY_LENGTH:
        key = f"{_POSITION_KEY}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def _check_poll_interval(poll_interval: object) -> None:
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, (int, float))
        or not poll_interval > 0
    ):
        raise AsanaAuditLogConfigError(
            f"poll_interval={poll_interval!r} must be a positive number of seconds, e.g. 60"
        )


def _trigger_event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]  # untyped in Airflow


def _event_payload(event: Event) -> dict[str, Any]:
    """The small, JSON-serialisable part of an audit event that becomes the asset event's payload."""
    return {key: event[key] for key in EVENT_PAYLOAD_KEYS if key in event}
