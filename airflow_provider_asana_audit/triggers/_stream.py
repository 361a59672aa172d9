"""
The event trigger's machinery: marks in the audit log's order, the poll that one or several watchers
share, and the state store key under which each watcher keeps its position.

.. seealso::
    docs/triggers.md#asanaauditlogeventtrigger
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, Iterator, Sequence
from contextlib import aclosing, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlencode
from weakref import WeakKeyDictionary

from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogConfigError,
    AsanaAuditLogRetriesExhaustedError,
)
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.query import AuditLogQuery, Event, StreamPosition
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_3_PLUS

#: The keys of an audit event that the event trigger puts in its payload.
EVENT_PAYLOAD_KEYS = ("gid", "created_at", "event_type", "actor", "resource", "context")
#: The first part of the event trigger's ``shared_stream_key``, which the triggerer compares with the
#: keys of every other trigger's shared stream.
SHARED_STREAM = "airflow_provider_asana_audit.audit_log_events"
#: The start of the key under which a watcher's position is stored in its asset's state store.
POSITION_KEY = "asana_audit_log_position"
#: Airflow's limit on the length of a state store key.
MAX_KEY_LENGTH = 512

# The triggers module's logger: the poll's lines have always been logged, and configured, under it.
log = logging.getLogger("airflow_provider_asana_audit.triggers.audit_log")


def event_payload(event: Event) -> dict[str, Any]:
    """The small, JSON-serialisable part of an audit event that becomes the asset event's payload."""
    return {key: event[key] for key in EVENT_PAYLOAD_KEYS if key in event}


def position_key(conn_id: str, filters: dict[str, str]) -> str:
    """The state store key of a watcher's position: the stream it reads (connection and filters)."""
    chosen = sorted((name, str(value)) for name, value in filters.items() if value is not None)
    key = f"{POSITION_KEY}:{conn_id}" + (f"?{urlencode(chosen)}" if chosen else "")
    if len(key) > MAX_KEY_LENGTH:
        key = f"{POSITION_KEY}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


@dataclass(frozen=True)
class Mark:
    """
    A point in the audit log's order: every event created before ``created_at``, and the events with
    the ``gids`` at that instant, are behind it. The resumable part of a :class:`StreamPosition`.
    """

    created_at: str
    gids: frozenset[str]

    @classmethod
    def of(cls, position: StreamPosition) -> Mark:
        start = position.query.start_at
        created_at = position.last_created_at or (format_instant(start) if start else None)
        if created_at is None:
            raise ValueError("a position without a start has no mark")
        return cls(created_at, frozenset(position.gids_at_last))

    @property
    def instant(self) -> datetime:
        return parse_instant(self.created_at, name="created_at")

    def covers(self, other: Mark) -> bool:
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
    def from_json(cls, value: Any) -> Mark:
        """Read a stored position; raises ``ValueError`` for anything this class did not write."""
        if not isinstance(value, dict):
            raise ValueError(f"not an object: {value!r}")
        created_at, gids = value.get("last_created_at"), value.get("gids_at_last")
        if not isinstance(created_at, str) or not isinstance(gids, list):
            raise ValueError(f"no last_created_at and gids_at_last: {value!r}")
        parse_instant(created_at, name="last_created_at")
        return cls(created_at, frozenset(str(gid) for gid in gids))


@dataclass(eq=False)
class Batch:
    """
    One page of a poll, as broadcast to the watchers: the poll's mark before it, and its events.

    ``commits`` collects, from each watcher that used the batch, its state store and its mark after
    the batch: the poll stores them once the batch is resolved (:meth:`Poll.commit`).
    """

    before: Mark
    events: list[Event]
    commits: list[tuple[PositionStore, Mark]] = field(default_factory=list)


class PositionStore:
    """
    A watcher's position in its asset's state store, under one key.

    :param accessor: the asset's state store accessor, or the triggerer's accessors of every watched
        asset.
    :param key: the key, from :func:`position_key`.
    :param named: whether ``accessor`` is one asset's, picked by ``asset_name``, rather than the
        triggerer's accessors of every watched asset, which act on the only one and raise if there are
        several.
    """

    def __init__(self, accessor: Any, key: str, *, named: bool) -> None:
        self.accessor = accessor
        self.key = key
        self.named = named

    async def load(self) -> Mark | None:
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
            return Mark.from_json(value)
        except ValueError as err:
            raise AsanaAuditLogConfigError(
                f"The stored position {self.key!r} of {self.accessor!r} cannot be read ({err}); delete "
                "that key from the asset's state store to start again at start_at"
            ) from None

    async def save(self, mark: Mark) -> None:
        await self.accessor.aset(self.key, mark.to_json())


class Demands:
    """
    Where the watchers of one poll need it to be: each one's position while the poll is ahead of it.

    The shared stream only flows from the poll to the watchers, so a watcher that joins behind the
    poll (after a restart, or later than the others) says so here, and the poll goes back to the
    earliest such position on its next round; the process-wide registry is keyed like the shared
    stream, so that the poll and its watchers find each other.
    """

    _shared: ClassVar[dict[Hashable, Demands]] = {}

    def __init__(self) -> None:
        self._marks: dict[int, Mark] = {}
        self._wakeups: set[asyncio.Event] = set()

    @classmethod
    def shared(cls, key: Hashable) -> Demands:
        """The demands on the shared poll ``key``."""
        return cls._shared.setdefault(key, cls())

    def want(self, watcher: int, mark: Mark | None) -> None:
        """Ask the poll to go back to ``mark`` for ``watcher``; ``None`` withdraws the request."""
        if mark is None:
            self._marks.pop(watcher, None)
        elif self._marks.get(watcher) != mark:
            self._marks[watcher] = mark
            for wakeup in self._wakeups:
                wakeup.set()

    def earliest(self) -> Mark | None:
        """A mark that every requested one covers, or ``None`` if nothing is requested."""
        if not self._marks:
            return None
        first = min(mark.instant for mark in self._marks.values())
        at_first = [mark for mark in self._marks.values() if mark.instant == first]
        return Mark(at_first[0].created_at, frozenset.intersection(*(mark.gids for mark in at_first)))

    @contextmanager
    def wakeup(self) -> Iterator[asyncio.Event]:
        """An event of the running loop, set whenever a watcher asks the poll to go back."""
        event = asyncio.Event()
        self._wakeups.add(event)
        try:
            yield event
        finally:
            self._wakeups.discard(event)


class Poll:
    """
    Polls one query of the audit log and yields its pages as :class:`Batch` es, through the client's
    one pagination loop (:meth:`AsanaAuditLogClient.follow`).

    It starts at the earliest position its watchers ask for and goes back whenever one asks for an
    earlier one; between rounds it waits ``poll_interval`` seconds, or less when a watcher asks.

    :param conn_id: the connection id.
    :param filters: Asana's filters, sent with each request (none for a shared poll).
    :param poll_interval: seconds between rounds once the stream is caught up.
    :param demands: where the watchers need the poll to be.
    """

    def __init__(
        self, *, conn_id: str, filters: dict[str, str], poll_interval: float, demands: Demands
    ) -> None:
        self.conn_id = conn_id
        self.query = AuditLogQuery.build(None, None, filters=filters)
        self.poll_interval = poll_interval
        self.demands = demands
        self._written: WeakKeyDictionary[PositionStore, Mark] = WeakKeyDictionary()

    async def batches(self) -> AsyncGenerator[Batch, None]:
        hook = AsanaAuditLogHook(self.conn_id)
        try:
            with self.demands.wakeup() as wakeup:
                client = await hook.aget_client()
                position: StreamPosition | None = None
                while True:
                    wanted = self.demands.earliest()
                    if wanted is not None and (position is None or not wanted.covers(Mark.of(position))):
                        if position is not None:
                            log.info("Asana audit log poll goes back to %s for a watcher", wanted.created_at)
                        position = wanted.position(self.query)
                    if position is not None:
                        pages = client.follow(position)
                        try:
                            while True:
                                before = Mark.of(position)
                                page = await asyncio.to_thread(next, pages, None)
                                if page is None:
                                    break
                                yield Batch(before=before, events=page.events)
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

    async def unacknowledged(self) -> AsyncGenerator[Batch, None]:
        """
        The batches, each one's positions stored as soon as the next is asked for: its events were
        handed over, but nothing on this path tells whether Airflow stored them (see :class:`AckedPoll`).
        """
        async with aclosing(self.batches()) as polled:
            async for batch in polled:
                yield batch
                await self.commit(batch)

    async def commit(self, batch: Batch) -> None:
        """Store the positions that the watchers reached with ``batch`` (skipping unchanged ones)."""
        for store, mark in batch.commits:
            if self._written.get(store) != mark:
                await store.save(mark)
                self._written[store] = mark


if AIRFLOW_V_3_3_PLUS:
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

    class AckedPoll(SharedStreamProducer):
        """The shared poll as Airflow's ack-mode producer: positions are stored in :meth:`advance`."""

        def __init__(self, poll: Poll) -> None:
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
