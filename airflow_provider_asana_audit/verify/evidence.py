"""
The evidence part of the archive check: the signed records and seals, checked with the auditor's public
keys, their problems joined to the check's.

.. seealso:: docs/evidence.md#verifying-an-archive
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_asana_audit.evidence.check import check_evidence
from airflow_provider_asana_audit.evidence.keys import Keyring
from airflow_provider_asana_audit.evidence.view import StorageArchive
from airflow_provider_asana_audit.layout import layout_entry
from airflow_provider_asana_audit.verify.report import ArchiveReport, Interval, Problem

__all__ = ["add_evidence"]

#: Evidence problems that re-exporting the interval mends (while Asana still holds its events): the
#: re-export writes a new file and a new signed record that supersedes the current one.
_MENDED_BY_REEXPORT = frozenset(
    {"record_missing", "record_mismatch", "interval_removed", "version_rolled_back"}
)


def add_evidence(
    root: ObjectStoragePath,
    listing: dict[str, dict[str, Any]],
    report: ArchiveReport,
    *,
    keyring: Keyring,
    published_seal_hashes: list[str],
    digests: dict[str, tuple[str, int]],
) -> None:
    """
    Check the signed records and seals under ``root`` and add what was found to ``report``.

    :param listing: the objects under ``root``, as the check listed them (they are not listed again).
    :param keyring: the public keys of every key that signed the archive's records and seals.
    :param published_seal_hashes: seal hashes published outside the archive, each of which must be in it.
    :param digests: the SHA-256 and size of the export files the check read, by path below ``root``:
        the files are compared with their records without being read again.
    """
    found = check_evidence(
        StorageArchive(root, listing=listing),
        keyring,
        published_seal_hashes=published_seal_hashes,
        digests=digests,
    )
    report.evidence = {
        "keys": list(keyring.fingerprints),
        "published_seal_hashes": len(published_seal_hashes),
        "problems": len(found),
    }
    for problem in found:
        entry = layout_entry(problem.path) if problem.path else None
        mended = entry is not None and entry.kind == "file" and problem.kind in _MENDED_BY_REEXPORT
        report.problems.append(
            Problem(
                kind=problem.kind,
                message=problem.message,
                path=str(root / problem.path) if problem.path else None,
                reexport=[Interval.of(entry)] if mended and entry is not None else [],
            )
        )
