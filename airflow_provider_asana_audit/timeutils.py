"""
The one place where instants are parsed and formatted.

Asana speaks ISO 8601 with millisecond precision (``2024-05-14T09:22:05.004Z``). Every caller in the
package goes through :func:`parse_instant` and :func:`format_instant`, so an instant read from an
event and sent back as ``start_at`` is the same instant to the millisecond.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = [
    "event_created_at",
    "format_duration",
    "format_instant",
    "parse_instant",
]


def parse_instant(value: datetime | str, *, name: str = "value") -> datetime:
    """
    Return ``value`` as an aware UTC datetime.

    :param value: an aware ``datetime`` (pendulum included) or an ISO 8601 string with a UTC offset
        or ``Z``.
    :param name: the parameter's name, for the error message.
    :raises ValueError: for naive datetimes, strings without an offset and unparsable strings.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{name}={value!r} is not an ISO 8601 date-time; use e.g. '2024-05-14T00:00:00Z'"
            ) from None
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise ValueError(f"{name} must be a timezone-aware datetime or an ISO 8601 string, not {type(value)}")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(
            f"{name}={value!r} has no timezone; pass an aware datetime or a string ending in 'Z' or '+00:00'"
        )
    utc = parsed.astimezone(timezone.utc)  # a plain datetime even when given a pendulum one
    return datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=timezone.utc)


def format_instant(value: datetime) -> str:
    """
    Format an aware datetime the way Asana does: UTC, ``Z``, milliseconds.

    Microseconds are kept when they are not whole milliseconds, so no instant is ever rounded.
    """
    utc = parse_instant(value)
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def format_duration(duration: timedelta) -> str:
    """A duration for people, to the second: ``"2d 3h 5m"``, ``"45s"``, ``"0s"``; negative ones with ``-``."""
    seconds = int(duration.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return sign + (" ".join(parts) or "0s")


def event_created_at(event: object) -> datetime | None:
    """An audit event's ``created_at`` as an aware UTC datetime; ``None`` when it has none that parses."""
    value = event.get("created_at") if isinstance(event, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return parse_instant(value, name="created_at")
    except ValueError:
        return None
