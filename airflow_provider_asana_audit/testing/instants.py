"""
Asana's date-times as the stand-in reads and writes them, in microseconds since the Unix epoch.

The stand-in is the oracle the provider is judged against, so it has its own reading of instants
rather than the provider's: a shared bug would pass unnoticed.

* Read (:func:`parse_us`): ISO 8601's extended format, ``YYYY-MM-DDTHH:MM[:SS[.fraction]]`` (``T`` or
  a space) followed by ``Z`` or an offset ``±HH:MM`` (also ``±HHMM`` or ``±HH``); the fraction has 1 to
  9 digits (``,`` or ``.``) and is kept to the microsecond. Anything else is refused: a missing zone,
  a date or time out of range, surrounding spaces.
* Written (:func:`format_us`): ``YYYY-MM-DDTHH:MM:SS.mmmZ``, in UTC, to the millisecond, as Asana
  writes ``created_at``.

Only the standard library is used.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime

__all__ = ["datetime_us", "format_us", "instant_us", "parse_us"]

_DAY_US = 86_400_000_000
_UNIX_DAY = date(1970, 1, 1).toordinal()
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)"
)


@functools.lru_cache(maxsize=1024)
def _days(year: str, month: str, day: str) -> int:
    """Days since the epoch; cached, as a million generated events share a few dates."""
    return date(int(year), int(month), int(day)).toordinal() - _UNIX_DAY  # ValueError when out of range


def _clock_us(hour: int, minute: int, second: int) -> int:
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("time of day out of range")
    return ((hour * 60 + minute) * 60 + second) * 1_000_000


def parse_us(text: str) -> int:
    """
    The instant an ISO 8601 date-time with a zone stands for.

    :param text: e.g. ``"2024-05-14T09:22:05.004Z"`` or ``"2024-05-14T11:22:05+02:00"``.
    :return: microseconds since the epoch.
    :raises ValueError: for anything else (see the module's docstring).
    """
    match = _ISO.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 date-time with a zone: {text!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_hours, off_minutes = match.groups()
    try:
        local = _days(year, month, day) * _DAY_US + _clock_us(int(hour), int(minute), int(second or 0))
        offset = 0 if zulu else _clock_us(int(off_hours), int(off_minutes or 0), 0)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date-time with a zone (out of range): {text!r}") from None
    local += int((fraction or "").ljust(6, "0")[:6])
    return local + offset if sign == "-" else local - offset


def datetime_us(value: datetime) -> int:
    """
    The instant an aware datetime (pendulum's included) stands for, in µs since the epoch.

    :raises ValueError: for a naive datetime.
    """
    offset = value.utcoffset()
    if offset is None:
        raise ValueError(f"{value!r} has no time zone")
    days = value.toordinal() - _UNIX_DAY
    local = days * _DAY_US + _clock_us(value.hour, value.minute, value.second) + value.microsecond
    return local - (offset.days * _DAY_US + offset.seconds * 1_000_000 + offset.microseconds)


def instant_us(value: datetime | str, *, name: str) -> int:
    """
    :func:`parse_us` of a string, :func:`datetime_us` of a datetime.

    :param name: the parameter's name, for the message.
    :raises ValueError: naming ``name``, for a naive datetime or a string :func:`parse_us` refuses.
    """
    try:
        if isinstance(value, datetime):
            return datetime_us(value)
        if isinstance(value, str):
            return parse_us(value)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    raise ValueError(f"{name} must be an aware datetime or an ISO 8601 string, not {type(value).__name__}")


def format_us(us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` of an instant in µs since the epoch, truncated to the millisecond."""
    days, rest = divmod(us, _DAY_US)
    seconds, micros = divmod(rest, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    day = date.fromordinal(days + _UNIX_DAY)
    clock = f"{hour:02d}:{minute:02d}:{second:02d}.{micros // 1000:03d}"
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}T{clock}Z"
