"""
The export file format: the writer of an interval's JSON Lines (gzip, encoding, digest), its mirror
reader, and the manifest written beside each file.

Both sides stream: memory does not grow with the file.

.. seealso:: docs/output.md
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, BinaryIO

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.timeutils import event_created_at
from airflow_provider_asana_audit.utils import Logger, decode_json

__all__ = [
    "ExportReader",
    "ExportWriter",
    "Manifest",
    "WrittenExport",
    "file_format",
    "parse_event",
    "read_manifest",
    "remove_stale_manifest",
]

#: Bytes read from storage at a time.
_CHUNK = 1 << 20
#: gzip level of compressed files; with no file name and mtime 0, the same events give the same bytes.
_GZIP_LEVEL = 6


def file_format(name: str) -> str:
    """The format of the export file ``name``: ``"jsonl.gz"`` when it ends in ``.gz``, else ``"jsonl"``."""
    return "jsonl.gz" if name.endswith(".gz") else "jsonl"


# ---------------------------------------------------------------------- writing


class HashingWriter:
    """A write-only file wrapper that counts and hashes the bytes that reach storage."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


@dataclass(frozen=True)
class WrittenExport:
    """
    What an :class:`ExportWriter` wrote.

    :param sha256: hex SHA-256 of the bytes as stored (compressed, for ``jsonl.gz``).
    :param bytes: their number.
    :param events: the events written (lines).
    :param outside: the events dropped because their ``created_at`` was missing or outside the interval.
    :param first_created_at: the earliest ``created_at`` written, ``None`` for an empty file.
    :param last_created_at: the latest.
    """

    sha256: str
    bytes: int
    events: int
    outside: int
    first_created_at: datetime | None
    last_created_at: datetime | None


class ExportWriter:
    """
    Write one interval's events to an export file, one JSON line each, exactly as Asana returned them.

    A context manager: leaving it ends the file (the gzip trailer); :meth:`close` says what was written.

    :param raw: where the stored bytes go, e.g. a staging object open for writing; not closed.
    :param file_format: ``"jsonl.gz"`` or ``"jsonl"`` (see :func:`file_format`).
    :param start_at: the interval's inclusive start; events created outside it are dropped.
    :param end_at: its exclusive end.

    .. seealso:: docs/output.md#the-file
    """

    def __init__(self, raw: BinaryIO, *, file_format: str, start_at: datetime, end_at: datetime) -> None:
        self.start_at = start_at
        self.end_at = end_at
        self._hashing = HashingWriter(raw)
        self._out: Any = (
            gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=self._hashing,  # type: ignore[arg-type]
                compresslevel=_GZIP_LEVEL,
                mtime=0,
            )
            if file_format == "jsonl.gz"
            else self._hashing
        )
        self._events = self._outside = 0
        self._first: datetime | None = None
        self._last: datetime | None = None
        self._written: WrittenExport | None = None

    def __enter__(self) -> ExportWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def write(self, events: Iterable[dict[str, Any]]) -> list[tuple[dict[str, Any], datetime]]:
        """Write the events created in the interval; return them, each with its ``created_at``."""
        kept: list[tuple[dict[str, Any], datetime]] = []
        lines: list[str] = []
        for event in events:
            created_at = event_created_at(event)
            if created_at is None or not self.start_at <= created_at < self.end_at:
                self._outside += 1
                continue
            kept.append((event, created_at))
            lines.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
            self._first = created_at if self._first is None else min(self._first, created_at)
            self._last = created_at if self._last is None else max(self._last, created_at)
        if lines:
            self._out.write("".join(lines).encode("utf-8"))
            self._events += len(lines)
        return kept

    def close(self) -> WrittenExport:
        """End the file (the gzip trailer; ``raw`` stays open) and say what was written."""
        if self._written is None:
            if self._out is not self._hashing:
                self._out.close()
            self._written = WrittenExport(
                sha256=self._hashing.sha256.hexdigest(),
                bytes=self._hashing.size,
                events=self._events,
                outside=self._outside,
                first_created_at=self._first,
                last_created_at=self._last,
            )
        return self._written


# ---------------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class Manifest:
    """
    ``<file>.manifest.json``: what an export wrote, written after the file. The fields, in this order,
    are the JSON object's keys.

    :param events: events in the file.
    :param start_at: the interval's start, ISO 8601 UTC.
    :param end_at: its end.
    :param filters: Asana's four filters, ``None`` where not set.
    :param sha256: hex SHA-256 of the file as stored.
    :param bytes: its size as stored.
    :param path: the file, as a URI or absolute path.
    :param format: ``"jsonl.gz"`` or ``"jsonl"``.
    :param exported_at: when the export finished.
    :param package_version: the version of this package that wrote it.
    :param workspace_gid: the exported workspace.
    :param exported_by: the Airflow task instance that wrote it, or ``None``.
    :param changes: what each re-export changed.

    .. seealso:: docs/output.md#the-manifest and docs/manifest.schema.json
    """

    events: int
    start_at: str
    end_at: str
    filters: dict[str, str | None]
    sha256: str
    bytes: int
    path: str
    format: str
    exported_at: str
    package_version: str
    workspace_gid: str
    exported_by: dict[str, Any] | None
    changes: list[dict[str, Any]]

    def to_json(self) -> builtins.bytes:
        """The manifest as stored: indented JSON in UTF-8, non-ASCII kept, ending in a newline."""
        return (json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_manifest(path: ObjectStoragePath) -> dict[str, Any] | None:
    """
    The manifest at ``path`` as stored (any keys), or ``None`` when there is none.

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


def remove_stale_manifest(manifest: ObjectStoragePath, *, sha256: str, log: Logger) -> None:
    """Delete the manifest at ``manifest`` unless it describes the bytes ``sha256``."""
    try:
        if not manifest.exists():
            return
        # read_manifest refuses any JSON that is not an object: a manifest holding a list or a string
        # must not stop every later export of its file.
        described = (read_manifest(manifest) or {}).get("sha256")
    except (OSError, ValueError):
        described = None
    if described != sha256:
        log.info("Removing the manifest of the previous, different export at %s", manifest)
        # Another run of the same destination may have removed it first: gone either way.
        manifest.unlink(missing_ok=True)


# ---------------------------------------------------------------------- reading


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
                gzip.GzipFile(fileobj=buffered, mode="rb")
                if file_format(self.path.name) == "jsonl.gz"
                else buffered
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


def parse_event(line: bytes) -> dict[str, Any] | None:
    """A line of an export file as an audit event: a JSON object with a string gid; ``None`` otherwise."""
    try:
        event = decode_json(line)
    except ValueError:  # msgspec's DecodeError is a ValueError too
        return None
    return event if isinstance(event, dict) and isinstance(event.get("gid"), str) else None
