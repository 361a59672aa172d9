"""The stand-in's own reading and writing of Asana's date-times, and its retention, pinned on examples."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_asana_audit.testing.instants import datetime_us, format_us, instant_us, parse_us
from airflow_provider_asana_audit.testing.store import AUDIT_LOG_BEGINS_US, RETENTION_US, oldest_kept_us

#: 2024-05-14T09:22:05.004Z, worked out by hand: 19857 days after 1970-01-01, then 09:22:05.004.
MAY_14 = (19_857 * 86_400 + 9 * 3600 + 22 * 60 + 5) * 1_000_000 + 4_000


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-14T09:22:05.004Z",
        "2024-05-14t09:22:05.004z",
        "2024-05-14 09:22:05.004Z",
        "2024-05-14T09:22:05,004Z",
        "2024-05-14T09:22:05.004000Z",
        "2024-05-14T09:22:05.004000999Z",  # nanoseconds: kept to the microsecond
        "2024-05-14T09:22:05.004+00:00",
        "2024-05-14T11:22:05.004+02:00",
        "2024-05-14T11:22:05.004+0200",
        "2024-05-14T11:22:05.004+02",
        "2024-05-14T04:52:05.004-04:30",
        "2024-05-15T00:22:05.004+15:00",
    ],
)
def test_parse_reads_each_spelling_of_one_instant(text: str) -> None:
    assert parse_us(text) == MAY_14


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01Z", 1_000_000),
        ("1970-01-01T00:00:02.5+00:00", 2_500_000),
        ("1970-01-01T00:01Z", 60_000_000),  # seconds may be left out
        ("1969-12-31T23:59:59.999999Z", -1),
        ("2021-10-08T00:00:00Z", AUDIT_LOG_BEGINS_US),
        ("2024-02-29T00:00:00Z", 1_709_164_800_000_000),  # a leap day
        ("2024-05-14T09:22:05.123456Z", MAY_14 - 4_000 + 123_456),
    ],
)
def test_parse_gives_microseconds_since_the_epoch(text: str, us: int) -> None:
    assert parse_us(text) == us


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2024-05-14",  # no time
        "2024-05-14T09:22:05",  # no zone
        "2024-05-14T09:22:05.004",
        "2024-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-05-14T24:00:00Z",
        "2024-05-14T09:60:00Z",
        "2024-05-14T09:22:60Z",
        "2024-05-14T09:22:05.Z",
        "2024-05-14T09:22:05.0040000001Z",  # ten fraction digits
        "2024-05-14T09:22:05+24:00",
        "20240514T092205Z",  # the basic format
        " 2024-05-14T09:22:05Z",
        "2024-05-14T09:22:05Z ",
        "2024-05-14T09:22:05 UTC",
    ],
)
def test_parse_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO 8601|range"):
        parse_us(text)


def test_aware_datetimes_of_any_zone_give_the_same_instant() -> None:
    utc = datetime(2024, 5, 14, 9, 22, 5, 4_000, tzinfo=timezone.utc)
    assert datetime_us(utc) == MAY_14
    assert datetime_us(utc.astimezone(timezone(timedelta(hours=-4, minutes=-30)))) == MAY_14
    assert datetime_us(datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)) == -1


def test_pendulum_datetimes_are_read_as_plain_ones() -> None:
    pendulum = pytest.importorskip("pendulum")
    assert datetime_us(pendulum.datetime(2024, 5, 14, 11, 22, 5, 4_000, tz="Europe/Paris")) == MAY_14


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        datetime_us(datetime(2024, 5, 14))


def test_instant_names_the_parameter_it_refuses() -> None:
    assert instant_us("2024-05-14T09:22:05.004Z", name="start_at") == MAY_14
    with pytest.raises(ValueError, match=r"^end_at: "):
        instant_us("soon", name="end_at")
    with pytest.raises(ValueError, match=r"^start_at must be"):
        instant_us(1_715_678_525, name="start_at")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (MAY_14, "2024-05-14T09:22:05.004Z"),
        (MAY_14 + 999, "2024-05-14T09:22:05.004Z"),  # truncated to the millisecond, never rounded up
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (AUDIT_LOG_BEGINS_US, "2021-10-08T00:00:00.000Z"),
        (253_402_300_799_999_000, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_format_writes_asanas_form(us: int, text: str) -> None:
    assert format_us(us) == text


def test_formatted_instants_read_back_to_the_millisecond() -> None:
    for us in (0, MAY_14, AUDIT_LOG_BEGINS_US + 123_000, -86_400_000_000):
        assert parse_us(format_us(us)) == us


def test_retention_is_90_days_but_never_before_the_audit_log_began() -> None:
    assert timedelta(days=90) // timedelta(microseconds=1) == RETENTION_US
    assert oldest_kept_us(MAY_14) == MAY_14 - RETENTION_US
    assert oldest_kept_us(AUDIT_LOG_BEGINS_US + RETENTION_US - 1) == AUDIT_LOG_BEGINS_US
    assert oldest_kept_us(AUDIT_LOG_BEGINS_US) == AUDIT_LOG_BEGINS_US


def test_retention_defaults_to_now() -> None:
    now_us = datetime_us(datetime.now(timezone.utc))
    assert 0 <= oldest_kept_us() - (now_us - RETENTION_US) < 60_000_000
