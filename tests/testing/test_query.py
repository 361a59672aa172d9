"""Parameters, filters and offsets are read as Asana reads them, over HTTP and directly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any

import pytest
import requests

from airflow_provider_asana_audit.testing import ACTOR_TYPES, FakeAsana
from airflow_provider_asana_audit.testing.query import (
    BadRequest,
    Filters,
    OffsetCodec,
    ParsedRequest,
    parse_params,
)
from airflow_provider_asana_audit.timeutils import format_instant

from .support import INVALID_OFFSET, NaiveClient, error_of, now_hour, wait_until


def _assert_invalid_offset(response: requests.Response) -> None:
    assert response.status_code == 400
    assert error_of(response)["message"] == INVALID_OFFSET


# ---------------------------------------------------------------------------------------- instants


@pytest.mark.parametrize("name", ["start_at", "end_at"])
@pytest.mark.parametrize("value", ["yesterday", "2024-13-01T00:00:00Z", "2024-05-14T00:00:00", ""])
def test_invalid_instant_is_400_naming_the_parameter(client: NaiveClient, name: str, value: str) -> None:
    response = client.get(**{name: value})
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(f"{name}:")


def test_instants_with_a_utc_offset_select_the_same_window(fake: FakeAsana, client: NaiveClient) -> None:
    start, end = now_hour() - timedelta(days=3), now_hour() - timedelta(days=2)
    plus_two = timezone(timedelta(hours=2))
    events, _ = client.read_all(
        start_at=start.astimezone(plus_two).isoformat(), end_at=end.astimezone(plus_two).isoformat()
    )
    assert events
    assert events == fake.ground_truth(start, end)
    assert fake.ground_truth(start.isoformat(), end.isoformat()) == events


# ---------------------------------------------------------------------------------------- filters


def _one_of_each(fake: FakeAsana) -> dict[str, str]:
    events = fake.ground_truth(actor_type="user")
    return {
        "event_type": events[0]["event_type"],
        "actor_type": "user",
        "actor_gid": events[1]["actor"]["gid"],
        "resource_gid": events[2]["resource"]["gid"],
    }


def _field(event: dict[str, Any], name: str) -> Any:
    if name == "event_type":
        return event["event_type"]
    if name == "resource_gid":
        return event["resource"]["gid"]
    return event["actor"]["actor_type" if name == "actor_type" else "gid"]


@pytest.mark.parametrize("name", ["event_type", "actor_type", "actor_gid", "resource_gid"])
def test_each_filter_returns_exactly_the_matching_events(
    fake: FakeAsana, client: NaiveClient, name: str
) -> None:
    value = _one_of_each(fake)[name]
    events, next_page = client.read_all(limit=7, **{name: value})
    assert events == fake.ground_truth(**{name: value})
    assert 0 < len(events) < len(fake.ground_truth())
    assert next_page is not None
    assert {_field(e, name) for e in events} == {value}


@pytest.fixture(scope="module")
def busy_fake() -> Iterator[FakeAsana]:
    with FakeAsana(seed=11, events_per_day=400, start=now_hour() - timedelta(days=2)) as running:
        yield running


@pytest.mark.parametrize("actor_type", ACTOR_TYPES)
def test_every_actor_type_can_be_filtered(busy_fake: FakeAsana, actor_type: str) -> None:
    client = NaiveClient(busy_fake)
    events, _ = client.read_all(actor_type=actor_type)
    client.close()
    assert events
    assert events == busy_fake.ground_truth(actor_type=actor_type)
    assert {e["actor"]["actor_type"] for e in events} == {actor_type}


def test_filters_combine(fake: FakeAsana, client: NaiveClient) -> None:
    params = {"event_type": "user_login_succeeded", "actor_type": "user"}
    events, _ = client.read_all(limit=3, **params)
    assert events
    assert events == fake.ground_truth(**params)


def test_invalid_actor_type_is_400(client: NaiveClient) -> None:
    response = client.get(actor_type="robot")
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("actor_type:")


@pytest.mark.parametrize("name", ["actor_gid", "resource_gid"])
def test_non_numeric_gid_filter_is_400(client: NaiveClient, name: str) -> None:
    response = client.get(**{name: "me"})
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(f"{name}:")


def test_empty_event_type_is_400(client: NaiveClient) -> None:
    response = client.get(event_type="")
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("event_type:")


def test_unknown_parameters_are_ignored(client: NaiveClient) -> None:
    assert client.page(opt_pretty="true", limit=4)["data"] == client.page(limit=4)["data"]


# ---------------------------------------------------------------------------------------- limit


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", "+5", "²"])
def test_out_of_range_or_non_integer_limit_is_400(client: NaiveClient, limit: str) -> None:
    response = client.get(limit=limit)
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("limit:")


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (100, 100), (None, 100)])
def test_limit_sets_the_page_size(client: NaiveClient, limit: int | None, expected: int) -> None:
    params = {} if limit is None else {"limit": limit}
    assert len(client.page(**params)["data"]) == expected


def test_limit_may_change_between_pages(fake: FakeAsana, client: NaiveClient) -> None:
    first = client.page(limit=3)
    second = client.page(limit=5, offset=first["next_page"]["offset"])
    assert first["data"] + second["data"] == fake.ground_truth()[:8]


# ---------------------------------------------------------------------------------------- offsets


@pytest.mark.parametrize("forged", ["abc", "eyJ3IjoiMSJ9.c2ln", "1207000000000001", "..", "%%%"])
def test_forged_offset_is_400(client: NaiveClient, forged: str) -> None:
    _assert_invalid_offset(client.get(offset=forged))


def test_tampered_offset_is_400(client: NaiveClient) -> None:
    body, signature = client.offset().split(".")
    flipped = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    _assert_invalid_offset(client.get(offset=f"{flipped}.{signature}"))


def test_offset_from_another_server_is_400(client: NaiveClient) -> None:
    with FakeAsana(seed=3, events_per_day=30) as other:
        foreign = NaiveClient(other).offset()
    _assert_invalid_offset(client.get(offset=foreign))


def test_offset_with_different_filters_is_400(client: NaiveClient) -> None:
    offset = client.offset(event_type="user_login_succeeded")
    _assert_invalid_offset(client.get(offset=offset))
    _assert_invalid_offset(client.get(offset=offset, event_type="task_deleted"))
    assert client.get(offset=offset, event_type="user_login_succeeded").status_code == 200


def test_offset_with_different_window_is_400(client: NaiveClient) -> None:
    start = now_hour() - timedelta(days=3)
    offset = client.offset(start_at=format_instant(start))
    _assert_invalid_offset(client.get(offset=offset, start_at=format_instant(start + timedelta(days=1))))


def test_offset_accepts_the_same_instant_spelled_differently(client: NaiveClient) -> None:
    start = now_hour() - timedelta(days=3)
    offset = client.offset(start_at=format_instant(start))
    assert client.get(offset=offset, start_at=start.isoformat()).status_code == 200  # "+00:00", not "Z"


def test_offset_is_refused_once_its_ttl_has_passed() -> None:
    with FakeAsana(seed=3, events_per_day=30, offset_ttl=1.0) as fake:
        client = NaiveClient(fake)
        issued = time.monotonic()
        offset = client.offset()
        assert client.get(offset=offset, limit=2).status_code == 200
        wait_until(
            lambda: client.get(offset=offset, limit=2).status_code == 400, message="offset never expired"
        )
        assert time.monotonic() - issued >= 1.0
        _assert_invalid_offset(client.get(offset=offset, limit=2))
        client.close()


def test_codec_round_trips_a_cursor() -> None:
    codec = OffsetCodec("1")
    filters = Filters(start_us=5, event_type="task_deleted")
    assert codec.decode(codec.encode(filters, (10, 1207000000000001)), filters) == (10, 1207000000000001)
    assert codec.decode(codec.encode(filters, None), filters) is None


def test_codec_expiry_follows_its_clock() -> None:
    now = [1_000.0]
    codec = OffsetCodec("1", ttl=60, clock=lambda: now[0])
    offset = codec.encode(Filters(), (1, 1))
    now[0] += 60
    assert codec.decode(offset, Filters()) == (1, 1)
    now[0] += 0.01
    with pytest.raises(BadRequest, match="pagination token is invalid"):
        codec.decode(offset, Filters())


def test_codec_refuses_an_offset_of_another_workspace() -> None:
    issued = OffsetCodec("1").encode(Filters(), None)
    with pytest.raises(BadRequest, match="pagination token is invalid"):
        OffsetCodec("2").decode(issued, Filters())


def test_negative_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="offset_ttl"):
        OffsetCodec("1", ttl=-1)


# ---------------------------------------------------------------------------------------- parsing


def test_parse_params_reads_every_filter() -> None:
    filters, limit = parse_params(
        {
            "start_at": "1970-01-01T00:00:01Z",
            "end_at": "1970-01-01T00:00:02.5+00:00",
            "event_type": "task_deleted",
            "actor_type": "user",
            "actor_gid": "12",
            "resource_gid": "34",
            "limit": "7",
        }
    )
    assert filters == Filters(1_000_000, 2_500_000, "task_deleted", "user", "12", "34")
    assert limit == 7


def test_filters_of_takes_datetimes_and_strings_alike() -> None:
    start = now_hour()
    assert Filters.of(start, event_type="x") == Filters.of(format_instant(start), event_type="x")


def test_parsed_request_reads_the_bearer_token_and_hides_it() -> None:
    request = ParsedRequest.from_http(
        "GET", "/a/b?limit=5&limit=6&x=", [("Authorization", "Bearer  tok "), ("Accept", "*/*")]
    )
    assert request.path == "/a/b"
    assert request.params == {"limit": "6", "x": ""}
    assert request.token == "tok"
    assert request.headers == {"Accept": "*/*"}


@pytest.mark.parametrize("authorization", ["Basic abc", "Bearer", "Bearer   ", "tok"])
def test_parsed_request_without_a_bearer_token_has_none(authorization: str) -> None:
    assert ParsedRequest.from_http("GET", "/", [("authorization", authorization)]).token is None
