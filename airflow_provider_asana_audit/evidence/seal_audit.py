"""
An archive against its seals: is the chain of seals whole, is a published seal hash in it, and does
the archive still hold what the newest seal covers (or later versions of it).

.. seealso:: docs/evidence.md#seals
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from airflow_provider_asana_audit.evidence.problems import (
    INTERVAL_REMOVED,
    SEAL_CHAIN_BROKEN,
    SEAL_UNPUBLISHED_MISMATCH,
    VERSION_ROLLED_BACK,
    EvidenceProblem,
)
from airflow_provider_asana_audit.evidence.records import Record, record_sha256
from airflow_provider_asana_audit.evidence.seals import Seal, SealLink

__all__ = ["audit_seals", "published_seal_problem", "supersedes_transitively"]


def supersedes_transitively(record: Record, ancestor: str, history: Mapping[str, Record]) -> bool:
    """Whether ``record`` replaces the record ``ancestor`` (a hash), through records kept in ``history``."""
    seen: set[str] = set()
    current: Record | None = record
    while current is not None and current.supersedes is not None and current.supersedes not in seen:
        if current.supersedes == ancestor:
            return True
        seen.add(current.supersedes)
        current = history.get(current.supersedes)
    return False


def published_seal_problem(published: str, hashes: Collection[str], *, series: str) -> EvidenceProblem | None:
    """
    A problem when the seal hash ``published`` is not among ``hashes`` (the :func:`seal_hash` of each seal,
    as its :class:`~.seals.SealLink` holds it); ``None`` when it is.
    """
    if published in hashes:
        return None
    return EvidenceProblem(
        SEAL_UNPUBLISHED_MISMATCH,
        f"The seal published as {published} is not among the seals of {series}: the newest seals were "
        "deleted or replaced since it was published (or the hash belongs to another archive)",
    )


def audit_seals(
    *,
    chain: Sequence[SealLink],
    newest: Seal,
    current: Mapping[str, Record],
    history: Mapping[str, Record],
    files: Collection[str],
    published: str | None = None,
) -> list[EvidenceProblem]:
    """
    Compare a series' archive with its seals (whose signatures were checked).

    Reports seals that do not form one chain from number 1, ``published`` when given and not found,
    and, against the newest seal, intervals whose file is gone and intervals whose current record is
    neither the sealed one nor a later version of it (through ``history``).

    :param chain: the links of the series' seals (their signatures checked, or vouched for by the hash a
        checked seal names).
    :param newest: the seal of the chain's last link (the highest number), read whole.
    :param current: the valid current records of the series, by file path.
    :param history: every valid record found, by :func:`record_sha256`.
    :param files: the export files present, by path below the base.
    """
    problems: list[EvidenceProblem] = []
    ordered = sorted(chain, key=lambda link: (link.sequence, link.path))
    expected_sequence, expected_previous = 1, None
    for link in ordered:
        if link.sequence != expected_sequence or link.previous != expected_previous:
            problems.append(
                EvidenceProblem(
                    SEAL_CHAIN_BROKEN,
                    f"The seal {link.path} is number {link.sequence} but does not follow seal "
                    f"{expected_sequence - 1} of the chain: seals were deleted, replaced or forked",
                    link.path,
                )
            )
        expected_sequence, expected_previous = link.sequence + 1, link.hash
    if published is not None:
        series = f"workspace {newest.workspace_gid}, series {newest.series}"
        problem = published_seal_problem(published, {link.hash for link in ordered}, series=series)
        problems.extend([problem] if problem else [])
    newest_path = ordered[-1].path
    for interval in newest.covered:
        record = current.get(interval.path)
        where = f"[{interval.start_at}, {interval.end_at})"
        if interval.path not in files:
            problems.append(
                EvidenceProblem(
                    INTERVAL_REMOVED,
                    f"{interval.path} is gone, but the seal {newest_path} covers its interval {where}: "
                    "restore it from a backup, or re-export it",
                    interval.path,
                )
            )
        elif (
            record is not None
            and record_sha256(record) != interval.record
            and not supersedes_transitively(record, interval.record, history)
        ):
            problems.append(
                EvidenceProblem(
                    VERSION_ROLLED_BACK,
                    f"The record of {interval.path} is neither the one the seal {newest_path} covers "
                    f"({interval.record}) nor a later version of it: an older or another version was put "
                    "in its place",
                    interval.path,
                )
            )
    return problems
