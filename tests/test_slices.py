"""
Concurrent (sliced) reads: the splitting logic on its own, then whole reads against the stand-in.

The oracle is always the stand-in's ground truth, and a ``concurrency=1`` read of the same window:
a read with ``concurrency=8`` must return the same events, as the same dicts, in the same order.
Nothing here waits by sleeping: tests wait for the thing itself (a request the stand-in saw, a file
that appeared, a thread that ended), with a deadline.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
import random
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_asana_audit import slices
from airflow_provider_asana_audit.budget import RateLimiter, RetryPolicy
from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.exceptions import AsanaAuditLogAuthError, AsanaAuditLogConfigError
from airflow_provider_asana_audit.query import AuditLogQuery, Event
from airflow_provider_asana_audit.slices import MAX_CONCURRENCY, Slice, SlicePlan, from_us, to_us
from airflow_provider_asana_audit.testing import FakeAsana, Fault, ParsedRequest, make_event
from airflow_provider_asana_audit.timeutils import format_instant
from tests.helpers.clients import T0, make_client
from tests.helpers.relay import Relay
from tests.helpers.waiting import Background, wait_until

DAY = timedelta(days=1)
MS = 1000  # microseconds


def event_at(gid: int, instant: datetime, **overrides: Any) -> Event:
    event = make_event(random.Random(gid), gid=str(gid), created_at=instant)
    event.update(overrides)
    return event


def slice_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asana-audit-slice-")]


def read(client: AsanaAuditLogClient, query: AuditLogQuery, concurrency: int) -> list[Event]:
    return list(client.iter_events(query, concurrency=concurrency))


@pytest.fixture
def week() -> Iterator[FakeAsana]:
    """Two days of generated events (a few percent in groups sharing a created_at)."""
    with FakeAsana(seed=5, start=T0 - DAY, end=T0 + DAY, events_per_day=1500) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_thread_outlives_a_test() -> Iterator[None]:
    yield
    assert slice_threads() == [], "a worker thread of a sliced read outlived its iterator"


# --- the splitting logic, without HTTP ----------------------------------------------------------


def test_initial_boundaries_are_whole_milliseconds_strictly_inside_the_window() -> None:
    start, end = to_us(T0) + 123, to_us(T0 + DAY) - 7  # window edges need not be whole ms
    bounds = SlicePlan.boundaries(start, end, 8)
    assert bounds[0] == start
    assert bounds[-1] == end
    assert len(bounds) == 9
    assert all(b % MS == 0 for b in bounds[1:-1])
    assert bounds == sorted(set(bounds))


def test_a_window_shorter_than_the_slices_gets_fewer_slices() -> None:
    start = to_us(T0)
    assert SlicePlan.boundaries(start, start + MS, 8) == [start, start + MS]
    assert SlicePlan.boundaries(start, start + 3 * MS, 8) == [
        start,
        start + MS,
        start + 2 * MS,
        start + 3 * MS,
    ]


def test_accept_emits_what_lies_before_the_end_and_finishes_the_slice_there() -> None:
    plan = SlicePlan(0, 10 * MS, parts=1, page_size=100)
    piece = plan.slices[0]
    assert plan.accept(piece, [1 * MS, 2 * MS, 2 * MS]) == (3, False)
    assert (piece.last, piece.events, piece.done) == (2 * MS, 3, False)
    assert plan.accept(piece, [3 * MS, 9 * MS, 10 * MS, 11 * MS]) == (2, True)
    assert (piece.last, piece.events, piece.done) == (9 * MS, 5, True)


def test_a_split_falls_on_a_whole_millisecond_strictly_after_the_last_event_read() -> None:
    plan = SlicePlan(0, 1000 * MS, parts=1, page_size=2)
    owner = plan.slices[0]
    plan.accept(owner, [5 * MS, 7 * MS, 7 * MS, 7 * MS])  # a dense start: the rest looks big
    thief = plan.steal()
    assert thief is not None
    assert thief.start % MS == 0
    assert thief.start > 7 * MS  # the events at 7 ms (and any more of them) stay with the owner
    assert (owner.end, thief.end, thief.query_end) == (thief.start, 1000 * MS, 1000 * MS)
    assert owner.query_end == 1000 * MS  # its cursor's query is unchanged: offsets stay valid
    assert plan.slices == [owner, thief]


def test_the_slice_with_the_most_events_left_is_split() -> None:
    plan = SlicePlan(0, 2000 * MS, parts=2, page_size=10)
    sparse, dense = plan.slices
    plan.accept(sparse, [100 * MS])  # 1 event in 100 ms
    plan.accept(dense, [1000 * MS + i * MS for i in range(50)])  # 50 events in 50 ms
    thief = plan.steal()
    assert thief is not None
    assert thief.start > dense.start
    assert dense.end == thief.start
    assert sparse.end == 1000 * MS


def test_slices_with_little_left_or_one_millisecond_are_not_split() -> None:
    plan = SlicePlan(0, 1000 * MS, parts=1, page_size=100)
    plan.accept(plan.slices[0], [i * MS for i in range(100)])  # 100 events in 100 ms; ~900 left
    assert plan.steal() is not None
    sparse = SlicePlan(0, 1000 * MS, parts=1, page_size=100)
    sparse.accept(sparse.slices[0], [500 * MS])  # 1 event in 500 ms: about 1 left
    assert sparse.steal() is None
    tiny = SlicePlan(0, MS, parts=1, page_size=1)
    assert tiny.steal() is None  # nothing read yet, but 1 ms cannot be cut


@pytest.mark.parametrize("seed", range(30))
def test_any_interleaving_of_reads_and_splits_emits_every_event_once_in_order(seed: int) -> None:
    """Simulate owners paging their cursors while idle workers split, in a random interleaving."""
    rng = random.Random(seed)
    start, end = 0, rng.randint(50, 5000) * MS
    stamps: list[int] = []
    for _ in range(rng.randint(0, 600)):
        instant = (
            rng.randrange(start, end) // MS * MS if rng.random() < 0.7 else start + rng.randint(0, 40) * MS
        )
        stamps.extend([instant] * rng.choice([1, 1, 1, 2, 5]))  # groups sharing a created_at
    stamps.sort()
    page_size = rng.randint(1, 12)
    plan = SlicePlan(start, end, parts=rng.randint(1, 8), page_size=page_size)
    cursor = {id(piece): bisect.bisect_left(stamps, piece.start) for piece in plan.slices}
    emitted: dict[int, list[int]] = {id(piece): [] for piece in plan.slices}
    all_slices = list(plan.slices)
    while not plan.all_done:
        if rng.random() < 0.3:
            thief = plan.steal()
            if thief is not None:
                cursor[id(thief)] = bisect.bisect_left(stamps, thief.start)
                emitted[id(thief)] = []
                all_slices.insert(all_slices.index(plan.slices[plan.slices.index(thief) - 1]) + 1, thief)
            continue
        piece = rng.choice([p for p in plan.slices if not p.done])
        first, stop = cursor[id(piece)], bisect.bisect_left(stamps, piece.query_end)
        page = list(range(first, min(first + page_size, stop)))
        if not page:  # the cursor ran out: the stand-in's empty last page
            plan.finish(piece)
            continue
        keep, _ = plan.accept(piece, [stamps[i] for i in page])
        emitted[id(piece)].extend(page[:keep])
        cursor[id(piece)] = page[-1] + 1
    assert [i for piece in all_slices for i in emitted[id(piece)]] == list(range(len(stamps)))
    assert all_slices == plan.slices


def test_concurrency_is_checked() -> None:
    assert slices.check_concurrency(1) == 1
    assert slices.check_concurrency(MAX_CONCURRENCY) == MAX_CONCURRENCY
    for bad in (0, -1, MAX_CONCURRENCY + 1, True, 2.0, "8", None):
        with pytest.raises(AsanaAuditLogConfigError, match="concurrency"):
            slices.check_concurrency(bad)


def test_the_cap_stays_below_asanas_concurrent_request_limit() -> None:
    assert MAX_CONCURRENCY < 50


def test_microsecond_conversions_round_trip() -> None:
    instant = T0 + timedelta(microseconds=123_456)
    assert from_us(to_us(instant)) == instant
    assert isinstance(Slice(0, 1, 1), Slice)


# --- whole reads against the stand-in -----------------------------------------------------------


def test_concurrency_8_reads_exactly_what_concurrency_1_reads(week: FakeAsana) -> None:
    client = make_client(week)
    query = AuditLogQuery(start_at=T0 - DAY, end_at=T0 + DAY, page_size=50)
    sequential = read(client, query, 1)
    assert len(sequential) > 2000
    assert sequential == week.ground_truth(T0 - DAY, T0 + DAY)
    assert read(client, query, 8) == sequential
    assert read(client, query, 3) == sequential


def test_pages_of_a_concurrent_read_hold_events_and_no_offset(week: FakeAsana) -> None:
    client = make_client(week)
    pages = list(client.iter_pages(AuditLogQuery(start_at=T0, end_at=T0 + DAY), concurrency=4))
    assert pages
    assert all(page.events and page.next_offset is None for page in pages)


def test_events_sharing_a_created_at_across_every_slice_boundary_come_once() -> None:
    start, end = T0, T0 + timedelta(seconds=8)
    bounds = SlicePlan.boundaries(to_us(start), to_us(end), 8)[1:-1]
    rng = random.Random(3)
    events: list[Event] = []
    gid = 1_207_000_000_000_000
    for boundary in bounds:
        for offset_ms in (-1, 0, 1):  # the instant before the boundary, on it, and after it
            instant = from_us(boundary + offset_ms * MS)
            for _ in range(rng.randint(4, 7)):
                gid += rng.randint(1, 50)
                events.append(event_at(gid, instant))
    rng.shuffle(events)
    with FakeAsana(events=events) as fake:
        client = make_client(fake)
        query = AuditLogQuery(start_at=start, end_at=end, page_size=3)  # pages end inside groups
        truth = fake.ground_truth(start, end)
        assert len(truth) == len(events)
        assert read(client, query, 1) == truth
        assert read(client, query, 8) == truth
        # The boundaries really were sent: slices started exactly on them.
        starts = {r.params.get("start_at") for r in fake.requests}
        assert {format_instant(from_us(b)) for b in bounds} <= starts


def test_a_burst_is_split_again_and_read_exactly() -> None:
    rng = random.Random(9)
    events: list[Event] = []
    gid = 1_207_000_000_000_000
    burst_start = T0 + timedelta(hours=9)  # the 9 am logins
    for _ in range(2400):
        gid += 1
        events.append(event_at(gid, burst_start + timedelta(milliseconds=rng.randrange(3_600_000))))
    for _ in range(100):
        gid += 1
        events.append(event_at(gid, T0 + timedelta(milliseconds=rng.randrange(86_400_000))))
    with FakeAsana(events=events) as fake:
        client = make_client(fake)
        query = AuditLogQuery(start_at=T0, end_at=T0 + DAY, page_size=20)
        truth = fake.ground_truth(T0, T0 + DAY)
        assert read(client, query, 1) == truth
        fake.reset_stats()
        assert read(client, query, 8) == truth
        # Work stealing cut the busy hour (one of the 8 initial slices) into further slices.
        in_burst = {
            r.params["start_at"]
            for r in fake.requests
            if burst_start.isoformat()[:13] <= r.params["start_at"][:13] <= burst_start.isoformat()[:13]
            and "offset" not in r.params
        }
        assert len(in_burst) >= 3


def test_a_read_bound_by_the_budget_does_not_split_its_slices() -> None:
    rng = random.Random(9)
    # A day of events, and a busy hour inside one of the 8 initial slices.
    instants = [T0 + timedelta(milliseconds=rng.randrange(86_400_000)) for _ in range(2000)]
    instants += [T0 + timedelta(hours=9, milliseconds=rng.randrange(3_600_000)) for _ in range(800)]
    events = [event_at(1_207_000_000_000_000 + n, instant) for n, instant in enumerate(instants)]
    query = AuditLogQuery(start_at=T0, end_at=T0 + DAY, page_size=25)

    def slices_read(limiter: RateLimiter) -> int:
        with FakeAsana(events=events, latency=0.01) as fake:
            client = make_client(fake, rate_limiter=limiter)
            assert read(client, query, 8) == fake.ground_truth(T0, T0 + DAY)
            return len({r.params["start_at"] for r in fake.requests if "offset" not in r.params})

    # Unbounded, workers that finish early split the slices that have pages left.
    assert slices_read(RateLimiter(None, slow_start=False)) > 8
    # At 20 requests a second the 8 workers queue for the budget, so a new slice (a partial page
    # more) would speed nothing up: the 8 initial slices are read to their end.
    assert slices_read(RateLimiter(1200, burst=1)) == 8


def test_transient_faults_and_rejected_offsets_change_nothing(week: FakeAsana) -> None:
    # Enough attempts that one request may meet every fault in a row.
    client = make_client(week, retry=RetryPolicy(max_attempts=20, backoff_base=0.01, backoff_max=0.05))
    query = AuditLogQuery(start_at=T0 - DAY, end_at=T0 + DAY, page_size=40)
    truth = week.ground_truth(T0 - DAY, T0 + DAY)
    week.inject(Fault.RATE_LIMIT, count=3, retry_after=0.05)
    week.inject(Fault.SERVER_ERROR_500, count=3)
    week.inject(Fault.EXPIRE_OFFSET, count=4)
    week.inject(Fault.TRUNCATE, count=2, when=lambda request: request.has_offset)
    week.inject(Fault.DROP, count=2)
    week.inject(Fault.NOT_JSON, count=1)
    assert read(client, query, 8) == truth
    served = week.stats.faults_served
    assert (served[Fault.RATE_LIMIT], served[Fault.SERVER_ERROR_500], served[Fault.EXPIRE_OFFSET]) == (
        3,
        3,
        4,
    )
    assert (served[Fault.TRUNCATE], served[Fault.DROP], served[Fault.NOT_JSON]) == (2, 2, 1)


def test_offsets_rejected_all_along_are_recovered_in_every_slice() -> None:
    with FakeAsana(seed=2, start=T0, end=T0 + DAY, events_per_day=600) as fake:
        client = make_client(fake)
        query = AuditLogQuery(start_at=T0, end_at=T0 + DAY, page_size=25)
        truth = fake.ground_truth(T0, T0 + DAY)
        offsets_seen = itertools.count(1)
        refused_queries: set[tuple[str | None, str | None]] = set()

        def every_third_once_per_query(request: ParsedRequest) -> bool:
            # Every third offset is refused as expired, in whichever slice it comes, but never twice for
            # one query: a slice at its end resumes at its last instant, reads only that event again,
            # and needs its next offset (Asana ends the stream with an empty page, reached only
            # through an offset). Refused there again and again, the client rightly gives up.
            query_of = (request.params.get("start_at"), request.params.get("end_at"))
            if next(offsets_seen) % 3 or query_of in refused_queries:
                return False
            refused_queries.add(query_of)
            return True

        fake.inject(Fault.EXPIRE_OFFSET, count=10_000, when=every_third_once_per_query)
        assert read(client, query, 8) == truth
        refused = [request for request in fake.requests if request.fault == Fault.EXPIRE_OFFSET.value]
        assert len(refused) == fake.stats.faults_served[Fault.EXPIRE_OFFSET] == len(refused_queries)
        assert len(refused) >= 2


def test_filters_are_sent_by_every_slice(week: FakeAsana) -> None:
    client = make_client(week)
    for filters in ({"actor_type": "user"}, {"event_type": "user_login_succeeded"}):
        query = AuditLogQuery.build(T0 - DAY, T0 + DAY, filters=filters, page_size=30)
        truth = week.ground_truth(T0 - DAY, T0 + DAY, **filters)
        assert 0 < len(truth) < len(week.ground_truth(T0 - DAY, T0 + DAY))
        week.reset_stats()
        assert read(client, query, 8) == truth
        assert all(r.params.items() >= filters.items() for r in week.requests)


def test_empty_windows_and_a_one_millisecond_window(week: FakeAsana) -> None:
    client = make_client(week)
    empty = AuditLogQuery(start_at=T0 + 10 * DAY, end_at=T0 + 11 * DAY)
    assert read(client, empty, 8) == []
    instant = T0 + timedelta(hours=30, milliseconds=17)
    week.add_events([event_at(1_207_900_000_000_000 + i, instant) for i in range(4)])
    tiny = AuditLogQuery(start_at=instant, end_at=instant + timedelta(milliseconds=1), page_size=3)
    truth = week.ground_truth(instant, instant + timedelta(milliseconds=1))
    assert len(truth) >= 4
    assert read(client, tiny, 8) == truth


def test_a_concurrent_read_needs_a_closed_window_and_no_offset(week: FakeAsana) -> None:
    client = make_client(week)
    with pytest.raises(AsanaAuditLogConfigError, match="start_at and end_at"):
        client.iter_pages(AuditLogQuery(start_at=T0), concurrency=4)
    with pytest.raises(AsanaAuditLogConfigError, match="start_at and end_at"):
        client.iter_events(AuditLogQuery(end_at=T0), concurrency=4).__next__()
    with pytest.raises(AsanaAuditLogConfigError, match="offset"):
        client.iter_pages(AuditLogQuery(start_at=T0, end_at=T0 + DAY), offset="x", concurrency=2)
    with pytest.raises(AsanaAuditLogConfigError, match="concurrency"):
        client.iter_pages(AuditLogQuery(start_at=T0, end_at=T0 + DAY), concurrency=MAX_CONCURRENCY + 1)
    assert week.stats.requests == 0


def test_pages_that_run_ahead_spill_to_a_private_directory_that_is_removed(
    week: FakeAsana, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slices, "RAM_PAGES_PER_WORKER", 1)
    monkeypatch.setattr(slices, "HEAD_PAGES", 1)
    client = make_client(week, spill_dir=str(tmp_path))
    query = AuditLogQuery(start_at=T0 - DAY, end_at=T0 + DAY, page_size=20)
    truth = week.ground_truth(T0 - DAY, T0 + DAY)
    events = client.iter_events(query, concurrency=4)
    first = next(events)  # the consumer pauses; the workers read on

    def spilled() -> list[Path]:
        return [f for d in tmp_path.iterdir() for f in d.iterdir() if f.stat().st_size > 0]

    wait_until(lambda: len(spilled()) >= 2, message="slices running ahead should spill to files")
    (directory,) = list(tmp_path.iterdir())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert [first, *events] == truth
    assert list(tmp_path.iterdir()) == []


def open_pools(session: requests.Session) -> int:
    """How many connection pools the session's adapters hold; closing the session empties them."""
    adapters = [a for a in session.adapters.values() if isinstance(a, requests.adapters.HTTPAdapter)]
    return sum(len(adapter.poolmanager.pools) for adapter in adapters)


def test_closing_early_joins_every_thread_and_closes_every_session(
    week: FakeAsana, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(threading.enumerate())
    client = make_client(week)
    sessions: list[requests.Session] = []
    make_session = client._new_session

    def recorded() -> requests.Session:
        sessions.append(make_session())
        return sessions[-1]

    monkeypatch.setattr(client, "_new_session", recorded)
    events = client.iter_events(
        AuditLogQuery(start_at=T0 - DAY, end_at=T0 + DAY, page_size=10), concurrency=8
    )
    next(events)
    assert len(slice_threads()) == 8
    wait_until(lambda: len(sessions) == 8, message="every worker should have a session of its own")
    wait_until(lambda: all(open_pools(s) for s in sessions), message="every worker should be reading")
    events.close()
    assert slice_threads() == []  # joined by close() itself
    assert [open_pools(session) for session in sessions] == [0] * 8
    # The stand-in's connection threads end once the client side closed its connections.
    wait_until(lambda: set(threading.enumerate()) <= before, message="every connection should be closed")


def test_an_exception_in_the_consumer_stops_the_read(week: FakeAsana) -> None:
    client = make_client(week)
    query = AuditLogQuery(start_at=T0 - DAY, end_at=T0 + DAY, page_size=10)

    def consume() -> None:
        for event in client.iter_events(query, concurrency=8):
            raise ZeroDivisionError(event["gid"])

    with pytest.raises(ZeroDivisionError):
        consume()
    assert slice_threads() == []


def test_closing_does_not_wait_out_a_long_retry_after() -> None:
    with FakeAsana(seed=8, start=T0, end=T0 + DAY, events_per_day=3000, latency=0.01) as fake:
        client = make_client(fake, retry=RetryPolicy(max_attempts=5, max_elapsed=3600, backoff_base=0.01))
        events = client.iter_events(AuditLogQuery(start_at=T0, end_at=T0 + DAY, page_size=10), concurrency=8)
        next(events)
        # The next request is told to come back in ten minutes: its worker waits out Retry-After,
        # and the rate limiter they share holds every other worker back as long.
        fake.inject(Fault.RATE_LIMIT, retry_after=600)
        wait_until(lambda: fake.stats.faults_served[Fault.RATE_LIMIT] == 1, message="a 429 should be served")
        served = fake.stats.requests
        wait_until(
            lambda: len(slice_threads()) == 8 and fake.stats.requests == served,
            message="the other workers should be held back",
        )
        Background(events.close, name="close").join()  # fails, rather than hangs, if close() waits
        assert slice_threads() == []


def test_a_workers_permanent_error_reaches_the_consumer_and_stops_the_others() -> None:
    start, end = T0, T0 + DAY
    with FakeAsana(seed=4, start=start, end=end, events_per_day=3000, latency=0.01) as fake:
        fourth = format_instant(from_us(SlicePlan.boundaries(to_us(start), to_us(end), 8)[3]))

        def second_page_of_the_fourth_slice(url: str) -> int | None:
            params = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
            return 401 if params.get("start_at") == fourth and "offset" in params else None

        with Relay(fake.base_url.rsplit("/api/", 1)[0], refuse=second_page_of_the_fourth_slice) as relay:
            client = make_client(fake, relay.base_url)
            query = AuditLogQuery(start_at=start, end_at=end, page_size=10)

            def read_all() -> None:
                with pytest.raises(AsanaAuditLogAuthError, match="401"):
                    read(client, query, 8)

            Background(read_all, name="read-until-401").join()  # fails, rather than hangs, if lost
            assert relay.refused  # it failed part-way: its first page had been served
            assert any(
                f"start_at={fourth}".replace(":", "%3A") in url and "offset" not in url for url in relay.urls
            )
            # The other workers stopped: far fewer requests than the 300 pages of the window.
            assert fake.stats.requests < 150


def test_a_429_holds_back_every_slice_for_its_retry_after() -> None:
    with FakeAsana(seed=6, start=T0, end=T0 + DAY, events_per_day=3000, latency=0.02) as fake:
        client = make_client(fake)
        # The first request with an offset (some slice's second page) is told to wait 2 s; the
        # window holds 600 pages, about 1.5 s of work for 8 workers at 20 ms a request.
        fake.inject(Fault.RATE_LIMIT, retry_after=2, when=lambda request: request.has_offset)
        query = AuditLogQuery(start_at=T0, end_at=T0 + DAY, page_size=5)
        assert read(client, query, 8) == fake.ground_truth(T0, T0 + DAY)
        seen = fake.requests
        (limited,) = [r for r in seen if r.status == 429]
        # A worker that had passed the limiter before the 429 was answered may still send its
        # request (however late a loaded machine lets it); none sends another before Retry-After.
        quiet_from, quiet_until = limited.time + 0.5, limited.time + 2
        during = [round(r.time - limited.time, 3) for r in seen if quiet_from <= r.time < quiet_until]
        assert len(during) <= 7, f"requests arrived this long after the 429: {during}"
        assert len([r for r in seen if r.time >= quiet_until]) > 300  # most of the work came after


def test_one_progress_line_for_the_whole_read(week: FakeAsana, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test_slices.progress")
    client = make_client(week, logger=logger, progress_interval=0)
    query = AuditLogQuery(start_at=T0 - DAY, end_at=T0 + DAY, page_size=50)
    with caplog.at_level(logging.INFO, logger=logger.name):
        events = read(client, query, 8)
    messages = [r.getMessage() for r in caplog.records]
    summaries = [m for m in messages if m.startswith("Asana audit log: read")]
    assert summaries == [summaries[0]]
    assert f"read {len(events)} events" in summaries[0]
    # One count for the whole read: every line reports one more page than the line before.
    pages = [int(m.split(" in ")[1].split()[0]) for m in messages if m.endswith("so far") or " so far " in m]
    assert len(pages) > 8
    assert pages == list(range(1, len(pages) + 1))


def test_temporary_files_go_to_the_systems_temporary_directory_by_default(
    week: FakeAsana, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr(slices, "RAM_PAGES_PER_WORKER", 0)
    monkeypatch.setattr(slices, "HEAD_PAGES", 0)
    client = make_client(week)
    events = client.iter_events(
        AuditLogQuery(start_at=T0 - DAY, end_at=T0 + DAY, page_size=50), concurrency=4
    )
    first = next(events)
    assert [p.name.startswith("asana-audit-spill-") for p in tmp_path.iterdir()] == [True]
    assert [first, *events] == week.ground_truth(T0 - DAY, T0 + DAY)
    assert os.listdir(tmp_path) == []
