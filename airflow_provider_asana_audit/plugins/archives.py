"""
Which archives the archive page shows: the ``[asana_audit_log] archives`` option, or else the default base
path; and each archive's newest check report.

.. seealso:: docs/archive-page.md#which-archives
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.health import DEFAULT_SETTLE_PERIOD
from airflow_provider_asana_audit.storage import default_base, resolve_base

__all__ = ["ArchiveEntry", "configured_archives", "newest_report"]

_OPTION = "[asana_audit_log] archives"
_KEYS = {"base_path", "conn_id", "report_path", "since", "settle_period_minutes"}


@dataclass(frozen=True)
class ArchiveEntry:
    """
    One archive on the page.

    :param base_path: the root of its default layout.
    :param conn_id: the Airflow connection of its storage, if it needs one.
    :param report_path: the newest check's JSON report: a file, or a folder (ending in ``/``) whose last
        ``*.json`` by name is taken, as the verify operator writes ``{ds}.json``.
    :param since: the first day the archive should hold (``YYYY-MM-DD``).
    :param settle_period: the exports' settle period.
    """

    base_path: str
    conn_id: str | None = None
    report_path: str | None = None
    since: str | None = None
    settle_period: timedelta = DEFAULT_SETTLE_PERIOD


def configured_archives(value: str | None) -> list[ArchiveEntry]:
    """
    The archives that ``value`` (the option's text) lists; the default base path when it is empty.

    :raises AsanaAuditLogConfigError: when it is not a JSON list of objects with a ``base_path``.
    """
    if value is None or not value.strip():
        return [ArchiveEntry(base_path=default_base())]
    try:
        listed = json.loads(value)
    except ValueError as err:
        raise AsanaAuditLogConfigError(f"{_OPTION} is not valid JSON ({err}): {_EXAMPLE}") from None
    if not isinstance(listed, list) or not all(isinstance(item, Mapping) for item in listed):
        raise AsanaAuditLogConfigError(f"{_OPTION} must be a JSON list of objects: {_EXAMPLE}")
    return [_entry(number, item) for number, item in enumerate(listed)]


_EXAMPLE = (
    'e.g. [{"base_path": "s3://audit-lake/asana", "conn_id": "aws_default", '
    '"report_path": "s3://audit-lake/asana-reports/"}]'
)


def _entry(number: int, item: Mapping[str, Any]) -> ArchiveEntry:
    unknown = sorted(set(item) - _KEYS)
    base = item.get("base_path")
    if unknown or not isinstance(base, str) or not base.strip():
        raise AsanaAuditLogConfigError(
            f"{_OPTION}: archive {number + 1} needs a base_path and takes only {sorted(_KEYS)}"
            + (f"; unknown: {unknown}" if unknown else "")
            + f": {_EXAMPLE}"
        )
    minutes = item.get("settle_period_minutes", DEFAULT_SETTLE_PERIOD.total_seconds() / 60)
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes < 0:
        raise AsanaAuditLogConfigError(
            f"{_OPTION}: archive {number + 1}'s settle_period_minutes must be a number of minutes, 0 or more"
        )
    texts = {key: item.get(key) for key in ("conn_id", "report_path", "since")}
    for key, text in texts.items():
        if text is not None and not isinstance(text, str):
            raise AsanaAuditLogConfigError(f"{_OPTION}: archive {number + 1}'s {key} must be a string")
    return ArchiveEntry(
        base_path=base.strip(),
        conn_id=texts["conn_id"],
        report_path=texts["report_path"],
        since=texts["since"],
        settle_period=timedelta(minutes=minutes),
    )


def newest_report(entry: ArchiveEntry) -> dict[str, Any] | None:
    """
    The newest check report of ``entry``, or ``None`` when it has none or it cannot be read as a report.
    """
    if not entry.report_path:
        return None
    path = resolve_base(entry.report_path, conn_id=entry.conn_id)
    try:
        if entry.report_path.rstrip().endswith("/"):
            names = sorted(p for p in path.fs.find(path.path, maxdepth=1) if p.endswith(".json"))
            if not names:
                return None
            data = path.fs.cat_file(names[-1])
        else:
            data = path.read_bytes()
        report = json.loads(data)
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and "problems" in report else None
