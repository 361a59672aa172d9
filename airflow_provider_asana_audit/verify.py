"""
Check an archive of exports: is every interval there, is every file intact, is every event in its place.

``python -m airflow_provider_asana_audit.verify BASE [--since DATE] [--until DATE] [--json FILE]`` reads
the default layout under ``BASE`` (``{BASE}/workspace_gid={gid}/date={day}/<file>`` and its
``<file>.manifest.json``; any Airflow object storage) and reports, for each workspace and each set of
filters separately:

* ``gap``: time between ``--since`` and ``--until`` (default: the first and last export) that no file
  covers; ``overlap``: time that two files cover;
* ``missing_manifest``: a file without its manifest; ``orphan_manifest``: a manifest without its file;
  ``bad_manifest``: a manifest that is not a JSON object with the export's fields;
* ``manifest_mismatch``: a manifest whose ``sha256``, ``bytes``, ``events``, interval or workspace does
  not match the file beside it;
* ``unreadable_file``: a file that cannot be read or decompressed to its end;
* ``invalid_json``: lines that are not JSON audit events (objects with a string ``gid``);
* ``outside_interval``: events whose ``created_at`` is missing or lies outside the file's interval;
* ``duplicate_gid``: gids in more than one file of a series, or twice in one (differently filtered
  exports of one interval hold the same events, each in its own series);
* ``stale_staging``: staging objects (``.<file>.<32 hex digits>.partial``) not modified for longer than
  the staging grace period: left by export attempts that did not finish. Younger ones belong to
  exports in progress and are only noted.

The archive is *whole* when there is no problem, and there is something to check: a base path (or a
range) without any export file is reported as a ``gap``, so that a mistyped base path never passes.
The report then says what to re-export, merged into ranges, with the backfill command that does it
(Airflow 3's ``airflow backfill create`` or Airflow 2's ``airflow dags backfill``, for the DAG named in
the manifests' ``exported_by``), and which ranges can no longer be re-exported because Asana has
deleted their events (older than 90 days: restore them from a backup). It also sums up the late events
the manifests recorded (``changes``, see :mod:`~airflow_provider_asana_audit.archive`).

**Memory stays flat.** Files are read one at a time, line by line. To find gids in more than one file,
each event's gid (with its series) is appended to a temporary SQLite database on disk (about 50 bytes
per event), which SQLite indexes and groups with its own external sort; only the duplicates come back
into memory, and each problem keeps at most :data:`EXAMPLES` examples. What grows with the archive is
the list of files.

Exit status: 0 when the archive is whole, 1 when it is not, 2 for a wrong command line or a base path
that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, TextIO

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.archive import ExportReader, read_manifest
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.rules import retention_start
from airflow_provider_asana_audit.storage import (
    MANIFEST_SUFFIX,
    STAGING_GRACE_PERIOD,
    LayoutEntry,
    layout_entry,
    modified_at,
    resolve_base,
)
from airflow_provider_asana_audit.timeutils import (
    format_duration,
    format_instant,
    parse_instant,
)
from airflow_provider_asana_audit.utils import Logger
from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS

__all__ = [
    "EXAMPLES",
    "PROBLEM_KINDS",
    "ArchiveReport",
    "Interval",
    "Problem",
    "Reexport",
    "main",
    "parse_bound",
    "verify_archive",
]

#: Every kind of problem, with what it means.
PROBLEM_KINDS: dict[str, str] = {
    "gap": "no export file covers this time",
    "overlap": "two export files cover the same time",
    "missing_manifest": "an export file has no manifest",
    "orphan_manifest": "a manifest has no export file",
    "bad_manifest": "a manifest is not a JSON object with the export's fields",
    "manifest_mismatch": "a manifest does not describe the file beside it",
    "unreadable_file": "an export file cannot be read to its end",
    "invalid_json": "lines that are not JSON audit events",
    "outside_interval": "events whose created_at lies outside their file's interval",
    "duplicate_gid": "gids in more than one file, or twice in one",
    "stale_staging": "staging objects left by export attempts that did not finish",
}
#: Examples kept per problem (line numbers, gids); the counts are always complete.
EXAMPLES = 5
#: Seconds between two progress lines in the log.
_PROGRESS_EVERY = 5.0
#: Gids written to the temporary database at a time.
_BATCH = 10_000
#: What the manifest of an export must hold for the check to compare it with the file.
_MANIFEST_FIELDS = ("sha256", "bytes", "events", "start_at", "end_at")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Interval:
    """An interval of one series (a workspace's exports with one set of filters) to export again."""

    workspace_gid: str
    filter_suffix: str
    start_at: datetime
    end_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace_gid": self.workspace_gid,
            "filter_suffix": self.filter_suffix or None,
            "start_at": format_instant(self.start_at),
            "end_at": format_instant(self.end_at),
        }


@dataclass
class Problem:
    """
    One thing wrong with the archive.

    :param kind: one of :data:`PROBLEM_KINDS`.
    :param message: what is wrong, for people.
    :param path: the object concerned, if one is.
    :param count: how many lines, events, gids or fields are concerned (1 otherwise).
    :param examples: up to :data:`EXAMPLES` of them.
    :param reexport: the intervals whose re-export mends it (none when re-exporting does not).
    """

    kind: str
    message: str
    path: str | None = None
    count: int = 1
    examples: list[str] = field(default_factory=list)
    reexport: list[Interval] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "path": self.path,
            "count": self.count,
            "examples": self.examples,
            "reexport": [interval.to_json() for interval in self.reexport],
        }


@dataclass(frozen=True)
class Reexport(Interval):
    """
    A range of one series to export again, and how.

    :param dag_id: the export DAG whose backfill re-exports it.
    :param command: the backfill command that re-exports it, or ``None`` when Asana no longer holds it.
    :param expired: Asana has deleted the events of (part of) the range: restore it from a backup.
    """

    dag_id: str
    command: str | None
    expired: bool

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "dag_id": self.dag_id, "command": self.command, "expired": self.expired}


@dataclass
class _Series:
    """The exports of one workspace with one set of filters, while they are checked."""

    workspace_gid: str
    filter_suffix: str
    files: int = 0
    events: int = 0
    bytes: int = 0
    first: datetime | None = None
    last: datetime | None = None
    steps: Counter[timedelta] = field(default_factory=Counter)
    dag_ids: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace_gid": self.workspace_gid,
            "filter_suffix": self.filter_suffix or None,
            "files": self.files,
            "events": self.events,
            "bytes": self.bytes,
            "first_start_at": format_instant(self.first) if self.first else None,
            "last_end_at": format_instant(self.last) if self.last else None,
        }


@dataclass
class _LateEvents:
    """What the manifests' ``changes`` say of late events."""

    reexports: int = 0
    added: int = 0
    removed: int = 0
    #: Changes that repaired a damaged file: their added events need not be late, so they are not counted.
    repairs: int = 0
    #: The longest time after an interval's end that a previous export ran and still missed events.
    captured_after_end_at_least: timedelta | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, manifest: dict[str, Any], path: str) -> None:
        changes = manifest.get("changes")
        if not isinstance(changes, list):
            return
        try:
            end_at = parse_instant(manifest["end_at"])
        except (KeyError, TypeError, ValueError):
            end_at = None
        for change in changes:
            if not isinstance(change, dict):
                continue
            if change.get("previous_damaged") is True:
                self.repairs += 1
                continue
            added = change.get("added_events")
            removed = change.get("removed_events")
            self.reexports += 1
            self.added += added if isinstance(added, int) else 0
            self.removed += removed if isinstance(removed, int) else 0
            previous_at = change.get("previous_exported_at")
            if added and end_at is not None and isinstance(previous_at, str):
                try:
                    lag = parse_instant(previous_at) - end_at
                except ValueError:
                    continue
                if self.captured_after_end_at_least is None or lag > self.captured_after_end_at_least:
                    self.captured_after_end_at_least = lag
            if added and len(self.examples) < EXAMPLES:
                self.examples.append({"path": path, **change})

    def to_json(self) -> dict[str, Any]:
        lag = self.captured_after_end_at_least
        return {
            "changed_reexports": self.reexports,
            "added_events": self.added,
            "removed_events": self.removed,
            "repairs": self.repairs,
            "captured_after_end_at_least_seconds": lag.total_seconds() if lag is not None else None,
            "examples": self.examples,
        }


@dataclass
class ArchiveReport:
    """
    What :func:`verify_archive` found. :attr:`whole` says whether the archive passed.

    :param base: the base path checked.
    :param since: the start of the time checked for gaps (``None``: each series' first file).
    :param until: its end (``None``: each series' last file).
    :param staging_grace_period: how old a staging object had to be to count as left behind.
    """

    base: str
    since: datetime | None
    until: datetime | None
    checked_at: datetime
    staging_grace_period: timedelta = STAGING_GRACE_PERIOD
    files: int = 0
    events: int = 0
    bytes: int = 0
    seconds: float = 0.0
    series: list[_Series] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reexports: list[Reexport] = field(default_factory=list)
    late_events: _LateEvents = field(default_factory=_LateEvents)

    @property
    def whole(self) -> bool:
        """Whether no problem was found."""
        return not self.problems

    def counts(self) -> dict[str, int]:
        """Problems by kind."""
        return dict(Counter(problem.kind for problem in self.problems))

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-compatible values."""
        return {
            "base": self.base,
            "whole": self.whole,
            "since": format_instant(self.since) if self.since else None,
            "until": format_instant(self.until) if self.until else None,
            "checked_at": format_instant(self.checked_at),
            "seconds": round(self.seconds, 3),
            "files": self.files,
            "events": self.events,
            "bytes": self.bytes,
            "series": [series.to_json() for series in self.series],
            "problem_counts": self.counts(),
            "problems": [problem.to_json() for problem in self.problems],
            "reexport": [item.to_json() for item in self.reexports],
            "late_events": self.late_events.to_json(),
            "notes": self.notes,
        }

    def summary(self) -> str:
        """A few lines for people: what was checked, the verdict, each problem, and what to re-export."""
        lines = [f"Asana audit log archive {self.base}"]
        for series in self.series:
            filters = f" (filtered exports {series.filter_suffix})" if series.filter_suffix else ""
            span = (
                f"[{format_instant(series.first)}, {format_instant(series.last)})"
                if series.first and series.last
                else "no files"
            )
            lines.append(
                f"  workspace {series.workspace_gid}{filters}: {series.files} files, {series.events} events, "
                f"{series.bytes} bytes, {span}"
            )
        late = self.late_events
        if late.reexports:
            lag = late.captured_after_end_at_least
            lines.append(
                f"  late events: {late.reexports} changes recorded by re-exports, adding {late.added} "
                f"events and removing {late.removed}"
                + (
                    f"; Asana captured some at least {format_duration(lag)} after their interval's end"
                    if lag is not None
                    else ""
                )
            )
        if late.repairs:
            lines.append(
                f"  repairs: {late.repairs} re-exports replaced a damaged file (not counted as late events)"
            )
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.whole:
            lines.append(
                f"WHOLE: {self.files} files and {self.events} events checked in {self.seconds:.1f} s, "
                "no problem found"
            )
            return "\n".join(lines)
        counts = ", ".join(f"{count} {kind}" for kind, count in sorted(self.counts().items()))
        lines.append(f"NOT WHOLE: {len(self.problems)} problems ({counts})")
        for problem in self.problems:
            example = f" (e.g. {', '.join(problem.examples)})" if problem.examples else ""
            lines.append(f"  {problem.kind}: {problem.message}{example}")
        if self.reexports:
            lines.append("Re-export:")
            for item in self.reexports:
                span = f"[{format_instant(item.start_at)}, {format_instant(item.end_at)})"
                if item.command is None:
                    lines.append(
                        f"  {span} of workspace {item.workspace_gid}: Asana no longer holds these events "
                        "(older than 90 days); restore the files from a backup"
                    )
                else:
                    lines.append(f"  {item.command}")
                    if item.expired:
                        lines.append(f"    (part of {span} is older than 90 days: Asana no longer holds it)")
        if any(problem.kind == "stale_staging" for problem in self.problems):
            # The sweep's own default age (1 hour) is longer than the check's grace period: without the
            # same age, the command would leave the objects reported here between the two.
            lines.append(
                f"Remove the stale staging objects: python -m airflow_provider_asana_audit.storage sweep "
                f"{self.base} --older-than {int(self.staging_grace_period.total_seconds())}s --delete"
            )
        if any(problem.kind == "overlap" for problem in self.problems):
            lines.append("Overlapping files: remove the file that does not belong to the DAG's schedule.")
        return "\n".join(lines)


def parse_bound(value: str | date | datetime, *, name: str) -> datetime:
    """
    ``--since`` or ``--until``: a date (midnight UTC) or an ISO 8601 instant with a UTC offset.

    :raises AsanaAuditLogConfigError: when it is neither.
    """
    if isinstance(value, datetime):
        instant: datetime | str = value
    elif isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    else:
        text = value.strip()
        try:
            day = date.fromisoformat(text)
        except ValueError:
            instant = text
        else:
            return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    try:
        return parse_instant(instant, name=name)
    except ValueError as err:
        raise AsanaAuditLogConfigError(f"{err}, or a date such as '2026-11-01' (midnight UTC)") from None


def verify_archive(
    base: str | os.PathLike[str] | ObjectStoragePath,
    *,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
    conn_id: str | None = None,
    dag_id: str | None = None,
    staging_grace_period: timedelta = STAGING_GRACE_PERIOD,
    now: datetime | None = None,
    log: Logger | None = None,
) -> ArchiveReport:
    """
    Check the archive under ``base`` (see the module's documentation for what is checked).

    :param base: the root of the default layout: an absolute path, a URI or an ``ObjectStoragePath``.
    :param since: check for gaps from this instant on; only files whose interval ends after it are read.
        An aware datetime, a date (midnight UTC) or a string of either (see :func:`parse_bound`).
    :param until: check for gaps up to this instant; only files whose interval starts before it are read.
    :param conn_id: the Airflow connection of the storage, if it needs one.
    :param dag_id: the export DAG to name in re-export commands; default the DAG the manifests name.
    :param staging_grace_period: how old a staging object must be to count as left behind.
    :param now: the reference instant for staging ages and retention; default this machine's clock.
    :param log: where progress is logged.
    :raises AsanaAuditLogConfigError: for a relative or unusable base path, a bound that is naive or does
        not parse, ``since`` not before ``until``, or a grace period that is not positive.
    """
    log = log or _log
    if not isinstance(staging_grace_period, timedelta) or staging_grace_period <= timedelta(0):
        # A grace period of nothing would count every staging object as left behind, also those of the
        # exports running right now.
        raise AsanaAuditLogConfigError(
            f"staging_grace_period={staging_grace_period!r} must be a positive timedelta: use at least the "
            f"exports' grace period, timedelta(minutes={STAGING_GRACE_PERIOD.total_seconds() / 60:g})"
        )
    # Compared with aware instants below: a naive datetime or a string would fail there with a TypeError.
    since = None if since is None else parse_bound(since, name="since")
    until = None if until is None else parse_bound(until, name="until")
    if since is not None and until is not None and since >= until:
        raise AsanaAuditLogConfigError(
            f"since ({format_instant(since)}) must be before until ({format_instant(until)})"
        )
    root = resolve_base(base, conn_id=conn_id)
    now = now or datetime.now(timezone.utc)
    report = ArchiveReport(
        base=str(root), since=since, until=until, checked_at=now, staging_grace_period=staging_grace_period
    )
    started = time.monotonic()
    try:
        listing: dict[str, dict[str, Any]] = root.fs.find(root.path, withdirs=False, detail=True)
    except FileNotFoundError:
        listing = {}
    except OSError as err:
        raise AsanaAuditLogConfigError(
            f"Cannot list {root}: {err}. Check the base path and its connection"
        ) from None
    objects = _classify(root, listing, report)
    _check_staging(root, objects.staging, report, grace_period=staging_grace_period, now=now)
    with _gid_store() as gids:
        checked = 0
        last_progress = time.monotonic()
        total = sum(len(files) for files in objects.series.values())
        for key in sorted(objects.series):
            series = _Series(workspace_gid=key[0], filter_suffix=key[1])
            report.series.append(series)
            entries = objects.series[key]
            _check_coverage(series, entries, report, since=since, until=until)
            for name in sorted(entries, key=lambda item: (entries[item].entry.start_at, item)):
                _check_file(root, series, entries[name], report, gids.series(key))
                checked += 1
                if time.monotonic() - last_progress >= _PROGRESS_EVERY:
                    last_progress = time.monotonic()
                    elapsed = last_progress - started
                    log.info(
                        "Checked %d of %d export files (%d events, %.0f events/s)",
                        checked,
                        total,
                        report.events,
                        report.events / max(elapsed, 1e-9),
                    )
        _check_duplicates(gids, report)
    if not objects.series:
        # Nothing to check proves nothing: a mistyped base path, or a bucket listed without the right to
        # list it, looks the same as an empty archive, and must not pass for a whole one.
        report.problems.append(Problem(kind="gap", message=_nothing_found(root, since=since, until=until)))
    report.reexports = _reexports(report, dag_id=dag_id, now=now)
    report.seconds = time.monotonic() - started
    log.info(
        "Checked %d export files (%d events, %d bytes) in %.1f s: %s",
        report.files,
        report.events,
        report.bytes,
        report.seconds,
        "whole" if report.whole else f"{len(report.problems)} problems",
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_provider_asana_audit.verify BASE [--since] [--until] [--json FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_asana_audit.verify",
        description=(
            "Check an archive of Asana audit log exports: every interval present once, every file intact "
            "and matching its manifest, every event valid, in its interval and in one file only. Prints a "
            "summary and what to re-export; exit status 0 when the archive is whole, 1 when it is not."
        ),
    )
    parser.add_argument("base", help="the base path or URI of the exports, e.g. s3://bucket/asana")
    parser.add_argument("--since", help="check from this date or instant on (default: the first export)")
    parser.add_argument("--until", help="check up to this date or instant (default: the last export's end)")
    parser.add_argument("--json", metavar="FILE", help="also write the JSON report to FILE (- for stdout)")
    parser.add_argument(
        "--dag-id", help="the export DAG to name in re-export commands (default: from manifests)"
    )
    parser.add_argument("--conn-id", help="Airflow connection of the storage, if it needs one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with _results_stream() as results:
        try:
            since = parse_bound(args.since, name="--since") if args.since else None
            until = parse_bound(args.until, name="--until") if args.until else None
            report = verify_archive(
                args.base, since=since, until=until, conn_id=args.conn_id, dag_id=args.dag_id
            )
        except AsanaAuditLogConfigError as err:
            parser.exit(2, f"{parser.prog}: error: {err}\n")
        document = json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
        print(report.summary(), file=sys.stderr if args.json == "-" else results)
        if args.json == "-":
            results.write(document)
        elif args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                out.write(document)
    return 0 if report.whole else 1


@contextmanager
def _results_stream() -> Iterator[TextIO]:
    """
    Standard output for the results alone; everything else written there goes to standard error.

    Airflow's logging writes to standard output, which would mix log lines into a summary or a JSON
    report piped to another program. When standard output is the process's own, its descriptor is
    pointed at standard error for the duration, and the results are written to a copy of the original.
    """
    stdout: TextIO = sys.stdout
    if stdout is not sys.__stdout__:  # already redirected (by a caller, or a test's capture)
        yield stdout
        return
    stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptors to juggle: keep things as they are
        yield stdout
        return
    try:
        with os.fdopen(os.dup(saved), "w", encoding="utf-8") as results:
            yield results
    finally:
        stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# ---------------------------------------------------------------------- internals


@dataclass
class _Entry:
    """An export file of the layout and its manifest, as listed."""

    entry: LayoutEntry
    file: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None


@dataclass
class _Objects:
    series: dict[tuple[str, str], dict[str, _Entry]] = field(default_factory=dict)
    staging: list[tuple[LayoutEntry, dict[str, Any]]] = field(default_factory=list)


def _classify(root: ObjectStoragePath, listing: dict[str, dict[str, Any]], report: ArchiveReport) -> _Objects:
    """Sort the listed objects into series of files with their manifests, staging objects and the rest."""
    objects = _Objects()
    prefix = root.path.rstrip("/") + "/"
    unknown = 0
    for name, info in listing.items():
        relative = name[len(prefix) :] if name.startswith(prefix) else name
        entry = layout_entry(relative)
        if entry is None:
            unknown += 1
            continue
        if not _in_range(entry, report.since, report.until):
            continue
        if entry.kind == "staging":
            objects.staging.append((entry, info))
            continue
        files = objects.series.setdefault((entry.workspace_gid, entry.filter_suffix), {})
        item = files.setdefault(f"{entry.workspace_gid}/{entry.date}/{entry.file_name}", _Entry(entry=entry))
        if entry.kind == "manifest":
            item.manifest = info
        else:
            item.file = info
            item.entry = entry
    if unknown:
        report.notes.append(
            f"{unknown} objects under the base path are not part of the export layout (ignored)"
        )
    return objects


def _in_range(entry: LayoutEntry, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or entry.end_at > since) and (until is None or entry.start_at < until)


def _nothing_found(root: ObjectStoragePath, *, since: datetime | None, until: datetime | None) -> str:
    """The gap of an archive without a single export file (in the range checked)."""
    if since is not None and until is not None:
        return f"no export file under {root} covers [{format_instant(since)}, {format_instant(until)})"
    if since is not None:
        return f"no export file under {root} ends after {format_instant(since)}"
    if until is not None:
        return f"no export file under {root} starts before {format_instant(until)}"
    return f"no export file under {root}: check the base path (and its connection)"


def _check_staging(
    root: ObjectStoragePath,
    staging: list[tuple[LayoutEntry, dict[str, Any]]],
    report: ArchiveReport,
    *,
    grace_period: timedelta,
    now: datetime,
) -> None:
    fresh = 0
    for entry, info in sorted(staging, key=lambda item: str(item[1].get("name"))):
        modified = modified_at(root.fs, info)
        if modified is None or now - modified <= grace_period:
            fresh += 1
            continue
        report.problems.append(
            Problem(
                kind="stale_staging",
                message=(
                    f"{root.fs.unstrip_protocol(info['name'])} ({int(info.get('size') or 0)} bytes) was last "
                    f"modified {format_duration(now - modified)} ago: an export attempt of {entry.file_name} "
                    "did not finish"
                ),
                path=root.fs.unstrip_protocol(info["name"]),
            )
        )
    if fresh:
        report.notes.append(
            f"{fresh} staging objects younger than {format_duration(grace_period)}: exports in progress"
        )


def _check_coverage(
    series: _Series,
    entries: dict[str, _Entry],
    report: ArchiveReport,
    *,
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Gaps and overlaps between the intervals of one series' files (and of manifests without a file)."""
    intervals = sorted(
        ((item.entry.start_at, item.entry.end_at, item) for item in entries.values()),
        key=lambda interval: (interval[0], interval[1], _name(interval[2])),
    )
    if not intervals:
        return
    series.first, series.last = intervals[0][0], max(end for _, end, _ in intervals)
    for start, end, _ in intervals:
        series.steps[end - start] += 1
    cursor = since if since is not None else intervals[0][0]
    reaching: _Entry | None = None
    for start, end, item in intervals:
        if start > cursor:
            _gap(series, report, cursor, start)
        elif start < cursor and reaching is not None:
            report.problems.append(
                Problem(
                    kind="overlap",
                    message=(
                        f"{_name(item)} [{format_instant(start)}, {format_instant(end)}) overlaps "
                        f"{_name(reaching)} [{format_instant(reaching.entry.start_at)}, "
                        f"{format_instant(reaching.entry.end_at)}) by "
                        f"{format_duration(min(cursor, end) - start)}"
                    ),
                    path=_name(item),
                )
            )
        if end > cursor:
            cursor, reaching = end, item
    if until is not None and until > cursor:
        _gap(series, report, cursor, until)


def _gap(series: _Series, report: ArchiveReport, start: datetime, end: datetime) -> None:
    filters = f" (filtered exports {series.filter_suffix})" if series.filter_suffix else ""
    report.problems.append(
        Problem(
            kind="gap",
            message=(
                f"workspace {series.workspace_gid}{filters}: no export file covers "
                f"[{format_instant(start)}, {format_instant(end)}) ({format_duration(end - start)})"
            ),
            reexport=[Interval(series.workspace_gid, series.filter_suffix, start, end)],
        )
    )


def _name(item: _Entry) -> str:
    entry = item.entry
    return f"workspace_gid={entry.workspace_gid}/date={entry.date}/{entry.file_name}"


def _check_file(
    root: ObjectStoragePath, series: _Series, item: _Entry, report: ArchiveReport, gids: _SeriesGids
) -> None:
    """One file against its manifest, line by line."""
    entry = item.entry
    file_path = root / f"workspace_gid={entry.workspace_gid}" / f"date={entry.date}" / entry.file_name
    manifest_path = file_path.parent / f"{entry.file_name}{MANIFEST_SUFFIX}"

    def problem(
        kind: str, message: str, *, path: str, count: int = 1, examples: list[str] | None = None
    ) -> None:
        report.problems.append(
            Problem(
                kind=kind,
                message=message,
                path=path,
                count=count,
                examples=examples or [],
                reexport=[_interval(entry)],
            )
        )

    manifest: dict[str, Any] | None = None
    if item.manifest is not None:
        try:
            manifest = read_manifest(manifest_path)
        except (ValueError, OSError) as err:
            problem("bad_manifest", f"{manifest_path} {err}", path=str(manifest_path))
        else:
            missing = [name for name in _MANIFEST_FIELDS if manifest is not None and name not in manifest]
            if missing:
                problem(
                    "bad_manifest", f"{manifest_path} lacks {', '.join(missing)}", path=str(manifest_path)
                )
                manifest = None
            elif manifest is not None:
                report.late_events.add(manifest, str(file_path))
                by = manifest.get("exported_by")
                # Only a DAG that exported its runs' own data intervals re-exports a file when backfilled
                # over the file's dates (a DAG re-exporting days later would export other days).
                if (
                    isinstance(by, dict)
                    and isinstance(by.get("dag_id"), str)
                    and _same("start_at", by.get("data_interval_start"), format_instant(entry.start_at))
                    and _same("end_at", by.get("data_interval_end"), format_instant(entry.end_at))
                ):
                    series.dag_ids[by["dag_id"]] += 1
    if item.file is None:
        if item.manifest is not None:
            problem(
                "orphan_manifest",
                f"{manifest_path} describes {entry.file_name}, which is not there",
                path=str(manifest_path),
            )
        return
    if item.manifest is None:
        problem(
            "missing_manifest",
            f"{file_path} has no manifest {entry.file_name}{MANIFEST_SUFFIX}",
            path=str(file_path),
        )

    report.files += 1
    series.files += 1
    reader = ExportReader(file_path)
    events = 0
    invalid: list[str] = []
    invalid_count = outside_count = 0
    outside: list[str] = []
    try:
        for number, event, inside in reader.events(entry.start_at, entry.end_at):
            if event is None:
                invalid_count += 1
                if len(invalid) < EXAMPLES:
                    invalid.append(f"line {number}")
                continue
            events += 1
            gids.add(event["gid"], file=str(file_path), line=number)
            if not inside:
                outside_count += 1
                if len(outside) < EXAMPLES:
                    outside.append(f"line {number} gid {event['gid']} created_at {event.get('created_at')}")
    except OSError as err:
        reader.error = reader.error or f"cannot be read: {err}"
    report.events += events
    report.bytes += reader.size
    series.events += events
    series.bytes += reader.size
    if reader.error:
        problem("unreadable_file", f"{file_path} {reader.error}", path=str(file_path))
    if invalid_count:
        problem(
            "invalid_json",
            f"{file_path}: {invalid_count} lines are not JSON audit events",
            path=str(file_path),
            count=invalid_count,
            examples=invalid,
        )
    if outside_count:
        problem(
            "outside_interval",
            f"{file_path}: {outside_count} events have a created_at outside "
            f"[{format_instant(entry.start_at)}, {format_instant(entry.end_at)})",
            path=str(file_path),
            count=outside_count,
            examples=outside,
        )
    if manifest is not None:
        found = {
            "sha256": reader.sha256,
            "bytes": reader.size,
            "events": events + invalid_count,
            "start_at": format_instant(entry.start_at),
            "end_at": format_instant(entry.end_at),
            "workspace_gid": entry.workspace_gid,
        }
        differences = [
            f"{name} {manifest.get(name)!r} in the manifest, {value!r} in the file"
            for name, value in found.items()
            if (name in manifest or name in _MANIFEST_FIELDS) and not _same(name, manifest.get(name), value)
        ]
        if differences:
            problem(
                "manifest_mismatch",
                f"{file_path}: " + "; ".join(differences),
                path=str(file_path),
                count=len(differences),
            )


def _same(name: str, described: Any, found: Any) -> bool:
    if name in ("start_at", "end_at") and isinstance(described, str):
        try:
            return parse_instant(described) == parse_instant(found)
        except ValueError:
            return False
    return bool(described == found)


class _GidStore:
    """
    Every gid read, with its series and where it was read, in a temporary SQLite database on disk.

    Duplicates are sought within each series only: a filtered export holds some of the events of the
    unfiltered export of the same interval, by design.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.files: dict[str, int] = {}
        self.names: list[str] = []
        self.series_numbers: dict[tuple[str, str], int] = {}
        self.pending: list[tuple[int, str, int, int]] = []
        connection.execute(
            "CREATE TABLE gids (series INTEGER NOT NULL, gid TEXT NOT NULL, file INTEGER NOT NULL, "
            "line INTEGER NOT NULL)"
        )

    def series(self, key: tuple[str, str]) -> _SeriesGids:
        """Where the gids of one series (workspace gid, filter suffix) are added."""
        number = self.series_numbers.setdefault(key, len(self.series_numbers))
        return _SeriesGids(self, number)

    def add(self, series: int, gid: str, *, file: str, line: int) -> None:
        number = self.files.get(file)
        if number is None:
            number = self.files[file] = len(self.names)
            self.names.append(file)
        self.pending.append((series, gid, number, line))
        if len(self.pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.connection.executemany("INSERT INTO gids VALUES (?, ?, ?, ?)", self.pending)
            self.pending = []

    def duplicates(self) -> Iterator[tuple[str, list[tuple[str, int]]]]:
        """Each gid read more than once in one series, with the (file, line) of every reading."""
        self.flush()
        self.connection.execute("CREATE INDEX gids_by_gid ON gids (series, gid)")
        rows = self.connection.execute(
            "SELECT gid, group_concat(file || ':' || line, ' ') FROM gids GROUP BY series, gid "
            "HAVING COUNT(*) > 1"
        )
        for gid, places in rows:
            where = sorted(
                (int(file), int(line)) for file, line in (place.split(":") for place in places.split())
            )
            yield gid, [(self.names[file], line) for file, line in where]


@dataclass(frozen=True)
class _SeriesGids:
    """The gids of one series, added to the store of all of them."""

    store: _GidStore
    number: int

    def add(self, gid: str, *, file: str, line: int) -> None:
        self.store.add(self.number, gid, file=file, line=line)


@contextmanager
def _gid_store() -> Iterator[_GidStore]:
    with (
        tempfile.TemporaryDirectory(prefix="asana-audit-verify-") as folder,
        closing(sqlite3.connect(os.path.join(folder, "gids.sqlite"))) as connection,
    ):
        # A scratch database: nothing to recover after a crash, so no journal and no syncing.
        connection.execute("PRAGMA journal_mode = OFF")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA temp_store = FILE")
        yield _GidStore(connection)


def _check_duplicates(gids: _GidStore, report: ArchiveReport) -> None:
    """One problem per set of files that share gids; re-exporting each of them mends it."""
    found: dict[tuple[str, ...], list[Any]] = defaultdict(lambda: [0, []])
    for gid, places in gids.duplicates():
        files = tuple(sorted({file for file, _ in places}))
        counted = found[files]
        counted[0] += 1
        if len(counted[1]) < EXAMPLES:
            lines = ", ".join(f"{file.rsplit('/', 1)[-1]} line {line}" for file, line in places)
            counted[1].append(f"gid {gid} in {lines}")
    for files, (count, examples) in sorted(found.items()):
        where = f"twice in {files[0]}" if len(files) == 1 else f"in {len(files)} files: {', '.join(files)}"
        entries = [layout_entry("/".join(file.split("/")[-3:])) for file in files]
        report.problems.append(
            Problem(
                kind="duplicate_gid",
                message=f"{count} gids appear {where}",
                path=files[0],
                count=count,
                examples=examples,
                # An export writes each gid once, into the interval of its created_at: re-exporting
                # every file concerned leaves each gid where it belongs.
                reexport=[_interval(entry) for entry in entries if entry is not None],
            )
        )


def _interval(entry: LayoutEntry) -> Interval:
    return Interval(entry.workspace_gid, entry.filter_suffix, entry.start_at, entry.end_at)


def _reexports(report: ArchiveReport, *, dag_id: str | None, now: datetime) -> list[Reexport]:
    """The problems' intervals, merged into ranges per series, each with the backfill that re-exports it."""
    by_series: dict[tuple[str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    for problem in report.problems:
        for interval in problem.reexport:
            by_series[(interval.workspace_gid, interval.filter_suffix)].append(
                (interval.start_at, interval.end_at)
            )
    series_of = {(series.workspace_gid, series.filter_suffix): series for series in report.series}
    oldest = retention_start(now)
    result: list[Reexport] = []
    for key in sorted(by_series):
        series = series_of.get(key)
        step = series.steps.most_common(1)[0][0] if series and series.steps else timedelta(days=1)
        dag = dag_id or (
            series.dag_ids.most_common(1)[0][0] if series and series.dag_ids else "<export DAG id>"
        )
        merged: list[list[datetime]] = []
        for start, end in sorted(by_series[key]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        for start, end in merged:
            expired = start < oldest
            command = None if end <= oldest else _backfill_command(dag, start, max(start, end - step))
            result.append(Reexport(key[0], key[1], start, end, dag, command, expired))
    return result


def _backfill_command(dag_id: str, first: datetime, last: datetime) -> str:
    """
    The command that re-runs the DAG's runs whose data intervals start from ``first`` to ``last``.

    For data-interval timetables a run's logical date is the start of its interval, and both commands
    take the logical dates of the first and the last run, inclusive.
    """
    midnight = all(
        instant == instant.replace(hour=0, minute=0, second=0, microsecond=0) for instant in (first, last)
    )
    since, until = (
        (f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}")
        if midnight
        else (first.isoformat(timespec="seconds"), last.isoformat(timespec="seconds"))
    )
    if AIRFLOW_V_3_0_PLUS:
        return (
            f"airflow backfill create --dag-id {dag_id} --from-date {since} --to-date {until} "
            "--reprocess-behavior completed"
        )
    return f"airflow dags backfill --reset-dagruns --yes --start-date {since} --end-date {until} {dag_id}"


if __name__ == "__main__":
    sys.exit(main())
