"""
Asana's limits on what one token may ask of the API, each answering whether a request may go ahead.

* :class:`TokenBuckets`: the per-token rate limit (requests per minute), a token bucket per token.
* :class:`InFlightCaps`: the per-token cap on requests in flight at once (about 50 GETs at Asana).

Both answer in the same way: ``None`` when the request may go ahead, else the ``Retry-After`` in whole
seconds of the 429 it gets. Each names itself with :attr:`~TokenBuckets.reason` (``"rate"``,
``"concurrency"``), the key under which the stand-in counts its refusals in ``Stats.refused``.

Only the standard library is used.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["InFlightCaps", "TokenBuckets"]


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

    #: The key of this limit's refusals in ``Stats.refused``.
    reason = "rate"

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


class InFlightCaps:
    """
    Asana's cap on the requests one token may have in flight at once, per token; thread-safe.

    A request is in flight from :meth:`enter` until :meth:`leave`: the stand-in enters it as it starts
    handling it and leaves it once its response is built (the latency is spent in between, so a latency
    makes requests overlap as at Asana). A request that finds ``max_in_flight`` of its token's requests
    in flight is refused and does not enter.

    The ``Retry-After`` of a refusal is :attr:`retry_after`, 1 second. Asana documents none for this
    limit; a slot frees as soon as any in-flight request of the token is answered (a fraction of a
    second at Asana's latencies), and ``Retry-After`` counts whole seconds, so the shortest non-zero
    wait is the honest one.

    :param max_in_flight: the cap, at least 1 (Asana's is about 50 GETs).
    """

    #: The key of this limit's refusals in ``Stats.refused``.
    reason = "concurrency"
    #: The ``Retry-After`` of a refusal, in seconds.
    retry_after = 1

    def __init__(self, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 or None, not {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}  # token -> requests in flight; absent when none

    def enter(self, token: str) -> int | None:
        """
        Count a request of ``token`` as in flight; return ``None``, or the Retry-After when at the cap.

        Every ``None`` must be paired with one :meth:`leave`; a refused request holds no slot.
        """
        with self._lock:
            count = self._in_flight.get(token, 0)
            if count >= self.max_in_flight:
                return self.retry_after
            self._in_flight[token] = count + 1
            return None

    def leave(self, token: str) -> None:
        """Count an admitted request of ``token`` as answered."""
        with self._lock:
            count = self._in_flight.get(token, 0) - 1
            if count < 0:
                raise RuntimeError("leave() without enter()")
            if count:
                self._in_flight[token] = count
            else:
                del self._in_flight[token]

    def in_flight(self, token: str) -> int:
        """The requests of ``token`` in flight now."""
        with self._lock:
            return self._in_flight.get(token, 0)
