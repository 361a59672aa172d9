"""
What the stand-in does besides answering: injected faults, rate limits, counters and a request log.

* :class:`Fault` and :class:`FaultQueue`: one-shot faults served instead of (or around) a normal
  response, in the order they were injected.
* :class:`TokenBuckets`: Asana's per-token rate limit, as a token bucket per token.
* :class:`Recorder`: the :class:`Stats` counters and the :class:`RecordedRequest` log.

Only the standard library is used.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from airflow_provider_asana_audit.testing.query import ParsedRequest

__all__ = [
    "Fault",
    "FaultQueue",
    "PendingFault",
    "RecordedRequest",
    "Recorder",
    "Stats",
    "TokenBuckets",
]


class Fault(str, Enum):
    """
    A fault the stand-in can serve instead of (or around) a normal response.

    Members compare and hash like their string values, so ``"429"`` and ``Fault.RATE_LIMIT`` are
    interchangeable as dict keys (e.g. in :attr:`Stats.faults_served`).
    """

    #: 429 with ``Retry-After: <retry_after>``.
    RATE_LIMIT = "429"
    #: 500 with Asana's error envelope (with an error ``phrase``, as Asana's 500s have).
    SERVER_ERROR_500 = "500"
    #: 502 with Asana's error envelope.
    BAD_GATEWAY_502 = "502"
    #: 503 with Asana's error envelope.
    UNAVAILABLE_503 = "503"
    #: 504 with Asana's error envelope.
    GATEWAY_TIMEOUT_504 = "504"
    #: Close the connection without sending anything.
    DROP = "drop"
    #: Sleep ``delay`` seconds, then respond normally.
    SLOW = "slow"
    #: Send the headers with the full Content-Length but only half of the body, then close.
    TRUNCATE = "truncate"
    #: 200 with an HTML body, as a misbehaving proxy would send.
    NOT_JSON = "not_json"
    #: The next request that carries an ``offset`` gets 400 invalid offset (others don't consume it).
    EXPIRE_OFFSET = "expire_offset"

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:
        return hash(self.value)

    @classmethod
    def coerce(cls, value: Fault | str) -> Fault:
        """Return the member for a member, its value (``"429"``) or its name (``"RATE_LIMIT"``)."""
        if isinstance(value, Fault):
            return value
        try:
            return cls(value)
        except ValueError:
            try:
                return cls[str(value).upper()]
            except KeyError:
                choices = ", ".join(repr(m.value) for m in cls)
                raise ValueError(f"unknown fault {value!r}; use a Fault or one of {choices}") from None


@dataclass
class PendingFault:
    """
    A fault waiting for requests.

    :param fault: what to serve.
    :param remaining: how many more requests get it.
    :param retry_after: the ``Retry-After`` of :attr:`Fault.RATE_LIMIT`, in seconds.
    :param delay: the sleep of :attr:`Fault.SLOW`, in seconds.
    :param when: only requests for which this returns true get the fault.
    """

    fault: Fault
    remaining: int
    retry_after: float = 1
    delay: float = 0
    when: Callable[[ParsedRequest], bool] | None = None

    def matches(self, request: ParsedRequest) -> bool:
        """Whether ``request`` gets this fault."""
        if self.fault is Fault.EXPIRE_OFFSET and not request.has_offset:
            return False
        return self.when is None or bool(self.when(request))


class FaultQueue:
    """One-shot faults, consumed in the order they were injected; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[PendingFault] = []

    def inject(
        self,
        fault: Fault | str,
        *,
        count: int = 1,
        retry_after: float = 1,
        delay: float = 0,
        when: Callable[[ParsedRequest], bool] | None = None,
    ) -> None:
        """Queue ``fault`` for the next ``count`` matching requests (see :meth:`FakeAsana.inject`)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        pending = PendingFault(Fault.coerce(fault), count, retry_after, delay, when)
        with self._lock:
            self._pending.append(pending)

    def take(self, request: ParsedRequest) -> PendingFault | None:
        """The first pending fault that matches ``request``, counted as served to it; or ``None``."""
        with self._lock:
            for index, pending in enumerate(self._pending):
                if pending.matches(request):
                    pending.remaining -= 1
                    if pending.remaining <= 0:
                        del self._pending[index]
                    return pending
        return None

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._pending.clear()

    @property
    def pending(self) -> list[tuple[Fault, int]]:
        """The faults still queued, with how many requests each will still hit."""
        with self._lock:
            return [(p.fault, p.remaining) for p in self._pending]


class TokenBuckets:
    """
    Asana's per-token rate limit, as one token bucket per token; thread-safe.

    Each bucket holds at most ``burst`` tokens and earns ``requests_per_minute / 60`` a second. A
    request takes a token; one that finds none is rejected (429) with ``Retry-After``, the whole
    seconds until a token is there again (at least 1). Asana documents that rejected requests count
    against the limit too, so a rejected request takes its token all the same: the bucket goes into
    debt, down to one minute's worth of tokens (``-requests_per_minute``). A client that keeps
    knocking stays rejected; one that waits ``Retry-After`` is served.

    :param requests_per_minute: the sustained rate, at least 1.
    :param burst: the bucket size; default one second's worth, ``max(1, ceil(requests_per_minute / 60))``.
    :param clock: the monotonic clock in seconds (replaceable in tests).
    """

    def __init__(
        self,
        requests_per_minute: int,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_minute < 1:
            raise ValueError(f"requests_per_minute must be >= 1 or None, not {requests_per_minute}")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be >= 1 or None, not {burst}")
        self.requests_per_minute = requests_per_minute
        self.rate = requests_per_minute / 60.0
        self.burst = burst if burst is not None else max(1, math.ceil(requests_per_minute / 60))
        self._floor = -float(requests_per_minute)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # token -> (tokens, when last refilled)

    def take(self, token: str) -> int | None:
        """Take a token from ``token``'s bucket; return ``None`` if there was one, else the Retry-After."""
        now = self._clock()
        with self._lock:
            tokens, since = self._buckets.get(token, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - since) * self.rate) - 1
            if tokens >= 0:
                self._buckets[token] = (tokens, now)
                return None
            tokens = max(tokens, self._floor)  # rejected requests count too
            self._buckets[token] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))

    def tokens(self, token: str) -> float:
        """The tokens ``token``'s bucket holds now (negative when in debt)."""
        now = self._clock()
        with self._lock:
            tokens, since = self._buckets.get(token, (float(self.burst), now))
            return min(float(self.burst), tokens + (now - since) * self.rate)


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
    """

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    status: int
    fault: str | None = None
    time: float = 0.0


@dataclass(frozen=True)
class Stats:
    """
    A snapshot of the stand-in's counters.

    :param requests: requests received, faults included.
    :param by_status: responses by status (``0``: dropped); missing statuses read as 0.
    :param faults_served: faults served by :class:`Fault` value; missing faults read as 0.
    :param pages_served: complete 200 pages of audit events served.
    :param events_served: events in those pages.
    """

    requests: int = 0
    by_status: collections.Counter[int] = field(default_factory=collections.Counter)
    faults_served: collections.Counter[str] = field(default_factory=collections.Counter)
    pages_served: int = 0
    events_served: int = 0


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
    ) -> None:
        """
        Log an answered request and count its status, fault and events.

        :param status: the status sent; 0 for a dropped connection.
        :param fault: the fault served, if any.
        :param arrived_at: when it arrived (``time.time()``).
        :param events: the events of a complete 200 page; ``None`` for anything else.
        """
        with self._lock:
            stats = self._stats
            stats.by_status[status] += 1
            if fault is not None:
                stats.faults_served[fault.value] += 1
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
