"""The endpoint's answers: the stream contract, auth and routes, Asana's error envelope, latency."""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from airflow_provider_asana_audit.testing import FakeAsana, Fault

from .support import NaiveClient, error_of, wait_until

# ---------------------------------------------------------------------------------------- the stream


def test_full_naive_read_equals_ground_truth(fake: FakeAsana, client: NaiveClient) -> None:
    events, _ = client.read_all(limit=17)
    assert len(events) > 100
    assert events == fake.ground_truth()


def test_next_page_is_present_on_the_last_empty_page(client: NaiveClient) -> None:
    events, next_page = client.read_all(limit=100)
    assert events
    assert next_page is not None
    again = client.page(limit=100, offset=next_page["offset"])
    assert again["data"] == []
    assert again["next_page"] is not None


def test_every_page_with_matches_has_next_page(client: NaiveClient) -> None:
    body = client.page(limit=100)
    assert len(body["data"]) == 100
    assert body["next_page"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"event_type": "no_such_event_type"},
        {"start_at": "2099-01-01T00:00:00Z"},
        {"end_at": "2000-01-01T00:00:00Z"},
        {"actor_gid": "1"},
    ],
)
def test_next_page_is_null_only_when_nothing_matches(client: NaiveClient, params: dict[str, str]) -> None:
    assert client.page(**params) == {"data": [], "next_page": None}


def test_no_events_at_all_gives_null_next_page() -> None:
    with FakeAsana(events=[]) as empty:
        assert NaiveClient(empty).page() == {"data": [], "next_page": None}


def test_next_page_path_and_uri_follow_asanas_shape(fake: FakeAsana, client: NaiveClient) -> None:
    next_page = client.page(limit=5, event_type="user_login_succeeded")["next_page"]
    assert set(next_page) == {"offset", "path", "uri"}
    assert next_page["path"].startswith(f"/workspaces/{fake.workspace_gid}/audit_log_events?")
    assert "event_type=user_login_succeeded" in next_page["path"]
    assert "limit=5" in next_page["path"]
    assert next_page["uri"] == fake.base_url + next_page["path"]
    following = client.session.get(next_page["uri"], timeout=10).json()
    assert following["data"] == fake.ground_truth(event_type="user_login_succeeded")[5:10]


def test_head_answers_like_get_without_a_body(fake: FakeAsana, client: NaiveClient) -> None:
    response = client.session.head(client.url, timeout=10)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) > 0
    assert response.content == b""


# ---------------------------------------------------------------------------------------- auth and routes


def test_missing_token_is_401(fake: FakeAsana) -> None:
    response = requests.get(f"{fake.base_url}/workspaces/{fake.workspace_gid}/audit_log_events", timeout=10)
    assert response.status_code == 401
    assert error_of(response)["message"] == "Not Authorized"


def test_wrong_token_is_401(fake: FakeAsana) -> None:
    assert NaiveClient(fake, token="nope").get().status_code == 401


@pytest.mark.parametrize("status", [402, 403])
def test_denied_token_gets_its_status_and_names_the_plans(status: int) -> None:
    with FakeAsana(events=[], denied_tokens={"pat-123": status}) as fake:
        response = NaiveClient(fake, token="pat-123").get()
    assert response.status_code == status
    message = error_of(response)["message"]
    assert "service accounts" in message
    assert "Enterprise+" in message
    assert "legacy Enterprise" in message
    assert "Compliance Management add-on" in message


def test_denied_tokens_can_change_while_serving(fake: FakeAsana) -> None:
    fake.denied_tokens["pat-9"] = 402
    assert NaiveClient(fake, token="pat-9").get().status_code == 402


def test_unknown_workspace_is_404(fake: FakeAsana, client: NaiveClient) -> None:
    response = client.get(f"{fake.base_url}/workspaces/999/audit_log_events")
    assert response.status_code == 404
    assert error_of(response)["message"] == "workspace: Unknown object: 999"


@pytest.mark.parametrize("path", ["/workspaces", "/users/me", "/audit_log_events", ""])
def test_other_paths_are_404(fake: FakeAsana, client: NaiveClient, path: str) -> None:
    assert client.get(fake.base_url + path).status_code == 404


def test_other_methods_are_404(fake: FakeAsana, client: NaiveClient) -> None:
    assert client.session.post(client.url, timeout=10).status_code == 404


# ---------------------------------------------------------------------------------------- error envelope


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault.RATE_LIMIT, 429),
        (Fault.BAD_GATEWAY_502, 502),
        (Fault.UNAVAILABLE_503, 503),
        (Fault.GATEWAY_TIMEOUT_504, 504),
        (Fault.EXPIRE_OFFSET, 400),
    ],
)
def test_errors_other_than_500_carry_no_phrase(
    fake: FakeAsana, client: NaiveClient, fault: Fault, status: int
) -> None:
    offset = client.offset()
    fake.inject(fault)
    response = client.get(limit=2, offset=offset)
    assert response.status_code == status
    assert set(error_of(response)) == {"message", "help"}


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"actor_type": "robot"}, {"offset": "forged"}],
    ids=["limit", "actor", "offset"],
)
def test_400s_carry_no_phrase(client: NaiveClient, params: dict[str, str]) -> None:
    response = client.get(**params)
    assert response.status_code == 400
    assert set(error_of(response)) == {"message", "help"}


def test_401_and_404_carry_no_phrase(fake: FakeAsana, client: NaiveClient) -> None:
    for response in (NaiveClient(fake, token="nope").get(), client.get(f"{fake.base_url}/users/me")):
        assert set(error_of(response)) == {"message", "help"}


def test_a_500_carries_an_asana_style_phrase(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject(Fault.SERVER_ERROR_500)
    error = error_of(client.get())
    assert set(error) == {"message", "help", "phrase"}
    assert re.fullmatch(r"\d+ [a-z]+ [a-z]+ [a-z]+ [a-z]+", error["phrase"])


def test_help_points_at_asanas_error_docs(client: NaiveClient) -> None:
    assert "https://developers.asana.com/docs/errors" in error_of(client.get(limit=0))["help"]


# ---------------------------------------------------------------------------------------- latency


def test_latency_delays_every_events_request() -> None:
    with FakeAsana(seed=3, events_per_day=10, latency=0.2) as fake:
        client = NaiveClient(fake)
        responses = [client.get(limit=1), client.get(limit=0), NaiveClient(fake, token="x").get()]
        client.close()
    assert [r.status_code for r in responses] == [200, 400, 401]
    assert all(r.elapsed.total_seconds() >= 0.2 for r in responses)


def test_latency_spares_other_routes() -> None:
    with FakeAsana(events=[], latency=30) as fake:
        response = NaiveClient(fake).get(f"{fake.base_url}/users/me")
    assert response.status_code == 404
    assert response.elapsed.total_seconds() < 10


def test_concurrent_requests_wait_their_latency_side_by_side() -> None:
    fake = FakeAsana(seed=3, events_per_day=10, latency=30).start()
    outcomes: list[object] = []

    def request() -> None:
        try:
            outcomes.append(NaiveClient(fake).get(limit=1).status_code)
        except requests.RequestException as exc:  # the connection is closed under it by stop()
            outcomes.append(exc)

    threads = [threading.Thread(target=request) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        # All four are in their latency at once: arrived, none answered yet.
        wait_until(lambda: fake.stats.requests == 4, message="four requests in flight")
        assert fake.requests == []
    finally:
        began = time.monotonic()
        fake.stop()
        for thread in threads:
            thread.join(10)
    assert time.monotonic() - began < 10  # stop cut the 30 s latency short
    assert len(outcomes) == 4


def test_negative_latency_is_refused() -> None:
    with pytest.raises(ValueError, match="latency"):
        FakeAsana(events=[], latency=-0.1)
