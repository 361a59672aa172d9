"""
What the stand-in remembers of the requests it answered: the :class:`Stats` counters and the
:class:`RecordedRequest` log, kept by a :class:`Recorder`.

Only the standard library is used.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from dataclasses import dataclass, field

from airflow_provider_asana_audit.testing.faults import Fault
from airflow_provider_asana_audit.testing.query import ParsedRequest

__all__ = ["RecordedRequest", "Recorder", "Stats"]


@dataclass(frozen=True)
class RecordedRequest:
    """
    One request the stand-in answered, as kept in :attr:`FakeAsana.requests`.

    :param method: the HTTP method.
    :param path: the URL path, without the query.
    :param params: the query parameters.
    :param headers: the request headers, without ``Authorization``.
    :param status: the status sent; ``0`` when the connection was dropped without a response.
    :param fault: the value of the fault served, if any.
    :param time: when the request arrived (``time.time()``).
    :param refused: which of the token's limits refused it with 429 (``"rate"`` or ``"concurrency"``);
        ``None`` when none did (an injected 429 is a ``fault``).
    """

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int
    fault: str | None = None
    time: float = 0.0
    refused: str | None = None


@dataclass(frozen=True)
class Stats:
    """
    A snapshot of the stand-in's counters.

    :param requests: requests received, faults included.
    :param by_status: responses by status (``0``: dropped); missing statuses read as 0.
    :param faults_served: faults served by :class:`Fault` value; missing faults read as 0.
    :param pages_served: complete 200 pages of audit events served.
    :param events_served: events in those pages.
    :param refused: 429s by the limit that sent them, ``"rate"`` (the per-minute token bucket) or
        ``"concurrency"`` (the cap on requests in flight); missing limits read as 0.
    """

    requests: int = 0
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    faults_served: collections.Counter[str] = field(default_factory=collections.Counter)
    pages_served: int = 0
    events_served: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)


class Recorder:
    """The counters and the log of answered requests; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Its Counters belong to the recorder and are updated in place; snapshots get copies.
        self._stats = Stats()
        self._requests: list[RecordedRequest] = []

    def arrived(self) -> None:
        """Count a request as it arrives (before it is answered)."""
        with self._lock:
            self._stats = dataclasses.replace(self._stats, requests=self._stats.requests + 1)

    def answered(
        self,
        request: ParsedRequest,
        status: int,
        *,
        fault: Fault | None,
        arrived_at: float,
        events: int | None,
        refused: str | None = None,
    ) -> None:
        """
        Log an answered request and count its status, fault and events.

        :param status: the status sent; 0 for a dropped connection.
        :param fault: the fault served, if any.
        :param arrived_at: when it arrived (``time.time()``).
        :param events: the events of a complete 200 page; ``None`` for anything else.
        :param refused: the limit that refused it, if any (see :attr:`Stats.refused`).
        """
        with self._lock:
            stats = self._stats
            stats.by_status[status] += 1
            if fault is not None:
                stats.faults_served[fault.value] += 1
            if refused is not None:
                stats.refused[refused] += 1
            if events is not None:
                self._stats = dataclasses.replace(
                    stats, pages_served=stats.pages_served + 1, events_served=stats.events_served + events
                )
            self._requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.params),
                    dict(request.headers),
                    status,
                    fault.value if fault is not None else None,
                    arrived_at,
                    refused,
                )
            )

    @property
    def stats(self) -> Stats:
        """A consistent snapshot of the counters."""
        with self._lock:
            stats = self._stats
            return dataclasses.replace(
                stats,
                by_status=collections.Counter(stats.by_status),
                faults_served=collections.Counter(stats.faults_served),
                refused=collections.Counter(stats.refused),
            )

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered since the last :meth:`reset`, in order."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Zero the counters and forget the recorded requests."""
        with self._lock:
            self._stats = Stats()
            self._requests.clear()
