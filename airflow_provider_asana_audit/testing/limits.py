"""
Asana's limits on what one token may ask of the API, each answering whether a request may go ahead.

* :class:`TokenBuckets`: the per-token rate limit (requests per minute), a token bucket per token.
  A request it refuses gets 429 with the ``Retry-After`` it gives.

Asana also caps the requests a token may have in flight at once (a 429 beyond it); that cap, when it
comes, belongs here beside the buckets, since it answers the same question for a different reason.

Only the standard library is used.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["TokenBuckets"]


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
