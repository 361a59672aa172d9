"""
Export files read back: their lines, their digest, their manifest, and what a re-export changed.

The export operator writes; this module reads what it wrote, for two readers: the operator itself, which
compares a re-export with the file it replaces (late events), and the archive check
(:mod:`~airflow_provider_asana_audit.verify`). Everything streams: a file is read line by line while its
stored bytes are hashed, so memory does not grow with the file.

**Late events.** Asana captures some events after their ``created_at``. An interval exported again
later may therefore hold events its first export did not. A re-export compares the gids it writes with
those of the file it replaces and records the difference in the manifest's ``changes`` (see
:class:`Reconciliation`): the previous file's ``sha256``, ``bytes``, event count and ``exported_at``, how
many events were added and removed, and the ``created_at`` range of the added ones. Each added event was
captured after the previous export, so ``previous_exported_at - end_at`` is a lower bound of how long
after the interval's end Asana captured it: a ``settle_period`` above it would have caught the event the
first time.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import io
import json
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.timeutils import event_created_at, format_instant
from airflow_provider_asana_audit.utils import decode_json

__all__ = [
    "ExportReader",
    "GidSet",
    "PreviousExport",
    "Reconciliation",
    "parse_event",
    "read_manifest",
]

#: Bytes read from storage at a time.
_CHUNK = 1 << 20
#: Gid digests sorted at a time while a :class:`GidSet` is built (a list of them takes about 2.6 MB).
_SORT_RUN = 1 << 16


class _HashingReader(io.RawIOBase):
    """A read-only raw stream that hashes and counts the bytes it reads from ``raw``."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        if not data:
            return 0
        self.sha256.update(data)
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read (and hash) what is left of the stored bytes."""
        while data := self.raw.read(_CHUNK):
            self.sha256.update(data)
            self.size += len(data)


class ExportReader:
    """
    Read an export file line by line, hashing its bytes as stored.

    ``lines()`` yields ``(line number, line bytes without the newline)``. Once it is exhausted,
    :attr:`sha256` and :attr:`size` describe the whole stored file (compressed, for ``.gz``), even when
    it could not be decompressed to the end; :attr:`error` then says why.

    :param path: the export file; a name ending in ``.gz`` is read as gzip.
    """

    def __init__(self, path: ObjectStoragePath) -> None:
        self.path = path
        self.error: str | None = None
        self._hashing: _HashingReader | None = None

    @property
    def sha256(self) -> str:
        return self._hashing.sha256.hexdigest() if self._hashing else hashlib.sha256().hexdigest()

    @property
    def size(self) -> int:
        return self._hashing.size if self._hashing else 0

    def lines(self) -> Iterator[tuple[int, bytes]]:
        with self.path.open("rb") as raw:  # type: ignore[no-untyped-call]
            self._hashing = _HashingReader(raw)
            buffered = io.BufferedReader(self._hashing, buffer_size=_CHUNK)
            text: Any = (
                gzip.GzipFile(fileobj=buffered, mode="rb") if self.path.name.endswith(".gz") else buffered
            )
            number = 0
            try:
                for number, line in enumerate(text, start=1):  # the last number is used below
                    yield number, line.rstrip(b"\n")
            except (OSError, EOFError, zlib.error) as err:
                self.error = f"cannot be decompressed after line {number}: {err}"
            # The digest covers every stored byte, also those after the end of a broken gzip stream.
            self._hashing.drain()

    def events(
        self, start_at: datetime | None = None, end_at: datetime | None = None
    ) -> Iterator[tuple[int, dict[str, Any] | None, bool]]:
        """
        Each line as ``(line number, event, inside)``: the event is ``None`` for a line that is not an
        audit event (see :func:`parse_event`); ``inside`` says whether its ``created_at`` lies in
        ``[start_at, end_at)`` (always true for an event when no interval is given).
        """
        for number, line in self.lines():
            event = parse_event(line)
            if event is None or start_at is None or end_at is None:
                yield number, event, event is not None
                continue
            created_at = event_created_at(event)
            yield number, event, created_at is not None and start_at <= created_at < end_at


def read_manifest(path: ObjectStoragePath) -> dict[str, Any] | None:
    """
    The manifest at ``path``, or ``None`` when there is none.

    :raises ValueError: when it is not a JSON object (the message says what is wrong).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(text)
    except ValueError as err:
        raise ValueError(f"is not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"is not a JSON object but {type(manifest).__name__}")
    return manifest


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


def parse_event(line: bytes) -> dict[str, Any] | None:
    """A line of an export file as an audit event: a JSON object with a string gid; ``None`` otherwise."""
    try:
        event = decode_json(line)
    except ValueError:  # msgspec's DecodeError is a ValueError too
        return None
    return event if isinstance(event, dict) and isinstance(event.get("gid"), str) else None
