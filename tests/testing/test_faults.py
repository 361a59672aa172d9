"""Injected faults, the per-token token bucket, and the counters and request log."""

from __future__ import annotations

import collections
import json
import math

import pytest
import requests

from airflow_provider_asana_audit.testing import FakeAsana, Fault, Stats
from airflow_provider_asana_audit.testing.limits import TokenBuckets

from .support import INVALID_OFFSET, NaiveClient, error_of

# ---------------------------------------------------------------------------------------- faults


def test_rate_limit_fault_sends_retry_after(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject(Fault.RATE_LIMIT, retry_after=2)
    response = client.get()
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert client.get().status_code == 200
    assert fake.stats.faults_served[Fault.RATE_LIMIT] == 1
    assert fake.stats.faults_served["429"] == 1


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault.SERVER_ERROR_500, 500),
        (Fault.BAD_GATEWAY_502, 502),
        (Fault.UNAVAILABLE_503, 503),
        (Fault.GATEWAY_TIMEOUT_504, 504),
    ],
)
def test_server_error_faults_hit_count_requests(
    fake: FakeAsana, client: NaiveClient, fault: Fault, status: int
) -> None:
    fake.inject(fault, count=2)
    responses = [client.get() for _ in range(3)]
    assert [r.status_code for r in responses] == [status, status, 200]
    assert error_of(responses[0])["message"]
    assert fake.stats.faults_served[fault.value] == 2


def test_drop_closes_without_response(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject("drop")
    with pytest.raises(requests.ConnectionError):
        client.get()
    assert client.get().status_code == 200
    assert fake.requests[0].status == 0
    assert fake.stats.by_status[0] == 1


def test_slow_delays_a_normal_response(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject(Fault.SLOW, delay=0.3)
    response = client.get(limit=3)
    assert response.elapsed.total_seconds() >= 0.3
    assert response.json()["data"] == fake.ground_truth()[:3]


def test_truncate_sends_half_the_body(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject(Fault.TRUNCATE)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        client.get()
    assert client.get().status_code == 200
    assert fake.stats.pages_served == 1  # the truncated page does not count as served


def test_not_json_is_a_200_html_page(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject(Fault.NOT_JSON)
    response = client.get()
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text == "<html>upstream error</html>"
    with pytest.raises(ValueError, match=r"Expecting value"):
        response.json()


def test_expire_offset_hits_the_next_request_with_an_offset(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject(Fault.EXPIRE_OFFSET)
    first = client.page(limit=2)  # no offset: not consumed
    expired = client.get(limit=2, offset=first["next_page"]["offset"])
    assert expired.status_code == 400
    assert error_of(expired)["message"] == INVALID_OFFSET
    assert client.get(limit=2, offset=first["next_page"]["offset"]).status_code == 200
    assert fake.pending_faults == []


def test_faults_apply_in_order_and_honour_when(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject("503", when=lambda request: request.params.get("limit") == "7")
    fake.inject("RATE_LIMIT", retry_after=0.5)
    fake.inject(Fault.DROP)
    assert fake.pending_faults == [(Fault.UNAVAILABLE_503, 1), (Fault.RATE_LIMIT, 1), (Fault.DROP, 1)]
    first = client.get(limit=3)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "0.5"
    with pytest.raises(requests.ConnectionError):
        client.get(limit=3)
    assert client.get(limit=3).status_code == 200
    assert client.get(limit=7).status_code == 503
    stats = fake.stats
    assert dict(stats.faults_served) == {"429": 1, "drop": 1, "503": 1}
    assert stats.requests == 4


def test_clear_faults_drops_every_pending_fault(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject(Fault.SERVER_ERROR_500, count=5)
    fake.clear_faults()
    assert fake.pending_faults == []
    assert client.get().status_code == 200


def test_an_unknown_fault_is_refused(fake: FakeAsana) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake.inject("teapot")


def test_a_fault_for_no_request_is_refused(fake: FakeAsana) -> None:
    with pytest.raises(ValueError, match="count"):
        fake.inject(Fault.DROP, count=0)


@pytest.mark.parametrize("spelling", [Fault.SLOW, "slow", "SLOW"])
def test_faults_are_named_by_member_value_or_name(spelling: Fault | str) -> None:
    assert Fault.coerce(spelling) is Fault.SLOW


# ---------------------------------------------------------------------------------------- token bucket


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("per_minute", "burst"), [(1500, 25), (150, 3), (60, 1), (30, 1), (61, 2)])
def test_default_burst_is_one_seconds_worth(per_minute: int, burst: int) -> None:
    assert TokenBuckets(per_minute).burst == burst


def test_a_full_bucket_serves_burst_requests_then_rejects() -> None:
    buckets = TokenBuckets(60, burst=3, clock=Clock())
    assert [buckets.take("t") for _ in range(4)] == [None, None, None, 2]


def test_tokens_come_back_at_the_per_minute_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(120, burst=1, clock=clock)  # two tokens a second
    assert buckets.take("t") is None
    clock.now += 0.49
    assert buckets.tokens("t") == pytest.approx(0.98)
    clock.now += 0.01
    assert buckets.take("t") is None


def test_a_bucket_never_holds_more_than_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(60, burst=2, clock=clock)
    clock.now += 3_600
    assert buckets.tokens("t") == 2
    assert [buckets.take("t") for _ in range(3)] == [None, None, 2]


def test_retry_after_is_the_whole_seconds_until_a_token_is_there() -> None:
    clock = Clock()
    buckets = TokenBuckets(60, burst=1, clock=clock)
    assert buckets.take("t") is None
    clock.now += 0.25
    retry_after = buckets.take("t")
    assert retry_after == 2  # the rejection took the 0.25 earned and owes 0.75 more: 1.75 s to a token
    clock.now += retry_after
    assert buckets.take("t") is None


def test_retry_after_is_at_least_one_second() -> None:
    buckets = TokenBuckets(6_000, burst=1, clock=Clock())  # a token every 10 ms
    assert buckets.take("t") is None
    assert buckets.take("t") == 1


def test_rejected_requests_take_tokens_too() -> None:
    buckets = TokenBuckets(60, burst=1, clock=Clock())
    assert buckets.take("t") is None
    retry_afters = [buckets.take("t") for _ in range(5)]
    assert retry_afters == [2, 3, 4, 5, 6]
    assert buckets.tokens("t") == -5


def test_debt_is_bounded_by_one_minutes_worth() -> None:
    clock = Clock()
    buckets = TokenBuckets(60, burst=1, clock=clock)
    for _ in range(1_000):
        buckets.take("t")
    assert buckets.tokens("t") == -60
    clock.now += 61
    assert buckets.take("t") is None


def test_each_token_has_its_own_bucket() -> None:
    buckets = TokenBuckets(60, burst=1, clock=Clock())
    assert buckets.take("a") is None
    assert buckets.take("a") is not None
    assert buckets.take("b") is None


@pytest.mark.parametrize(("per_minute", "burst"), [(0, None), (60, 0)])
def test_a_bucket_that_could_serve_nothing_is_refused(per_minute: int, burst: int | None) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        TokenBuckets(per_minute, burst)


def test_over_http_the_burst_passes_then_429_with_an_integer_retry_after() -> None:
    with FakeAsana(seed=3, events_per_day=10, requests_per_minute=3, burst=3) as fake:
        client = NaiveClient(fake)
        statuses = [client.get(limit=1).status_code for _ in range(3)]
        rejected = client.get(limit=1)
        again = client.get(limit=1)
        other_token = NaiveClient(fake, token="other").get()
        client.close()
        assert statuses == [200, 200, 200]
        assert rejected.status_code == 429
        assert "too many requests" in error_of(rejected)["message"]
        assert "phrase" not in error_of(rejected)
        first_wait = int(rejected.headers["Retry-After"])  # a whole number of seconds
        assert first_wait == math.ceil(2 / (3 / 60))  # one token owed, one to earn, at 1/20 a second
        assert again.status_code == 429
        assert int(again.headers["Retry-After"]) == first_wait + 20  # the rejection took a token too
        assert other_token.status_code == 401  # unknown tokens are refused before any bucket
        assert fake.stats.by_status == {200: 3, 429: 2, 401: 1}


def test_a_denied_token_is_refused_before_any_bucket() -> None:
    with FakeAsana(events=[], requests_per_minute=1, denied_tokens={"pat": 403}) as fake:
        client = NaiveClient(fake, token="pat")
        assert [client.get().status_code for _ in range(3)] == [403, 403, 403]
        client.close()


def test_burst_without_a_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="burst needs requests_per_minute"):
        FakeAsana(events=[], burst=5)


# ---------------------------------------------------------------------------------------- stats and log


def test_recorded_requests_keep_params_and_status_but_not_authorization(
    fake: FakeAsana, client: NaiveClient
) -> None:
    client.get(limit=2, event_type="task_deleted")
    (recorded,) = fake.requests
    assert recorded.method == "GET"
    assert recorded.path == f"/api/1.0/workspaces/{fake.workspace_gid}/audit_log_events"
    assert recorded.params == {"limit": "2", "event_type": "task_deleted"}
    assert recorded.status == 200
    assert recorded.fault is None
    assert "authorization" not in {k.lower() for k in recorded.headers}
    assert fake.token not in json.dumps(recorded.headers)


def test_stats_count_pages_and_events_served(fake: FakeAsana, client: NaiveClient) -> None:
    client.get(limit=5)
    client.get(limit=3)
    client.get(limit=0)
    stats = fake.stats
    assert stats.requests == 3
    assert stats.pages_served == 2
    assert stats.events_served == 8
    assert stats.by_status == {200: 2, 400: 1}


def test_a_stats_snapshot_does_not_change_afterwards(fake: FakeAsana, client: NaiveClient) -> None:
    client.get(limit=1)
    snapshot = fake.stats
    client.get(limit=1)
    fake.inject(Fault.DROP)
    with pytest.raises(requests.ConnectionError):
        client.get()
    assert snapshot == Stats(1, collections.Counter({200: 1}), collections.Counter(), 1, 1)
    assert fake.stats.requests == 3


def test_reset_stats_forgets_counts_and_requests_but_keeps_faults(
    fake: FakeAsana, client: NaiveClient
) -> None:
    client.get()
    fake.inject(Fault.DROP)
    fake.reset_stats()
    assert fake.requests == []
    assert fake.stats == Stats()
    assert fake.pending_faults == [(Fault.DROP, 1)]
