"""
The token's budget: a limiter that spaces requests, holds everyone back after a 429 and adapts to
the rate the server accepts; and a read under a tight budget, with any concurrency, against the
stand-in's real token bucket.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_asana_audit.budget import BudgetGauge, BudgetUsage, RateLimiter
from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.query import AuditLogQuery
from airflow_provider_asana_audit.testing import FakeAsana


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _limiter(requests_per_minute: float | None, **kwargs: Any) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(requests_per_minute, clock=clock, sleep=clock.sleep, **kwargs), clock


def test_a_refusal_holds_everyone_back_then_lets_them_go_one_at_a_time() -> None:
    limiter, clock = _limiter(600, burst=10)  # 10/s, bursts of 10
    assert limiter.acquire()
    limiter.settle("refused", retry_after=2)
    sent = []
    for _ in range(3):
        limiter.acquire()
        sent.append(clock.now)
        limiter.settle("ok")
    assert sent[0] >= 2  # nothing before Retry-After has passed
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert limiter.rate is not None
    assert all(gap == pytest.approx(1 / limiter.rate, rel=0.1) for gap in gaps)  # no burst after the pause


def test_a_refusal_cuts_the_rate_which_grows_back_to_where_it_was_but_never_past_the_ceiling() -> None:
    limiter, clock = _limiter(600)
    limiter.acquire()
    limiter.settle("refused", retry_after=1)
    assert limiter.rate == pytest.approx(10 * RateLimiter.DECREASE)
    rates: list[float] = []
    for _ in range(int(RateLimiter.RECOVERY * 20)):
        limiter.acquire()
        limiter.settle("ok")
        rates.append(limiter.rate or 0.0)
    assert rates == sorted(rates)
    assert limiter.rate == pytest.approx(10)  # grown back in RECOVERY seconds, and capped there
    assert clock.now > RateLimiter.RECOVERY


def test_a_burst_of_refusals_cuts_the_rate_once() -> None:
    limiter, _ = _limiter(600)
    for _ in range(4):
        limiter.acquire()
    for _ in range(4):  # four requests in flight, all refused at once: one excess, one cut
        limiter.settle("refused", retry_after=1)
    assert limiter.rate == pytest.approx(10 * RateLimiter.DECREASE)
    assert limiter.usage() == BudgetUsage(requests=4, refused=4, failed=0)


def test_a_refusal_with_retry_after_zero_is_retried_without_a_cut() -> None:
    limiter, _ = _limiter(600)
    for _ in range(20):  # "come back now": a refusal for another reason than the budget
        limiter.acquire()
        limiter.settle("refused", retry_after=0)
        limiter.acquire()
        limiter.settle("ok")
    assert limiter.rate == pytest.approx(10)
    # 10 requests from the full bucket, then 30 that each waited a tenth of a second for theirs.
    usage = limiter.usage()
    assert (usage.requests, usage.refused, usage.failed) == (40, 20, 0)
    assert usage.waited == pytest.approx(3.0)
    limiter.acquire()
    limiter.settle("refused", retry_after=1)
    assert (limiter.rate or 0) < 10 * RateLimiter.DECREASE + 1e-9  # one that says when to come back cuts it


def test_without_a_rate_requests_start_a_few_at_a_time_and_the_window_grows_with_each_answer() -> None:
    limiter = RateLimiter(None)  # the real clock: the waiter below waits in real time
    for _ in range(RateLimiter.INITIAL_WINDOW):
        assert limiter.acquire()
    more = threading.Event()
    cancel = threading.Event()

    def send_more() -> None:
        if limiter.acquire(cancel=cancel):
            more.set()

    waiter = threading.Thread(target=send_more)
    waiter.start()
    assert not more.wait(0.2), "a request went out beyond the initial window before an answer"
    limiter.settle("ok")
    assert more.wait(5), "the answer should let the next request go"
    waiter.join()
    assert limiter.acquire()  # one more may be in flight now: the window grew by one
    assert limiter.rate is None  # no rate until a refusal


def test_the_first_refusal_sets_a_rate_from_what_was_accepted() -> None:
    limiter, clock = _limiter(None)
    for _ in range(10):
        limiter.acquire()
        limiter.settle("ok")
        clock.now += 0.2  # 5 accepted a second
    limiter.acquire()
    limiter.settle("refused", retry_after=1)
    assert limiter.rate == pytest.approx(5 * RateLimiter.DECREASE, rel=0.25)


def test_failures_are_counted_apart_from_refusals() -> None:
    limiter, _ = _limiter(600)
    limiter.acquire()
    limiter.settle("failed")
    assert limiter.usage() == BudgetUsage(requests=1, refused=0, failed=1)
    assert limiter.rate == pytest.approx(10)  # a 5xx is no rate limit


class _Spent:
    """A budget whose usage the test sets."""

    def __init__(self) -> None:
        self.now = BudgetUsage()

    def usage(self) -> BudgetUsage:
        return self.now


def test_the_gauge_says_the_budget_is_the_bound_while_requests_wait_for_it() -> None:
    spent, clock = _Spent(), FakeClock()
    gauge = BudgetGauge(spent, clock=clock)  # type: ignore[arg-type]
    assert not gauge.bound()
    spent.now = BudgetUsage(requests=2, waited=0.4)  # 0.2 s a request, but only two of them
    assert not gauge.bound(), "looked again before SAMPLE requests or EVERY seconds"
    clock.now += BudgetGauge.EVERY
    assert gauge.bound()
    spent.now = BudgetUsage(requests=2 + BudgetGauge.SAMPLE, waited=0.41)  # then 1 ms a request
    assert not gauge.bound()


# ------------------------------------------------------------ a read under a tight budget


def _read(concurrency: int, start: datetime, end: datetime) -> tuple[bool, int, int]:
    """One day read with ``concurrency`` against its own stand-in: exact?, requests, 429s."""
    with FakeAsana(
        token=f"tight-{concurrency}",
        # The reproduction: 30,000 events over 3 days, a day of about 10,000 read (about 100
        # requests, so that 5% is 5 refusals).
        event_count=30_000,
        start=start - timedelta(days=2),
        end=end,
        # A token shared with another consumer: 120 requests a minute, in bursts of 2.
        requests_per_minute=120,
        burst=2,
        latency=0.05,
    ) as fake:
        client = AsanaAuditLogClient(
            token=fake.token, workspace_gid=fake.workspace_gid, base_url=fake.base_url
        )
        with client:
            gids = [
                event["gid"]
                for event in client.iter_events(
                    AuditLogQuery(start_at=start, end_at=end), concurrency=concurrency
                )
            ]
        truth = [event["gid"] for event in fake.ground_truth(start, end)]
        stats = fake.stats
        return gids == truth, stats.requests, stats.by_status[429]


def test_a_read_under_a_tight_budget_finishes_exact_with_few_refusals_at_any_concurrency() -> None:
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=1)
    # Each concurrency reads from a stand-in of its own, all at once, so the three take one read's time.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip((1, 4, 8), pool.map(lambda c: _read(c, start, end), (1, 4, 8)), strict=True))
    for concurrency, (exact, requests, refused) in results.items():
        assert exact, f"concurrency={concurrency}: the events differ from the stand-in's"
        assert refused <= 0.05 * requests, f"concurrency={concurrency}: {refused} of {requests} refused"
