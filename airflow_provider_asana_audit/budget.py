"""
The request budget: how hard a failed request is retried, and how fast requests may go out.

Asana's limits are per token, so the budget is too: :class:`RateLimiter` is one process's share of a
token's rate, and any other backend (one shared by a fleet of workers, say) only needs to offer the
two calls of :class:`RequestBudget`. No HTTP here: the transport asks the budget before each request
and tells it about a 429.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.rules import check_integer, check_number

__all__ = ["RateLimiter", "RequestBudget", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """
    How hard one request is retried after a transient failure.

    :param max_attempts: requests at most, the first included.
    :param max_elapsed: seconds at most from the first attempt until a retry would start.
    :param backoff_base: the first wait in seconds, doubled on every further attempt.
    :param backoff_max: the longest single wait in seconds (``Retry-After`` may ask for more).

    .. seealso::
        docs/hooks.md#retrypolicy
    """

    max_attempts: int = 8
    max_elapsed: float = 600.0
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        check_integer(self.max_attempts, name="max_attempts", minimum=1, hint="(1: no retry)")
        for name in ("max_elapsed", "backoff_base", "backoff_max"):
            check_number(getattr(self, name), name=name, positive=False, unit="seconds")

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based): exponential, with equal jitter."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


class RequestBudget(Protocol):
    """What the transport asks of a rate budget before each request, and tells it after a 429."""

    def acquire(self, *, cancel: threading.Event | None = None) -> bool:
        """Block until a request may be sent; False if ``cancel`` was set first."""
        ...

    def pause(self, seconds: float) -> None:
        """Let no request through for ``seconds`` from now."""
        ...


class RateLimiter:
    """
    A thread-safe token bucket that spaces requests to at most ``requests_per_minute``.

    :param requests_per_minute: the sustained rate; bursts of up to ``burst`` requests are allowed.
        ``None``: no limit on the rate, only :meth:`pause` (what a concurrent read uses when the
        client has no limiter, so that a 429 still holds back every request of the read).
    :param burst: the bucket size; default one second's worth of requests, at least 1.
    :param clock: the clock, for tests.
    :param sleep: how to wait, for tests.

    .. seealso::
        docs/hooks.md#ratelimiter
    """

    _registry: dict[tuple[str, float], RateLimiter] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        requests_per_minute: float | None,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_requests_per_minute(requests_per_minute)
        if burst is not None:
            check_integer(burst, name="burst", minimum=1, hint="or None for one second's worth of requests")
        self.rate = requests_per_minute / 60.0 if requests_per_minute is not None else None
        self.capacity = float(burst if burst is not None else max(1, int(self.rate or 1)))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    @classmethod
    def for_token(cls, token: str, requests_per_minute: float) -> RateLimiter:
        """The limiter shared by every client of this process that uses ``token`` at this rate."""
        key = (hashlib.sha256(token.encode()).hexdigest(), float(requests_per_minute))
        with cls._registry_lock:
            if key not in cls._registry:
                cls._registry[key] = cls(requests_per_minute)
            return cls._registry[key]

    def acquire(self, *, cancel: threading.Event | None = None) -> bool:
        """
        Block until a request may be sent.

        :param cancel: stop waiting as soon as this is set.
        :return: True, or False if ``cancel`` was set first.
        """
        while True:
            with self._lock:
                now = self._clock()
                wait = self._paused_until - now
                if self.rate is None:
                    if wait <= 0:
                        return True
                else:
                    self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                    self._updated = now
                    if wait <= 0:
                        if self._tokens >= 1:
                            self._tokens -= 1
                            return True
                        wait = (1 - self._tokens) / self.rate
            if cancel is None:
                self._sleep(wait)
            elif cancel.wait(wait):
                return False

    def pause(self, seconds: float) -> None:
        """Let no request through for ``seconds`` from now (called after a 429)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


def check_retry(retry: object) -> None:
    """Refuse a ``retry`` that is neither a :class:`RetryPolicy` nor ``None``."""
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise AsanaAuditLogConfigError(
            f"The retry policy {retry!r} must be a RetryPolicy, e.g. RetryPolicy(max_attempts=5), or "
            "None for the default"
        )


def check_requests_per_minute(requests_per_minute: object) -> None:
    """Refuse a ``requests_per_minute`` that is neither a positive number nor ``None``."""
    if requests_per_minute is not None:
        check_number(
            requests_per_minute,
            name="requests_per_minute",
            positive=True,
            hint="e.g. 1500 (Asana's limit on paid plans), or None for no cap",
        )
