"""
The stand-in behaves like Asana's audit log endpoint as FIELD-NOTES.md describes it.

Everything goes over real HTTP to 127.0.0.1 with a naive client written here (not the provider's),
so these tests pin the stand-in itself, the oracle every other test relies on.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_asana_audit.testing import (
    ACTOR_TYPES,
    FakeAsana,
    Fault,
    generate_events,
)
from airflow_provider_asana_audit.timeutils import format_instant

ROOT = Path(__file__).resolve().parents[2]
INVALID_OFFSET = "offset: Your pagination token is invalid."
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _now_hour() -> datetime:
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _event(gid: int, created_at: datetime, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "gid": str(gid),
        "created_at": format_instant(created_at),
        "event_type": "task_deleted",
        "event_category": "deletion",
        "actor": {"actor_type": "user", "gid": "1200000000000033", "name": "Backup Bot", "email": "b@x.io"},
        "resource": {"resource_type": "task", "resource_subtype": "default_task", "gid": "1206000000000444"},
        "details": {},
        "context": {"context_type": "api"},
    }
    event.update(fields)
    return event


class NaiveClient:
    """The simplest reader: follow ``next_page.offset`` until a page comes back empty."""

    def __init__(self, fake: FakeAsana, token: str | None = None) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token if token is not None else fake.token}"
        self.url = f"{fake.base_url}/workspaces/{fake.workspace_gid}/audit_log_events"

    def get(self, url: str | None = None, **params: Any) -> requests.Response:
        return self.session.get(url or self.url, params=params, timeout=10)

    def page(self, **params: Any) -> dict[str, Any]:
        response = self.get(**params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def read_all(self, **params: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Every event for ``params``, and the ``next_page`` of the last (empty) page."""
        events: list[dict[str, Any]] = []
        body = self.page(**params)
        while body["data"] and body["next_page"] is not None:
            events.extend(body["data"])
            body = self.page(**params, offset=body["next_page"]["offset"])
        events.extend(body["data"])
        return events, body["next_page"]


@pytest.fixture
def fake() -> Iterator[FakeAsana]:
    with FakeAsana(seed=3, events_per_day=30) as running:
        yield running


@pytest.fixture
def client(fake: FakeAsana) -> Iterator[NaiveClient]:
    naive = NaiveClient(fake)
    yield naive
    naive.session.close()


def _error_message(response: requests.Response) -> str:
    body = response.json()
    assert set(body["errors"][0]) >= {"message", "help", "phrase"}
    message: str = body["errors"][0]["message"]
    return message


# ---------------------------------------------------------------------------------------- the stream


def test_full_naive_read_equals_ground_truth(fake: FakeAsana, client: NaiveClient) -> None:
    events, _ = client.read_all(limit=17)
    assert len(events) == len(fake.ground_truth()) > 100
    assert events == fake.ground_truth()
    assert [(e["created_at"], int(e["gid"])) for e in events] == sorted(
        (e["created_at"], int(e["gid"])) for e in events
    )


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
    body = client.page(**params)
    assert body == {"data": [], "next_page": None}


def test_no_events_at_all_gives_null_next_page() -> None:
    with FakeAsana(events=[]) as empty:
        assert NaiveClient(empty).page() == {"data": [], "next_page": None}


def test_next_page_path_and_uri_follow_asana_shape(fake: FakeAsana, client: NaiveClient) -> None:
    body = client.page(limit=5, event_type="user_login_succeeded")
    next_page = body["next_page"]
    assert next_page["path"].startswith(f"/workspaces/{fake.workspace_gid}/audit_log_events?")
    assert "event_type=user_login_succeeded" in next_page["path"]
    assert "limit=5" in next_page["path"]
    assert next_page["uri"] == fake.base_url + next_page["path"]
    following = client.session.get(next_page["uri"], timeout=10).json()
    assert following["data"] == fake.ground_truth(event_type="user_login_succeeded")[5:10]


def test_polling_the_last_offset_returns_appended_events(fake: FakeAsana, client: NaiveClient) -> None:
    _, next_page = client.read_all()
    assert next_page is not None
    appended = fake.append_events(3)
    body = client.page(offset=next_page["offset"])
    assert body["data"] == appended
    assert client.page(offset=body["next_page"]["offset"])["data"] == []


def test_late_event_before_the_cursor_is_not_seen_by_that_offset(
    fake: FakeAsana, client: NaiveClient
) -> None:
    events, next_page = client.read_all()
    assert next_page is not None
    late_at = datetime.fromisoformat(events[-1]["created_at"].replace("Z", "+00:00")) - timedelta(minutes=5)
    (late,) = fake.append_events(1, created_at=late_at)
    assert client.page(offset=next_page["offset"])["data"] == []
    assert late in fake.ground_truth()
    assert late in client.read_all()[0]


def test_appended_events_take_overrides_and_event_type(fake: FakeAsana) -> None:
    actor = {"actor_type": "anonymous"}
    (event,) = fake.append_events(1, event_type="brand_new_event_type", actor=actor)
    assert event["event_type"] == "brand_new_event_type"
    assert event["actor"] == actor
    assert fake.ground_truth(event_type="brand_new_event_type") == [event]


# ---------------------------------------------------------------------------------------- windows


@pytest.fixture
def boundary() -> Iterator[tuple[FakeAsana, datetime, datetime]]:
    start, end = _now_hour() - timedelta(days=2), _now_hour() - timedelta(days=1)
    ms = timedelta(milliseconds=1)
    events = [
        _event(1207000000000001, start - ms),
        _event(1207000000000002, start),
        _event(1207000000000003, start),
        _event(1207000000000004, start + ms),
        _event(1207000000000005, end - ms),
        _event(1207000000000006, end),
        _event(1207000000000007, end + ms),
    ]
    with FakeAsana(events=events) as running:
        yield running, start, end


def test_window_includes_start_and_excludes_end(boundary: tuple[FakeAsana, datetime, datetime]) -> None:
    fake, start, end = boundary
    events, _ = NaiveClient(fake).read_all(
        start_at=format_instant(start), end_at=format_instant(end), limit=1
    )
    assert [e["gid"] for e in events] == [f"120700000000000{i}" for i in (2, 3, 4, 5)]
    assert events == fake.ground_truth(start, end)


def test_window_accepts_utc_offsets(boundary: tuple[FakeAsana, datetime, datetime]) -> None:
    fake, start, end = boundary
    plus_two = timezone(timedelta(hours=2))
    events, _ = NaiveClient(fake).read_all(
        start_at=start.astimezone(plus_two).isoformat(), end_at=end.astimezone(plus_two).isoformat()
    )
    assert [e["gid"] for e in events] == [f"120700000000000{i}" for i in (2, 3, 4, 5)]
    assert fake.ground_truth(start.isoformat(), end.isoformat()) == events


@pytest.mark.parametrize("name", ["start_at", "end_at"])
@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-05-14T00:00:00", ""])
def test_invalid_instant_is_400_naming_the_parameter(client: NaiveClient, name: str, value: str) -> None:
    response = client.get(**{name: value})
    assert response.status_code == 400
    assert _error_message(response).startswith(f"{name}:")


def test_events_outside_retention_are_never_returned() -> None:
    now = datetime.now(timezone.utc)
    events = [
        _event(1207000000000001, datetime(2021, 10, 7, 23, 59, tzinfo=timezone.utc)),
        _event(1207000000000002, now - timedelta(days=91)),
        _event(1207000000000003, now - timedelta(days=89)),
    ]
    with FakeAsana(events=events) as fake:
        got, _ = NaiveClient(fake).read_all(start_at="2021-01-01T00:00:00Z")
        assert [e["gid"] for e in got] == ["1207000000000003"]
        assert fake.ground_truth("2021-01-01T00:00:00Z") == got
        assert NaiveClient(fake).page(end_at=format_instant(now - timedelta(days=90))) == {
            "data": [],
            "next_page": None,
        }


# ---------------------------------------------------------------------------------------- filters


def _one_of_each(fake: FakeAsana) -> dict[str, str]:
    events = fake.ground_truth(actor_type="user")
    return {
        "event_type": events[0]["event_type"],
        "actor_type": "user",
        "actor_gid": events[1]["actor"]["gid"],
        "resource_gid": events[2]["resource"]["gid"],
    }


@pytest.mark.parametrize("name", ["event_type", "actor_type", "actor_gid", "resource_gid"])
def test_each_filter_returns_exactly_the_matching_events(
    fake: FakeAsana, client: NaiveClient, name: str
) -> None:
    value = _one_of_each(fake)[name]
    events, next_page = client.read_all(limit=7, **{name: value})
    assert events == fake.ground_truth(**{name: value})
    assert 0 < len(events) < len(fake.ground_truth())
    assert next_page is not None
    field = {"event_type": ("event_type",), "actor_type": ("actor", "actor_type")}.get(
        name, ("actor", "gid") if name == "actor_gid" else ("resource", "gid")
    )
    for event in events:
        got: Any = event
        for part in field:
            got = got[part]
        assert got == value


@pytest.fixture(scope="module")
def busy_fake() -> Iterator[FakeAsana]:
    with FakeAsana(seed=11, events_per_day=400, start=_now_hour() - timedelta(days=2)) as running:
        yield running


@pytest.mark.parametrize("actor_type", ACTOR_TYPES)
def test_every_actor_type_can_be_filtered(busy_fake: FakeAsana, actor_type: str) -> None:
    events, _ = NaiveClient(busy_fake).read_all(actor_type=actor_type)
    assert events
    assert events == busy_fake.ground_truth(actor_type=actor_type)
    assert {e["actor"]["actor_type"] for e in events} == {actor_type}


def test_filters_combine(fake: FakeAsana, client: NaiveClient) -> None:
    params = {"event_type": "user_login_succeeded", "actor_type": "user"}
    events, _ = client.read_all(limit=3, **params)
    assert events == fake.ground_truth(**params)
    assert events


def test_invalid_actor_type_is_400(client: NaiveClient) -> None:
    response = client.get(actor_type="robot")
    assert response.status_code == 400
    assert _error_message(response).startswith("actor_type:")


@pytest.mark.parametrize("name", ["actor_gid", "resource_gid"])
def test_non_numeric_gid_filter_is_400(client: NaiveClient, name: str) -> None:
    response = client.get(**{name: "me"})
    assert response.status_code == 400
    assert _error_message(response).startswith(f"{name}:")


def test_unknown_parameters_are_ignored(client: NaiveClient) -> None:
    assert client.page(opt_pretty="true", limit=4)["data"] == client.page(limit=4)["data"]


# ---------------------------------------------------------------------------------------- limit


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", ""])
def test_out_of_range_or_non_integer_limit_is_400(client: NaiveClient, limit: str) -> None:
    response = client.get(limit=limit)
    assert response.status_code == 400
    assert _error_message(response).startswith("limit:")


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (100, 100), (None, 100)])
def test_limit_sets_the_page_size(client: NaiveClient, limit: int | None, expected: int) -> None:
    params = {} if limit is None else {"limit": limit}
    assert len(client.page(**params)["data"]) == expected


def test_limit_may_change_between_pages(fake: FakeAsana, client: NaiveClient) -> None:
    first = client.page(limit=3)
    second = client.page(limit=5, offset=first["next_page"]["offset"])
    assert first["data"] + second["data"] == fake.ground_truth()[:8]


# ---------------------------------------------------------------------------------------- offsets


def _first_offset(client: NaiveClient, **params: Any) -> str:
    offset: str = client.page(limit=2, **params)["next_page"]["offset"]
    return offset


def _assert_invalid_offset(response: requests.Response) -> None:
    assert response.status_code == 400
    assert _error_message(response) == INVALID_OFFSET


@pytest.mark.parametrize("forged", ["abc", "eyJ3IjoiMSJ9.c2ln", "1207000000000001", "..", "%%%"])
def test_forged_offset_is_400(client: NaiveClient, forged: str) -> None:
    _assert_invalid_offset(client.get(offset=forged))


def test_tampered_offset_is_400(client: NaiveClient) -> None:
    offset = _first_offset(client)
    body, signature = offset.split(".")
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    _assert_invalid_offset(client.get(offset=f"{flipped}.{signature}"))


def test_offset_from_another_server_is_400(client: NaiveClient) -> None:
    with FakeAsana(seed=3, events_per_day=30) as other:
        foreign = _first_offset(NaiveClient(other))
    _assert_invalid_offset(client.get(offset=foreign))


def test_offset_with_different_filters_is_400(client: NaiveClient) -> None:
    offset = _first_offset(client, event_type="user_login_succeeded")
    _assert_invalid_offset(client.get(offset=offset))
    _assert_invalid_offset(client.get(offset=offset, event_type="task_deleted"))
    assert client.get(offset=offset, event_type="user_login_succeeded").status_code == 200


def test_offset_with_different_window_is_400(client: NaiveClient) -> None:
    start = format_instant(_now_hour() - timedelta(days=3))
    offset = _first_offset(client, start_at=start)
    _assert_invalid_offset(
        client.get(offset=offset, start_at=format_instant(_now_hour() - timedelta(days=2)))
    )
    same_instant = (_now_hour() - timedelta(days=3)).isoformat()  # "+00:00" instead of "Z": same filter
    assert client.get(offset=offset, start_at=same_instant).status_code == 200


def test_offset_expires_after_ttl() -> None:
    with FakeAsana(seed=3, events_per_day=30, offset_ttl=0.3) as fake:
        client = NaiveClient(fake)
        offset = _first_offset(client)
        assert client.get(offset=offset, limit=2).status_code == 200
        time.sleep(0.4)
        _assert_invalid_offset(client.get(offset=offset, limit=2))


# ---------------------------------------------------------------------------------------- auth, routes


def test_missing_token_is_401(fake: FakeAsana) -> None:
    response = requests.get(f"{fake.base_url}/workspaces/{fake.workspace_gid}/audit_log_events", timeout=10)
    assert response.status_code == 401
    assert _error_message(response) == "Not Authorized"


def test_wrong_token_is_401(fake: FakeAsana) -> None:
    response = NaiveClient(fake, token="nope").get()
    assert response.status_code == 401


@pytest.mark.parametrize("status", [402, 403])
def test_denied_token_gets_its_status(status: int) -> None:
    with FakeAsana(events=[], denied_tokens={"pat-123": status}) as fake:
        response = NaiveClient(fake, token="pat-123").get()
    assert response.status_code == status
    assert "service account" in _error_message(response)
    assert "Enterprise" in _error_message(response)


def test_unknown_workspace_is_404(fake: FakeAsana, client: NaiveClient) -> None:
    response = client.get(f"{fake.base_url}/workspaces/999/audit_log_events")
    assert response.status_code == 404
    assert _error_message(response) == "workspace: Unknown object: 999"


@pytest.mark.parametrize("path", ["/workspaces", "/users/me", "/audit_log_events", ""])
def test_other_paths_are_404(fake: FakeAsana, client: NaiveClient, path: str) -> None:
    assert client.get(fake.base_url + path).status_code == 404


def test_responses_are_utf8_json_with_length(client: NaiveClient) -> None:
    response = client.get(limit=100)
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert json.loads(response.content.decode("utf-8")) == response.json()
    error = client.get(limit=0)
    assert error.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert int(error.headers["Content-Length"]) == len(error.content)


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
def test_server_error_faults(fake: FakeAsana, client: NaiveClient, fault: Fault, status: int) -> None:
    fake.inject(fault, count=2)
    responses = [client.get() for _ in range(3)]
    assert [r.status_code for r in responses] == [status, status, 200]
    assert _error_message(responses[0])
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
    began = time.monotonic()
    body = client.page(limit=3)
    assert time.monotonic() - began >= 0.3
    assert body["data"] == fake.ground_truth()[:3]


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
    _assert_invalid_offset(client.get(limit=2, offset=first["next_page"]["offset"]))
    assert client.get(limit=2, offset=first["next_page"]["offset"]).status_code == 200
    assert fake.pending_faults == []


def test_faults_apply_in_order_and_honour_when(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject("503", when=lambda request: request.params.get("limit") == "7")
    fake.inject("RATE_LIMIT", retry_after=0.5)
    fake.inject(Fault.DROP)
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


def test_clear_faults_and_unknown_fault(fake: FakeAsana, client: NaiveClient) -> None:
    fake.inject(Fault.SERVER_ERROR_500, count=5)
    fake.clear_faults()
    assert client.get().status_code == 200
    with pytest.raises(ValueError, match="unknown fault"):
        fake.inject("teapot")


def test_recorded_requests_omit_authorization(fake: FakeAsana, client: NaiveClient) -> None:
    client.get(limit=2, event_type="task_deleted")
    (recorded,) = fake.requests
    assert recorded.path == f"/api/1.0/workspaces/{fake.workspace_gid}/audit_log_events"
    assert recorded.params == {"limit": "2", "event_type": "task_deleted"}
    assert recorded["status"] == 200
    assert "authorization" not in {k.lower() for k in recorded.headers}
    assert fake.token not in json.dumps(recorded.headers)
    fake.reset_stats()
    assert fake.requests == []
    assert fake.stats.requests == 0


# ---------------------------------------------------------------------------------------- rate limit


def test_rate_limit_window_gives_integer_retry_after_and_counts_rejections() -> None:
    with FakeAsana(seed=3, events_per_day=10, requests_per_minute=3) as fake:
        client = NaiveClient(fake)
        statuses = [client.get(limit=1).status_code for _ in range(3)]
        rejected = client.get(limit=1)
        assert statuses == [200, 200, 200]
        assert rejected.status_code == 429
        assert 1 <= int(rejected.headers["Retry-After"]) <= 60
        assert "too many requests" in _error_message(rejected)
        assert client.get(limit=1).status_code == 429
        other_token = NaiveClient(fake, token="other").get()
        assert other_token.status_code == 401  # per-token windows; unknown tokens are not limited
        assert fake.stats.by_status == {200: 3, 429: 2, 401: 1}


# ---------------------------------------------------------------------------------------- generation


def test_generate_events_is_deterministic_for_a_seed() -> None:
    kwargs: dict[str, Any] = {"start": T0, "end": T0 + timedelta(days=1), "per_day": 300}
    assert generate_events(seed=5, **kwargs) == generate_events(seed=5, **kwargs)
    assert generate_events(seed=5, **kwargs) != generate_events(seed=6, **kwargs)


def test_generated_events_have_asanas_shape() -> None:
    events = generate_events(seed=1, start=T0, end=T0 + timedelta(days=5), per_day=300)
    assert len(events) == 1500
    assert len({e["gid"] for e in events}) == len(events)
    assert all(re.fullmatch(r"\d{16}", e["gid"]) for e in events)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["created_at"]) for e in events)
    assert all(
        T0 <= datetime.fromisoformat(e["created_at"][:-1] + "+00:00") < T0 + timedelta(days=5) for e in events
    )
    keys = {frozenset(e) for e in events}
    assert keys == {
        frozenset(
            {"gid", "created_at", "event_type", "event_category", "actor", "resource", "details", "context"}
        )
    }
    assert len({e["event_type"] for e in events}) >= 20
    assert len({e["event_category"] for e in events}) >= 6
    assert {e["actor"]["actor_type"] for e in events} == set(ACTOR_TYPES)
    assert {e["context"]["context_type"] for e in events} >= {
        "web",
        "desktop",
        "mobile",
        "asana_support",
        "api",
    }
    assert any(e["details"].get("old_value") for e in events)
    assert any("api_authentication_method" in e["context"] for e in events)
    assert all({"resource_type", "resource_subtype", "gid"} <= set(e["resource"]) for e in events)
    text = json.dumps(events, ensure_ascii=False)
    assert "Zoë Ångström" in text
    assert "東京チーム" in text
    assert re.search("[\U0001f300-\U0001faff]", text)
    assert [(e["created_at"], int(e["gid"])) for e in events] == sorted(
        (e["created_at"], int(e["gid"])) for e in events
    )


def test_some_generated_events_share_a_created_at() -> None:
    events = generate_events(seed=2, start=T0, end=T0 + timedelta(days=3), per_day=200)
    counts: dict[str, int] = {}
    for event in events:
        counts[event["created_at"]] = counts.get(event["created_at"], 0) + 1
    shared = sum(n for n in counts.values() if n > 1)
    assert max(counts.values()) <= 5
    assert 0.01 * len(events) <= shared <= 0.10 * len(events)


def test_shared_created_at_pages_split_inside_a_group() -> None:
    at = _now_hour() - timedelta(hours=3)
    events = [_event(1207000000000010 + i, at) for i in range(5)]
    with FakeAsana(events=events) as fake:
        got, _ = NaiveClient(fake).read_all(limit=2)
    assert [e["gid"] for e in got] == [e["gid"] for e in events]


# ---------------------------------------------------------------------------------------- lifecycle


def test_stop_is_idempotent_and_leaves_no_threads() -> None:
    before = set(threading.enumerate())
    fake = FakeAsana(seed=3, events_per_day=10).start()
    kept_open = NaiveClient(fake)
    kept_open.get()  # a keep-alive connection the client never closes
    fake.inject(Fault.SLOW, delay=30)
    outcome: list[object] = []

    def slow_request() -> None:
        try:
            outcome.append(kept_open.get().status_code)
        except requests.RequestException as exc:  # the connection is closed under it
            outcome.append(exc)

    slow = threading.Thread(target=slow_request)
    slow.start()
    time.sleep(0.2)
    began = time.monotonic()
    fake.stop()
    fake.stop()
    slow.join(5)
    assert time.monotonic() - began < 3
    assert len(outcome) == 1
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(RuntimeError):
        _ = fake.base_url


def test_connection_forms(fake: FakeAsana) -> None:
    assert json.loads(fake.connection_json()) == {
        "conn_type": "asana_audit_log",
        "host": fake.base_url,
        "password": fake.token,
        "extra": {"workspace_gid": fake.workspace_gid},
    }
    assert fake.connection_uri().startswith("asana-audit-log://http://")


def test_airflow_parses_both_connection_forms(fake: FakeAsana) -> None:
    connection_module = pytest.importorskip("airflow.models.connection")
    for conn in (
        connection_module.Connection.from_json(fake.connection_json(), conn_id="x"),
        connection_module.Connection(conn_id="x", uri=fake.connection_uri()),
    ):
        assert conn.conn_type == "asana_audit_log"
        assert conn.host == fake.base_url
        assert conn.password == fake.token
        assert conn.extra_dejson == {"workspace_gid": fake.workspace_gid}


def test_cli_prints_url_first_and_exits_cleanly_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_asana_audit.testing",
            "--port",
            "0",
            "--events-per-day",
            "10",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        match = re.fullmatch(r"ASANA_STANDIN_URL=(http://127\.0\.0\.1:(\d+)/api/1\.0)", first)
        assert match, first
        response = requests.get(
            f"{match.group(1)}/workspaces/1200000000000001/audit_log_events",
            headers={"Authorization": "Bearer fake-asana-token"},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.json()["data"]
        process.send_signal(signal.SIGTERM)
        rest = process.stdout.read()
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "export AIRFLOW_CONN_ASANA_AUDIT_LOG_DEFAULT='{" in rest
    assert "airflow connections add asana_audit_log_default --conn-type asana_audit_log" in rest
