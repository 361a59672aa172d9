"""The one time helper: parsing, formatting, durations and events' instants."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_provider_asana_audit.timeutils import (
    format_instant,
    parse_instant,
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
