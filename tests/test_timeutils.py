"""The one time helper: parsing, formatting, durations, events' instants and retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_asana_audit.timeutils import (
    AUDIT_LOG_EPOCH,
    event_created_at,
    format_duration,
    format_instant,
    parse_instant,
    retention_problem,
    retention_start,
)

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-14T09:22:05.004Z", datetime(2024, 5, 14, 9, 22, 5, 4000, tzinfo=timezone.utc)),
        ("2024-05-14T11:22:05+02:00", datetime(2024, 5, 14, 9, 22, 5, tzinfo=timezone.utc)),
        ("2024-05-14T09:22:05.000004z", datetime(2024, 5, 14, 9, 22, 5, 4, tzinfo=timezone.utc)),
    ],
)
def test_iso_strings_become_aware_utc_datetimes(text: str, expected: datetime) -> None:
    parsed = parse_instant(text)
    assert parsed == expected
    assert parsed.tzinfo is timezone.utc


@pytest.mark.parametrize("value", ["2024-05-14T09:22:05", datetime(2024, 5, 14), "14/05/2024", "", 17])
def test_naive_or_unparsable_values_are_refused_naming_the_parameter(value: object) -> None:
    with pytest.raises(ValueError, match="start_at"):
        parse_instant(value, name="start_at")  # type: ignore[arg-type]


def test_an_instant_read_from_an_event_is_formatted_back_to_the_same_text() -> None:
    for text in ("2024-05-14T09:22:05.004Z", "2026-01-01T00:00:00.000Z"):
        assert format_instant(parse_instant(text)) == text


def test_sub_millisecond_instants_are_never_rounded() -> None:
    assert (
        format_instant(datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc)) == "2024-01-01T00:00:00.000001Z"
    )


def test_retention_starts_90_days_back_but_never_before_the_audit_log_began() -> None:
    assert retention_start(NOW) == NOW - timedelta(days=90)
    assert retention_start(datetime(2021, 11, 1, tzinfo=timezone.utc)) == AUDIT_LOG_EPOCH


def test_a_window_ending_before_retention_is_a_problem_and_one_inside_is_not() -> None:
    assert "after 90 days" in (retention_problem(NOW - timedelta(days=91), now=NOW) or "")
    assert "2021-10-08" in (retention_problem(datetime(2021, 1, 1, tzinfo=timezone.utc), now=NOW) or "")
    assert retention_problem(NOW - timedelta(days=89), now=NOW) is None


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=30), "30m"),
        (timedelta(hours=1, seconds=1), "1h 1s"),
        (timedelta(days=2, hours=3, minutes=5), "2d 3h 5m"),
        (timedelta(days=2, hours=3, minutes=5, seconds=7, milliseconds=999), "2d 3h 5m 7s"),
        (timedelta(milliseconds=400), "0s"),
        (-timedelta(minutes=5, seconds=2), "-5m 2s"),
        (-timedelta(days=1), "-1d"),
    ],
)
def test_durations_are_formatted_for_people_to_the_second(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


def test_an_events_created_at_is_read_as_an_aware_utc_instant() -> None:
    event = {"gid": "1", "created_at": "2024-05-14T09:22:05.004Z"}

    instant = event_created_at(event)

    assert instant == datetime(2024, 5, 14, 9, 22, 5, 4000, tzinfo=timezone.utc)
    assert instant is not None
    assert instant.tzinfo is timezone.utc


@pytest.mark.parametrize(
    "event",
    [
        {"gid": "1"},
        {"gid": "1", "created_at": None},
        {"gid": "1", "created_at": 1715678525},
        {"gid": "1", "created_at": "yesterday"},
        {"gid": "1", "created_at": "2024-05-14T09:22:05"},  # naive: no UTC offset
        ["created_at", "2024-05-14T09:22:05.004Z"],
        None,
    ],
    ids=["missing", "null", "number", "unparsable", "naive", "not-an-object", "none"],
)
def test_an_event_without_a_created_at_that_parses_has_none(event: object) -> None:
    assert event_created_at(event) is None
