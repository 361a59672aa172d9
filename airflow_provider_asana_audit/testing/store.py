"""
The stand-in's events: kept in serving order, selected as Asana selects them.

* Events are served sorted by ``(created_at, int(gid))``; gids are unique.
* Retention: events older than 90 days, or created before 2021-10-08 (when Asana's audit log
  begins), are never returned; Asana returns nothing for them, silently.
* **Capture delay:** a cursor is a position in that order. An event added later with a
  ``created_at`` before an outstanding cursor is never seen through that cursor, only by a new query
  whose window covers it. This models Asana capturing events late (AWS AppFabric documents up to 30
  minutes for Asana's audit events): a client that reads a window right after it closes can miss
  events that appear later. :meth:`EventStore.ground_truth` always includes them.

Only the standard library is used.
"""

from __future__ import annotations

import bisect
import collections
import copy
import itertools
import random
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

from airflow_provider_asana_audit.testing.data import make_event
from airflow_provider_asana_audit.testing.instants import parse_us
from airflow_provider_asana_audit.testing.query import Cursor, Filters

__all__ = ["AUDIT_LOG_BEGINS_US", "RETENTION_US", "EventStore", "cursor_of", "oldest_kept_us"]

#: 2021-10-08T00:00:00Z, when Asana's audit log begins, in µs since the epoch.
AUDIT_LOG_BEGINS_US = 1_633_651_200_000_000
#: 90 days, how long Asana keeps an audit event, in µs.
RETENTION_US = 90 * 24 * 3600 * 1_000_000
_FIRST_GID = 1_207_000_000_000_000


def oldest_kept_us(now_us: int | None = None) -> int:
    """The oldest instant Asana still holds events for at ``now_us`` (default: now), in µs."""
    if now_us is None:
        now_us = time.time_ns() // 1000
    return max(AUDIT_LOG_BEGINS_US, now_us - RETENTION_US)


def _created_us(created_at: Any) -> int:
    """``created_at`` in µs since the epoch."""
    if not isinstance(created_at, str):
        raise ValueError(f"created_at must be an ISO 8601 string, not {created_at!r}")
    try:
        return parse_us(created_at)
    except ValueError as err:
        raise ValueError(f"created_at: {err}") from None


def cursor_of(event: Mapping[str, Any]) -> Cursor:
    """The position of ``event`` in the serving order."""
    return (_created_us(event["created_at"]), int(event["gid"]))


class EventStore:
    """
    The events of one workspace, in serving order; thread-safe.

    Stored events are never changed after they are added, so the lists :meth:`select` returns may be
    read (serialised) without the lock, but must not be modified.

    :param workspace_gid: the workspace, for events made by :meth:`append`.
    :param seed: seed of the events made by :meth:`append`.
    """

    def __init__(self, *, workspace_gid: str, seed: int = 0) -> None:
        self.workspace_gid = workspace_gid
        self._lock = threading.Lock()
        self._rng = random.Random(f"asana-audit-standin-append:{seed}")
        self._cursors: list[Cursor] = []
        self._events: list[dict[str, Any]] = []
        self._gids: set[str] = set()
        self._top_gid = _FIRST_GID

    def __len__(self) -> int:
        return len(self._events)

    def add(self, events: Iterable[Mapping[str, Any]], *, copy_events: bool = True) -> None:
        """
        Add events with any ``created_at``.

        :param events: the events; each needs a digit-only string ``gid`` and a ``created_at``.
        :param copy_events: store deep copies (``False`` only for events nobody else holds).
        :raises ValueError: for an event without a digit-only ``gid``, with an unparsable
            ``created_at`` or with a gid already present; then nothing is added.
        """
        batch: list[tuple[Cursor, dict[str, Any]]] = []
        for event in events:
            if copy_events:
                item = copy.deepcopy(dict(event))
            else:
                item = event if isinstance(event, dict) else dict(event)
            gid = item.get("gid")
            if not isinstance(gid, str) or not gid.isdigit():
                raise ValueError(f"event gid must be a string of digits, not {gid!r}")
            batch.append(((_created_us(item.get("created_at", "")), int(gid)), item))
        if not batch:
            return
        batch.sort(key=itemgetter(0))  # linear when already sorted, as generated events are
        new_gids = [item["gid"] for _cursor, item in batch]
        with self._lock:
            unique = set(new_gids)
            if len(unique) < len(new_gids) or not self._gids.isdisjoint(unique):
                duplicates = sorted(self._gids.intersection(unique)) or sorted(
                    gid for gid, n in collections.Counter(new_gids).items() if n > 1
                )
                raise ValueError(f"events with these gids exist already: {duplicates[:5]}")
            # Only the events after the batch's first position move: appending fresh events costs
            # nothing, and a late event is merged into the short tail that follows it.
            index = bisect.bisect_left(self._cursors, batch[0][0])
            if index < len(self._cursors):
                tail = zip(self._cursors[index:], self._events[index:], strict=True)
                batch = sorted(itertools.chain(tail, batch), key=itemgetter(0))
                del self._cursors[index:], self._events[index:]
            self._cursors.extend(cursor for cursor, _item in batch)
            self._events.extend(item for _cursor, item in batch)
            self._gids.update(unique)
            self._top_gid = max(self._top_gid, max(int(gid) for gid in unique))

    def append(
        self,
        n: int = 1,
        *,
        created_at: datetime | None = None,
        event_type: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """
        Make ``n`` fresh realistic events and add them.

        :param n: how many.
        :param created_at: their instant (aware); default: now, at the time of each event.
        :param event_type: their ``event_type``; random when ``None``.
        :param overrides: top-level keys to set on every new event (``actor={...}``, ...).
        :return: copies of the new events. Their gids are larger than every gid present.
        """
        new: list[dict[str, Any]] = []
        with self._lock:
            top = self._top_gid
            for _ in range(n):
                top += self._rng.randint(1, 5_000)
                instant = created_at if created_at is not None else datetime.now(timezone.utc)
                event = make_event(
                    self._rng,
                    gid=str(top),
                    created_at=instant,
                    event_type=event_type,
                    workspace_gid=self.workspace_gid,
                )
                event.update(copy.deepcopy(dict(overrides or {})))
                new.append(event)
            self._top_gid = top  # reserved: a concurrent append draws larger gids
        self.add(new, copy_events=False)
        return copy.deepcopy(new)

    def select(
        self, filters: Filters, cursor: Cursor | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """
        The events matching ``filters`` after ``cursor``, at most ``limit``, retention applied.

        The events themselves are returned, not copies: read them, never modify them.
        """
        with self._lock:
            return self._select(filters, cursor, limit)

    def page(self, filters: Filters, cursor: Cursor | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """
        One page after ``cursor``, and whether anything at all matches ``filters``.

        :return: the page (the events themselves: never modify them) and whether any event matches,
            which decides whether Asana sends ``next_page``; both read at the same moment.
        """
        with self._lock:
            page = self._select(filters, cursor, limit)
            return page, bool(page) or bool(self._select(filters, None, 1))

    def _select(self, filters: Filters, cursor: Cursor | None, limit: int | None) -> list[dict[str, Any]]:
        """:meth:`select`; the caller holds the lock."""
        lower = oldest_kept_us()
        if filters.start_us is not None:
            lower = max(lower, filters.start_us)
        cursors, events = self._cursors, self._events
        index = bisect.bisect_left(cursors, (lower, -1))
        if cursor is not None:
            index = max(index, bisect.bisect_right(cursors, cursor))
        found: list[dict[str, Any]] = []
        for position in range(index, len(events)):
            if filters.end_us is not None and cursors[position][0] >= filters.end_us:
                break
            event = events[position]
            if filters.matches(event):
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
        return found

    def ground_truth(self, filters: Filters) -> list[dict[str, Any]]:
        """Copies of every event matching ``filters``, in serving order; late events included."""
        return copy.deepcopy(self.select(filters))

    def all_events(self) -> list[dict[str, Any]]:
        """Copies of every event held, retention ignored, in serving order."""
        with self._lock:
            events = list(self._events)
        return copy.deepcopy(events)
