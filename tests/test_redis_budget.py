"""
The token's budget shared through Redis, against a real ``redis-server`` on a free port: several
budgets of one token (as several processes would hold) share one rate, one cap on requests in flight
and one pause after a 429; a killed process's requests stop counting; a read through the hook is exact.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest
from redis import Redis

from airflow_provider_asana_audit.budget import RateLimiter, token_key
from airflow_provider_asana_audit.exceptions import AsanaAuditLogError
from airflow_provider_asana_audit.hooks.audit_log import AsanaAuditLogHook
from airflow_provider_asana_audit.redis_budget import RedisBudget
from airflow_provider_asana_audit.testing import FakeAsana
from tests.helpers.deployment import free_port
from tests.helpers.services import Service, redis

TOKEN = "a-token"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with redis(tmp_path_factory.mktemp("redis")) as service:
        yield service


@pytest.fixture
def client(redis_server: Service) -> Iterator[Redis]:
    connection = Redis.from_url(redis_server.url)
    connection.flushall()
    yield connection
    connection.close()


def budgets(client: Redis, count: int, **limits: float) -> list[RedisBudget]:
    """``count`` budgets of one token, as ``count`` processes would each hold."""
    settings: dict[str, float] = {"requests_per_minute": 1200, "max_in_flight": 50, **limits}
    return [
        RedisBudget(
            client,
            token=TOKEN,
            requests_per_minute=settings["requests_per_minute"],
            max_in_flight=int(settings["max_in_flight"]),
            lease=settings.get("lease", 120.0),
        )
        for _ in range(count)
    ]


def _state(client: Redis) -> dict[bytes, bytes]:
    """The token's budget as Redis holds it (the synchronous client's answer)."""
    return cast("dict[bytes, bytes]", client.hgetall(f"asana_audit_log:{{{token_key(TOKEN)}}}:state"))


def test_budgets_of_one_token_share_its_rate(client: Redis) -> None:
    shared = budgets(client, 3, requests_per_minute=1200)  # 20 a second, for the three together
    sent: list[float] = []
    lock = threading.Lock()

    def send(budget: RedisBudget) -> None:
        for _ in range(10):
            assert budget.acquire()
            with lock:
                sent.append(time.monotonic())
            budget.settle("ok")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(send, shared * 2))

    sent.sort()
    # 60 requests at 20 a second: the first goes at once, the other 59 at least 50 ms apart on
    # Redis's clock (a little less on this one, read after the script returned).
    assert sent[-1] - sent[0] >= 59 / 20 * 0.9
    assert sum(budget.usage().requests for budget in shared) == 60
    assert all(budget.usage().waited > 0 for budget in shared)
    # Another token has a budget of its own.
    other = RedisBudget(client, token="another", requests_per_minute=1200, max_in_flight=50)
    assert other.acquire()
    assert other.usage().waited < 0.05


def test_the_cap_on_requests_in_flight_holds_across_budgets(client: Redis) -> None:
    first, second = budgets(client, 2, max_in_flight=3, requests_per_minute=60_000)
    for budget in (first, first, second):
        assert budget.acquire()
    went = threading.Event()
    cancel = threading.Event()

    def fourth() -> None:
        if second.acquire(cancel=cancel):
            went.set()

    waiter = threading.Thread(target=fourth)
    waiter.start()
    try:
        assert not went.wait(0.3), "a fourth request went out while three were in flight"
        first.settle("ok")  # an answer frees a place, for any process
        assert went.wait(5)
    finally:
        cancel.set()
        waiter.join()


def test_a_killed_process_s_requests_stop_counting_after_their_lease(client: Redis) -> None:
    (killed,) = budgets(client, 1, max_in_flight=2, lease=0.5, requests_per_minute=60_000)
    for _ in range(2):  # never settled: its process died
        assert killed.acquire()
    (survivor,) = budgets(client, 1, max_in_flight=2, requests_per_minute=60_000)
    started = time.monotonic()
    assert survivor.acquire()
    assert 0.3 <= time.monotonic() - started < 5


def test_a_429_holds_every_process_back_and_cuts_the_shared_rate_once(client: Redis) -> None:
    refused, other = budgets(client, 2, requests_per_minute=600)
    for _ in range(2):
        assert refused.acquire()
    assert refused.settle("refused", retry_after=1) == 1  # the first refusal is logged at once
    assert refused.settle("refused", retry_after=1) == 0  # the next, within seconds, is folded
    started = time.monotonic()
    assert other.acquire()
    assert time.monotonic() - started >= 0.9, "another process went before Retry-After had passed"
    state = _state(client)
    # Two refusals of one excess: one cut, from the 10 a second the budget allowed.
    assert float(state[b"cut_rate"]) == pytest.approx(10 * RateLimiter.DECREASE)
    assert (refused.usage().requests, refused.usage().refused) == (2, 2)


def test_a_429_that_says_come_back_now_does_not_hold_anyone_back(client: Redis) -> None:
    (budget,) = budgets(client, 1, requests_per_minute=6000)
    assert budget.acquire()
    budget.settle("refused", retry_after=0)
    started = time.monotonic()
    assert budget.acquire()
    assert time.monotonic() - started < 0.5
    assert b"cut_rate" not in _state(client)


def test_redis_going_away_fails_with_what_to_do() -> None:
    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    budget = RedisBudget(
        dead, token=TOKEN, requests_per_minute=600, max_in_flight=5, description="Redis connection 'budget'"
    )
    with pytest.raises(AsanaAuditLogError) as raised:
        budget.acquire()
    message = str(raised.value)
    assert "Redis connection 'budget'" in message
    assert "remove budget_redis_conn_id" in message
    assert TOKEN not in message


def test_the_hook_reads_exactly_through_the_budget_a_connection_names(
    fake: FakeAsana, redis_server: Service, client: Redis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    extra = {
        "workspace_gid": fake.workspace_gid,
        "budget_redis_conn_id": "budget_store",
        "requests_per_minute": 3000,
    }
    conn = json.loads(fake.connection_json())
    conn["extra"] = json.dumps(extra)
    monkeypatch.setenv("AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_BUDGET_STORE", redis_server.url)
    truth = fake.ground_truth()
    start, end = truth[0]["created_at"], truth[-1]["created_at"]

    hook = AsanaAuditLogHook()
    events = list(hook.iter_events(start_at=start, end_at=end, concurrency=4))

    assert events == fake.ground_truth(start, end)
    assert len(events) > 100
    budget = hook.client.rate_limiter
    assert isinstance(budget, RedisBudget)
    assert budget.usage().requests == fake.stats.requests
    assert client.exists(f"asana_audit_log:{{{token_key(fake.token)}}}:state")
    assert not client.zcard(f"asana_audit_log:{{{token_key(fake.token)}}}:in_flight"), "a lease was left"
    assert fake.token not in json.dumps([key.decode() for key in client.scan_iter()])
