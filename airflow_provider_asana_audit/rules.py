"""
One home per rule: the checks that several parameters, classes or entry points share.

Each rule is written once, here, so that every caller refuses the same input with the same
message: numeric parameters, the ``[start_at, end_at)`` window, the connection id, and Asana's
retention (its audit log begins on 2021-10-08 and events are deleted 90 days after they were
created).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import overload

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError, AsanaAuditLogRetentionError
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant

__all__ = [
    "AUDIT_LOG_EPOCH",
    "RETENTION",
    "check_conn_id",
    "check_integer",
    "check_number",
    "check_retention",
    "check_window",
    "retention_problem",
    "retention_start",
]

#: Asana keeps no audit events before this instant.
AUDIT_LOG_EPOCH = datetime(2021, 10, 8, tzinfo=timezone.utc)
#: Asana deletes audit events this long after they were created.
RETENTION = timedelta(days=90)


@overload
def check_integer(
    value: object, *, name: str, minimum: int, maximum: int | None = None, hint: str = ""
) -> int: ...


@overload
def check_integer(
    value: object, *, name: str, minimum: int, maximum: int | None = None, hint: str = "", optional: bool
) -> int | None: ...


def check_integer(
    value: object,
    *,
    name: str,
    minimum: int,
    maximum: int | None = None,
    hint: str = "",
    optional: bool = False,
) -> int | None:
    """
    Return ``value`` if it is an integer (not a bool) in ``[minimum, maximum]``.

    :param name: the parameter's name, for the message.
    :param hint: said after the rule, e.g. ``"(1: no retry)"``.
    :param optional: whether ``None`` is accepted (and returned).
    :raises AsanaAuditLogConfigError: otherwise, saying what to pass instead.
    """
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise AsanaAuditLogConfigError(_message(name, value, f"an integer {bound}", hint, optional))
    return value


@overload
def check_number(value: object, *, name: str, positive: bool, unit: str = "", hint: str = "") -> float: ...


@overload
def check_number(
    value: object, *, name: str, positive: bool, unit: str = "", hint: str = "", optional: bool
) -> float | None: ...


def check_number(
    value: object,
    *,
    name: str,
    positive: bool,
    unit: str = "",
    hint: str = "",
    optional: bool = False,
) -> float | None:
    """
    Return ``value`` if it is a number (not a bool) above 0 (``positive``) or at least 0.

    :param name: the parameter's name, for the message.
    :param unit: what the number counts, e.g. ``"seconds"``.
    :param hint: said after the rule, e.g. ``"e.g. 60"``.
    :param optional: whether ``None`` is accepted (and returned).
    :raises AsanaAuditLogConfigError: otherwise, saying what to pass instead.
    """
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 if positive else value >= 0)  # also refuses NaN
    ):
        of = f" of {unit}" if unit else ""
        rule = f"a positive number{of}" if positive else f"a number{of}, 0 or more"
        raise AsanaAuditLogConfigError(_message(name, value, rule, hint, optional))
    return value


def _message(name: str, value: object, rule: str, hint: str, optional: bool) -> str:
    text = f"{name}={value!r} must be {rule}"
    if hint:
        text += f", {hint}" if not hint.startswith("(") else f" {hint}"
    if optional:
        text += ", or None"
    return text


def check_window(start_at: datetime, end_at: datetime) -> None:
    """
    Refuse an empty window: ``start_at`` must come before ``end_at``.

    :raises AsanaAuditLogConfigError: if it does not.
    """
    if start_at >= end_at:
        raise AsanaAuditLogConfigError(
            f"start_at ({format_instant(start_at)}) must be before end_at ({format_instant(end_at)}): "
            "the window [start_at, end_at) is empty. (If they come from the data interval: Airflow 3 "
            "gives cron and timedelta schedules an empty data interval; schedule with "
            "CronDataIntervalTimetable or DeltaDataIntervalTimetable.)"
        )


def check_conn_id(conn_id: object, *, name: str = "asana_audit_log_conn_id") -> str:
    """
    Return ``conn_id`` if it can name an Airflow connection.

    :param name: the parameter that gave it, for the message.
    :raises AsanaAuditLogConfigError: for anything but a non-blank string.
    """
    if not isinstance(conn_id, str) or not conn_id.strip():
        kind = "of type 'asana_audit_log'" if name == "asana_audit_log_conn_id" else "(or None)"
        raise AsanaAuditLogConfigError(f"{name}={conn_id!r} must name an Airflow connection {kind}")
    return conn_id


def retention_start(now: datetime | None = None) -> datetime:
    """The oldest instant Asana still holds events for at ``now``."""
    now = parse_instant(now) if now is not None else datetime.now(timezone.utc)
    return max(AUDIT_LOG_EPOCH, now - RETENTION)


def retention_problem(end_at: datetime, *, now: datetime | None = None) -> str | None:
    """
    Why Asana can hold no event created before ``end_at``, or None if it may hold some.

    Asana's audit log begins on 2021-10-08 and Asana deletes events 90 days after their creation, so a
    window that ends before :func:`retention_start` is empty for good.
    """
    if end_at <= AUDIT_LOG_EPOCH:
        return (
            f"{format_instant(end_at)} is before {AUDIT_LOG_EPOCH:%Y-%m-%d}, when Asana's audit log "
            "begins: no event exists that early"
        )
    oldest = retention_start(now)
    if end_at <= oldest:
        return (
            f"{format_instant(end_at)} is before {format_instant(oldest)}: Asana deletes audit events "
            f"after {RETENTION.days} days, so none that old are left"
        )
    return None


def check_retention(end_at: datetime | None, *, now: datetime | None = None) -> None:
    """
    Refuse a window that ends where Asana keeps no events: reading it would find none, silently.

    A window without an end (``None``) is never refused.

    :raises AsanaAuditLogRetentionError: saying why and how to choose a window that can match.
    """
    problem = retention_problem(end_at, now=now) if end_at is not None else None
    if problem is not None:
        raise AsanaAuditLogRetentionError(
            f"No event can match: end_at {problem}. Use a window that ends within the last "
            f"{RETENTION.days} days: for a scheduled export, a later start_date or backfill from-date, "
            "or on_retention_violation='skip' to skip such runs; for a sensor, leave end_at unset"
        )
