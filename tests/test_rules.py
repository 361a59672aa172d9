"""One home per rule: numbers, the window, the connection id and Asana's retention, each with one message."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError as ConfigError
from airflow_provider_asana_audit.exceptions import AsanaAuditLogRetentionError
from airflow_provider_asana_audit.rules import (
    AUDIT_LOG_EPOCH,
    check_conn_id,
    check_integer,
    check_number,
    check_retention,
    check_window,
    retention_problem,
    retention_start,
)

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


@pytest.mark.parametrize("value", [1, 7, 100])
def test_an_integer_in_range_is_returned(value: int) -> None:
    assert check_integer(value, name="n", minimum=1, maximum=100) == value


@pytest.mark.parametrize("value", [True, False, 0, 101, 1.0, "5", None, -3])
def test_anything_else_is_refused_with_the_range(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        check_integer(value, name="n", minimum=1, maximum=100)
    assert str(caught.value) == f"n={value!r} must be an integer from 1 to 100"


def test_an_open_range_and_a_hint_are_worded() -> None:
    with pytest.raises(ConfigError, match=r"^n=0 must be an integer of at least 1 \(1: no retry\)$"):
        check_integer(0, name="n", minimum=1, hint="(1: no retry)")
    with pytest.raises(ConfigError, match=r"^n=0 must be an integer of at least 1, e\.g\. 5$"):
        check_integer(0, name="n", minimum=1, hint="e.g. 5")


def test_none_is_accepted_only_where_optional_and_then_named_in_the_message() -> None:
    assert check_integer(None, name="burst", minimum=1, optional=True) is None
    with pytest.raises(ConfigError, match=r"^burst=0 must be an integer of at least 1, or None$"):
        check_integer(0, name="burst", minimum=1, optional=True)


@pytest.mark.parametrize(("value", "positive"), [(0.5, True), (3, True), (0, False), (0.0, False)])
def test_numbers_in_range_are_returned(value: float, positive: bool) -> None:
    assert check_number(value, name="x", positive=positive) == value


@pytest.mark.parametrize("value", [0, -1, True, math.nan, "1", None])
def test_a_positive_number_refuses_zero_bools_nan_and_strings(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        check_number(value, name="poll_interval", positive=True, unit="seconds", hint="e.g. 60")
    assert str(caught.value) == f"poll_interval={value!r} must be a positive number of seconds, e.g. 60"


def test_a_non_negative_number_refuses_negatives() -> None:
    assert check_number(None, name="x", positive=False, optional=True) is None
    with pytest.raises(ConfigError, match=r"^lookback=-1 must be a number of seconds, 0 or more$"):
        check_number(-1, name="lookback", positive=False, unit="seconds")


def test_an_empty_or_reversed_window_is_refused_and_a_proper_one_is_not() -> None:
    check_window(NOW - timedelta(hours=1), NOW)
    for start in (NOW, NOW + timedelta(seconds=1)):
        with pytest.raises(ConfigError, match=r"must be before end_at .* is empty"):
            check_window(start, NOW)


@pytest.mark.parametrize("conn_id", ["", "   ", None, 3])
def test_a_connection_id_must_be_a_non_blank_string(conn_id: object) -> None:
    with pytest.raises(ConfigError, match="must name an Airflow connection of type"):
        check_conn_id(conn_id)
    assert check_conn_id("asana_audit_log_default") == "asana_audit_log_default"


def test_retention_starts_90_days_back_but_never_before_the_audit_log_began() -> None:
    assert retention_start(NOW) == NOW - timedelta(days=90)
    assert retention_start(datetime(2021, 11, 1, tzinfo=timezone.utc)) == AUDIT_LOG_EPOCH


def test_a_window_ending_before_retention_is_a_problem_and_one_inside_is_not() -> None:
    assert "after 90 days" in (retention_problem(NOW - timedelta(days=91), now=NOW) or "")
    assert "2021-10-08" in (retention_problem(datetime(2021, 1, 1, tzinfo=timezone.utc), now=NOW) or "")
    assert retention_problem(NOW - timedelta(days=89), now=NOW) is None


def test_the_retention_rule_names_the_fixes_for_an_export_and_a_sensor() -> None:
    check_retention(None, now=NOW)
    check_retention(NOW - timedelta(days=89), now=NOW)
    with pytest.raises(AsanaAuditLogRetentionError) as caught:
        check_retention(NOW - timedelta(days=91), now=NOW)
    message = str(caught.value)
    assert message.startswith("No event can match: end_at ")
    assert "on_retention_violation='skip'" in message
    assert "leave end_at unset" in message
