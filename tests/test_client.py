"""The plain client against the stand-in on 127.0.0.1: the stand-in's ground truth is the oracle."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
import requests

from airflow_provider_asana_audit import __version__
from airflow_provider_asana_audit.budget import Outcome, RateLimiter, RetryPolicy
from airflow_provider_asana_audit.client import AsanaAuditLogClient
from airflow_provider_asana_audit.exceptions import (
    AsanaAuditLogAuthError,
    AsanaAuditLogBadRequestError,
    AsanaAuditLogConfigError,
    AsanaAuditLogInvalidOffsetError,
    AsanaAuditLogNotFoundError,
    AsanaAuditLogRetriesExhaustedError,
)
from airflow_provider_asana_audit.query import AuditLogQuery
from airflow_provider_asana_audit.testing import INVALID_OFFSET_MESSAGE, FakeAsana, Fault, make_event
from airflow_provider_asana_audit.timeutils import format_instant
from airflow_provider_asana_audit.transport import check_base_url, parse_retry_after
from tests.helpers.clients import T0, make_client
from tests.helpers.waiting import Background, wait_until

# Two days of events up to the current hour: T0's day (midnight three days ago) holds only what a test adds.
pytestmark = pytest.mark.standin(
    seed=11,
    start=datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=2),
    events_per_day=150,
)


def event(gid: str, created_at: str) -> dict[str, Any]:
    return make_event(random.Random(gid), gid=gid, created_at=created_at)


def _after(instant: float) -> Callable[[], bool]:
    """A condition: ``time.time()`` is past ``instant``."""
    return lambda: time.time() > instant


def read_all(client: AsanaAuditLogClient, query: AuditLogQuery | None = None) -> list[dict[str, Any]]:
    return list(client.iter_events(query or AuditLogQuery(page_size=7)))


# --- pagination and the stream contract ---------------------------------------------------------


def test_reads_every_event_once_in_order_field_for_field(fake: FakeAsana) -> None:
    events = read_all(make_client(fake))
    assert len(events) > 200
    assert events == fake.ground_truth()


def test_stops_at_the_first_empty_page_although_next_page_is_never_null(fake: FakeAsana) -> None:
    client = make_client(fake)
    pages = list(client.iter_pages(AuditLogQuery(page_size=100)))
    assert pages[-1].events == []
    assert pages[-1].next_offset is not None  # the stream contract: Asana still offers a next page
    assert fake.stats.requests == len(pages)


def test_stops_after_one_request_when_nothing_matches(fake: FakeAsana) -> None:
    client = make_client(fake)
    pages = list(client.iter_pages(AuditLogQuery(event_type="no_such_event_type")))
    assert len(pages) == 1
    assert pages[0].events == []
    assert pages[0].next_offset is None
    assert fake.stats.requests == 1


def test_window_includes_its_start_and_excludes_its_end(fake: FakeAsana) -> None:
    start, end = T0, T0 + timedelta(hours=1)
    at_start = event("9000000000000001", format_instant(start))
    inside = event("9000000000000002", format_instant(start + timedelta(minutes=5)))
    at_end = event("9000000000000003", format_instant(end))
    before = event("9000000000000004", format_instant(start - timedelta(milliseconds=1)))
    fake.add_events([at_start, inside, at_end, before])
    gids = [e["gid"] for e in read_all(make_client(fake), AuditLogQuery(start_at=start, end_at=end))]
    assert gids == ["9000000000000001", "9000000000000002"]


@pytest.mark.parametrize(
    "filters",
    [
        {"event_type": "user_login_failed"},
        {"actor_type": "asana_support"},
        {"resource_gid": "from-ground-truth"},
        {"actor_gid": "from-ground-truth"},
    ],
    ids=["event_type", "actor_type", "resource_gid", "actor_gid"],
)
def test_each_filter_returns_exactly_the_matching_events(fake: FakeAsana, filters: dict[str, str]) -> None:
    # An event whose actor and resource have gids (anonymous actors have none).
    sample = next(e for e in fake.ground_truth() if e["actor"].get("gid") and e["resource"].get("gid"))
    if filters.get("resource_gid"):
        filters = {"resource_gid": sample["resource"]["gid"]}
    if filters.get("actor_gid"):
        filters = {"actor_gid": sample["actor"]["gid"]}
    expected = fake.ground_truth(**filters)
    assert expected, "the filter should match something in the generated data"
    assert read_all(make_client(fake), AuditLogQuery.build(page_size=5, filters=filters)) == expected


def test_events_sharing_a_created_at_across_a_page_boundary_are_each_read_once(fake: FakeAsana) -> None:
    instant = format_instant(T0 + timedelta(hours=3))
    same = [event(f"91000000000000{i:02d}", instant) for i in range(7)]
    fake.add_events(same)
    query = AuditLogQuery(start_at=T0, end_at=T0 + timedelta(days=1), page_size=3)
    events = read_all(make_client(fake), query)
    assert events == fake.ground_truth(T0, T0 + timedelta(days=1))
    assert sorted(e["gid"] for e in events if e["created_at"] == instant) == [e["gid"] for e in same]


def test_iteration_is_lazy_one_request_per_page(fake: FakeAsana) -> None:
    events = make_client(fake).iter_events(AuditLogQuery(page_size=10))
    first = [next(events) for _ in range(10)]
    assert first == fake.ground_truth()[:10]
    assert fake.stats.requests == 1


def test_polling_the_last_offset_returns_events_appended_later(fake: FakeAsana) -> None:
    client = make_client(fake)
    query = AuditLogQuery(start_at=datetime.now(timezone.utc) - timedelta(hours=1))
    last = list(client.iter_pages(query))[-1]
    appended = fake.append_events(3)
    later = list(client.iter_pages(query, offset=last.next_offset))
    assert [e["gid"] for page in later for e in page.events] == [e["gid"] for e in appended]


def test_a_rejected_starting_offset_raises_since_there_is_nothing_to_resume_from(fake: FakeAsana) -> None:
    with pytest.raises(AsanaAuditLogInvalidOffsetError, match="offset"):
        list(make_client(fake).iter_pages(AuditLogQuery(), offset="forged-offset"))


# --- offset recovery ----------------------------------------------------------------------------


def test_an_expired_offset_mid_window_resumes_without_loss_or_repeat(fake: FakeAsana) -> None:
    instant = format_instant(T0 + timedelta(hours=2))
    fake.add_events([event(f"92000000000000{i:02d}", instant) for i in range(6)])
    fake.inject(Fault.EXPIRE_OFFSET, count=3)
    query = AuditLogQuery(start_at=T0, end_at=T0 + timedelta(days=1), page_size=4)
    assert read_all(make_client(fake), query) == fake.ground_truth(T0, T0 + timedelta(days=1))
    assert fake.stats.faults_served[Fault.EXPIRE_OFFSET] == 3


def test_offsets_that_expire_while_the_consumer_is_slow_are_recovered_exactly() -> None:
    ttl = 0.2
    with FakeAsana(seed=3, events_per_day=120, offset_ttl=ttl) as fake:
        events = []
        for number, page in enumerate(make_client(fake).iter_pages(AuditLogQuery(page_size=25))):
            expired_at = time.time() + ttl  # the page's next offset was issued before now
            events.extend(page.events)
            if number % 3 == 0:  # a slow writer downstream: hold on until the next offset has expired
                wait_until(_after(expired_at), message="the offset should expire")
        assert events == fake.ground_truth()
        assert fake.stats.by_status[400] > 0
        assert fake.stats.faults_served == {}  # the stand-in's own expiry, not an injected fault


def test_an_offset_that_keeps_failing_without_progress_gives_up(fake: FakeAsana) -> None:
    instant = format_instant(T0 + timedelta(hours=1))
    fake.add_events([event(f"93000000000000{i:02d}", instant) for i in range(5)])
    fake.inject(Fault.EXPIRE_OFFSET, count=100)
    query = AuditLogQuery(start_at=T0, end_at=T0 + timedelta(hours=2), page_size=2)
    with pytest.raises(AsanaAuditLogInvalidOffsetError):
        read_all(make_client(fake), query)


# --- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.SERVER_ERROR_500,
        Fault.BAD_GATEWAY_502,
        Fault.UNAVAILABLE_503,
        Fault.GATEWAY_TIMEOUT_504,
        Fault.DROP,
        Fault.TRUNCATE,
        Fault.NOT_JSON,
    ],
)
def test_transient_faults_mid_window_are_retried_and_the_result_is_exact(
    fake: FakeAsana, fault: Fault
) -> None:
    fake.inject(fault, count=2, when=lambda request: request.has_offset)
    assert read_all(make_client(fake), AuditLogQuery(page_size=50)) == fake.ground_truth()
    assert fake.stats.faults_served[fault] == 2


def test_a_slow_response_past_the_read_timeout_is_retried(
    fake: FakeAsana, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject(Fault.SLOW, delay=1.0)
    client = make_client(fake, read_timeout=0.3)
    assert read_all(client, AuditLogQuery(page_size=100)) == fake.ground_truth()
    assert "ReadTimeout" in caplog.text


def test_429_waits_at_least_retry_after_before_the_next_request(fake: FakeAsana) -> None:
    fake.inject(Fault.RATE_LIMIT, retry_after=1)
    client = make_client(fake)
    client.get_page(AuditLogQuery(page_size=1))
    first, second = fake.requests[0], fake.requests[1]
    assert first.status == 429
    assert second.status == 200
    assert second.time - first.time >= 1.0


class SignallingLimiter(RateLimiter):
    """A rate limiter that tells when a client has reported a 429 to it (which pauses it)."""

    def __init__(self, requests_per_minute: float) -> None:
        super().__init__(requests_per_minute)
        self.paused = threading.Event()

    def settle(self, outcome: Outcome, *, retry_after: float | None = None) -> int:
        reported = super().settle(outcome, retry_after=retry_after)
        if outcome == "refused":
            self.paused.set()
        return reported


def test_a_429_holds_back_every_client_sharing_the_token_limiter(fake: FakeAsana) -> None:
    limiter = SignallingLimiter(6000)
    first, second = make_client(fake, rate_limiter=limiter), make_client(fake, rate_limiter=limiter)
    fake.inject(Fault.RATE_LIMIT, retry_after=1)
    worker = Background(lambda: first.get_page(AuditLogQuery(page_size=1)), name="first-client")
    assert limiter.paused.wait(timeout=30), "the first client should pause the limiter after its 429"
    second.get_page(AuditLogQuery(page_size=1))
    worker.join()
    rejected, *later = fake.requests
    assert rejected.status == 429
    assert len(later) == 2  # the first client's retry and the second client's request
    assert all(r.time - rejected.time >= 1.0 for r in later)


def test_retries_are_bounded_by_max_attempts(fake: FakeAsana) -> None:
    fake.inject(Fault.UNAVAILABLE_503, count=50)
    client = make_client(fake, retry=RetryPolicy(max_attempts=3, backoff_base=0.01))
    with pytest.raises(AsanaAuditLogRetriesExhaustedError, match=r"3 times.*HTTP 503"):
        client.get_page(AuditLogQuery())
    assert fake.stats.requests == 3


def test_retries_are_bounded_by_total_time(fake: FakeAsana) -> None:
    fake.inject(Fault.UNAVAILABLE_503, count=50)
    client = make_client(fake, retry=RetryPolicy(max_attempts=10, max_elapsed=5, backoff_base=30))
    started = time.monotonic()
    with pytest.raises(AsanaAuditLogRetriesExhaustedError, match=r"1 times.*HTTP 503"):
        client.get_page(AuditLogQuery())
    assert time.monotonic() - started < 5
    assert fake.stats.requests == 1


def test_a_429_is_bounded_by_total_time_only(fake: FakeAsana) -> None:
    # A Retry-After that would end beyond max_elapsed fails at once, with the usual message.
    fake.inject(Fault.RATE_LIMIT, count=50, retry_after=30)
    client = make_client(fake, retry=RetryPolicy(max_attempts=10, max_elapsed=5))
    started = time.monotonic()
    with pytest.raises(AsanaAuditLogRetriesExhaustedError, match="Retry-After: 30"):
        client.get_page(AuditLogQuery())
    assert time.monotonic() - started < 5
    assert fake.stats.requests == 1


def test_a_429_with_retry_after_never_exhausts_the_retries(fake: FakeAsana) -> None:
    fake.inject(Fault.RATE_LIMIT, count=5, retry_after=0.01)
    limiter = RateLimiter(6000)
    client = make_client(fake, rate_limiter=limiter, retry=RetryPolicy(max_attempts=2, backoff_base=0.01))
    page = client.get_page(AuditLogQuery(page_size=1))
    assert len(page.events) == 1
    assert [r.status for r in fake.requests] == [429] * 5 + [200]
    usage = limiter.usage()
    assert (usage.requests, usage.refused, usage.failed) == (6, 5, 0)
    assert usage.waited >= 0.01  # Retry-After held the retries back
    assert limiter.rate is not None
    assert limiter.rate < 100  # a refusal with a Retry-After cut the rate


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    response = requests.Response()
    response.headers["Retry-After"] = "7"
    assert parse_retry_after(response) == 7
    response.headers["Retry-After"] = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60))
    assert 55 < (parse_retry_after(response) or 0) <= 60
    response.headers["Retry-After"] = "soon"
    assert parse_retry_after(response) is None


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1, backoff_max=8)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        waits = {policy.backoff(attempt) for _ in range(20)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1


# --- permanent errors ----------------------------------------------------------------------------


def test_a_wrong_token_fails_at_once_with_a_hint_and_without_the_token(fake: FakeAsana) -> None:
    client = make_client(fake, token="wrong-secret-token-value")
    with pytest.raises(AsanaAuditLogAuthError) as raised:
        client.get_page(AuditLogQuery())
    assert raised.value.status == 401
    assert "service account token" in str(raised.value)
    assert "wrong-secret-token-value" not in str(raised.value)
    assert fake.stats.requests == 1


@pytest.mark.parametrize("status", [402, 403])
def test_a_token_without_audit_log_access_says_a_service_account_is_needed(status: int) -> None:
    with FakeAsana(events_per_day=5, denied_tokens={"personal-token": status}) as fake:
        client = make_client(fake, token="personal-token")
        with pytest.raises(AsanaAuditLogAuthError, match="service account") as raised:
            client.get_page(AuditLogQuery())
        assert raised.value.status == status
        assert "personal-token" not in str(raised.value)


def test_an_unknown_workspace_fails_at_once_naming_the_extra_to_fix(fake: FakeAsana) -> None:
    client = make_client(fake, workspace_gid="1999999999999999")
    with pytest.raises(AsanaAuditLogNotFoundError, match="workspace_gid") as raised:
        client.get_page(AuditLogQuery())
    assert "Unknown object" in str(raised.value)  # Asana's own message is kept
    assert fake.stats.requests == 1


def test_a_forged_offset_fails_at_once_with_asanas_message(fake: FakeAsana) -> None:
    client = make_client(fake)
    with pytest.raises(AsanaAuditLogBadRequestError, match=INVALID_OFFSET_MESSAGE):
        client.get_page(AuditLogQuery(), offset="not-issued-by-asana")
    assert fake.stats.requests == 1
    assert fake.stats.faults_served == {}  # refused by the stand-in's own offset check


def test_an_expired_starting_offset_fails_at_once_with_asanas_message() -> None:
    ttl = 0.05
    with FakeAsana(seed=3, events_per_day=20, offset_ttl=ttl) as fake:
        client = make_client(fake)
        page = client.get_page(AuditLogQuery(page_size=5))
        issued_by = time.time()
        wait_until(lambda: time.time() - issued_by > ttl, message="the offset should expire")
        with pytest.raises(AsanaAuditLogInvalidOffsetError, match=INVALID_OFFSET_MESSAGE):
            list(client.iter_pages(AuditLogQuery(page_size=5), offset=page.next_offset))
        assert fake.stats.by_status[400] == 1
        assert fake.stats.faults_served == {}  # refused by the stand-in's own expiry check


# --- validation before any request ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"page_size": 0}, "page_size=0 must be an integer from 1 to 100"),
        ({"page_size": 101}, "1 to 100"),
        ({"actor_type": "robot"}, "not one of Asana's actor types"),
        ({"actor_type": "user", "actor_gid": "1"}, "cannot be combined"),
        ({"start_at": T0, "end_at": T0}, "must be before end_at"),
        ({"start_at": datetime(2026, 1, 1)}, "has no timezone"),
        ({"end_at": "yesterday"}, "not an ISO 8601"),
        ({"start_at": "2026-01-01T00:00:00"}, "has no timezone"),
        ({"event_type": ""}, "non-empty string"),
    ],
)
def test_invalid_queries_are_refused_before_any_request(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match=message):
        AuditLogQuery(**kwargs)


def test_build_takes_the_filters_as_a_mapping_and_none_means_no_filter() -> None:
    query = AuditLogQuery.build(
        T0, T0 + timedelta(days=1), filters={"event_type": "task_deleted", "actor_type": None}, page_size=7
    )
    assert query.filters == {
        "event_type": "task_deleted",
        "actor_type": None,
        "actor_gid": None,
        "resource_gid": None,
    }
    assert query == AuditLogQuery(
        start_at=T0, end_at=T0 + timedelta(days=1), event_type="task_deleted", page_size=7
    )


def test_build_refuses_an_unknown_filter_name() -> None:
    with pytest.raises(AsanaAuditLogConfigError, match=r"Unknown filter\(s\) event, user:"):
        AuditLogQuery.build(filters={"event": "task_deleted", "user": "x"})


def test_pendulum_datetimes_and_offsets_are_normalised_to_utc() -> None:
    pendulum = pytest.importorskip("pendulum")
    query = AuditLogQuery.build(
        pendulum.datetime(2026, 11, 20, 1, tz="Europe/Paris"), "2026-11-21T00:00:00.250+00:00"
    )
    assert query.params()["start_at"] == "2026-11-20T00:00:00.000Z"
    assert query.params()["end_at"] == "2026-11-21T00:00:00.250Z"


@pytest.mark.parametrize(
    "url",
    ["http://app.asana.com/api/1.0", "http://10.0.0.5:8080/api/1.0", "ftp://example.com", "app.asana.com"],
)
def test_the_token_is_never_sent_over_plain_http_except_to_loopback(url: str) -> None:
    with pytest.raises(AsanaAuditLogConfigError):
        check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://app.asana.com/api/1.0/",
        "http://127.0.0.1:8765/api/1.0",
        "http://[::1]:1/x",
        "http://localhost",
    ],
)
def test_https_and_loopback_urls_are_accepted(url: str) -> None:
    assert check_base_url(url) == url.rstrip("/")


def test_a_non_numeric_workspace_gid_is_refused(fake: FakeAsana) -> None:
    with pytest.raises(AsanaAuditLogConfigError, match="workspace_gid"):
        make_client(fake, workspace_gid="My Workspace")


# --- what is sent --------------------------------------------------------------------------------


def test_requests_name_the_package_and_never_record_the_token_elsewhere(fake: FakeAsana) -> None:
    client = make_client(fake)
    client.get_page(AuditLogQuery(page_size=1))
    request = fake.requests[0]
    assert request.headers["User-Agent"].startswith(f"airflow-provider-asana-audit/{__version__}")
    assert fake.token not in repr(client)
    assert fake.token not in str(request.params)
    assert not any(fake.token in str(value) for value in vars(client).values())


# --- the shared rate limiter ---------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_rate_limiter_spaces_requests_to_the_rate_after_a_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(120, burst=2, clock=clock, sleep=clock.sleep)
    for _ in range(6):
        limiter.acquire()
    assert clock.now == pytest.approx(2.0)  # 2 free, then 4 at 2/s


def test_rate_limiter_pause_holds_everyone_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    limiter.pause(3)
    limiter.acquire()
    assert clock.now >= 3


def test_clients_of_one_token_share_one_limiter() -> None:
    assert RateLimiter.for_token("a", 100) is RateLimiter.for_token("a", 100)
    assert RateLimiter.for_token("a", 100) is not RateLimiter.for_token("b", 100)


def test_a_query_matches_events_as_asanas_filters_do() -> None:
    event = {
        "event_type": "user_login_failed",
        "actor": {"actor_type": "user", "gid": "1200000000000033"},
        "resource": {"gid": "1206000000000444"},
    }

    assert AuditLogQuery.build(
        filters={"event_type": "user_login_failed", "actor_gid": "1200000000000033"}
    ).matches(event)
    assert AuditLogQuery.build(filters={"resource_gid": "1206000000000444"}).matches(event)
    assert not AuditLogQuery.build(filters={"actor_type": "anonymous"}).matches(event)
    assert not AuditLogQuery.build(filters={"event_type": "task_deleted"}).matches(event)
    assert not AuditLogQuery.build(filters={"resource_gid": "1"}).matches({"event_type": "x"})
