"""
The Airflow command that re-runs an export DAG over a range of data intervals: how the archive check and
the archive page word "re-export this".

.. seealso:: docs/archive.md#re-exporting
"""

from __future__ import annotations

from datetime import datetime

from airflow_provider_asana_audit.version_compat import AIRFLOW_V_3_0_PLUS

__all__ = ["backfill_command"]


def backfill_command(dag_id: str, first: datetime, last: datetime) -> str:
    """
    The command that re-runs the DAG's runs whose data intervals start from ``first`` to ``last``.

    :param first: the logical date of the first run (for data-interval timetables, its interval's start).
    :param last: the logical date of the last run, inclusive.
    """
    midnight = all(
        instant == instant.replace(hour=0, minute=0, second=0, microsecond=0) for instant in (first, last)
    )
    since, until = (
        (f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}")
        if midnight
        else (first.isoformat(timespec="seconds"), last.isoformat(timespec="seconds"))
    )
    if AIRFLOW_V_3_0_PLUS:
        return (
            f"airflow backfill create --dag-id {dag_id} --from-date {since} --to-date {until} "
            "--reprocess-behavior completed"
        )
    return f"airflow dags backfill --reset-dagruns --yes --start-date {since} --end-date {until} {dag_id}"
