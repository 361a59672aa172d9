"""
The archive check's gid store: every gid read, with its series and where it was read, in a temporary
SQLite database on disk, so that memory stays flat however many events the archive holds.

.. seealso:: docs/archive.md, "Memory and speed"
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

__all__ = ["GidStore", "SeriesGids", "gid_store"]

#: Gids written to the database at a time.
_BATCH = 10_000


class GidStore:
    """
    Every gid read, and where: duplicates are sought within each series only, since a filtered export
    holds some of the events of the unfiltered export of the same interval, by design.

    :param connection: an empty database, which the store owns.
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

    def series(self, key: tuple[str, str]) -> SeriesGids:
        """Where the gids of one series (workspace gid, filter suffix) are added."""
        number = self.series_numbers.setdefault(key, len(self.series_numbers))
        return SeriesGids(self, number)

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
        # SQLite indexes and groups with its own external sort: only the duplicates come into memory.
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
class SeriesGids:
    """The gids of one series, added to the store of all of them."""

    store: GidStore
    number: int

    def add(self, gid: str, *, file: str, line: int) -> None:
        self.store.add(self.number, gid, file=file, line=line)


@contextmanager
def gid_store() -> Iterator[GidStore]:
    """A store in a temporary directory (``TMPDIR``), removed on exit."""
    with (
        tempfile.TemporaryDirectory(prefix="asana-audit-verify-") as folder,
        closing(sqlite3.connect(os.path.join(folder, "gids.sqlite"))) as connection,
    ):
        # A scratch database: nothing to recover after a crash, so no journal and no syncing.
        connection.execute("PRAGMA journal_mode = OFF")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA temp_store = FILE")
        yield GidStore(connection)
