"""
Where evidence lives below the archive's base, beside the export layout (:mod:`..layout`):

.. code-block:: text

    workspace_gid={gid}/date={day}/{file}.record.json           the file's current record
    workspace_gid={gid}/date={day}/_records/{record sha256}.json every record of the day's files, kept
    workspace_gid={gid}/_seals/series={series}/seal_{n}_{hash}.json  the series' seals, n = 1, 2, ...

``{series}`` is ``unfiltered``, or the ``f<hash>`` of the filters that the file names carry.

.. seealso:: docs/evidence.md#where-evidence-lives
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from airflow_provider_asana_audit.layout import default_relative_path, layout_entry

__all__ = [
    "HISTORY_DIR",
    "RECORD_SUFFIX",
    "SEALS_DIR",
    "EvidenceEntry",
    "evidence_entry",
    "filter_series",
    "history_path",
    "record_path",
    "seal_path",
]

#: A file's current record is named after the file, with this suffix.
RECORD_SUFFIX = ".record.json"
#: The folder, in each date folder, that keeps every record of that day's files.
HISTORY_DIR = "_records"
#: The folder, in each workspace folder, of the seals.
SEALS_DIR = "_seals"
#: The series of unfiltered exports.
UNFILTERED = "unfiltered"

_SHA256_JSON = re.compile(r"^(?P<sha>[0-9a-f]{64})\.json$")
_SEAL_NAME = re.compile(r"^seal_(?P<sequence>\d{8})_(?P<hash>[0-9a-f]{16})\.json$")
_SERIES_DIR = re.compile(rf"^series=(?P<series>{UNFILTERED}|f[0-9a-f]{{10}})$")
_WORKSPACE_DIR = re.compile(r"^workspace_gid=(?P<gid>[0-9]+)$")
_DATE_DIR = re.compile(r"^date=\d{4}-\d{2}-\d{2}$")
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def filter_series(filters: Mapping[str, str | None]) -> str:
    """The series of exports with ``filters``: ``unfiltered``, or ``f`` and the hash the file names carry."""
    relative = default_relative_path(
        workspace_gid="0", start_at=_EPOCH, end_at=_EPOCH + timedelta(days=1), filters=filters
    )
    entry = layout_entry(relative)
    assert entry is not None  # the layout reads back what it writes
    return entry.filter_suffix.lstrip("_") or UNFILTERED


def record_path(file: str) -> str:
    """The current record of the export file at ``file`` (its path below the base)."""
    return f"{file}{RECORD_SUFFIX}"


def history_path(file: str, record_sha256: str) -> str:
    """Where the record ``record_sha256`` of the export file at ``file`` is kept for good."""
    day = file.rsplit("/", 1)[0]
    return f"{day}/{HISTORY_DIR}/{record_sha256}.json"


def seal_path(*, workspace_gid: str, series: str, sequence: int, seal_hash: str) -> str:
    """Where the seal number ``sequence`` of a series is stored."""
    return (
        f"workspace_gid={workspace_gid}/{SEALS_DIR}/series={series}/seal_{sequence:08d}_{seal_hash[:16]}.json"
    )


@dataclass(frozen=True)
class EvidenceEntry:
    """
    An evidence object, recognised by its path below the base (see :func:`evidence_entry`).

    :param kind: ``"record"`` (a file's current record), ``"history"`` (a kept record) or ``"seal"``.
    :param workspace_gid: the ``workspace_gid=`` folder.
    :param file: for a current record, the export file's path below the base.
    :param record_sha256: for a kept record, the hash its name gives.
    :param series: for a seal, its series.
    :param sequence: for a seal, its number in the series' chain.
    """

    kind: str
    workspace_gid: str
    file: str | None = None
    record_sha256: str | None = None
    series: str | None = None
    sequence: int | None = None


def evidence_entry(relative: str) -> EvidenceEntry | None:
    """What the object at ``relative`` is among the evidence objects; ``None`` when it is none."""
    relative = relative.strip("/")
    parts = relative.split("/")
    workspace = _WORKSPACE_DIR.match(parts[0])
    if workspace is None:
        return None
    gid = workspace["gid"]
    if len(parts) == 3 and parts[2].endswith(RECORD_SUFFIX):
        file = relative[: -len(RECORD_SUFFIX)]
        entry = layout_entry(file)
        if entry is None or entry.kind != "file":
            return None
        return EvidenceEntry(kind="record", workspace_gid=gid, file=file)
    if len(parts) == 4 and _DATE_DIR.match(parts[1]) and parts[2] == HISTORY_DIR:
        match = _SHA256_JSON.match(parts[3])
        if match is None:
            return None
        return EvidenceEntry(kind="history", workspace_gid=gid, record_sha256=match["sha"])
    if len(parts) == 4 and parts[1] == SEALS_DIR:
        series, name = _SERIES_DIR.match(parts[2]), _SEAL_NAME.match(parts[3])
        if series is None or name is None:
            return None
        return EvidenceEntry(
            kind="seal", workspace_gid=gid, series=series["series"], sequence=int(name["sequence"])
        )
    return None
