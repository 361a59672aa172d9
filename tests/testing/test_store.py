"""The event store: serving order, windows, retention, late events and appends."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_asana_audit.testing import FakeAsana, make_event
from airflow_provider_asana_audit.testing.query import Filters
from airflow_provider_asana_audit.testing.store import EventStore, cursor_of
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

from .support import NaiveClient, now_hour, plain_event


def _serving_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: (parse_instant(e["created_at"]), int(e["gid"])))


def _shuffled_events(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = now_hour() - timedelta(days=5)
    return [
        make_event(
            rng, gid=str(1207000000000000 + i), created_at=start + timedelta(seconds=rng.randrange(86_400))
        )
        for i in rng.sample(range(10 * n), n)
    ]


# ---------------------------------------------------------------------------------------- order


def test_events_added_in_any_order_are_held_in_serving_order() -> None:
    events = _shuffled_events(300, seed=1)
    store = EventStore(workspace_gid="1")
    store.add(events)
    assert store.all_events() == _serving_order(events)


def test_batches_added_in_any_order_merge_into_serving_order() -> None:
    events = _shuffled_events(300, seed=2)
    store = EventStore(workspace_gid="1")
    for start in range(0, 300, 37):
        store.add(events[start : start + 37])
    assert store.all_events() == _serving_order(events)


def test_one_late_event_lands_in_its_place() -> None:
    base = now_hour() - timedelta(days=1)
    store = EventStore(workspace_gid="1")
    store.add([plain_event(1207000000000010 + i, base + timedelta(minutes=i)) for i in range(5)])
    late = plain_event(1207000000000001, base + timedelta(minutes=2))
    store.add([late])
    assert [e["gid"] for e in store.all_events()] == [
        "1207000000000010",
        "1207000000000011",
        "1207000000000001",
        "1207000000000012",
        "1207000000000013",
        "1207000000000014",
    ]


def test_events_at_one_instant_are_ordered_by_numeric_gid() -> None:
    at = now_hour() - timedelta(hours=1)
    store = EventStore(workspace_gid="1")
    store.add([plain_event(gid, at) for gid in (30, 1000, 200)])
    assert [e["gid"] for e in store.all_events()] == ["30", "200", "1000"]


def test_cursor_of_a_canonical_created_at_equals_the_parsed_instant() -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, 89_000, tzinfo=timezone.utc)
    event = plain_event(7, at)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert cursor_of(event) == ((at - epoch) // timedelta(microseconds=1), 7)
    assert cursor_of({"gid": "7", "created_at": at.isoformat()}) == cursor_of(event)


# ---------------------------------------------------------------------------------------- add


def test_add_refuses_a_gid_already_present_and_adds_nothing() -> None:
    store = EventStore(workspace_gid="1")
    store.add([plain_event(1, now_hour())])
    with pytest.raises(ValueError, match="exist already"):
        store.add([plain_event(2, now_hour()), plain_event(1, now_hour())])
    assert [e["gid"] for e in store.all_events()] == ["1"]


def test_add_refuses_a_gid_twice_in_one_batch() -> None:
    store = EventStore(workspace_gid="1")
    with pytest.raises(ValueError, match="exist already"):
        store.add([plain_event(1, now_hour()), plain_event(1, now_hour())])
    assert len(store) == 0


@pytest.mark.parametrize("gid", [None, 5, "", "12a"])
def test_add_refuses_a_gid_that_is_not_a_string_of_digits(gid: object) -> None:
    with pytest.raises(ValueError, match="gid"):
        EventStore(workspace_gid="1").add([{**plain_event(1, now_hour()), "gid": gid}])


def test_add_refuses_an_unparsable_created_at() -> None:
    with pytest.raises(ValueError, match="created_at"):
        EventStore(workspace_gid="1").add([{**plain_event(1, now_hour()), "created_at": "soon"}])


def test_added_events_are_copies() -> None:
    event = plain_event(1, now_hour() - timedelta(hours=1))
    fake = FakeAsana(events=[event])
    event["actor"]["name"] = "changed afterwards"
    assert fake.events[0]["actor"]["name"] == "Backup Bot"
    fake.events[0]["actor"]["name"] = "changed in a copy"
    assert fake.ground_truth()[0]["actor"]["name"] == "Backup Bot"


# ---------------------------------------------------------------------------------------- windows


@pytest.fixture
def boundary() -> Iterator[tuple[FakeAsana, datetime, datetime]]:
    start, end = now_hour() - timedelta(days=2), now_hour() - timedelta(days=1)
    ms = timedelta(milliseconds=1)
    events = [
        plain_event(1207000000000001, start - ms),
        plain_event(1207000000000002, start),
        plain_event(1207000000000003, start),
        plain_event(1207000000000004, start + ms),
        plain_event(1207000000000005, end - ms),
        plain_event(1207000000000006, end),
        plain_event(1207000000000007, end + ms),
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


def test_events_outside_retention_are_never_returned() -> None:
    now = datetime.now(timezone.utc)
    events = [
        plain_event(1207000000000001, datetime(2021, 10, 7, 23, 59, tzinfo=timezone.utc)),
        plain_event(1207000000000002, now - timedelta(days=91)),
        plain_event(1207000000000003, now - timedelta(days=89)),
    ]
    with FakeAsana(events=events) as fake:
        got, _ = NaiveClient(fake).read_all(start_at="2021-01-01T00:00:00Z")
        assert [e["gid"] for e in got] == ["1207000000000003"]
        assert fake.ground_truth("2021-01-01T00:00:00Z") == got
        assert NaiveClient(fake).page(end_at=format_instant(now - timedelta(days=90))) == {
            "data": [],
            "next_page": None,
        }
        assert len(fake.events) == 3  # held, only never served


def test_pages_split_inside_a_group_sharing_one_created_at() -> None:
    at = now_hour() - timedelta(hours=3)
    events = [plain_event(1207000000000010 + i, at) for i in range(5)]
    with FakeAsana(events=events) as fake:
        got, _ = NaiveClient(fake).read_all(limit=2)
    assert [e["gid"] for e in got] == [e["gid"] for e in events]


def test_page_reports_a_match_when_the_page_after_the_cursor_is_empty() -> None:
    store = EventStore(workspace_gid="1")
    store.add([plain_event(5, now_hour() - timedelta(hours=1))])
    (event,) = store.select(Filters())
    assert store.page(Filters(), cursor_of(event), 10) == ([], True)
    assert store.page(Filters(event_type="none"), None, 10) == ([], False)


# ------------------------------------------------------------------------------- appends and late events


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
    late_at = parse_instant(events[-1]["created_at"]) - timedelta(minutes=5)
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


def test_appended_gids_are_larger_than_every_gid_present(fake: FakeAsana) -> None:
    top = max(int(e["gid"]) for e in fake.events)
    appended = fake.append_events(5, created_at=now_hour() - timedelta(days=3))
    assert all(int(e["gid"]) > top for e in appended)
    assert len({e["gid"] for e in appended}) == 5


def test_concurrent_appends_never_collide() -> None:
    store = EventStore(workspace_gid="1")
    errors: list[BaseException] = []

    def append() -> None:
        try:
            for _ in range(50):
                store.append(2)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=append) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store) == 400
