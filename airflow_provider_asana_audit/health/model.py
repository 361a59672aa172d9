"""
The archive's health at a glance: a calendar of days per series, built from the manifests (never the
events), and the newest archive check's report when there is one.

.. seealso:: docs/archive-page.md
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.backfill import backfill_command
from airflow_provider_asana_audit.layout import LayoutEntry, layout_entry
from airflow_provider_asana_audit.rules import RETENTION
from airflow_provider_asana_audit.storage import resolve_base
from airflow_provider_asana_audit.timeutils import format_instant, parse_instant
from airflow_provider_asana_audit.utils import Logger

__all__ = ["CELL_STATES", "DEFAULT_SETTLE_PERIOD", "ArchiveHealth", "Cell", "SeriesHealth", "archive_health"]

#: What a day can be, from best to worst but for ``not_due``:
#: ``whole``, ``late`` (a re-export recorded late events), ``repaired`` (a re-export replaced a damaged
#: file), ``damaged`` (the newest check, or the manifests, found a problem), ``missing`` (no file covers
#: all of it), ``not_due`` (its settle period has not passed yet).
CELL_STATES = ("whole", "late", "repaired", "damaged", "missing", "not_due")
#: The export operator's default settle period: a day is due this long after its end.
DEFAULT_SETTLE_PERIOD = timedelta(minutes=30)
#: A missing or damaged day is marked as about to leave Asana's window this many days before it does.
EXPIRING_WITHIN = 14
#: A day is a drop-off when its events are below this share of the median of the days before it...
DROP_OFF_SHARE = 0.25
#: ... over this many days, of which at least MIN_HISTORY must have events.
HISTORY_DAYS, MIN_HISTORY = 28, 7
_DAY = timedelta(days=1)
_log = logging.getLogger("airflow_provider_asana_audit.health")


@dataclass
class Cell:
    """
    One day of a series.

    :param day: its start (midnight UTC).
    :param state: one of :data:`CELL_STATES`.
    :param events: the events of its files (``None`` without a file).
    :param bytes: their size as stored.
    :param exported_at: when its newest file was exported.
    :param dag_id: the DAG that wrote it, from the manifest.
    :param run_id: the DAG run that wrote it.
    :param lag_seconds: how long after the day's end it was exported.
    :param problems: what the newest check (or the manifests) found, each ``kind`` and ``message``.
    :param days_left: days until the day leaves Asana's 90-day window; after that its events are gone.
    :param expiring: missing or damaged, and within :data:`EXPIRING_WITHIN` days of leaving the window.
    :param drop_off: far fewer events than the days before it (see :data:`DROP_OFF_SHARE`).
    """

    day: datetime
    state: str
    events: int | None = None
    bytes: int | None = None
    exported_at: datetime | None = None
    dag_id: str | None = None
    run_id: str | None = None
    lag_seconds: float | None = None
    problems: list[dict[str, str]] = field(default_factory=list)
    days_left: int = 0
    expiring: bool = False
    drop_off: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.strftime("%Y-%m-%d"),
            "start_at": format_instant(self.day),
            "end_at": format_instant(self.day + _DAY),
            "state": self.state,
            "events": self.events,
            "bytes": self.bytes,
            "exported_at": format_instant(self.exported_at) if self.exported_at else None,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "problems": self.problems,
            "days_left": self.days_left,
            "expiring": self.expiring,
            "drop_off": self.drop_off,
        }


@dataclass
class SeriesHealth:
    """
    The calendar of one series: a workspace's exports with one set of filters.

    :param filter_suffix: ``_f<hash>`` of filtered exports, ``""`` for unfiltered ones.
    :param cells: one a day, from the first exported day to today, oldest first.
    """

    workspace_gid: str
    filter_suffix: str
    cells: list[Cell]

    def mend(self) -> list[str]:
        """
        What mends the missing and damaged days: a backfill command per run of consecutive days, or the
        words to restore them from a backup once Asana no longer holds their events.
        """
        dags = Counter(cell.dag_id for cell in self.cells if cell.dag_id)
        dag_id = dags.most_common(1)[0][0] if dags else "<export DAG id>"
        runs: list[list[Cell]] = []
        for cell in self.cells:
            if cell.state not in ("missing", "damaged"):
                continue
            if (
                runs
                and cell.day - runs[-1][-1].day == _DAY
                and (cell.days_left < 0) == (runs[-1][-1].days_left < 0)
            ):
                runs[-1].append(cell)
            else:
                runs.append([cell])
        return [
            backfill_command(dag_id, run[0].day, run[-1].day)
            if run[0].days_left >= 0
            else f"restore {run[0].day:%Y-%m-%d} to {run[-1].day:%Y-%m-%d} from a backup: Asana no longer "
            "holds these events"
            for run in runs
        ]

    def counts(self) -> dict[str, int]:
        found = {state: 0 for state in CELL_STATES}
        for cell in self.cells:
            found[cell.state] += 1
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace_gid": self.workspace_gid,
            "filter_suffix": self.filter_suffix or None,
            "counts": self.counts(),
            "expiring": sum(cell.expiring for cell in self.cells),
            "drop_offs": sum(cell.drop_off for cell in self.cells),
            "mend": self.mend(),
            "cells": [cell.to_json() for cell in self.cells],
        }


@dataclass
class ArchiveHealth:
    """
    The health of the archive under a base path.

    :param report: the newest archive check's JSON report, if one was given: its problems and re-export
        commands are shown, and its age.
    """

    base: str
    generated_at: datetime
    series: list[SeriesHealth] = field(default_factory=list)
    report: Mapping[str, Any] | None = None
    seconds: float = 0.0

    @property
    def report_age_seconds(self) -> float | None:
        """How old the newest check's report is."""
        if not self.report or not self.report.get("checked_at"):
            return None
        checked = parse_instant(str(self.report["checked_at"]), name="checked_at")
        return (self.generated_at - checked).total_seconds()

    def to_json(self) -> dict[str, Any]:
        report = self.report or {}
        return {
            "base": self.base,
            "generated_at": format_instant(self.generated_at),
            "seconds": round(self.seconds, 3),
            "series": [series.to_json() for series in self.series],
            "check": None
            if not report
            else {
                "checked_at": report.get("checked_at"),
                "age_seconds": self.report_age_seconds,
                "whole": report.get("whole"),
                "problem_counts": report.get("problem_counts", {}),
                "problems": [
                    {key: problem.get(key) for key in ("kind", "message", "path")}
                    for problem in report.get("problems", [])
                ],
                "reexport": [item.get("command") for item in report.get("reexport", [])],
            },
        }


def archive_health(
    base: str | ObjectStoragePath,
    *,
    conn_id: str | None = None,
    report: Mapping[str, Any] | None = None,
    since: datetime | None = None,
    settle_period: timedelta = DEFAULT_SETTLE_PERIOD,
    now: datetime | None = None,
    log: Logger | None = None,
) -> ArchiveHealth:
    """
    The calendar of each series under ``base``, from a listing and the manifests.

    :param base: the root of the default layout.
    :param conn_id: the Airflow connection of the storage, if it needs one.
    :param report: the newest archive check's JSON report (``verify --json``) of this base, if any: the
        problems it found mark their days damaged, unless a file was exported there after it ran.
    :param since: the first day the archive should hold (the export DAG's start); default the day of
        its first file, so that missing days before it are not seen.
    :param settle_period: the exports' settle period: a day is not due until this long after its end.
    :param now: the reference instant; default this machine's clock.
    :param log: where a line about what was read is logged.
    """
    started = time.monotonic()
    log = log or _log
    now = now or datetime.now(timezone.utc)
    root = resolve_base(base, conn_id=conn_id)
    try:
        listing = root.fs.find(root.path, withdirs=False)
    except FileNotFoundError:
        listing = []
    prefix = root.path.rstrip("/") + "/"
    files: dict[str, LayoutEntry] = {}
    manifests: set[str] = set()
    for name in listing:
        entry = layout_entry(name[len(prefix) :]) if name.startswith(prefix) else None
        if entry is None:
            continue
        if entry.kind == "file":
            files[entry.file_relative_path] = entry
        elif entry.kind == "manifest":
            manifests.add(entry.file_relative_path)
    read = _read_manifests(root, sorted(manifests))
    health = ArchiveHealth(base=str(root), generated_at=now, report=report)
    by_series: dict[tuple[str, str], list[LayoutEntry]] = defaultdict(list)
    for relative in sorted(set(files) | manifests):
        entry = files.get(relative) or layout_entry(relative)
        if entry is not None:
            by_series[(entry.workspace_gid, entry.filter_suffix)].append(entry)
    flagged = _reported(report)
    for (workspace_gid, filter_suffix), entries in sorted(by_series.items()):
        cells = _cells(
            entries,
            files,
            read,
            flagged,
            checked_at=_instant((report or {}).get("checked_at")),
            since=since,
            settle_period=settle_period,
            now=now,
        )
        _mark_drop_offs(cells)
        health.series.append(SeriesHealth(workspace_gid, filter_suffix, cells))
    health.seconds = time.monotonic() - started
    log.info("Read %d manifests under %s in %.2f s", len(manifests), health.base, health.seconds)
    return health


def _read_manifests(root: ObjectStoragePath, relatives: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each manifest, or ``None`` when it cannot be read as a JSON object; fetched together."""
    prefix = root.path.rstrip("/") + "/"
    paths = [f"{prefix}{relative}.manifest.json" for relative in relatives]
    # One call for all: object stores fetch them concurrently, local disks read them in turn.
    fetched = root.fs.cat(paths, on_error="return") if paths else {}
    read: dict[str, dict[str, Any] | None] = {}
    for relative, path in zip(relatives, paths, strict=True):
        data = fetched.get(path)
        try:
            manifest = json.loads(data) if isinstance(data, bytes) else None
        except ValueError:
            manifest = None
        read[relative] = manifest if isinstance(manifest, dict) else None
    return read


def _reported(report: Mapping[str, Any] | None) -> dict[tuple[str, str, datetime], list[dict[str, str]]]:
    """The newest check's problems, by the day each concerns (series and midnight)."""
    flagged: dict[tuple[str, str, datetime], list[dict[str, str]]] = defaultdict(list)
    if not report:
        return flagged
    for problem in report.get("problems", []):
        if problem.get("kind") == "gap":  # the listing shows a gap as it is now
            continue
        shown = {"kind": str(problem.get("kind")), "message": str(problem.get("message"))}
        for interval in problem.get("reexport") or []:
            day = parse_instant(interval["start_at"], name="start_at").replace(hour=0, minute=0, second=0)
            end = parse_instant(interval["end_at"], name="end_at")
            suffix = interval.get("filter_suffix") or ""
            while day < end:
                flagged[(str(interval["workspace_gid"]), suffix, day)].append(shown)
                day += _DAY
    return flagged


def _midnight(instant: datetime) -> datetime:
    return instant.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def _cells(
    entries: list[LayoutEntry],
    files: Mapping[str, LayoutEntry],
    manifests: Mapping[str, dict[str, Any] | None],
    flagged: Mapping[tuple[str, str, datetime], list[dict[str, str]]],
    *,
    checked_at: datetime | None,
    since: datetime | None,
    settle_period: timedelta,
    now: datetime,
) -> list[Cell]:
    first = _midnight(min([entry.start_at for entry in entries] + ([since] if since else [])))
    today = _midnight(now)
    by_day: dict[datetime, list[LayoutEntry]] = defaultdict(list)
    for entry in entries:
        day = _midnight(entry.start_at)
        while day < entry.end_at:
            by_day[day].append(entry)
            day += _DAY
    workspace_gid, filter_suffix = entries[0].workspace_gid, entries[0].filter_suffix
    cells = []
    day = first
    while day <= today:
        cell = _cell(day, by_day.get(day, []), files, manifests, settle_period=settle_period, now=now)
        reported = flagged.get((workspace_gid, filter_suffix, day), [])
        # A file exported after the check ran is not what the check saw: its problems are history.
        mended = checked_at is not None and cell.exported_at is not None and cell.exported_at > checked_at
        if reported and not mended:
            cell.problems += reported
            if cell.state in ("whole", "late", "repaired"):
                cell.state = "damaged"
        cell.days_left = (day + RETENTION - now).days
        cell.expiring = cell.state in ("missing", "damaged") and cell.days_left < EXPIRING_WITHIN
        cells.append(cell)
        day += _DAY
    return cells


def _cell(
    day: datetime,
    entries: list[LayoutEntry],
    files: Mapping[str, LayoutEntry],
    manifests: Mapping[str, dict[str, Any] | None],
    *,
    settle_period: timedelta,
    now: datetime,
) -> Cell:
    end = day + _DAY
    cell = Cell(day=day, state="whole")
    covered = timedelta(0)
    late = repaired = False
    for entry in entries:
        relative = entry.file_relative_path
        if relative not in files:
            cell.problems.append(
                {"kind": "orphan_manifest", "message": f"{relative}: a manifest without its file"}
            )
            continue
        covered += min(entry.end_at, end) - max(entry.start_at, day)
        manifest = manifests.get(relative)
        if manifest is None:
            kind = "missing_manifest" if relative not in manifests else "bad_manifest"
            cell.problems.append({"kind": kind, "message": f"{relative}: no readable manifest"})
            continue
        cell.events = (cell.events or 0) + _int(manifest.get("events"))
        cell.bytes = (cell.bytes or 0) + _int(manifest.get("bytes"))
        exported_at = _instant(manifest.get("exported_at"))
        if exported_at is not None and (cell.exported_at is None or exported_at > cell.exported_at):
            cell.exported_at = exported_at
            cell.lag_seconds = (exported_at - entry.end_at).total_seconds()
            by = manifest.get("exported_by")
            if isinstance(by, dict):
                cell.dag_id, cell.run_id = by.get("dag_id"), by.get("run_id")
        for change in manifest.get("changes") or []:
            if not isinstance(change, dict):
                continue
            if change.get("previous_damaged"):
                repaired = True
            elif _int(change.get("added_events")) or _int(change.get("removed_events")):
                late = True
    if cell.problems:
        cell.state = "damaged"
    elif covered < _DAY:
        cell.state = "not_due" if end + settle_period > now else "missing"
    elif repaired:
        cell.state = "repaired"
    elif late:
        cell.state = "late"
    return cell


def _mark_drop_offs(cells: list[Cell]) -> None:
    """Flag the days with far fewer events than the days before them."""
    history: list[int] = []
    for cell in cells:
        if cell.events is None or cell.state in ("missing", "not_due", "damaged"):
            continue
        recent = history[-HISTORY_DAYS:]
        if len(recent) >= MIN_HISTORY and cell.events < DROP_OFF_SHARE * statistics.median(recent):
            cell.drop_off = True
        history.append(cell.events)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _instant(value: Any) -> datetime | None:
    try:
        return parse_instant(value, name="exported_at") if isinstance(value, str) else None
    except Exception:  # a manifest is read as found: a wrong instant shows as none
        return None
