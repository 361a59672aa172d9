"""
The write-once part of the archive check: the S3 Object Lock retention of each export file, when the
store can tell.

.. seealso:: docs/write-once.md
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.storage.object_lock import lock_status
from airflow_provider_asana_audit.timeutils import format_instant

__all__ = ["lock_report"]

#: HEAD requests in flight at once while reading the files' retention.
_REQUESTS_IN_FLIGHT = 16


def lock_report(root: ObjectStoragePath, files: Iterable[str]) -> dict[str, Any] | None:
    """
    The Object Lock retention of the current version of each export file.

    :param files: the export files, by path below ``root``.
    :return: ``locked`` and ``unlocked`` counts, counts by ``modes``, the ``earliest_retain_until`` of
        the locked files and, per file, its ``path``, ``mode`` and ``retain_until`` (``null`` when it
        is not locked); ``None`` when the store cannot tell (it is not S3), or there is no file.
    """
    ordered = sorted(files)
    if not ordered or lock_status(root / ordered[0]) is None:
        return None
    # One HEAD request per file: a year of daily files is 365 round trips to S3, so they overlap.
    with ThreadPoolExecutor(max_workers=_REQUESTS_IN_FLIGHT) as pool:
        statuses = list(pool.map(lambda relative: lock_status(root / relative), ordered))
    rows: list[dict[str, Any]] = []
    for relative, status in zip(ordered, statuses, strict=True):
        if status is None:
            return None
        rows.append(
            {
                "path": relative,
                "mode": status.mode,
                "retain_until": format_instant(status.retain_until) if status.retain_until else None,
            }
        )
    locked = [row for row in rows if row["mode"]]
    return {
        "locked": len(locked),
        "unlocked": len(rows) - len(locked),
        "modes": dict(Counter(row["mode"] for row in locked)),
        # The instants share one format, so their text sorts as they do.
        "earliest_retain_until": min((row["retain_until"] for row in locked), default=None),
        "files": rows,
    }
