"""
A re-export against the file it replaces: which events are late, which a repair brings back, and which
would be lost. The result is the manifest's ``changes`` and the warnings of the task log.

.. seealso:: docs/archive.md#late-events and docs/output.md#re-exports-changes
"""

from __future__ import annotations

import hashlib
import heapq
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.exceptions import AsanaAuditLogArchiveError
from airflow_provider_asana_audit.export_file import ExportReader, read_manifest
from airflow_provider_asana_audit.timeutils import format_duration, format_instant, parse_instant
from airflow_provider_asana_audit.utils import Logger

__all__ = ["GidSet", "PreviousExport", "Reconciliation", "log_change", "read_previous_export"]

#: Gid digests sorted at a time while a :class:`GidSet` is built (a list of them takes about 2.6 MB).
_SORT_RUN = 1 << 16


def _gid_key(gid: str) -> int:
    """A gid as a 64-bit number (its BLAKE2b digest): two gids of one interval never share one."""
    return int.from_bytes(hashlib.blake2b(gid.encode("utf-8"), digest_size=8).digest(), "big")


class GidSet:
    """
    The distinct gids of one file, kept as a sorted array of 64-bit digests: 8 bytes per gid.

    A day of a million events takes 8 MB (16 MB while it is built), where a ``set`` of the gid strings
    would take about 100 MB. Two different gids share a digest with a probability of about
    ``n**2 / 2**65`` (1 in 37 million for a million events), which at worst counts one late event as
    already there.

    :param gids: consumed one at a time, so a generator never has all the gid strings in memory.
    """

    def __init__(self, gids: Iterable[str] = ()) -> None:
        # Sorting all the digests at once would make a list of a million Python ints (about 40 MB):
        # sort runs of _SORT_RUN instead, kept as arrays, and merge them, dropping repeated gids.
        runs: list[array[int]] = []
        run: list[int] = []
        for gid in gids:
            run.append(_gid_key(gid))
            if len(run) >= _SORT_RUN:
                runs.append(array("Q", sorted(run)))
                run = []
        runs.append(array("Q", sorted(run)))
        del run
        self._keys = array("Q")
        last: int | None = None
        for key in heapq.merge(*runs):
            if key != last:
                self._keys.append(key)
                last = key

    def __len__(self) -> int:
        """How many distinct gids."""
        return len(self._keys)

    def __contains__(self, gid: object) -> bool:
        if not isinstance(gid, str):
            return False
        key = _gid_key(gid)
        index = bisect_left(self._keys, key)
        return index < len(self._keys) and self._keys[index] == key


@dataclass(frozen=True)
class PreviousExport:
    """
    The file an export is about to replace, as read just before.

    :param sha256: its hex SHA-256 as stored.
    :param bytes: its size as stored.
    :param events: its events (lines that are JSON objects with a gid).
    :param gids: the distinct gids of its events that belong to the interval being exported.
    :param exported_at: when it was exported, from its manifest (``None`` without a valid manifest).
    :param changes: the ``changes`` its manifest recorded, carried over to the next manifest.
    :param error: why the file could not be read to its end, if it could not.
    :param misplaced: its events whose ``created_at`` is missing or outside the interval being exported.
    :param invalid: its lines that are not JSON objects with a gid.
    """

    sha256: str
    bytes: int
    events: int
    gids: GidSet
    exported_at: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    misplaced: int = 0
    invalid: int = 0

    @property
    def damaged(self) -> bool:
        """
        Whether the file was not a sound export of the interval: unreadable to its end, or holding
        lines that are not events, events of other intervals, or a gid twice.
        """
        return bool(
            self.error or self.invalid or self.misplaced or self.events - self.misplaced > len(self.gids)
        )

    @classmethod
    def read(
        cls,
        file: ObjectStoragePath,
        manifest: ObjectStoragePath,
        *,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> PreviousExport | None:
        """
        The export at ``file`` with its ``manifest``; ``None`` when there is no file.

        :param start_at: the start of the interval being exported; the file's events outside
            ``[start_at, end_at)`` do not belong to it and are counted as ``misplaced``, not as gids
            a re-export could lose.
        :param end_at: its end.
        """
        if not file.exists():
            return None
        reader = ExportReader(file)
        events = misplaced = invalid = 0

        def gids() -> Iterator[str]:
            # Fed to GidSet one at a time: a list of the gid strings would take 70 MB per million.
            nonlocal events, misplaced, invalid
            for _, event, inside in reader.events(start_at, end_at):
                if event is None:
                    invalid += 1
                    continue
                events += 1
                if not inside:
                    misplaced += 1
                    continue
                yield event["gid"]

        gid_set = GidSet(gids())
        try:
            described = read_manifest(manifest) or {}
        except (ValueError, OSError):
            # A manifest that cannot be read only loses the time and history it holds: the file is still
            # compared, so the re-export is still refused if it would lose events of it.
            described = {}
        # A manifest describes the file only if it names its bytes: a stale one says nothing of it.
        if described.get("sha256") != reader.sha256:
            described = {}
        changes = described.get("changes")
        return cls(
            sha256=reader.sha256,
            bytes=reader.size,
            events=events,
            gids=gid_set,
            exported_at=described.get("exported_at")
            if isinstance(described.get("exported_at"), str)
            else None,
            changes=[c for c in changes if isinstance(c, dict)] if isinstance(changes, list) else [],
            error=reader.error,
            misplaced=misplaced,
            invalid=invalid,
        )


class Reconciliation:
    """
    What an export adds to the file it replaces: fed each written event, it yields the manifest's changes.

    :param previous: the file being replaced, or ``None`` for a first export.
    """

    def __init__(self, previous: PreviousExport | None) -> None:
        self.previous = previous
        self.added = 0
        self.first_added: datetime | None = None
        self.last_added: datetime | None = None

    def observe(self, event: dict[str, Any], created_at: datetime) -> None:
        """Note one event written to the new file."""
        if self.previous is None or event.get("gid") in self.previous.gids:
            return
        self.added += 1
        if self.first_added is None or created_at < self.first_added:
            self.first_added = created_at
        if self.last_added is None or created_at > self.last_added:
            self.last_added = created_at

    def removed(self, *, events: int) -> int:
        """
        How many of the previous file's gids the new one lacks, once it holds ``events`` events.

        The new file's events that were already there are ``events - added``, each gid once. Counted
        against the previous file's distinct gids, not its lines: a gid written twice there (a damaged
        file, which the archive check says to re-export) is not lost when the new file has it once.
        """
        if self.previous is None:
            return 0
        return max(len(self.previous.gids) - (events - self.added), 0)

    def refuse_removal(
        self, *, events: int, sha256: str, start_at: datetime, end_at: datetime, allowed: bool
    ) -> None:
        """
        Refuse a new file of ``events`` events and bytes ``sha256`` that lacks events of the previous one.

        :param allowed: ``allow_event_removal``: let it replace the file anyway.
        :raises AsanaAuditLogArchiveError: unless ``allowed``.
        """
        previous = self.previous
        if previous is None or previous.sha256 == sha256 or allowed:
            return
        removed = self.removed(events=events)
        if removed > 0:
            raise AsanaAuditLogArchiveError(
                f"The re-export of [{format_instant(start_at)}, {format_instant(end_at)}) lacks "
                f"{removed} of the {len(previous.gids)} events of the file it would replace, so the "
                "file was kept as it is. Asana deletes events 90 days after they were created: "
                "re-exporting an interval that old would shrink the archive. Pass "
                "allow_event_removal=True to replace the file anyway"
            )

    def change(self, *, events: int, sha256: str, detected_at: str) -> dict[str, Any] | None:
        """
        The change record of this export, or ``None`` when it is a first export or wrote the same bytes.

        ``removed_events`` counts the previous file's events the new one lacks (see :meth:`removed`).
        """
        previous = self.previous
        if previous is None or previous.sha256 == sha256:
            return None
        return {
            "detected_at": detected_at,
            "previous_sha256": previous.sha256,
            "previous_bytes": previous.bytes,
            "previous_events": previous.events,
            "previous_exported_at": previous.exported_at,
            "added_events": self.added,
            "removed_events": self.removed(events=events),
            "added_created_at": (
                None
                if self.first_added is None or self.last_added is None
                else {"first": format_instant(self.first_added), "last": format_instant(self.last_added)}
            ),
            # A damaged previous file's "added" events may have been in its damaged part: they are a
            # repair, not late events.
            "previous_damaged": previous.damaged,
        }

    def changes(self, change: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The manifest's ``changes``: the previous manifest's, then this export's if it changed the file."""
        carried = list(self.previous.changes) if self.previous is not None else []
        return [*carried, change] if change is not None else carried


def read_previous_export(
    file: ObjectStoragePath,
    manifest: ObjectStoragePath,
    *,
    start_at: datetime,
    end_at: datetime,
    log: Logger,
) -> PreviousExport | None:
    """
    The file an export will replace, read to compare the two; ``None`` for a first export, or when it
    cannot be read (logged: the export then replaces it without recording what changed).

    :param file: the export's destination.
    :param manifest: its manifest.
    :param start_at: the interval being exported.
    :param end_at: its end.
    :param log: where what is odd about the previous file is reported.
    """
    try:
        previous = PreviousExport.read(file, manifest, start_at=start_at, end_at=end_at)
    except OSError as err:
        log.warning(
            "Could not read the previous export at %s to compare it with this one (%s); this export "
            "will replace it without recording what changed",
            file,
            err,
        )
        return None
    if previous is None:
        return None
    log.info(
        "Re-exporting: %s already holds %d events (sha256 %s); what changes will be recorded in the manifest",
        file,
        previous.events,
        previous.sha256,
    )
    if previous.error:
        log.warning("The previous export at %s %s", file, previous.error)
    if previous.invalid:
        log.warning(
            "The previous export at %s holds %d lines that are not audit events; the re-export "
            "leaves them out",
            file,
            previous.invalid,
        )
    if previous.misplaced:
        log.warning(
            "The previous export at %s holds %d events whose created_at lies outside [%s, %s): "
            "they belong to other intervals' files, and the re-export leaves them out",
            file,
            previous.misplaced,
            format_instant(start_at),
            format_instant(end_at),
        )
    return previous


def log_change(change: dict[str, Any], *, start_at: datetime, end_at: datetime, log: Logger) -> None:
    """
    Report what a re-export changed: late events get a warning that says how to catch them.

    :param change: the change record (:meth:`Reconciliation.change`).
    :param start_at: the re-exported interval.
    :param end_at: its end.
    :param log: where to report it.
    """
    window = f"[{format_instant(start_at)}, {format_instant(end_at)})"
    added, removed = change["added_events"], change["removed_events"]
    if added and change["previous_damaged"]:
        # The added events may just have been in the damaged part: calling them late (and advising
        # a longer settle period) would mislead.
        created = change["added_created_at"]
        log.warning(
            "The re-export of %s holds %d events that the sound part of the previous export "
            "(%d events, sha256 %s) did not, created from %s to %s; the previous file was damaged, "
            "so they need not be late events",
            window,
            added,
            change["previous_events"],
            change["previous_sha256"],
            created["first"],
            created["last"],
        )
    elif added:
        created = change["added_created_at"]
        previous_at = change["previous_exported_at"]
        if previous_at is not None:
            after_end = format_duration(parse_instant(previous_at) - end_at)
            advice = (
                f"Asana captured them at least {after_end} after the interval's end (the previous "
                f"export ran at {previous_at}): the settle period of the export that first wrote "
                "this interval must be longer than that to include such events the first time"
            )
        else:
            advice = "the previous export had no valid manifest, so when it ran is not known"
        log.warning(
            "Late events: the re-export of %s holds %d events that the previous export (%d events, "
            "sha256 %s) did not, created from %s to %s; %s",
            window,
            added,
            change["previous_events"],
            change["previous_sha256"],
            created["first"],
            created["last"],
            advice,
        )
    if removed:
        log.warning(
            "The re-export of %s lacks %d events of the previous export (%d events, sha256 %s); "
            "allow_event_removal=True let it replace the file",
            window,
            removed,
            change["previous_events"],
            change["previous_sha256"],
        )
    if not added and not removed:
        log.info(
            "The re-export of %s holds the same events as the previous export in other bytes "
            "(previous sha256 %s)",
            window,
            change["previous_sha256"],
        )
