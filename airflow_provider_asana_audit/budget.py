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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.rules import check_integer, check_number

__all__ = [
    "BudgetGauge",
    "BudgetUsage",
    "Outcome",
    "RateLimiter",
    "RequestBudget",
    "RetryPolicy",
    "token_key",
]

#: Asana's documented limits per token on paid plans (the audit log needs Enterprise): requests a
#: minute, and GET requests in flight at once.
ASANA_REQUESTS_PER_MINUTE = 1500
ASANA_MAX_IN_FLIGHT = 50


def token_key(token: str) -> str:
    """A token's name in logs, XCom and a shared store: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(token.strip().encode()).hexdigest()[:16]


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


#: What became of one request, as the transport tells the budget: answered, refused with a 429 (a
#: rate limit), or failed in another way (a 5xx, a dropped connection).
Outcome = Literal["ok", "refused", "failed"]


class RequestBudget(Protocol):
    """
    What the transport asks of a token's budget before each request, and tells it after.

    .. seealso:: docs/hooks.md#ratelimiter
    """

    def acquire(self, *, cancel: threading.Event | None = None) -> bool:
        """Block until a request may be sent; False if ``cancel`` was set first."""
        ...

    def settle(self, outcome: Outcome, *, retry_after: float | None = None) -> int:
        """
        Record the outcome of a request :meth:`acquire` let through.

        :param retry_after: with ``"refused"``, the server's ``Retry-After`` in seconds.
        :return: for ``"refused"``, how many refusals to report in the log now (several folded into
            one line at most every few seconds), else 0.
        """
        ...

    def usage(self) -> BudgetUsage:
        """What the requests of this budget cost so far (for the read's summary line)."""
        ...


@dataclass(frozen=True)
class BudgetUsage:
    """
    What requests of one budget cost: sent, refused (429), failed otherwise, and the seconds requests
    spent waiting for the budget (summed over threads).

    Subtract two snapshots (``after - before``) for what one read cost.
    """

    requests: int = 0
    refused: int = 0
    failed: int = 0
    waited: float = 0.0

    def __sub__(self, other: BudgetUsage) -> BudgetUsage:
        return BudgetUsage(
            requests=self.requests - other.requests,
            refused=self.refused - other.refused,
            failed=self.failed - other.failed,
            waited=self.waited - other.waited,
        )

    def counted(self, outcome: Outcome) -> BudgetUsage:
        """This usage with one more ``"refused"`` or ``"failed"`` request (``"ok"`` adds nothing)."""
        if outcome == "refused":
            return replace(self, refused=self.refused + 1)
        if outcome == "failed":
            return replace(self, failed=self.failed + 1)
        return self

    def sent(self, waited: float) -> BudgetUsage:
        """This usage with one more request sent, after waiting ``waited`` seconds for the budget."""
        return replace(self, requests=self.requests + 1, waited=self.waited + waited)


class BudgetGauge:
    """
    Whether a budget, not the server's latency, bounds the requests now: whether the last requests
    waited for it, :attr:`WAIT` seconds each on average or more.

    A concurrent read asks before it splits a slice: a new slice costs a request or two of its own
    (its last page is partial, and so is its owner's) and speeds nothing up while requests queue for
    the budget; so when the budget is the bound, a read spends fewer requests on fewer, longer slices.

    :param budget: the budget whose :meth:`RequestBudget.usage` is watched.
    """

    #: Seconds a request waits for the budget on average, at least, when the budget is the bound: any
    #: wait beyond the jitter of a few milliseconds means the budget holds requests back.
    WAIT = 0.01
    #: The gauge looks again after this many requests, or :attr:`EVERY` seconds, whichever is first.
    SAMPLE = 8
    EVERY = 1.0

    def __init__(self, budget: RequestBudget, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._budget = budget
        self._clock = clock
        self._seen = budget.usage()
        self._seen_at = clock()
        self._bound = False

    def bound(self) -> bool:
        """Whether the budget bounds the requests, as of the last look."""
        now, usage = self._clock(), self._budget.usage()
        spent = usage - self._seen
        if spent.requests >= self.SAMPLE or (spent.requests and now - self._seen_at >= self.EVERY):
            self._bound = spent.waited / spent.requests >= self.WAIT
            self._seen, self._seen_at = usage, now
        return self._bound


class RefusalReports:
    """Folds refusals into one log line at most every :attr:`EVERY` seconds; not thread-safe."""

    #: Refusals are logged at most this often (seconds); the ones in between are counted.
    EVERY = 5.0

    def __init__(self) -> None:
        self._unreported = 0
        self._reported_at = float("-inf")

    def count(self, now: float) -> int:
        """Count one refusal at ``now``; how many to log now (0: stay quiet)."""
        self._unreported += 1
        if now - self._reported_at < self.EVERY:
            return 0
        reported, self._unreported, self._reported_at = self._unreported, 0, now
        return reported


class RateLimiter:
    """
    A token's request budget in one process: a thread-safe token bucket that adapts to 429s.

    Requests go out at most at the current rate, in bursts of at most ``burst``, and at most
    ``max_in_flight`` at a time. A 429 (a request the server refused, which Asana still counts) holds
    every request of the limiter back until its ``Retry-After`` has passed, then lets them go one at
    a time at a lower rate (multiplicative decrease, to :attr:`DECREASE` of the rate that was
    refused); then it grows back (additive increase), in :attr:`RECOVERY` seconds to where it was
    cut, and never above ``requests_per_minute``. With ``slow_start`` (the default without
    ``requests_per_minute``), :attr:`INITIAL_WINDOW` requests may be in flight at first and one more
    with every answer until the first 429, so that an unknown share of a budget is found with a few
    refusals, not one per thread. Without ``requests_per_minute`` the rate then starts from what was
    accepted and doubles every :attr:`PROBE` seconds until the next 429, from which on it grows
    additively.

    :param requests_per_minute: the most this limiter ever sends; ``None``: learnt from 429s.
    :param burst: the bucket size; default one second's worth of requests, at least 1.
    :param max_in_flight: requests in flight at once at most; ``None``: no cap.
    :param slow_start: start with few requests in flight; default when ``requests_per_minute`` is
        ``None``.
    :param clock: the clock, for tests.
    :param sleep: how to wait, for tests.

    .. seealso::
        docs/hooks.md#ratelimiter
    """

    #: After a 429 the rate is cut to this share of the rate the server accepted.
    DECREASE = 0.7
    #: Seconds in which the rate grows back to where it was before a cut, while requests wait for it.
    RECOVERY = 30.0
    #: The lowest rate a cut goes to, in requests a second.
    MIN_RATE = 1 / 60
    #: Without a ceiling, after the refusal that ends a slow start, the rate doubles every this many
    #: seconds until the next one.
    PROBE = 1.0
    #: Requests in flight at first in a slow start (TCP's initial window, in requests).
    INITIAL_WINDOW = 4
    #: In the slow start, seconds an answer waits for the answers that come with it.
    GATHER = 0.02
    #: Without ``max_in_flight``, the slow start is over once this many requests may be in flight
    #: (more than a read's threads).
    SLOW_START_END = 64
    #: The window over which the accepted rate is measured, in seconds: long enough to average a few
    #: answers, short enough that a pause or a slow start does not pass for the budget.
    _WINDOW = 5.0
    #: The shortest span the accepted rate is measured over, in seconds, so that two quick answers do
    #: not pass for a high rate.
    _MIN_SPAN = 1.0

    _registry: dict[tuple[str, float, int], RateLimiter] = {}
    _registry_lock = threading.Lock()

    def __init__(
        self,
        requests_per_minute: float | None,
        *,
        burst: int | None = None,
        max_in_flight: int | None = None,
        slow_start: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        check_requests_per_minute(requests_per_minute)
        if burst is not None:
            check_integer(burst, name="burst", minimum=1, hint="or None for one second's worth of requests")
        check_max_in_flight(max_in_flight)
        self.max_in_flight = max_in_flight
        self.ceiling = requests_per_minute / 60.0 if requests_per_minute is not None else None
        #: The rate requests go out at now, per second; ``None`` until a limit is known.
        self.rate = self.ceiling
        self.capacity = float(burst if burst is not None else max(1, int(self.rate or 1)))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._growth = 0.0  # requests/s the rate gains per second of waiting for it, after a cut
        self._probing = False  # whether the rate doubles (after the slow start) rather than grows
        self._accepted: deque[float] = deque()  # when requests were answered, within _WINDOW
        # The slow start: how many requests may be in flight before the first 429 (None: no cap).
        if slow_start is None:
            slow_start = self.rate is None
        self._window: float | None = float(self.INITIAL_WINDOW) if slow_start else None
        self._in_flight = 0
        self._slow_start_gate = 0.0
        self._answered_since_cut = True
        self._usage = BudgetUsage()
        self._reports = RefusalReports()
        self._lock = threading.Lock()

    @classmethod
    def for_token(
        cls, token: str, requests_per_minute: float | None, *, max_in_flight: int | None = None
    ) -> RateLimiter:
        """
        The limiter shared by every client of this process that uses ``token`` with these limits.

        It starts slowly: other processes may share the token, so this one's share is found, not
        assumed.
        """
        key = (token_key(token), float(requests_per_minute or 0), max_in_flight or 0)
        with cls._registry_lock:
            if key not in cls._registry:
                # Spaced requests, no burst: a bucket the size of the server's would empty the
                # server's own on the first jitter.
                cls._registry[key] = cls(
                    requests_per_minute, burst=1, max_in_flight=max_in_flight, slow_start=True
                )
            return cls._registry[key]

    def usage(self) -> BudgetUsage:
        """What the requests of this limiter cost so far."""
        with self._lock:
            return self._usage

    def acquire(self, *, cancel: threading.Event | None = None) -> bool:
        """
        Block until a request may be sent.

        :param cancel: stop waiting as soon as this is set.
        :return: True, or False if ``cancel`` was set first.
        """
        started = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait(now)
                if wait <= 0:
                    self._in_flight += 1
                    self._usage = self._usage.sent(now - started)
                    return True
            if cancel is None:
                self._sleep(wait)
            elif cancel.wait(wait):
                return False

    def _wait(self, now: float) -> float:
        """Seconds until a request may go (taking its token when it may go now); called under the lock."""
        if now < self._paused_until:
            return self._paused_until - now
        if self.max_in_flight is not None and self._in_flight >= self.max_in_flight:
            return 0.005  # an answer frees a place: look again soon
        if self._window is not None:
            if self._in_flight >= self._window:
                return 0.005  # an answer frees a place: look again soon
            # Only requests still in flight can bring a sibling's 429: with none, nothing to gather.
            if now < self._slow_start_gate and self._in_flight > 0:
                return self._slow_start_gate - now
        if self.rate is None:
            return 0.0
        elapsed = now - self._updated
        self._updated = now
        if self._growth or self._probing:  # after a cut the rate grows back, also while idle
            grown = (
                self.rate * 2 ** (elapsed / self.PROBE)
                if self._probing
                else self.rate + self._growth * elapsed
            )
            self.rate = min(self.ceiling or float("inf"), grown)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        if self._tokens >= 1 - 1e-9:  # a float sum of refills may fall a hair short of a token
            self._tokens = max(0.0, self._tokens - 1)
            return 0.0
        return (1 - self._tokens) / self.rate

    def settle(self, outcome: Outcome, *, retry_after: float | None = None) -> int:
        """
        Record what became of a request :meth:`acquire` let through; a refusal cuts the rate.

        :param outcome: ``"ok"``, ``"refused"`` (HTTP 429) or ``"failed"``.
        :param retry_after: with ``"refused"``, seconds every request must wait (``Retry-After``).
        :return: for ``"refused"``, how many refusals to log now, folded into one line (0: stay quiet).
        """
        with self._lock:
            now = self._clock()
            self._in_flight = max(0, self._in_flight - 1)
            if outcome == "ok":
                self._answered_since_cut = True
                self._accepted.append(now)
                while self._accepted and self._accepted[0] < now - self._WINDOW:
                    self._accepted.popleft()
                if self._window is not None:
                    self._window += 1  # one more in flight per answer: doubles every round trip
                    if self._window > (self.max_in_flight or self.SLOW_START_END):
                        self._window = None  # the window no longer limits anything: the start is over
                    # Requests sent together are answered together: let the answers that come
                    # with this one (a 429 among them) arrive before the window lets more go.
                    self._slow_start_gate = now + self.GATHER
                return 0
            self._usage = self._usage.counted(outcome)
            if outcome == "failed":
                return 0
            # One cut per excess: the refusals of requests sent before the pause, or with no answer
            # in between, answer the same excess as the first. A Retry-After of 0 says the budget
            # has room now (a refusal for another reason), so it is retried without a cut.
            if retry_after != 0 and now >= self._paused_until and self._answered_since_cut:
                self._cut(now, retry_after)
                self._answered_since_cut = False
            if retry_after != 0:
                self._hold(now, retry_after or 0.0)
            return self._reports.count(now)

    def pause(self, seconds: float) -> None:
        """Let no request through for ``seconds`` from now, then one at a time at the rate."""
        with self._lock:
            self._hold(self._clock(), seconds)

    def _hold(self, now: float, seconds: float) -> None:
        self._paused_until = max(self._paused_until, now + seconds)
        # No burst after a pause: the bucket starts empty when it ends, so requests resume spaced.
        self._tokens = 0.0
        self._updated = self._paused_until

    def _cut(self, now: float, retry_after: float | None) -> None:
        """
        Multiplicative decrease: the rate becomes a share of the rate the server accepted.

        That is the lower of the rate requests went out at and the rate of answers over the last few
        seconds: a probe (or a long additive increase) overshoots the budget by the time it is told.
        """
        while self._accepted and self._accepted[0] < now - self._WINDOW:
            self._accepted.popleft()
        # Measured from the first answer of the window, not from when the limiter was made, which an
        # idle hour may precede.
        window = max(self._MIN_SPAN, now - self._accepted[0]) if self._accepted else 1.0
        accepted = len(self._accepted) / window
        before = self.rate
        slow_start = self._window is not None
        if before is None or slow_start:
            # The first refusal ends the slow start: what was accepted measures this process's share
            # (with nothing answered yet there is only the server's word, one request per
            # Retry-After). Under a known ceiling the rate grows back additively from there. With no
            # ceiling at all the scale is unknown and the estimate may be far too low (a slow start
            # has few answers to measure), so the rate doubles every PROBE seconds until the next
            # refusal tells, and grows additively from then on.
            base = accepted if accepted > 0 else 1 / max(retry_after or 1.0, 1.0)
            self._probing = self.ceiling is None
            before = base
        else:
            base = min(before, accepted) if accepted > 0 else before
            self._probing = False
        self.rate = max(self.MIN_RATE, base * self.DECREASE)
        self.capacity = min(self.capacity, max(1.0, self.rate))
        # Additive increase: back in RECOVERY seconds to the rate that was refused, then beyond it
        # at the same pace until the next refusal (or the ceiling).
        self._growth = max(0.0, before - self.rate) / self.RECOVERY
        self._window = None


def check_retry(retry: object) -> None:
    """Refuse a ``retry`` that is neither a :class:`RetryPolicy` nor ``None``."""
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise AsanaAuditLogConfigError(
            f"The retry policy {retry!r} must be a RetryPolicy, e.g. RetryPolicy(max_attempts=5), or "
            "None for the default"
        )


def check_max_in_flight(max_in_flight: object, *, name: str = "max_in_flight") -> None:
    """Refuse a ``max_in_flight`` that is neither a positive integer nor ``None``."""
    if max_in_flight is not None:
        check_integer(
            max_in_flight,
            name=name,
            minimum=1,
            hint=f"e.g. {ASANA_MAX_IN_FLIGHT} (Asana's limit), or None for no cap",
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
