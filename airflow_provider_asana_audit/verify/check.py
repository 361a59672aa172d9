"""
The archive check itself: walking the default layout under a base path and checking each series'
coverage, each manifest, each file line by line, the gids across files, and the staging objects.

.. seealso:: docs/archive.md
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.evidence.keys import Keyring
from airflow_provider_asana_audit.evidence.paths import evidence_entry
from airflow_provider_asana_audit.exceptions import AsanaAuditLogConfigError
from airflow_provider_asana_audit.export_file import ExportReader, read_manifest
from airflow_provider_asana_audit.layout import LayoutEntry, layout_entry
from airflow_provider_asana_audit.storage import STAGING_GRACE_PERIOD, modified_at, resolve_base
from airflow_provider_asana_audit.timeutils import format_duration, format_instant, parse_instant
from airflow_provider_asana_audit.utils import Logger
from airflow_provider_asana_audit.verify.evidence import add_evidence
from airflow_provider_asana_audit.verify.gids import SeriesGids, gid_store
from airflow_provider_asana_audit.verify.locks import lock_report
from airflow_provider_asana_audit.verify.reexport import plan_reexports
from airflow_provider_asana_audit.verify.report import (
    EXAMPLES,
    ArchiveReport,
    Interval,
    Problem,
    Series,
    counted,
    span,
)

__all__ = ["parse_bound", "verify_archive"]

#: Seconds between two progress lines in the log.
_PROGRESS_EVERY = 5.0
#: What the manifest of an export must hold for the check to compare it with the file.
_MANIFEST_FIELDS = ("sha256", "bytes", "events", "start_at", "end_at")
# Named after the package, not this module: the logger that users configure for the check.
_log = logging.getLogger("airflow_provider_asana_audit.verify")


def parse_bound(value: str | date | datetime, *, name: str) -> datetime:
    """
    ``since`` or ``until``: a date (midnight UTC), or an aware datetime or ISO 8601 instant.

    :param name: the parameter's name, for the message.
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
    keyring: Keyring | None = None,
    published_seal_hashes: Iterable[str] = (),
) -> ArchiveReport:
    """
    Check the archive under ``base``.

    :param base: the root of the default layout: an absolute path, a URI or an ``ObjectStoragePath``.
    :param since: check for gaps from this instant on; only files whose interval ends after it are read.
        An aware datetime, a date (midnight UTC) or a string of either (see :func:`parse_bound`).
    :param until: check for gaps up to this instant; only files whose interval starts before it are read.
    :param conn_id: the Airflow connection of the storage, if it needs one.
    :param dag_id: the export DAG to name in re-export commands; default the DAG the manifests name.
    :param staging_grace_period: how old a staging object must be to count as left behind.
    :param now: the reference instant for staging ages and retention; default this machine's clock.
    :param log: where progress is logged.
    :param keyring: the public keys of every key that signed the archive's records and seals: with them,
        the evidence is checked too (over the whole archive, whatever ``since`` and ``until``).
    :param published_seal_hashes: seal hashes published outside the archive, each of which must be in it
        (checked with ``keyring`` only).
    :raises AsanaAuditLogConfigError: for a relative or unusable base path, a bound that is naive or does
        not parse, ``since`` not before ``until``, a grace period that is not positive, or published seal
        hashes without a keyring.

    .. seealso:: docs/archive.md
    """
    log = log or _log
    if not isinstance(staging_grace_period, timedelta) or staging_grace_period <= timedelta(0):
        # A grace period of nothing would count every staging object as left behind, also those of the
        # exports running right now.
        raise AsanaAuditLogConfigError(
            f"staging_grace_period={staging_grace_period!r} must be a positive timedelta: use at least the "
            f"exports' grace period, timedelta(minutes={STAGING_GRACE_PERIOD.total_seconds() / 60:g})"
        )
    published_seal_hashes = list(published_seal_hashes)
    if published_seal_hashes and keyring is None:
        raise AsanaAuditLogConfigError(
            "published_seal_hashes are checked against the signed seals: give keyring too"
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
    objects = _classify(root, listing, report, signed=keyring is not None)
    _check_staging(root, objects.staging, report, grace_period=staging_grace_period, now=now)
    with gid_store() as gids:
        checked = 0
        last_progress = time.monotonic()
        total = sum(len(files) for files in objects.series.values())
        read: dict[str, LayoutEntry] = {}
        digests: dict[str, tuple[str, int]] = {}
        for key in sorted(objects.series):
            series = Series(workspace_gid=key[0], filter_suffix=key[1])
            report.series.append(series)
            entries = objects.series[key]
            _check_coverage(
                series, [item.entry for item in entries.values()], report, since=since, until=until
            )
            for name in sorted(entries, key=lambda item: (entries[item].entry.start_at, item)):
                _check_file(root, series, entries[name], report, gids.series(key), read, digests)
                checked += 1
                if time.monotonic() - last_progress >= _PROGRESS_EVERY:
                    last_progress = time.monotonic()
                    elapsed = last_progress - started
                    log.info(
                        "Checked %d of %s (%s, %.0f events/s)",
                        checked,
                        counted(total, "export file"),
                        counted(report.events, "event"),
                        report.events / max(elapsed, 1e-9),
                    )
        _check_duplicates(gids.duplicates(), read, report)
    if keyring is not None:
        add_evidence(
            root,
            listing,
            report,
            keyring=keyring,
            published_seal_hashes=published_seal_hashes,
            digests=digests,
        )
    report.object_lock = lock_report(root, digests)
    if not objects.series:
        # Nothing to check proves nothing: a mistyped base path, or a bucket listed without the right to
        # list it, looks the same as an empty archive, and must not pass for a whole one.
        report.problems.append(Problem(kind="gap", message=_nothing_found(root, since=since, until=until)))
    report.reexports = plan_reexports(report, dag_id=dag_id, now=now)
    report.seconds = time.monotonic() - started
    log.info(
        "Checked %s (%s, %s) in %.1f s: %s",
        counted(report.files, "export file"),
        counted(report.events, "event"),
        counted(report.bytes, "byte"),
        report.seconds,
        "whole" if report.whole else counted(len(report.problems), "problem"),
    )
    return report


@dataclass
class _Entry:
    """An export file of the layout and its manifest, as listed (``None``: not there)."""

    entry: LayoutEntry
    file: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None


@dataclass
class _Objects:
    """The objects under the base path: the series' files and manifests, and the staging objects."""

    series: dict[tuple[str, str], dict[str, _Entry]] = field(default_factory=dict)
    staging: list[tuple[LayoutEntry, dict[str, Any]]] = field(default_factory=list)


def _classify(
    root: ObjectStoragePath, listing: dict[str, dict[str, Any]], report: ArchiveReport, *, signed: bool
) -> _Objects:
    """
    Sort the listed objects into series of files with their manifests, staging objects and the rest.

    :param signed: whether the evidence (records and seals) is checked; otherwise it is only counted.
    """
    objects = _Objects()
    prefix = root.path.rstrip("/") + "/"
    unknown = evidence = 0
    for name, info in listing.items():
        relative = name[len(prefix) :] if name.startswith(prefix) else name
        entry = layout_entry(relative)
        if entry is None:
            if evidence_entry(relative) is not None:
                evidence += 1
            else:
                unknown += 1
            continue
        if not _in_range(entry, report.since, report.until):
            continue
        if entry.kind == "staging":
            objects.staging.append((entry, info))
            continue
        files = objects.series.setdefault((entry.workspace_gid, entry.filter_suffix), {})
        item = files.setdefault(entry.file_relative_path, _Entry(entry=entry))
        if entry.kind == "manifest":
            item.manifest = info
        else:
            item.file = info
            item.entry = entry
    if unknown:
        report.notes.append(
            f"{counted(unknown, 'object')} under the base path "
            f"{'is' if unknown == 1 else 'are'} not part of the export layout (ignored)"
        )
    if evidence and not signed:
        report.notes.append(
            f"{counted(evidence, 'signed record or seal', 'signed records and seals')} not checked: give "
            "the public keys (--public-key) to check the evidence"
        )
    return objects


def _in_range(entry: LayoutEntry, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or entry.end_at > since) and (until is None or entry.start_at < until)


def _nothing_found(root: ObjectStoragePath, *, since: datetime | None, until: datetime | None) -> str:
    """The gap of an archive without a single export file (in the range checked)."""
    if since is not None and until is not None:
        return f"no export file under {root} covers {span(since, until)}"
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
    """Staging objects older than the grace period are left behind; younger ones are only noted."""
    fresh = 0
    for entry, info in sorted(staging, key=lambda item: str(item[1].get("name"))):
        modified = modified_at(root.fs, info)
        if modified is None or now - modified <= grace_period:
            fresh += 1
            continue
        path = root.fs.unstrip_protocol(info["name"])
        size = counted(int(info.get("size") or 0), "byte")
        report.problems.append(
            Problem(
                kind="stale_staging",
                message=(
                    f"{path} ({size}) was last modified {format_duration(now - modified)} ago: an export "
                    f"attempt of {entry.file_name} did not finish"
                ),
                path=path,
            )
        )
    if fresh:
        report.notes.append(
            f"{counted(fresh, 'staging object')} younger than {format_duration(grace_period)}: "
            f"{'an export' if fresh == 1 else 'exports'} in progress"
        )


def _check_coverage(
    series: Series,
    entries: list[LayoutEntry],
    report: ArchiveReport,
    *,
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Gaps and overlaps between the intervals of one series' files (and of manifests without a file)."""
    if not entries:
        return
    entries = sorted(entries, key=lambda entry: (entry.start_at, entry.end_at, entry.file_relative_path))
    series.first, series.last = entries[0].start_at, max(entry.end_at for entry in entries)
    for entry in entries:
        series.steps[entry.end_at - entry.start_at] += 1
    cursor = since if since is not None else entries[0].start_at
    reaching: LayoutEntry | None = None
    for entry in entries:
        if entry.start_at > cursor:
            _gap(series, report, cursor, entry.start_at)
        elif entry.start_at < cursor and reaching is not None:
            report.problems.append(
                Problem(
                    kind="overlap",
                    message=(
                        f"{entry.file_relative_path} {span(entry.start_at, entry.end_at)} overlaps "
                        f"{reaching.file_relative_path} {span(reaching.start_at, reaching.end_at)} by "
                        f"{format_duration(min(cursor, entry.end_at) - entry.start_at)}"
                    ),
                    path=entry.file_relative_path,
                )
            )
        if entry.end_at > cursor:
            cursor, reaching = entry.end_at, entry
    if until is not None and until > cursor:
        _gap(series, report, cursor, until)


def _gap(series: Series, report: ArchiveReport, start: datetime, end: datetime) -> None:
    filters = f" (filtered exports {series.filter_suffix})" if series.filter_suffix else ""
    report.problems.append(
        Problem(
            kind="gap",
            message=(
                f"workspace {series.workspace_gid}{filters}: no export file covers "
                f"{span(start, end)} ({format_duration(end - start)})"
            ),
            reexport=[Interval(series.workspace_gid, series.filter_suffix, start, end)],
        )
    )


def _check_file(
    root: ObjectStoragePath,
    series: Series,
    item: _Entry,
    report: ArchiveReport,
    gids: SeriesGids,
    read: dict[str, LayoutEntry],
    digests: dict[str, tuple[str, int]],
) -> None:
    """
    One file against its manifest, line by line.

    :param read: the files read so far, by path, to which this one is added.
    :param digests: the SHA-256 and size of the files read so far, by path below the base, for the
        evidence check; this one's is added.
    """
    entry = item.entry
    file_path = root / entry.file_relative_path
    manifest_at = root / entry.manifest_relative_path

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
                reexport=[Interval.of(entry)],
            )
        )

    manifest: dict[str, Any] | None = None
    if item.manifest is not None:
        try:
            manifest = read_manifest(manifest_at)
        except (ValueError, OSError) as err:
            problem("bad_manifest", f"{manifest_at} {err}", path=str(manifest_at))
        else:
            missing = [name for name in _MANIFEST_FIELDS if manifest is not None and name not in manifest]
            if missing:
                problem("bad_manifest", f"{manifest_at} lacks {', '.join(missing)}", path=str(manifest_at))
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
                f"{manifest_at} describes {entry.file_name}, which is not there",
                path=str(manifest_at),
            )
        return
    if item.manifest is None:
        problem("missing_manifest", f"{file_path} has no manifest {manifest_at.name}", path=str(file_path))

    read[str(file_path)] = entry
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
    if not reader.error:
        digests[entry.file_relative_path] = (reader.sha256, reader.size)
    report.events += events
    report.bytes += reader.size
    series.events += events
    series.bytes += reader.size
    if reader.error:
        problem("unreadable_file", f"{file_path} {reader.error}", path=str(file_path))
    if invalid_count:
        problem(
            "invalid_json",
            f"{file_path}: "
            + (
                "1 line is not a JSON audit event"
                if invalid_count == 1
                else f"{invalid_count} lines are not JSON audit events"
            ),
            path=str(file_path),
            count=invalid_count,
            examples=invalid,
        )
    if outside_count:
        problem(
            "outside_interval",
            f"{file_path}: {counted(outside_count, 'event')} "
            f"{'has' if outside_count == 1 else 'have'} a created_at outside "
            f"{span(entry.start_at, entry.end_at)}",
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
    """Whether a manifest's value is the one found, instants compared as instants."""
    if name in ("start_at", "end_at") and isinstance(described, str):
        try:
            return parse_instant(described) == parse_instant(found)
        except ValueError:
            return False
    return bool(described == found)


def _check_duplicates(
    duplicates: Iterator[tuple[str, list[tuple[str, int]]]],
    read: dict[str, LayoutEntry],
    report: ArchiveReport,
) -> None:
    """
    One problem per set of files that share gids; re-exporting each of them mends it.

    :param duplicates: each gid read more than once in a series, with the (file, line) of each reading.
    :param read: the files read, by path.
    """
    found: dict[tuple[str, ...], list[Any]] = defaultdict(lambda: [0, []])
    for gid, places in duplicates:
        files = tuple(sorted({file for file, _ in places}))
        tally = found[files]
        tally[0] += 1
        if len(tally[1]) < EXAMPLES:
            lines = ", ".join(f"{file.rsplit('/', 1)[-1]} line {line}" for file, line in places)
            tally[1].append(f"gid {gid} in {lines}")
    for files, (count, examples) in sorted(found.items()):
        where = f"twice in {files[0]}" if len(files) == 1 else f"in {len(files)} files: {', '.join(files)}"
        report.problems.append(
            Problem(
                kind="duplicate_gid",
                message=f"{counted(count, 'gid')} {'appears' if count == 1 else 'appear'} {where}",
                path=files[0],
                count=count,
                examples=examples,
                # An export writes each gid once, into the interval of its created_at: re-exporting
                # every file concerned leaves each gid where it belongs.
                reexport=[Interval.of(read[file]) for file in files],
            )
        )
