"""
What the archive check found: its problems, the intervals to re-export, and the report with its summary
and JSON.

.. seealso:: docs/archive.md
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_asana_audit.evidence.problems import EVIDENCE_PROBLEM_KINDS
from airflow_provider_asana_audit.layout import LayoutEntry
from airflow_provider_asana_audit.rules import RETENTION
from airflow_provider_asana_audit.storage import STAGING_GRACE_PERIOD
from airflow_provider_asana_audit.timeutils import format_duration, format_instant, parse_instant

__all__ = ["EXAMPLES", "PROBLEM_KINDS", "ArchiveReport", "Interval", "Problem", "Reexport"]

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
    # Checked only with the public keys of the archive's signing keys:
    **EVIDENCE_PROBLEM_KINDS,
}
#: Examples kept per problem (line numbers, gids); the counts are always complete.
EXAMPLES = 5


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """
    ``count`` and the noun that goes with it: ``1 file``, ``2 files``.

    :param plural: the plural, when it is not ``singular`` with an ``s``.
    """
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def span(start: datetime, end: datetime) -> str:
    """The interval ``[start, end)``, as messages show it."""
    return f"[{format_instant(start)}, {format_instant(end)})"


@dataclass(frozen=True)
class Interval:
    """
    An interval of one series (a workspace's exports with one set of filters) to export again.

    :param filter_suffix: ``_f<hash>`` of filtered exports, ``""`` for unfiltered ones.
    """

    workspace_gid: str
    filter_suffix: str
    start_at: datetime
    end_at: datetime

    @classmethod
    def of(cls, entry: LayoutEntry) -> Interval:
        """The interval of an export file of the layout."""
        return cls(entry.workspace_gid, entry.filter_suffix, entry.start_at, entry.end_at)

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
class Series:
    """
    The exports of one workspace with one set of filters, as they are checked.

    :param steps: the files' interval lengths, counted: the most common is the series' schedule.
    :param dag_ids: the DAGs the manifests name as having exported their runs' own data intervals.
    """

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
class LateEvents:
    """
    What the manifests' ``changes`` say of late events.

    :param repairs: changes that replaced a damaged file: their added events need not be late, so they
        are counted here only.
    :param captured_after_end_at_least: the longest time after an interval's end that a previous export
        ran and still missed events.

    .. seealso:: docs/archive.md, "Late events"
    """

    reexports: int = 0
    added: int = 0
    removed: int = 0
    repairs: int = 0
    captured_after_end_at_least: timedelta | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, manifest: dict[str, Any], path: str) -> None:
        """
        Count the ``changes`` of one manifest.

        :param path: the export file the manifest describes, for the examples.
        """
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
    What :func:`~airflow_provider_asana_audit.verify.verify_archive` found; :attr:`whole` says whether
    the archive passed.

    :param base: the base path checked.
    :param since: the start of the time checked for gaps (``None``: each series' first file).
    :param until: its end (``None``: each series' last file).
    :param checked_at: the instant staging ages and Asana's retention were measured from.
    :param staging_grace_period: how old a staging object had to be to count as left behind.

    .. seealso:: docs/archive.md, "The JSON report"
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
    series: list[Series] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reexports: list[Reexport] = field(default_factory=list)
    late_events: LateEvents = field(default_factory=LateEvents)
    #: What the evidence check covered (``keys``, ``published_seal_hashes``, ``problems``), or ``None``
    #: when it did not run (no public keys given).
    evidence: dict[str, Any] | None = None
    #: The Object Lock retention of the export files (see :func:`..locks.lock_report`), or ``None`` when
    #: the store cannot tell.
    object_lock: dict[str, Any] | None = None

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
            "evidence": self.evidence,
            "object_lock": self.object_lock,
            "notes": self.notes,
        }

    def summary(self) -> str:
        """A few lines for people: what was checked, the verdict, each problem, and what to re-export."""
        lines = [f"Asana audit log archive {self.base}"]
        for series in self.series:
            filters = f" (filtered exports {series.filter_suffix})" if series.filter_suffix else ""
            covered = span(series.first, series.last) if series.first and series.last else "no files"
            lines.append(
                f"  workspace {series.workspace_gid}{filters}: {counted(series.files, 'file')}, "
                f"{counted(series.events, 'event')}, {counted(series.bytes, 'byte')}, {covered}"
            )
        late = self.late_events
        if late.reexports:
            lag = late.captured_after_end_at_least
            lines.append(
                f"  late events: {counted(late.reexports, 'change')} recorded by re-exports, adding "
                f"{counted(late.added, 'event')} and removing {late.removed}"
                + (
                    f"; Asana captured some at least {format_duration(lag)} after their interval's end"
                    if lag is not None
                    else ""
                )
            )
        if late.repairs:
            lines.append(
                f"  repairs: {counted(late.repairs, 're-export')} replaced a damaged file "
                "(not counted as late events)"
            )
        if self.evidence is not None:
            keys = self.evidence["keys"]
            published = counted(
                self.evidence["published_seal_hashes"], "published seal hash", "published seal hashes"
            )
            lines.append(
                f"  evidence: signed records and seals checked with {counted(len(keys), 'public key')} "
                f"({', '.join(keys)}) and {published}"
            )
        lock = self.object_lock
        if lock is not None:
            files = counted(lock["locked"] + lock["unlocked"], "file")
            line = f"  object lock: {lock['locked']} of {files} locked"
            if lock["locked"]:
                modes = ", ".join(f"{count} {mode}" for mode, count in sorted(lock["modes"].items()))
                line += f" ({modes}), the earliest until {lock['earliest_retain_until']}"
            unlocked = [row["path"] for row in lock["files"] if not row["mode"]]
            if unlocked:
                more = ", ..." if len(unlocked) > EXAMPLES else ""
                line += f"; not locked: {', '.join(unlocked[:EXAMPLES])}{more}"
            lines.append(line)
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.whole:
            lines.append(
                f"WHOLE: {counted(self.files, 'file')} and {counted(self.events, 'event')} checked in "
                f"{self.seconds:.1f} s, no problem found"
            )
            return "\n".join(lines)
        counts = ", ".join(f"{count} {kind}" for kind, count in sorted(self.counts().items()))
        lines.append(f"NOT WHOLE: {counted(len(self.problems), 'problem')} ({counts})")
        for problem in self.problems:
            example = f" (e.g. {', '.join(problem.examples)})" if problem.examples else ""
            lines.append(f"  {problem.kind}: {problem.message}{example}")
        if self.reexports:
            lines.append("Re-export:")
            for item in self.reexports:
                where = span(item.start_at, item.end_at)
                if item.command is None:
                    lines.append(
                        f"  {where} of workspace {item.workspace_gid}: Asana no longer holds these events "
                        f"(older than {RETENTION.days} days); restore the files from a backup"
                    )
                else:
                    lines.append(f"  {item.command}")
                    if item.expired:
                        lines.append(
                            f"    (part of {where} is older than {RETENTION.days} days: "
                            "Asana no longer holds it)"
                        )
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
