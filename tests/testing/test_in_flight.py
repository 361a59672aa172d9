"""
Asana's cap on the requests one token may have in flight at once, and which limit refused what.

The requests held in flight wait a 30 s latency; the tests wait for them to arrive (the stand-in's
``stats.requests``) instead of sleeping, and :meth:`FakeAsana.stop` cuts the latency short. The held
requests are answered as the stand-in stops, so their clients may see a 200 or a closed connection;
what the stand-in answered is read from its counters, which it updates before sending.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from airflow_provider_asana_audit.testing import FakeAsana, Fault
from airflow_provider_asana_audit.testing.limits import InFlightCaps

from .support import NaiveClient, error_of, wait_until

HOLD = 30.0  # the latency that keeps requests in flight until stop() cuts it short


class Held:
    """``n`` requests sent at once from threads, in flight until the stand-in stops."""

    def __init__(self, fake: FakeAsana, n: int, *, token: str | None = None) -> None:
        self.fake = fake
        self.token = token
        self.before = fake.stats.requests
        self.outcomes: list[object] = []
        self._threads = [threading.Thread(target=self._request, daemon=True) for _ in range(n)]
        for thread in self._threads:
            thread.start()
        wait_until(
            lambda: fake.stats.requests == self.before + n, message=f"{n} requests arrived at the stand-in"
        )

    def _request(self) -> None:
        client = NaiveClient(self.fake, token=self.token)
        try:
            self.outcomes.append(client.get(limit=1).status_code)
        except requests.RequestException as exc:  # the connection is closed under it by stop()
            self.outcomes.append(exc)
        finally:
            client.close()

    def join(self) -> None:
        """Wait for every request's thread (after :meth:`FakeAsana.stop`)."""
        for thread in self._threads:
            thread.join(10)
        assert len(self.outcomes) == len(self._threads)


@pytest.fixture
def capped() -> Iterator[FakeAsana]:
    """A stand-in with a cap of 3 requests in flight and a latency that holds them there."""
    fake = FakeAsana(seed=3, events_per_day=10, max_in_flight=3, latency=HOLD).start()
    yield fake
    fake.stop()


# ---------------------------------------------------------------------------------------- over HTTP


def test_one_request_over_the_cap_gets_the_only_429(capped: FakeAsana) -> None:
    held = Held(capped, 3)
    assert capped.requests == []  # all three are in their latency: in flight, none answered

    began = time.monotonic()
    client = NaiveClient(capped)
    response = client.get(limit=1)
    client.close()
    assert time.monotonic() - began < HOLD / 3  # refused on arrival, not after the latency
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert error_of(response)["message"]
    assert capped.stats.refused == {"concurrency": 1}
    assert capped.requests[-1].refused == "concurrency"

    capped.stop()
    held.join()
    stats = capped.stats
    assert stats.by_status == {200: 3, 429: 1}
    assert stats.refused == {"concurrency": 1}
    assert 429 not in held.outcomes


def test_a_slot_is_given_back_when_its_response_is_ready() -> None:
    with FakeAsana(seed=3, events_per_day=10, max_in_flight=1, latency=0.01) as fake:
        client = NaiveClient(fake)
        fake.inject(Fault.SERVER_ERROR_500)
        fake.inject(Fault.DROP)
        statuses = [client.get(limit=1).status_code]
        with pytest.raises(requests.ConnectionError):
            client.get(limit=1)
        statuses += [client.get(limit=1).status_code for _ in range(5)]
        client.close()
    assert statuses == [500] + [200] * 5  # an error or a dropped connection gives its slot back too
    assert fake.stats.refused == {}


def test_requests_the_token_does_not_own_are_not_capped() -> None:
    fake = FakeAsana(
        seed=3, events_per_day=10, max_in_flight=1, latency=HOLD, denied_tokens={"pat": 403}
    ).start()
    try:
        # The token's one slot is taken; requests of an unknown and of a denied token wait their
        # latency side by side with it (they are refused for their token, after it), not refused.
        held = [Held(fake, 1), Held(fake, 1, token="x"), Held(fake, 1, token="pat")]
        assert fake.stats.refused == {}
        other_route = NaiveClient(fake).get(f"{fake.base_url}/users/me")
        assert other_route.status_code == 404
    finally:
        fake.stop()
    for each in held:
        each.join()
    assert fake.stats.by_status == {200: 1, 401: 1, 403: 1, 404: 1}
    assert fake.stats.refused == {}


def test_a_refusal_takes_a_token_from_the_rate_bucket() -> None:
    # One token a minute and a bucket of one: the refused request spends the only token, so the held
    # request, which takes its token once its latency is over, finds the bucket empty.
    fake = FakeAsana(
        seed=3, events_per_day=10, max_in_flight=1, latency=HOLD, requests_per_minute=1, burst=1
    ).start()
    try:
        held = Held(fake, 1)
        refused = NaiveClient(fake).get(limit=1)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
    finally:
        fake.stop()
    held.join()
    assert fake.stats.refused == {"concurrency": 1, "rate": 1}
    assert [r.refused for r in fake.requests] == ["concurrency", "rate"]


def test_without_a_cap_the_held_requests_take_the_token_instead() -> None:
    # The control of the test above: with no cap, nothing is refused on arrival, so the first request
    # to finish its latency gets the bucket's only token.
    fake = FakeAsana(seed=3, events_per_day=10, latency=HOLD, requests_per_minute=1, burst=1).start()
    try:
        held = Held(fake, 2)
    finally:
        fake.stop()
    held.join()
    assert fake.stats.by_status == {200: 1, 429: 1}
    assert fake.stats.refused == {"rate": 1}


def test_rate_refusals_and_injected_429s_are_told_apart() -> None:
    with FakeAsana(seed=3, events_per_day=10, requests_per_minute=60, burst=1) as limited:
        client = NaiveClient(limited)
        limited.inject(Fault.RATE_LIMIT)
        statuses = [client.get(limit=1).status_code for _ in range(3)]
        client.close()
    assert statuses == [429, 200, 429]
    stats = limited.stats
    assert (stats.by_status[429], stats.faults_served["429"], stats.refused) == (2, 1, {"rate": 1})
    assert [(r.fault, r.refused) for r in limited.requests] == [("429", None), (None, None), (None, "rate")]


def test_the_cap_reads_back_and_is_off_by_default() -> None:
    assert FakeAsana(events=[], max_in_flight=50).max_in_flight == 50
    assert FakeAsana(events=[]).max_in_flight is None


@pytest.mark.parametrize("cap", [0, -1])
def test_a_cap_that_admits_nothing_is_refused(cap: int) -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        FakeAsana(events=[], max_in_flight=cap)


# ---------------------------------------------------------------------------------------- the caps


def test_the_cap_admits_max_in_flight_then_refuses_with_one_second() -> None:
    caps = InFlightCaps(2)
    assert [caps.enter("t") for _ in range(3)] == [None, None, 1]
    assert caps.in_flight("t") == 2  # the refused request holds no slot
    caps.leave("t")
    assert caps.enter("t") is None
    assert caps.enter("t") == 1


def test_the_cap_is_per_token() -> None:
    caps = InFlightCaps(1)
    assert caps.enter("a") is None
    assert caps.enter("a") == 1
    assert caps.enter("b") is None
    assert (caps.in_flight("a"), caps.in_flight("b"), caps.in_flight("c")) == (1, 1, 0)


def test_leaving_more_than_entered_is_a_bug() -> None:
    caps = InFlightCaps(1)
    with pytest.raises(RuntimeError, match="leave"):
        caps.leave("t")


def test_the_cap_holds_under_threads() -> None:
    caps = InFlightCaps(5)
    start = threading.Barrier(20)
    admitted: list[bool] = []
    lock = threading.Lock()

    def knock() -> None:
        start.wait()
        result = caps.enter("t") is None
        with lock:
            admitted.append(result)

    threads = [threading.Thread(target=knock) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(admitted) == [False] * 15 + [True] * 5
    assert caps.in_flight("t") == 5
